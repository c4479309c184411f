"""The load tester (``medledger loadtest``): lanes of signed healthcare txs sent to nodes'
JSON-RPC at a fixed rate or as fast as the cluster commits, with Caliper-style
percentile reports. It needs only ``ledger.sdk``, key files and RPC: it runs against any
node, never inside one. ``command`` is the entry point.
"""
