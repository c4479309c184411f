"""Defaults and bounds of the Raft core, as named constants: units last, reason beside each.

The node may override the defaults through :class:`consensus.config.Config`; ``validate``
keeps every value within the bounds below.
"""

from __future__ import annotations

# etcd's recommended ratio: a follower waits ten heartbeats before it suspects the leader,
# so one or two lost heartbeats never start an election.
ELECTION_TIMEOUT_TICKS_DEFAULT = 10
HEARTBEAT_INTERVAL_TICKS_DEFAULT = 1

# Upper bound on the election timeout: beyond this a dead leader goes unnoticed for so long
# that the cluster is effectively unavailable; it also bounds the randomized timeout.
ELECTION_TIMEOUT_TICKS_MAX = 10_000

# Entry data in one append message (at least one entry is always sent). py-libp2p drops
# wire messages over ~1 MiB silently (MEASUREMENTS.md) and a block is at most
# block_max_bytes (default 1 MiB), so one block per append is the natural unit.
MESSAGE_SIZE_BYTES_DEFAULT = 1024 * 1024

# Append messages in flight to one follower before the leader waits for acknowledgements:
# enough to keep a pipeline of small blocks busy across a few round trips.
INFLIGHT_MESSAGES_DEFAULT = 64

# Bytes of entry data in flight to one follower: bounds what a slow follower makes the
# leader buffer in the transport (64 blocks of 1 MiB would be too much for one peer).
INFLIGHT_BYTES_DEFAULT = 16 * 1024 * 1024

# Entry data the leader accepts before it is committed; proposals beyond it are dropped,
# so a leader that cannot reach a quorum does not grow its log (and memory) without bound.
UNCOMMITTED_BYTES_DEFAULT = 64 * 1024 * 1024

# Committed entry data handed to the application in one Ready: bounds one apply batch.
COMMITTED_BYTES_PER_READY_DEFAULT = 64 * 1024 * 1024

# No byte limit above this is meaningful on one machine; it keeps arithmetic on limits
# within 64 bits and catches configuration typos (a value in bits, an extra zero group).
BYTES_LIMIT_MAX = 2**40

# In-flight messages tracked per follower: each costs a deque slot on the leader.
INFLIGHT_MESSAGES_MAX = 65_536
