"""JSON-RPC 2.0 over HTTP and WebSocket, /metrics, /healthz and /readyz.

Start with :class:`node.rpc.server.RpcServer`; errors are in :mod:`node.rpc.errors`,
limits in :mod:`node.rpc.limits`, domain methods in :mod:`node.rpc.app_methods`.
"""
