"""The Raft log: what storage holds (stable) plus what is not yet persisted (unstable).

Modelled on etcd's raftLog and unstable. Indices are 1-based; the entry "before the
first" is the last one covered by the snapshot, whose term storage still knows.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.ports import CompactedError, RaftStorage, UnavailableError
from consensus.types import Entry, Snapshot

# "No byte limit" for internal slices that are bounded by their index range instead.
NO_LIMIT = 2**63


def limit_size(entries: list[Entry], size_bytes_max: int, count_max: int) -> list[Entry]:
    """The longest prefix within both limits, but at least one entry."""
    if len(entries) > count_max:
        entries = entries[:count_max]
    if size_bytes_max >= NO_LIMIT or not entries:
        return entries
    total = 0
    for position, entry in enumerate(entries):
        total += len(entry.data)
        if total > size_bytes_max and position > 0:
            return entries[:position]
    return entries


class Unstable:
    """Entries (and possibly a snapshot) accepted but not yet persisted by the shell.

    ``entries[i]`` has index ``offset + i``. Entries below ``offset`` are in storage.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            snapshot = self.snapshot
            if snapshot is not None and snapshot.metadata.index == index:
                return snapshot.metadata.term
            return None
        position = index - self.offset
        if position < len(self.entries):
            return self.entries[position].term
        return None

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are now in storage."""
        if index < self.offset:
            return
        if self.maybe_term(index) != term:
            # Replaced by a newer append since the Ready was made: still unstable.
            return
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.metadata.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        after = entries[0].index
        end = self.offset + len(self.entries)
        if after == end:
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replace everything unstable; the shell truncates storage when persisting.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)

    def slice(self, low: int, high: int) -> list[Entry]:
        assert self.offset <= low <= high <= self.offset + len(self.entries), (
            f"unstable slice [{low}, {high}) out of [{self.offset}, "
            f"{self.offset + len(self.entries)})"
        )
        return self.entries[low - self.offset : high - self.offset]


class RaftLog:
    __slots__ = ("applied", "committed", "committed_bytes_per_ready_max", "storage", "unstable")

    def __init__(self, storage: RaftStorage, committed_bytes_per_ready_max: int) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # Everything before the first available entry is in the snapshot, hence committed
        # and applied.
        self.committed = first - 1
        self.applied = first - 1
        self.committed_bytes_per_ready_max = committed_bytes_per_ready_max

    # ---- indices and terms ----

    def first_index(self) -> int:
        index = self.unstable.maybe_first_index()
        if index is not None:
            return index
        return self.storage.first_index()

    def last_index(self) -> int:
        index = self.unstable.maybe_last_index()
        if index is not None:
            return index
        return self.storage.last_index()

    def term(self, index: int) -> int | None:
        """The term at ``index``, or None if it is compacted away or beyond the log."""
        term = self.unstable.maybe_term(index)
        if term is not None:
            return term
        if index < self.unstable.offset:
            if self.unstable.snapshot is not None:
                # Storage below a snapshot being installed is stale.
                return None
            try:
                return self.storage.term(index)
            except (CompactedError, UnavailableError):
                return None
        return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None, "the last entry's term is always known"
        return term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (``last_index``, ``term``) is at least as up to date."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # ---- appending ----

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Index of the first entry that is new or conflicts with ours (0 if none)."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index at or below ``index`` whose term is at most ``term`` (the fast
        back-off hint of a rejected append)."""
        if index > self.last_index():
            return index
        while True:
            our_term = self.term(index)
            if our_term is None or our_term <= term:
                return index
            index -= 1

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Append ``entries`` (which follow (``index``, ``log_term``)) if our log matches
        there; return the index of the last new entry, or None if it does not match."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict != 0:
            assert conflict > self.committed, (
                f"entry {conflict} conflicts with committed entry (committed {self.committed})"
            )
            self.append(entries[conflict - (index + 1) :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, entries: Sequence[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        assert after >= self.committed, f"append after {after} is below commit {self.committed}"
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # ---- reading ----

    def entries(self, index: int, size_bytes_max: int, count_max: int) -> list[Entry]:
        """Entries from ``index`` to the end, within the limits (raises CompactedError)."""
        last = self.last_index()
        if index > last:
            return []
        return self.slice(index, last + 1, size_bytes_max, count_max)

    def slice(self, low: int, high: int, size_bytes_max: int, count_max: int) -> list[Entry]:
        """Entries in ``[low, high)`` within the limits; raises CompactedError if ``low`` is
        compacted away."""
        first = self.first_index()
        if low < first:
            raise CompactedError(f"index {low} is compacted (first is {first})")
        assert low <= high <= self.last_index() + 1, f"slice [{low}, {high}) out of bounds"
        if low == high:
            return []
        offset = self.unstable.offset
        result: list[Entry] = []
        if low < offset:
            stored_high = min(high, offset)
            result = self.storage.entries(low, stored_high, size_bytes_max)
            if len(result) < stored_high - low or len(result) >= count_max:
                return limit_size(result, size_bytes_max, count_max)
        if high > offset:
            result = result + self.unstable.slice(max(low, offset), high)
        return limit_size(result, size_bytes_max, count_max)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def unstable_entries(self) -> tuple[Entry, ...]:
        return tuple(self.unstable.entries)

    def has_next_committed_entries(self) -> bool:
        if self.unstable.snapshot is not None:
            # The application restores the snapshot first.
            return False
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed_entries(self) -> list[Entry]:
        if not self.has_next_committed_entries():
            return []
        low = max(self.applied + 1, self.first_index())
        return self.slice(
            low, self.committed + 1, self.committed_bytes_per_ready_max, NO_LIMIT
        )

    # ---- commit, apply, persist ----

    def commit_to(self, index: int) -> None:
        if self.committed < index:
            assert self.last_index() >= index, (
                f"commit {index} is beyond the last index {self.last_index()}"
            )
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        assert self.applied <= index <= self.committed, (
            f"applied {index} outside [{self.applied}, {self.committed}]"
        )
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snapshot_to(self, index: int) -> None:
        self.unstable.stable_snapshot_to(index)

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.metadata.index
        self.unstable.restore(snapshot)
