"""Result codes: the stable, documented reason a transaction was accepted or refused.

Codes below 100 come from the stateless check (before a tx enters the mempool: a refused
tx changes nothing and does not use its nonce). Codes from 100 come from the application's
stateful rules (the tx is in a block, recorded as invalid, and its nonce is used).
"""

from __future__ import annotations

import enum


class ResultCode(enum.IntEnum):
    OK = 0
    # ---- stateless (1-99) ----
    MALFORMED = 1  # not the canonical encoding of a valid transaction
    OVERSIZE = 2  # larger than TX_SIZE_BYTES_MAX
    WRONG_CHAIN = 3  # signed for another chain id
    BAD_VERSION = 4  # unknown envelope version
    BAD_SIGNATURE = 5  # signature does not verify for signer, domain and chain
    DUPLICATE = 6  # same tx id already in the mempool or on chain
    MEMPOOL_FULL = 7  # the node is at its mempool bound; retry later

    @property
    def is_stateless(self) -> bool:
        return 0 < self.value < 100
