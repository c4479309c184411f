"""Limits of the core, as named constants with units last and the reason beside each."""

from __future__ import annotations

# A transaction is small: a few hashes, ids and keys. 64 KiB leaves room for a claim with
# 50 lines and still bounds what one bad client can make every validator decode and hash.
TX_SIZE_BYTES_MAX = 64 * 1024

# Identifiers (chain id, org id, record id, ...) are short ASCII names; capping them keeps
# every state key bounded.
IDENTIFIER_LENGTH_MAX = 128

# Free text never goes on the ledger (it might be PHI); the few short labels we allow are
# capped here.
TEXT_LENGTH_MAX = 256

# Any list inside a value (claim lines, wrap hashes, reason codes, ...) is capped so a
# decoder never allocates without bound.
LIST_LENGTH_MAX = 1024

# A byte string inside a value (hashes are 32, keys 32, signatures 64) is capped; the only
# large byte strings are blocks and raft payloads, which use BLOB_SIZE_BYTES_MAX.
BYTES_LENGTH_MAX = 4096

# A block is cut at block_max_bytes (config, default 1 MiB); raft entries and blocks may
# be larger than a tx but never larger than this, which also bounds a sync response item.
BLOB_SIZE_BYTES_MAX = 16 * 1024 * 1024

# Transactions in one block: bounds apply time and Merkle proof length (log2 = 17).
BLOCK_TXS_MAX = 100_000

# Nesting depth of any encoded value: our schemas nest at most a few levels.
NESTING_DEPTH_MAX = 8

# Below this many transactions the parallel validation path costs more in hand-off than it
# saves (measured by scripts/bench-core: a chunk must carry tens of verifies).
PARALLEL_BATCH_TXS_MIN = 64
