"""The chain as this node holds it: applying committed blocks, and building new ones.

Synchronous and single-threaded by contract: the node runs :meth:`Chain.apply_entry` in
one worker thread at a time, in Raft commit order. What a committed block does is decided
by ledger.evaluation, purely (the checks every node skips a block for alike, the tx
results, the state writes and roots); this module reads what that needs (the head, the
validators, the roots, the stateless check of each tx, possibly in parallel) and writes
the outcome: one LevelDB batch per raft entry, block or not, through one exit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

from consensus.types import Entry, EntryType
from ledger import app as application
from ledger import evaluation
from ledger.block import ZERO_HASH, Block, decode_block, decode_block_with_ids, make_block
from ledger.certificate import Certificate, certify
from ledger.crypto import SigningKey
from ledger.errors import DecodeError
from ledger.evaluation import (
    GENESIS_ROOTS,
    VALIDATOR_CHANGE_PREFIX,
    BlockRejectedError,
    ChainTip,
    Roots,
    StateDivergenceError,
    roots_key,
    trails_root_at,
    validator_set,
    validators_hash_at,
)
from ledger.results import ResultCode
from ledger.tx import Transaction
from ledger.validation import check_batch
from storage.blockstore import STATE_PAGE_ITEMS_MAX, BlockStore
from storage.store import Store


@dataclass(frozen=True, slots=True)
class AppliedBlock:
    block: Block
    tx_ids: list[bytes]
    codes: list[int]
    events: Sequence[object]
    validator_changes: Sequence[object]


@dataclass(slots=True)
class ApplyResult:
    """What applying one raft entry did."""

    index: int
    applied: AppliedBlock | None = None
    skipped_reason: str | None = None
    conf_change: bytes | None = None  # data of a CONF_CHANGE entry, for RawNode
    tx_ids_in_entry: list[bytes] = field(default_factory=list)


class StoreStateReader:
    """ledger.app.StateReader over the block store's state."""

    def __init__(self, blocks: BlockStore) -> None:
        self._blocks = blocks

    def get(self, key: bytes) -> bytes | None:
        return self._blocks.state_get(key)

    def iterate(self, prefix: bytes, *, limit: int) -> Iterator[tuple[bytes, bytes]]:
        start: bytes | None = None
        remaining = limit
        while remaining > 0:
            page = self._blocks.state_page(
                prefix, start=start, items_max=min(remaining, STATE_PAGE_ITEMS_MAX)
            )
            yield from page.items
            remaining -= len(page.items)
            if page.next_key is None:
                return
            start = page.next_key


# Validator-set changes listed at most (each takes a passed governance proposal).
VALIDATOR_CHANGES_MAX = 100_000

# State values the apply path keeps in memory (the hot set of a consortium's state: keys,
# nonces, parties, consents in use); about 100 MB at the largest typical value sizes.
STATE_CACHE_ENTRIES_MAX = 262_144


class CachedStateReader:
    """The apply path's view of the state: LevelDB behind a bounded write-through cache.

    Applying a block reads every tx's signer key and nonce, party, consent and record
    entries, and most reads are of keys the previous blocks wrote (or of keys that do not
    exist yet: misses are cached too). Only :class:`Chain` writes state, always through
    :meth:`Chain._apply_block`, which hands this cache the block's writes once LevelDB has
    taken them. The apply thread is its only user: RPC queries read LevelDB directly, so
    they never see a block half way into the cache.
    """

    def __init__(self, reader: StoreStateReader, *, entries_max: int = STATE_CACHE_ENTRIES_MAX):
        self._reader = reader
        # An OrderedDict: evicting a plain dict's oldest entry (next(iter(d))) walks past
        # every slot deleted before it, so once full each eviction cost grew with the
        # entries evicted so far (apply 2x slower after 200,000 txs, bench-apply).
        self._values: OrderedDict[bytes, bytes | None] = OrderedDict()
        self._entries_max = entries_max

    def get(self, key: bytes) -> bytes | None:
        values = self._values
        try:
            return values[key]
        except KeyError:
            pass
        value = self._reader.get(key)
        if len(values) >= self._entries_max:
            values.popitem(last=False)  # the oldest entry
        values[key] = value
        return value

    def iterate(self, prefix: bytes, *, limit: int) -> Iterator[tuple[bytes, bytes]]:
        return self._reader.iterate(prefix, limit=limit)

    def written(self, writes: dict[bytes, bytes | None]) -> None:
        """LevelDB now holds ``writes``: keep the cached keys among them current."""
        values = self._values
        for key, value in writes.items():
            if key in values:
                values[key] = value

    def clear(self) -> None:
        self._values.clear()


