"""Limits and timings of the p2p layer, shared by the libp2p and the in-memory transport.

Sizes are named constants with the reason beside each. Timings are a frozen dataclass with
the production defaults, so tests can shrink them (a wedge detector that waits 5 s makes a
slow test).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import limits

RAFT_PROTOCOL = "/medledger/raft/1.0.0"
SYNC_PROTOCOL = "/medledger/sync/1.0.0"

# A raft frame carries a batch of raft messages; an append carries whole blocks (a block is
# at most 8 MiB by config) and a snapshot at most BLOB_SIZE_BYTES_MAX. Twice the blob limit
# leaves room for message headers and several entries per append.
RAFT_FRAME_BYTES_MAX = 2 * limits.BLOB_SIZE_BYTES_MAX
# Frames waiting for one peer's writer. Raft retries on its own (send_frame returns False
# when full), so a short queue only bounds memory and staleness: at ~1,000 frames/s on one
# stream, 256 frames are a quarter second of traffic.
RAFT_QUEUE_FRAMES_MAX = 256
# Bytes waiting for one peer's writer: bounds memory per peer when frames are large.
RAFT_QUEUE_BYTES_MAX = 64 * 1024 * 1024
# The writer coalesces queued frames into one stream write up to this size: one trip
# through yamux and Noise per write dominates the cost of small frames.
RAFT_WRITE_BATCH_BYTES_MAX = 256 * 1024

# libp2p pubsub drops RPCs over 1 MiB (1,048,576 bytes) silently (MEASUREMENTS.md pitfall
# 5); the RPC around our data also holds the origin, seqno, topic, signature, public key
# and the sender's signed peer record (< 1 KiB together). 1,000,000 bytes leaves ~47 KiB.
GOSSIP_MESSAGE_BYTES_MAX = 1_000_000
# libp2p keeps a 32-entry outbound queue per peer and drops the rest silently (pitfall 4);
# publish waits until every peer's queue is below this depth, so forwarded messages and
# control traffic still find room.
GOSSIP_PEER_QUEUE_ENTRIES_PUBLISH_MAX = 16
# Validations (handler calls) remembered by message id, so a message that arrives from two
# peers at once calls the handler once: a few seconds of traffic at ~300 messages/s.
GOSSIP_RECENT_VALIDATIONS_MAX = 4096

# GossipSub keeps every message it forwarded, by origin and seqno, to spot equivocation,
# and trims only past 1,000 entries: with ~1 MB messages that is ~1 GB. We trim it to this
# many (duplicates of a message arrive within milliseconds of each other).
GOSSIP_EQUIVOCATION_ENTRIES_MAX = 64

# A sync request names a block range, or forwards one block's worth of transactions to
# the leader (wire.FORWARD_TXS_MAX), which is bounded by the blob limit.
SYNC_REQUEST_BYTES_MAX = limits.BLOB_SIZE_BYTES_MAX
# A sync response holds blocks up to wire.SYNC_RESPONSE_BYTES_MAX plus at most one block of
# up to 8 MiB; twice the blob limit covers both with a margin.
SYNC_RESPONSE_BYTES_MAX = 2 * limits.BLOB_SIZE_BYTES_MAX
# Requests served at once; more wait for a slot. Each holds its request and response in
# memory (up to 48 MiB), so this also bounds the memory of serving.
SYNC_REQUESTS_CONCURRENT_MAX = 8
# Requests of one peer served at once; more are refused at once ("busy"). A node asks a
# peer at most one block range and one forward at a time, plus a retry left behind by a
# timeout; without this cap a peer behind a wedged connection, retrying, held every slot
# above and the leader answered no healthy follower's forward (chaos seed 3).
SYNC_REQUESTS_PER_PEER_MAX = 3

# Connections in total: a consortium has tens of validators and some observers.
CONNECTIONS_MAX = 256
# Refused connections are logged at most once per peer in this interval (a refused peer
# redials on its own backoff; its every attempt would flood the log).
REFUSAL_LOG_INTERVAL_S = 60.0
# Peers remembered for that rate limit; the memory is cleared when full.
REFUSAL_LOG_PEERS_MAX = 1024


@dataclass(frozen=True, slots=True)
class Timings:
    # One dial attempt (TCP connect + Noise + yamux); 127.0.0.1 takes ~5-20 ms.
    dial_timeout_s: float = 5.0
    # Redial backoff: doubles from the initial value up to the maximum, with jitter.
    redial_backoff_initial_s: float = 0.1
    redial_backoff_max_s: float = 5.0
    # Of two validators the one with the larger peer id waits this long before dialing,
    # so both rarely dial each other at once (two connections, one trimmed at random).
    acceptor_dial_delay_s: float = 1.0
    # Opening a stream: multistream-select negotiation over an open connection.
    stream_open_timeout_s: float = 5.0
    # The raft writer sends an empty keepalive frame after this long without a frame.
    raft_keepalive_interval_s: float = 1.0
    # No bytes on a raft stream for this long: the stream or connection is wedged
    # (several keepalives missed).
    raft_read_inactivity_timeout_s: float = 5.0
    # A raft write that takes longer than this (plus size / write_rate_bytes_per_s_min)
    # means a wedged connection (pitfall 8).
    raft_write_timeout_s: float = 5.0
    raft_write_rate_bytes_per_s_min: float = 1_048_576.0
    # Every kept connection is pinged after this long without a change; a peer that
    # answers no ping within the timeout, this many times in a row, holds a half-open
    # connection, which is dropped and redialed (raft links notice sooner: keepalives).
    liveness_interval_s: float = 2.0
    liveness_timeout_s: float = 5.0
    liveness_failures_max: int = 3
    # publish waits at most this long for peers' outbound queues to drain; a peer whose
    # queue is still full then is stuck and not waited for until it drains.
    gossip_publish_wait_s_max: float = 1.0
    # A topic validator (our gossip handler) that takes longer rejects the message.
    gossip_validation_timeout_s: float = 10.0
    # GossipSub heartbeat (mesh maintenance, gossip emission); libp2p's default is 120 s.
    gossip_heartbeat_interval_s: int = 1
    # Reading a request or a response: no bytes for this long fails the exchange (and
    # closes a reused request stream nothing more came on).
    sync_read_inactivity_timeout_s: float = 10.0
    # Writing an answer: longer than this (plus size / raft_write_rate_bytes_per_s_min)
    # means the asker's connection is wedged; the stream is reset and its slot freed.
    sync_write_timeout_s: float = 5.0
    # Shutdown: time to stop publishing and disconnect peers before leaving libp2p's
    # service contexts (pitfall 7).
    shutdown_grace_s: float = 3.0

    def raft_write_deadline_s(self, size_bytes: int) -> float:
        return self.raft_write_timeout_s + size_bytes / self.raft_write_rate_bytes_per_s_min

    def sync_write_deadline_s(self, size_bytes: int) -> float:
        return self.sync_write_timeout_s + size_bytes / self.raft_write_rate_bytes_per_s_min
