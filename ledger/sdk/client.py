"""The port between SDK code (the demo, tools) and a ledger: :class:`LedgerClient`.

The node implements it over JSON-RPC; :class:`ledger.sdk.inprocess.InProcessLedger`
implements it over the pure application for tests.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol


class Submission(NamedTuple):
    """The answer to a submitted tx: accepted into the mempool, or refused (stateless code
    and message)."""

    accepted: bool
    code: int
    message: str


class LedgerClient(Protocol):
    @property
    def chain_id(self) -> str: ...

    def submit(self, raw: bytes) -> tuple[bool, int, str]:
        """Submit one signed tx: (accepted, code, message); code is 0 when accepted."""
        ...

    def wait_committed(self, tx_id: bytes, timeout_s: float) -> int:
        """Block until the tx is committed and return its result code (0 valid, else the
        reason). Raises TimeoutError if it is not committed within ``timeout_s``."""
        ...

    def query(self, method: str, params: dict[str, Any]) -> Any:
        """An application query (``ledger.app.queries.QUERY_METHODS``). Over JSON-RPC bytes
        come back as 0x-hex strings: read them with :func:`as_bytes`."""
        ...


def as_bytes(value: Any) -> bytes:
    """A bytes value from a query answer: bytes in process, 0x-hex over JSON-RPC."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.startswith("0x"):
        return bytes.fromhex(value[2:])
    raise TypeError(f"expected bytes or 0x-hex, got {type(value).__name__}")
