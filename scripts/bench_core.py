"""bench-core: raw PyNaCl verify rate vs the core's stateless validation, in one run.

Prints ONE JSON line. Rates are medians over ROUNDS interleaved passes over the same
batch; ratios are medians of the per-round ratios (the machine is shared and noisy, and a
disturbance within one round hits the functions compared in that round alike).
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import nacl.bindings
import nacl.signing

from ledger.bodies import Action, Confidentiality, ConsentGrant, Decision, Purpose
from ledger.crypto import DOMAIN_TX, SigningKey
from ledger.tx import sign_transaction
from ledger.txtypes import TxType
from ledger.validation import check_batch

CHAIN_ID = "medledger-bench"
BATCH_TXS = int(os.environ.get("BENCH_CORE_TXS", "4000"))
ROUNDS = int(os.environ.get("BENCH_CORE_ROUNDS", "11"))
SIGNERS = 64


def make_batch() -> list[bytes]:
    keys = [SigningKey.generate() for _ in range(SIGNERS)]
    raws = []
    for index in range(BATCH_TXS):
        body = ConsentGrant(
            consent_id=f"consent-{index:08d}",
            patient=f"patient-{index % 997:06d}",
            grantee=f"org-hospital-{index % 7}",
            decision=Decision.PERMIT,
            actions=(Action.READ,),
            purpose=Purpose.TREATMENT,
            start_ms=1_700_000_000_000,
            end_ms=1_700_000_000_000 + 30 * 86_400_000,
            confidentiality_max=Confidentiality.R,
            records=(),
            custodian="org-custodian-1",
            consent_hash=os.urandom(32),
        )
        tx = sign_transaction(
            keys[index % SIGNERS], chain_id=CHAIN_ID, tx_type=TxType.CONSENT_GRANT,
            nonce=index // SIGNERS + 1, body=body,
        )
        raws.append(tx.raw)
    return raws


def round_timings(functions) -> list[list[float]]:
    """Rounds interleave the functions, so a noisy moment on this shared machine hits
    them alike. Returns seconds per round, per function."""
    timings: list[list[float]] = [[] for _ in functions]
    for _ in range(ROUNDS):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            timings[index].append(time.perf_counter() - start)
    return timings


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the per-round speed ratio (numerator faster = above 1)."""
    return statistics.median(d / n for n, d in zip(numerator, denominator, strict=True))


def baselines(raws: list[bytes]) -> list[Callable[[], None]]:
    """Two baselines, everything decoded and prepared upfront: ``raw_verify`` (PyNaCl's
    verify API, VerifyKey.verify(message, signature), keys built) and ``raw_sign_open``
    (the low-level binding the core itself calls, crypto_sign_open on the prepared
    signature || message: the strictest possible baseline)."""
    from ledger.tx import decode_transaction

    decoded = [decode_transaction(raw) for raw in raws]
    verify_keys = [
        (nacl.signing.VerifyKey(tx.signer), DOMAIN_TX + b"\x00" + tx.payload, tx.signature)
        for tx in decoded
    ]
    prepared = [
        (tx.signature + DOMAIN_TX + b"\x00" + tx.payload, tx.signer) for tx in decoded
    ]
    sign_open = nacl.bindings.crypto_sign_open

    def raw_verify() -> None:
        for verify_key, message, signature in verify_keys:
            verify_key.verify(message, signature)

    def raw_sign_open() -> None:
        for signed, key in prepared:
            sign_open(signed, key)

    return [raw_verify, raw_sign_open]


def main() -> int:
    raws = make_batch()
    # As the node does after start-up: long-lived objects leave the collector's view, so
    # the cyclic GC does not rescan them on every few hundred allocations.
    gc.collect()
    gc.freeze()
    raw_verify, raw_sign_open = baselines(raws)

    def core_single() -> None:
        results = check_batch(raws, CHAIN_ID)
        assert all(result.ok for result in results)

    executor = ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("fork")
    )
    core_parallel_warm = check_batch(raws[:256], CHAIN_ID, executor=executor, workers=2)
    assert all(result.ok for result in core_parallel_warm)

    def core_parallel() -> None:
        results = check_batch(raws, CHAIN_ID, executor=executor, workers=2)
        assert all(result.ok for result in results)

    raw_times, sign_open_times, single_times, parallel_times = round_timings(
        [raw_verify, raw_sign_open, core_single, core_parallel]
    )

    def rate(times: list[float]) -> float:
        return len(raws) / statistics.median(times)

    raw_rate, sign_open_rate = rate(raw_times), rate(sign_open_times)
    single_rate, parallel_rate = rate(single_times), rate(parallel_times)
    executor.shutdown()
    figures = {
        "bench": "core",
        "txs": len(raws),
        "tx_bytes_mean": round(sum(map(len, raws)) / len(raws)),
        "raw_verify_per_s": round(raw_rate),
        "raw_sign_open_per_s": round(sign_open_rate),
        "core_single_per_s": round(single_rate),
        "core_parallel_per_s": round(parallel_rate),
        "single_over_raw": round(median_ratio(single_times, raw_times), 3),
        "single_over_sign_open": round(median_ratio(single_times, sign_open_times), 3),
        "parallel_over_single": round(median_ratio(parallel_times, single_times), 3),
        "rounds": ROUNDS,
        "cores": os.cpu_count(),
    }
    print(json.dumps(figures))
    ok = figures["single_over_raw"] >= 0.85 and figures["parallel_over_single"] >= 1.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
