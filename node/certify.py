"""Votes and quorum certificates (ledger/certificate.py) on a running node.

A validator of the set that certifies a block it applied from raft signs a vote for it
and gossips it on the chain's votes topic. Every node collects the votes of recent
heights (checked: signature, a window of heights around its head, at most one per
validator and height) and, once it has applied a block and holds the votes of a
majority of that block's set, has its certificate: the leader puts it into the next
block (node/builder.py waits for it), and ``chain_getCertificate`` serves it until the
next block carries it.

Gossip may lose a vote, a new leader needs the votes of the head, and a validator may hold
the head without having voted for it (it came by block sync, or before a restart): while
the head does not move, each validator of its set gossips its vote for it (made now if it
has none) every ``REVOTE_INTERVAL_S``, and a node that restarted certifies its head from
the votes without having applied it in this life.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import trio

from ledger.certificate import Certificate, Vote, make_certificate, sign_vote
from ledger.codec import decode
from ledger.crypto import SigningKey
from ledger.errors import DecodeError, MedledgerError
from node.chain import Chain
from node.events import Applied
from node.p2p import wire
from node.p2p.transport import Transport, publish_quietly

# Votes are kept for heights within this many of the head (behind and ahead).
VOTE_WINDOW_HEIGHTS = 64
REVOTE_INTERVAL_S = 1.0
DIRECT_VOTE_TIMEOUT_S = 2.0
VOTES_PER_REQUEST_MAX = 16
VOTE_BYTES_MAX = 256


class Certifier:
    def __init__(self, *, chain: Chain, key: SigningKey, log: Any,
                 on_certificate: Callable[[], None] = lambda: None,
                 validator_peers: Callable[[], set[str]] = set) -> None:
        self._chain = chain
        self._key = key
        self._log = log
        self._on_certificate = on_certificate
        self._validator_peers = validator_peers
        self._topic = wire.topic_votes(chain.chain_id)
        self._transport: Transport | None = None
        # height -> block hash -> validator -> vote
        self._votes: dict[int, dict[bytes, dict[bytes, Vote]]] = {}
        # height -> (block hash, hash of the set that certifies it) of blocks applied here
        self._applied: dict[int, tuple[bytes, bytes]] = {}
        self._certificates: dict[int, Certificate] = {}
        self._outbox: list[Vote] = []
        self._send = trio.Event()
        self._own_vote: Vote | None = None
        self.votes_received = 0
        self.votes_refused = 0
        self.certificates_made = 0

    def attach(self, transport: Transport) -> None:
        self._transport = transport
        transport.on_gossip(self._topic, self.on_vote_gossip)

    def statistics(self) -> dict[str, int]:
        return {"votes_received": self.votes_received, "votes_refused": self.votes_refused,
                "certificates_made": self.certificates_made}

    # ------------------------------------------------------------------ reading

    def certificate(self, height: int, block_hash: bytes) -> Certificate | None:
        """The certificate of the block ``block_hash`` at ``height``, once a majority of
        its set voted for it (and this node applied it), else None."""
        found = self._certificates.get(height)
        if found is not None and found.block_hash == block_hash:
            return found
        return None

    # ------------------------------------------------------------------ events

    def on_applied(self, event: Applied) -> None:
        applied = event.applied
        if applied is None:
            return
        header = applied.block.header
        height, block_hash = header.height, applied.block.hash
        self._applied[height] = (block_hash, header.validators_hash)
        self._forget_below(height - VOTE_WINDOW_HEIGHTS)
        if event.from_raft and self._key.public_key in self._chain.validator_set(
                header.validators_hash):
            vote = sign_vote(self._key, chain_id=self._chain.chain_id, height=height,
                             block_hash=block_hash)
            self._own_vote = vote
            self._add(vote)
            self._outbox.append(vote)
            self._send.set()
        self._try_certify(height)

    async def on_vote_gossip(self, peer_id: str, data: bytes) -> bool:
        try:
            vote = decode(Vote, data, size_bytes_max=VOTE_BYTES_MAX)
        except DecodeError:
            self.votes_refused += 1
            return False
        head = self._chain.height
        if not head - VOTE_WINDOW_HEIGHTS < vote.height <= head + VOTE_WINDOW_HEIGHTS:
            return False  # too old or too far ahead to matter: not relayed, not blamed
        known = self._votes.get(vote.height, {}).get(vote.block_hash, {}).get(vote.validator)
        if known is not None and known == vote:
            return True  # a repeat (a vote gossiped again): checked when it first came
        if not vote.valid(self._chain.chain_id):
            self.votes_refused += 1
            return False
        self.votes_received += 1
        self._add(vote)
        self._try_certify(vote.height)
        return True

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        last_head = -1
        while True:
            with trio.move_on_after(REVOTE_INTERVAL_S) as timer:
                await self._send.wait()
            self._send = trio.Event()
            if timer.cancelled_caught:
                head = self._chain.height
                if head == last_head:  # the head did not move for a while
                    self._vote_for_head()
                last_head = head
            outbox, self._outbox = self._outbox, []
            if self._transport is not None and outbox:
                for vote in outbox:
                    await publish_quietly(self._transport, self._topic, vote.encode(),
                                          self._log)
                await self._send_direct(outbox)

    async def serve_votes(self, peer_id: str, request: wire.Request) -> bytes:
        """A validator's votes sent straight to us (wire.RequestKind.VOTES)."""
        for data in request.txs[:VOTES_PER_REQUEST_MAX]:
            await self.on_vote_gossip(peer_id, data)
        return b"ok"

    async def _send_direct(self, votes: list[Vote]) -> None:
        """Send ``votes`` to every other validator too, at once, each within a short
        deadline: gossip may not reach a peer its mesh has not taken back yet after a
        partition, and the leader waits for these votes to cut the next block."""
        transport = self._transport
        assert transport is not None
        own = transport.peer_id
        request = wire.Request(wire.RequestKind.VOTES, 0, 0,
                               tuple(vote.encode() for vote in votes[-VOTES_PER_REQUEST_MAX:]))
        data = request.encode()
        connected = {peer.peer_id for peer in transport.peers() if peer.connected}

        async def send(peer_id: str) -> None:
            # A failure is covered by gossip and by the next vote again.
            with trio.move_on_after(DIRECT_VOTE_TIMEOUT_S), contextlib.suppress(
                    MedledgerError, OSError):
                await transport.request(peer_id, data, timeout_s=DIRECT_VOTE_TIMEOUT_S)

        async with trio.open_nursery() as nursery:
            for peer_id in sorted(self._validator_peers() & connected):
                if peer_id != own:
                    nursery.start_soon(send, peer_id)

    # ------------------------------------------------------------------ internals

    def _vote_for_head(self) -> None:
        """Gossip our vote for the head again (made now if we have none for it): it may
        have been lost, a new leader may need it, or the head came by sync."""
        (height, head_hash, _), (certifying, _) = self._chain.head_and_sets()
        if certifying is None or self._key.public_key not in self._chain.validator_set(
                certifying):
            return
        own = self._own_vote
        if own is None or (own.height, own.block_hash) != (height, head_hash):
            own = sign_vote(self._key, chain_id=self._chain.chain_id, height=height,
                            block_hash=head_hash)
            self._own_vote = own
            self._add(own)
            self._try_certify(height)
        self._outbox.append(own)

    def _add(self, vote: Vote) -> None:
        by_hash = self._votes.setdefault(vote.height, {})
        if vote.block_hash not in by_hash and len(by_hash) >= 4:
            return  # a height with votes for many blocks: someone is noisy; keep the first
        by_hash.setdefault(vote.block_hash, {}).setdefault(vote.validator, vote)

    def _try_certify(self, height: int) -> None:
        applied = self._applied.get(height)
        if applied is None:
            (head, head_hash, _), (certifying, _) = self._chain.head_and_sets()
            if height != head or certifying is None:
                return
            applied = (head_hash, certifying)  # applied before a restart, or by sync
        if height in self._certificates:
            return
        block_hash, set_hash = applied
        votes = self._votes.get(height, {}).get(block_hash)
        if not votes:
            return
        certificate = make_certificate(votes.values(), self._chain.validator_set(set_hash))
        if certificate is None:
            return
        self._certificates[height] = certificate
        self.certificates_made += 1
        self._on_certificate()

    def _forget_below(self, height: int) -> None:
        for table in (self._votes, self._applied, self._certificates):
            for old in [known for known in table if known < height]:
                del table[old]


__all__ = ["REVOTE_INTERVAL_S", "VOTE_WINDOW_HEIGHTS", "Certifier"]
