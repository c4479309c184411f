"""Safety checkers of the simulator. Each check is incremental (cheap per event), and the
final checks compare whole logs and applied sequences once the cluster has converged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.types import Entry, EntryType


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    step: int
    description: str

    def __str__(self) -> str:
        return f"{self.kind} at step {self.step}: {self.description}"


# Term of an index in one node's log: None if a snapshot covers it (compacted), 0 if the
# log does not reach it.
TermLookup = Callable[[int], int | None]

# An applied record: (index, term, payload) of a NORMAL entry with data.
Record = tuple[int, int, bytes]


class SafetyChecker:
    """Election safety, log matching, leader completeness and state-machine safety."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        # Election safety: the one leader of each term.
        self.leader_of_term: dict[int, int] = {}
        # Log matching: what each (index, term) holds anywhere, ever.
        self.entry_at: dict[tuple[int, int], tuple[EntryType, bytes]] = {}
        # Leader completeness: per leader term, the highest index it committed and the
        # term of the entry there.
        self.committed_in_term: dict[int, tuple[int, int]] = {}
        # State-machine safety: what was applied at each index (first node to apply it).
        self.applied_at: dict[int, tuple[int, EntryType, bytes]] = {}

    def fail(self, kind: str, step: int, description: str) -> None:
        self.violations.append(Violation(kind, step, description))

    # ---- election safety and leader completeness ----

    def observe_leader(self, step: int, node_id: int, term: int, term_at: TermLookup) -> None:
        known = self.leader_of_term.get(term)
        if known is None:
            self.leader_of_term[term] = node_id
            self._check_completeness(step, node_id, term, term_at)
        elif known != node_id:
            self.fail(
                "election safety", step, f"nodes {known} and {node_id} both lead term {term}"
            )

    def _check_completeness(
        self, step: int, node_id: int, term: int, term_at: TermLookup
    ) -> None:
        for commit_term, (index, entry_term) in self.committed_in_term.items():
            if commit_term >= term:
                continue
            found = term_at(index)
            if found is None:
                continue
            if found != entry_term:
                self.fail(
                    "leader completeness",
                    step,
                    f"leader {node_id} of term {term} lacks entry {entry_term}/{index} "
                    f"committed in term {commit_term} (has term {found})",
                )
                return

    def observe_leader_commit(self, term: int, index: int, entry_term: int) -> None:
        known = self.committed_in_term.get(term)
        if known is None or known[0] < index:
            self.committed_in_term[term] = (index, entry_term)

    # ---- log matching ----

    def observe_persisted(self, step: int, node_id: int, entries: tuple[Entry, ...]) -> None:
        entry_at = self.entry_at
        for entry in entries:
            key = (entry.index, entry.term)
            value = (entry.type, entry.data)
            known = entry_at.get(key)
            if known is None:
                entry_at[key] = value
            elif known != value:
                self.fail(
                    "log matching",
                    step,
                    f"node {node_id} persisted a different entry at {entry.term}/{entry.index}",
                )

    # ---- state-machine safety ----

    def observe_applied(self, step: int, node_id: int, entry: Entry) -> None:
        value = (entry.term, entry.type, entry.data)
        known = self.applied_at.get(entry.index)
        if known is None:
            self.applied_at[entry.index] = value
        elif known != value:
            self.fail(
                "state-machine safety",
                step,
                f"node {node_id} applied {entry.term}/{entry.index} {entry.data!r}, another "
                f"node applied {known[0]}/{entry.index} {known[2]!r}",
            )

    def observe_restored(self, step: int, node_id: int, records: list[Record]) -> None:
        """A node restored application state from a snapshot: it must agree too."""
        applied_at = self.applied_at
        for index, term, payload in records:
            known = applied_at.get(index)
            if known is None:
                applied_at[index] = (term, EntryType.NORMAL, payload)
            elif known[0] != term or known[2] != payload:
                self.fail(
                    "state-machine safety",
                    step,
                    f"node {node_id} restored a snapshot with {term}/{index} {payload!r}, "
                    f"another node applied {known[0]}/{index} {known[2]!r}",
                )
                return


def check_prefixes(sequences: dict[int, list[Record]], step: int) -> Violation | None:
    """State-machine safety, whole: every node's applied sequence is a prefix of the
    longest one."""
    if not sequences:
        return None
    longest_node = max(sequences, key=lambda node_id: (len(sequences[node_id]), -node_id))
    longest = sequences[longest_node]
    for node_id, sequence in sorted(sequences.items()):
        if longest[: len(sequence)] != sequence:
            position = next(
                position
                for position, (ours, theirs) in enumerate(zip(sequence, longest, strict=False))
                if ours != theirs
            )
            return Violation(
                "state-machine safety",
                step,
                f"node {node_id}'s applied sequence departs from node {longest_node}'s at "
                f"position {position}: {sequence[position]} vs {longest[position]}",
            )
    return None


def check_logs_match(logs: dict[int, dict[int, tuple[int, EntryType, bytes]]], step: int) -> (
    Violation | None
):
    """Log matching, whole: if two logs hold an entry with the same index and term, they
    hold the same entries up to it (compared where both still have them)."""
    node_ids = sorted(logs)
    for position, first in enumerate(node_ids):
        for second in node_ids[position + 1 :]:
            ours = logs[first]
            theirs = logs[second]
            common = [index for index in ours if index in theirs]
            matched = [index for index in common if ours[index][0] == theirs[index][0]]
            if not matched:
                continue
            highest = max(matched)
            for index in common:
                if index <= highest and ours[index] != theirs[index]:
                    return Violation(
                        "log matching",
                        step,
                        f"nodes {first} and {second} agree at index {highest} but differ "
                        f"at {index}",
                    )
    return None
