"""Operating errors of the Raft core (programmer errors are assertions)."""

from __future__ import annotations

from ledger.errors import RemoteError


class InvalidMessageError(RemoteError):
    """A message no correct peer sends: a local-only type, the wrong recipient, or entries
    that do not follow the message's index. It is refused and changes nothing."""


class UnknownPeerError(RemoteError):
    """A response from a node that is not in the configuration (etcd's
    ErrStepPeerNotFound); it is refused and changes nothing."""
