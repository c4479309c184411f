"""The seeded fault schedule: pure (a seed in, a list of faults out; no clock, no I/O).

Faults follow one another, each held ``hold_s_min``..``hold_s_max`` seconds and separated
by ``gap_s_min``..``gap_s_max`` seconds, from ``warmup_s`` after the workload starts until
``quiet_s`` before the end. Kinds come in seeded shuffled rounds of every kind, so even a
short run mixes them. A target is a node name, or ``LEADER`` (the orchestrator resolves it
when the fault starts); a pair fault has a second target.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KILL = "kill"  # kill -9, restart at heal
PAUSE = "pause"  # SIGSTOP, SIGCONT at heal
LINK_DOWN = "link-down"  # the host's switch port down
BLACKHOLE = "blackhole"  # blackhole routes between a pair
LEADER_CUT = "leader-cut"  # the leader blackholed from every other validator
MEMBERSHIP = "membership"  # a member voted in (governance) while a validator is paused
DISK_FULL = "disk-full"  # the disk node's tmpfs filled, freed at heal
KINDS = (KILL, PAUSE, LINK_DOWN, BLACKHOLE, LEADER_CUT, MEMBERSHIP, DISK_FULL)
LEADER = "@leader"

HOLD_S_MIN = 5.0
HOLD_S_MAX = 15.0
GAP_S_MIN = 2.0
GAP_S_MAX = 5.0
WARMUP_S = 5.0
QUIET_S = 15.0
FAULTS_MAX = 1_000  # a bound on the loop; 300 s of faults are ~30


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start_s: float  # seconds after the workload starts
    hold_s: float
    target: str  # node name or LEADER
    other: str = ""  # the second host of a pair fault

    @property
    def end_s(self) -> float:
        return self.start_s + self.hold_s


def make_schedule(seed: int, *, seconds: float, validators: list[str], observers: list[str],
                  disk_node: str, kinds: tuple[str, ...] = KINDS,
                  warmup_s: float = WARMUP_S, quiet_s: float = QUIET_S,
                  hold_s_min: float = HOLD_S_MIN, hold_s_max: float = HOLD_S_MAX,
                  gap_s_min: float = GAP_S_MIN, gap_s_max: float = GAP_S_MAX) -> list[Fault]:
    """Faults for one seed; the same arguments always give the same list."""
    assert validators, "a testnet has validators"
    assert hold_s_min <= hold_s_max and gap_s_min <= gap_s_max
    rng = random.Random(seed)
    nodes = validators + observers
    faults: list[Fault] = []
    now = warmup_s
    pending: list[str] = []
    for _ in range(FAULTS_MAX):
        hold = round(rng.uniform(hold_s_min, hold_s_max), 2)
        if now + hold > seconds - quiet_s:
            break
        if not pending:
            pending = list(kinds)
            rng.shuffle(pending)
        kind = pending.pop()
        faults.append(_fault(rng, kind, now, hold, validators, nodes, disk_node))
        now += hold + round(rng.uniform(gap_s_min, gap_s_max), 2)
    return faults


def _fault(rng: random.Random, kind: str, start: float, hold: float, validators: list[str],
           nodes: list[str], disk_node: str) -> Fault:
    if kind in (KILL, PAUSE):
        # Half of the kills and pauses hit the leader: the costly case.
        target = LEADER if rng.random() < 0.5 else rng.choice(nodes)
        return Fault(kind, start, hold, target)
    if kind == LINK_DOWN:
        return Fault(kind, start, hold, rng.choice(nodes))
    if kind == BLACKHOLE:
        if len(nodes) < 2:
            return Fault(LINK_DOWN, start, hold, nodes[0])
        first, second = rng.sample(nodes, 2)
        return Fault(kind, start, hold, first, second)
    if kind == LEADER_CUT:
        return Fault(kind, start, hold, LEADER)
    if kind == MEMBERSHIP:
        # Governance while a follower validator is paused (quorum must still hold).
        return Fault(kind, start, hold, rng.choice(validators))
    if kind == DISK_FULL:
        return Fault(kind, start, hold, disk_node)
    raise ValueError(f"unknown fault kind {kind!r}; kinds: {KINDS}")
