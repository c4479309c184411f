"""The RPC server service: hypercorn's trio worker serving :class:`RpcApplication`.

::

    server = RpcServer(node, metrics=metrics, host="127.0.0.1", port=0, admin_token=token)
    server.register_app_methods(specs)            # optional, before or after start
    port = await nursery.start(server.run)        # the bound port (useful with port 0)

With ``tls_files=(certificate, private_key)`` (PEM files) the port serves HTTPS and WSS
only; a certificate or key that cannot be loaded fails ``run`` with a ConfigError.

Cancelling ``run`` shuts down gracefully: no new connections, WebSockets get a 1001
close, in-flight requests have ``limits.shutdown_grace_seconds`` to finish.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ledger.errors import ConfigError, LocalError
from node.api import NodeAPI
from node.metrics import Metrics
from node.rpc.app import RpcApplication
from node.rpc.app_methods import AppMethodSpec, register_app_methods
from node.rpc.context import RpcStatistics, ServerContext
from node.rpc.limits import RpcLimits
from node.rpc.methods import TOKEN_LENGTH_MAX, default_registry

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545
# Past the grace period hypercorn cancels its handlers; this margin lets it unwind before
# our own deadline cancels hypercorn itself.
SHUTDOWN_MARGIN_SECONDS = 1.0
HYPERCORN_LOGGER = "medledger.rpc.hypercorn"


class RpcBindError(LocalError):
    """The RPC port could not be bound (in use, not permitted, no such address)."""


class RpcServer:
    def __init__(
        self,
        node: NodeAPI,
        *,
        metrics: Metrics | None = None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        admin_token: str | None = None,
        limits: RpcLimits | None = None,
        tls_files: tuple[Path, Path] | None = None,
        log: Any = None,
    ) -> None:
        assert 0 <= port <= 65535, f"port {port} out of range"
        assert admin_token is None or len(admin_token) <= TOKEN_LENGTH_MAX, (
            f"an admin token is at most {TOKEN_LENGTH_MAX} characters"
        )
        self.host = host
        self.requested_port = port
        self.tls_files = tls_files  # (certificate, private key), PEM; None: plain HTTP
        self.port: int | None = None  # the bound port, once running
        limits = limits if limits is not None else RpcLimits()
        self.context = ServerContext(
            node=node,
            metrics=metrics if metrics is not None else Metrics(),
            limits=limits,
            registry=default_registry(
                submit_batch_txs_max=limits.submit_batch_txs_max,
                tx_filter_ids_max=limits.tx_filter_ids_max,
            ),
            admin_token=admin_token.encode() if admin_token else None,
            log=log if log is not None else structlog.get_logger().bind(component="rpc"),
        )
        self.application = RpcApplication(self.context)

    @property
    def metrics(self) -> Metrics:
        return self.context.metrics

    def register_app_methods(self, specs: Iterable[AppMethodSpec]) -> None:
        register_app_methods(self.context.registry, specs)

    def statistics(self) -> RpcStatistics:
        return self.context.statistics

    def _hypercorn_config(self) -> Config:
        limits = self.context.limits
        config = Config()
        host = f"[{self.host}]" if ":" in self.host else self.host
        config.bind = [f"{host}:{self.requested_port}"]
        config.accesslog = None  # the dispatcher logs one canonical line per call
        config.errorlog = logging.getLogger(HYPERCORN_LOGGER)
        config.graceful_timeout = limits.shutdown_grace_seconds
        config.keep_alive_timeout = limits.keep_alive_timeout_seconds
        config.websocket_max_message_size = limits.websocket_message_bytes_max
        config.read_timeout = limits.read_timeout_seconds
        config.websocket_ping_interval = limits.websocket_ping_interval_seconds
        config.include_server_header = False
        if self.tls_files is not None:
            certificate, private_key = self.tls_files
            config.certfile, config.keyfile = str(certificate), str(private_key)
        return config

    def _check_tls(self, config: Config) -> None:
        """Load the certificate and key once before binding: a bad file is a config error
        that names the setting, not an OSError mistaken for a port that cannot be bound."""
        if self.tls_files is None:
            return
        try:
            config.create_ssl_context()
        except (OSError, ssl.SSLError) as error:
            certificate, private_key = self.tls_files
            raise ConfigError(
                f"[rpc] tls_cert_file {certificate} and tls_key_file {private_key}: cannot "
                f"load a PEM certificate and its private key ({error})"
            ) from None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(port)`` once listening. A port that
        cannot be bound raises RpcBindError."""
        try:
            await self._run(task_status)
        except BaseExceptionGroup as group:
            bind_errors, others = group.split(OSError)
            if self.port is not None or bind_errors is None or others is not None:
                raise
            address = f"{self.host}:{self.requested_port}"
            raise RpcBindError(f"cannot listen on {address}: {_first_leaf(bind_errors)}") from None

    async def _run(self, task_status: Any) -> None:
        config = self._hypercorn_config()
        self._check_tls(config)
        # hypercorn runs shielded so that cancelling us becomes a graceful shutdown (its
        # shutdown trigger) bounded by a deadline, instead of an abrupt cancellation.
        serve_scope = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(self._serve, config, serve_scope)
            self.port = int(binds[0].rsplit(":", 1)[1])
            self.context.log.info("rpc server listening", host=self.host, port=self.port,
                                  tls=self.tls_files is not None)
            task_status.started(self.port)
            try:
                await trio.sleep_forever()
            finally:
                self.context.log.info("rpc server shutting down", port=self.port)
                self.context.shutting_down.set()
                serve_scope.deadline = (
                    trio.current_time()
                    + self.context.limits.shutdown_grace_seconds
                    + SHUTDOWN_MARGIN_SECONDS
                )

    async def _serve(
        self,
        config: Config,
        serve_scope: trio.CancelScope,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with serve_scope:
            await serve(
                self.application,  # type: ignore[arg-type]
                config,
                shutdown_trigger=self.context.shutting_down.wait,
                task_status=task_status,
                mode="asgi",
            )
        if not self.context.shutting_down.is_set():
            raise AssertionError("the RPC server stopped without being asked to")


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
