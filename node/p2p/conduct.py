"""What a peer's misbehaviour costs it: every stream handler is contained, so nothing a
peer sends can raise out of libp2p's connection tasks and take the node down.

A handler that fails on a peer's input (a malformed protobuf on /meshsub, a frame our
decoders refuse, any exception at all) is an *offence*: the stream is reset, the
connection dropped, and the offence counted. A peer that is not a validator and offends
``OFFENCES_BAN_MIN`` times within ``OFFENCE_WINDOW_S`` is banned for ``BAN_S``: the
connection gate refuses it. Validators are never banned (the consortium needs their
votes; a validator that sends garbage is dropped and redials), only counted and logged.

Logs: one line per peer per ``OFFENCE_LOG_INTERVAL_S`` at most, with the count of
offences suppressed since the last one, so a hostile peer cannot flood the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Offences by one peer counted within this window.
OFFENCE_WINDOW_S = 600.0
# A non-validator with this many offences in the window is banned...
OFFENCES_BAN_MIN = 3
# ...for this long.
BAN_S = 600.0
# At most one log line per peer in this interval.
OFFENCE_LOG_INTERVAL_S = 60.0
# Peers remembered; the oldest records go first when full (a flood of fresh identities
# costs each one a Noise handshake, and forgetting them only forgives them).
PEERS_REMEMBERED_MAX = 4096


@dataclass
class _Record:
    offences: list[float] = field(default_factory=list)
    banned_until: float = 0.0
    logged_at: float = -OFFENCE_LOG_INTERVAL_S
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class ConductStatistics:
    offences: int
    bans: int
    peers_banned: int


class PeerConduct:
    def __init__(self, *, log: Any, is_validator: Callable[[str], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._is_validator = is_validator
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._offences = 0
        self._bans = 0

    def banned(self, peer_id: str) -> bool:
        record = self._records.get(peer_id)
        return record is not None and record.banned_until > self._clock()

    def offence(self, peer_id: str, *, protocol: str, error: BaseException) -> None:
        """Count an offence by ``peer_id``; ban it if it is a repeat non-validator."""
        now = self._clock()
        record = self._record(peer_id)
        record.offences = [at for at in record.offences if now - at < OFFENCE_WINDOW_S]
        record.offences.append(now)
        self._offences += 1
        validator = self._is_validator(peer_id)
        ban = not validator and len(record.offences) >= OFFENCES_BAN_MIN
        if ban and record.banned_until <= now:
            self._bans += 1
        if ban:
            record.banned_until = now + BAN_S
        if now - record.logged_at < OFFENCE_LOG_INTERVAL_S and not ban:
            record.suppressed += 1
            return
        self._log.warning(
            "peer misbehaved: stream reset, connection dropped", peer=peer_id,
            protocol=protocol, error=f"{type(error).__name__}: {error}"[:300],
            validator=validator, offences_in_window=len(record.offences),
            suppressed_since_last_log=record.suppressed,
            banned_s=BAN_S if ban else 0.0,
        )
        record.logged_at = now
        record.suppressed = 0

    def statistics(self) -> ConductStatistics:
        now = self._clock()
        return ConductStatistics(
            offences=self._offences, bans=self._bans,
            peers_banned=sum(1 for r in self._records.values() if r.banned_until > now),
        )

    def _record(self, peer_id: str) -> _Record:
        record = self._records.get(peer_id)
        if record is None:
            while len(self._records) >= PEERS_REMEMBERED_MAX:
                del self._records[next(iter(self._records))]
            record = self._records[peer_id] = _Record()
        return record
