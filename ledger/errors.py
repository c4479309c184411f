"""One exception root for the whole project, split by whose fault it is.

Programmer errors are assertions (they crash). Operating errors are typed exceptions
under :class:`MedledgerError`, split into *local* causes (our configuration, our disk,
our own misuse of an API at runtime) and *remote* causes (bytes or requests that came
from somebody else). Catch them only at the edge that can handle them.
"""

from __future__ import annotations


class MedledgerError(Exception):
    """Root of every operating error raised by medledger."""


class LocalError(MedledgerError):
    """Something on our side is wrong: configuration, storage, environment."""


class RemoteError(MedledgerError):
    """Something a peer or client sent is wrong. The input is rejected, nothing changes."""


class DecodeError(RemoteError):
    """Bytes that are not the one canonical encoding of a valid value.

    ``path`` names the offending field (``Transaction.body.lines[3].charge``) and ``reason``
    says what is wrong with it.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def within(self, part: str) -> DecodeError:
        """The same error seen from the enclosing value: ``part`` is prefixed to the path
        (``.field``, ``[index]`` or a type name)."""
        return DecodeError(self.reason, part + self.path)


class ValidationError(RemoteError):
    """A well-formed value that breaks a rule. ``code`` is the stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConfigError(LocalError):
    """The node's configuration or genesis is invalid."""


class StorageError(LocalError):
    """The data directory cannot be used: locked, corrupted, wrong schema."""


class CorruptionError(StorageError):
    """A stored value fails its checksum or does not decode."""