class Chain:
    def __init__(
        self,
        *,
        chain_id: str,
        store: Store,
        executor: Executor | None = None,
        workers: int = 2,
        checked_lookup: Callable[[bytes], Transaction | None] | None = None,
        genesis_time_ms: int = 0,
        sync_applies: bool = True,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_time_ms = genesis_time_ms
        # Validators: False. Their raft log, synced before any ack, is the write-ahead log:
        # an apply batch lost in a crash is applied again from it (applying is
        # idempotent), so a second fsync per block buys nothing. Observers have no raft
        # log and sync every apply.
        self.sync_applies = sync_applies
        self.store = store
        self.blocks = store.blocks
        self.state = StoreStateReader(store.blocks)
        self._apply_state = CachedStateReader(self.state)
        self._executor = executor
        self._workers = workers
        # tx id -> an already checked Transaction (this node's mempool): saves verifying
        # a signature twice on the node that admitted the tx.
        self._checked_lookup = checked_lookup or (lambda tx_id: None)
        head = store.blocks.head()
        assert head is not None, "open the chain after genesis is written"
        # (height, hash, timestamp) of the last applied block, replaced as one tuple: the
        # leader's builder and the RPC read it on the event loop while the apply thread
        # moves it, and must never see a height with another block's hash or roots.
        self._head: tuple[int, bytes, int] = (
            head.height, head.block_hash, self._timestamp_of(head.height)
        )
        # The state height the head block's header commits to (0 at genesis), and the
        # validator sets it names (ledger/certificate.py).
        self._named_state_height = self._state_height_named_by(head.height)
        self._head_sets = self._sets_named_by(head.height)
        self._tip = (self._head, self._head_sets)  # one read for both

    def storage_reopened(self) -> None:
        """The store was reopened after a failed write: read the head again (the failed
        block may or may not have been applied) and forget the cached state."""
        self._apply_state.clear()
        head = self.blocks.head()
        assert head is not None
        self._head = (head.height, head.block_hash, self._timestamp_of(head.height))
        self._named_state_height = self._state_height_named_by(head.height)
        self._head_sets = self._sets_named_by(head.height)
        self._tip = (self._head, self._head_sets)  # one read for both

    def _sets_named_by(self, height: int) -> tuple[bytes | None, bytes]:
        """(the set that certifies block ``height``, the set it hands over to): at
        genesis, none and the genesis set."""
        block = self.block_by_height(height)
        if block is None:
            return None, validators_hash_at(self.state, 0)
        return block.header.validators_hash, block.header.next_validators_hash

    def head_and_sets(self) -> tuple[tuple[int, bytes, int], tuple[bytes | None, bytes]]:
        """:meth:`head` and :meth:`head_validator_sets` of one and the same block."""
        return self._tip

    def head_validator_sets(self) -> tuple[bytes | None, bytes]:
        """(hash of the set that certifies the head block, or None at genesis; hash of
        the set the head hands over to, which certifies the next block)."""
        return self._head_sets

    def validator_set(self, set_hash: bytes) -> list[bytes]:
        """The node keys of a validator set a header named."""
        return validator_set(self.state, set_hash)

    def validator_changes(self) -> list[tuple[int, bytes]]:
        """(height, hash of the new set) of every height whose validator set differs
        from the previous height's, genesis (0) first."""
        return [(int.from_bytes(key[len(VALIDATOR_CHANGE_PREFIX):], "big"), value)
                for key, value in self.state.iterate(VALIDATOR_CHANGE_PREFIX,
                                                     limit=VALIDATOR_CHANGES_MAX)]

    def certify_head(self, keys: Iterable[SigningKey]) -> Certificate | None:
        """The head block's certificate signed by those of ``keys`` in its set (None at
        genesis, or short of a majority): for tools and tests that play every validator
        (bench-apply); a running node collects votes (node/certify.py)."""
        height, head_hash, _ = self._head
        certifying = self._head_sets[0]
        if certifying is None:
            return None
        return certify(keys, chain_id=self.chain_id, height=height, block_hash=head_hash,
                       members=self.validator_set(certifying))

    # ------------------------------------------------------------------ reading

    def named_state_height(self) -> int:
        """The state height the head block's header commits to."""
        return self._named_state_height

    def _state_height_named_by(self, height: int) -> int:
        block = self.block_by_height(height)
        return 0 if block is None else block.header.state_height

    def head(self) -> tuple[int, bytes, int]:
        """(height, hash, timestamp_ms) of the last applied block, read consistently."""
        return self._head

    @property
    def height(self) -> int:
        return self._head[0]

    @property
    def head_hash(self) -> bytes:
        return self._head[1]

    @property
    def head_timestamp_ms(self) -> int:
        return self._head[2]

    def _timestamp_of(self, height: int) -> int:
        if height == 0:
            return self.genesis_time_ms
        block = self.block_by_height(height)
        assert block is not None, f"head block {height} missing"
        return block.header.timestamp_ms

    def block_by_height(self, height: int) -> Block | None:
        """Block ``height`` (heights start at 1; 0 is the genesis record, not a block)."""
        if height < 1:
            return None
        stored = self.blocks.block(height)
        return None if stored is None else decode_block(stored.block_bytes, chain_id=self.chain_id)

    def applied_index(self) -> int:
        return self.blocks.applied_index()

    def roots(self, height: int) -> Roots:
        if height == 0:
            return GENESIS_ROOTS
        data = self.state.get(roots_key(height))
        assert data is not None, f"roots of applied height {height} missing"
        return Roots.decode(data)

    def validator_keys(self) -> list[bytes]:
        return list(application.validator_node_keys(self.state))

    # ------------------------------------------------------------------ applying

    def apply_entry(self, entry: Entry) -> ApplyResult:
        """Apply one committed raft entry (any type), durably, exactly once."""
        if entry.index <= self.blocks.applied_index():
            return ApplyResult(entry.index, skipped_reason="already applied")
        result = ApplyResult(entry.index)
        block: Block | None = None
        if entry.type is EntryType.CONF_CHANGE:
            result.conf_change = entry.data
        elif not entry.data:
            result.skipped_reason = "no-op"  # a new leader's no-op
        else:
            try:
                block, result.tx_ids_in_entry = decode_block_with_ids(
                    entry.data, chain_id=self.chain_id)
            except DecodeError as error:
                result.skipped_reason = f"undecodable block: {error}"
            else:
                result.skipped_reason = self._rejection(block, entry.term, entry.index)
        if block is None or result.skipped_reason is not None:
            self.blocks.record_applied_index(entry.index, sync=self.sync_applies)
            return result
        result.applied = self._apply_block(block, result.tx_ids_in_entry, entry.data,
                                           applied_index=entry.index)
        return result

    def apply_synced_block(self, data: bytes) -> AppliedBlock:
        """Apply a block fetched by sync (observers, and validators catching up after a
        snapshot): the same checks, against the raft index the header names. Raises
        DecodeError (not a block of this chain) or BlockRejectedError (the rules)."""
        block, tx_ids = decode_block_with_ids(data, chain_id=self.chain_id)
        header = block.header
        reason = self._rejection(block, header.raft_term, header.raft_index)
        if reason is not None:
            raise BlockRejectedError(f"synced block {header.height}: {reason}")
        return self._apply_block(block, tx_ids, data, applied_index=header.raft_index)

    def _rejection(self, block: Block, raft_term: int, raft_index: int) -> str | None:
        height, head_hash, head_timestamp_ms = self._head
        certifying, next_set = self._head_sets
        tip = ChainTip(height, head_hash, head_timestamp_ms, self.validator_keys(),
                       certifying, next_set)
        return evaluation.rejection(block, raft_term=raft_term, raft_index=raft_index,
                                    tip=tip, roots_at=self.roots, state=self._apply_state,
                                    chain_id=self.chain_id)

    def _stateless(self, block: Block, tx_ids: list[bytes]) -> tuple[list[Transaction | None],
                                                                     list[int]]:
        """Each tx's stateless result: this node's mempool has most of them checked
        already; the rest are checked here (in parallel with an executor)."""
        txs: list[Transaction | None] = [self._checked_lookup(tx_id) for tx_id in tx_ids]
        unknown = [index for index, tx in enumerate(txs) if tx is None]
        codes = [int(ResultCode.OK)] * len(txs)
        if unknown:
            results = check_batch([block.txs[index] for index in unknown], self.chain_id,
                                  executor=self._executor, workers=self._workers)
            for index, result in zip(unknown, results, strict=True):
                txs[index] = result.tx
                codes[index] = int(result.code)
        return txs, codes

    def _apply_block(self, block: Block, tx_ids: list[bytes], block_bytes: bytes, *,
                     applied_index: int) -> AppliedBlock:
        header = block.header
        txs, codes = self._stateless(block, tx_ids)
        outcome = evaluation.evaluate_block(
            block, tx_ids, txs, codes,
            state=self._apply_state, previous_roots=self.roots(self.height))
        block_hash = header.hash
        try:
            self.blocks.apply_block(
                height=header.height,
                block_hash=block_hash,
                block_bytes=block_bytes,
                tx_ids=tx_ids,
                tx_results=outcome.codes,
                state_writes=outcome.writes,
                applied_index=applied_index,
                sync=self.sync_applies,
            )
        except BaseException:
            self._apply_state.clear()  # whether LevelDB took the batch is unknown
            raise
        self._apply_state.written(outcome.writes)
        self._head = (header.height, block_hash, header.timestamp_ms)
        self._named_state_height = header.state_height
        self._head_sets = (header.validators_hash, header.next_validators_hash)
        self._tip = (self._head, self._head_sets)  # one read for both
        return AppliedBlock(block, tx_ids, outcome.codes, outcome.events,
                            outcome.validator_changes)

    # ------------------------------------------------------------------ building

    def build_block(
        self,
        key: SigningKey,
        txs: Sequence[Transaction],
        *,
        height: int,
        previous_hash: bytes,
        previous_timestamp_ms: int,
        now_ms: int,
        raft_term: int,
        raft_index: int,
        previous_state_height: int,
        validators_hash: bytes,
        certificate: Certificate | None,
    ) -> Block:
        """The leader's proposal: committed to the roots of the height after the one its
        predecessor committed to (``previous_state_height``), or of the newest height this
        node applied if that is lower. One height at a time, so every height's state is
        named by some header: a node joining by state sync can check a snapshot of any
        height (a pipelined leader naming only its newest applied height skipped some).
        ``validators_hash``: the set the predecessor handed over to; ``certificate``: the
        predecessor's (None for block 1)."""
        state_height = min(self.height, previous_state_height + 1)  # self.height once
        roots = self.roots(state_height)
        next_validators_hash = validators_hash_at(self.state, state_height)
        trails_root = trails_root_at(self.state, state_height)
        return make_block(
            key,
            chain_id=self.chain_id,
            height=height,
            previous_hash=previous_hash,
            timestamp_ms=max(now_ms, previous_timestamp_ms + 1),
            txs=[tx.raw for tx in txs],
            state_height=state_height,
            results_root=roots.results_root,
            state_root=roots.state_root,
            raft_term=raft_term,
            raft_index=raft_index,
            validators_hash=validators_hash,
            next_validators_hash=next_validators_hash,
            certificate=certificate,
            trails_root=trails_root,
        )


__all__ = ["ZERO_HASH", "Chain", "Roots", "StateDivergenceError"]
