"""The fuzz harnesses (tests/fuzz/), run briefly without atheris: each over its committed
corpus, its regression inputs and a few hundred seeded mutations. ``scripts/fuzz`` runs
them coverage-guided for as long as asked."""

from __future__ import annotations

import pytest
from fuzz.common import (
    CORPUS_DIR,
    HARNESSES,
    corpus,
    corpus_file_name,
    harness_module,
    mutated_inputs,
    regressions,
)

# Mutated inputs per harness in the suite: a few seconds for the slowest (the RPC ones).
SUITE_MUTATIONS = 300
SUITE_SEED = 11


def run(name: str, data: bytes) -> None:
    module = harness_module(name)
    try:
        module.one_input(data)
    except module.ALLOWED:
        pass
    except Exception as error:
        raise AssertionError(f"{name}: untyped {type(error).__name__} for input {data!r:.300}") \
            from error


@pytest.mark.parametrize("name", HARNESSES)
def test_corpus_is_what_make_corpus_writes(name: str) -> None:
    module = harness_module(name)
    expected = {corpus_file_name(data, label) for label, data in module.seeds().items()}
    expected |= {corpus_file_name(data, f"regression-{label}")
                 for label, data in regressions(module).items()}
    committed = {path.name for path in (CORPUS_DIR / name).iterdir()}
    assert committed == expected, "run: python tests/fuzz/make_corpus.py"


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_over_corpus_and_regressions(name: str) -> None:
    seeds = corpus(name)
    assert seeds, f"no corpus for {name}"
    for data in seeds:
        run(name, data)
    for data in regressions(harness_module(name)).values():
        run(name, data)


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_over_seeded_mutations(name: str) -> None:
    for data in mutated_inputs(corpus(name), count=SUITE_MUTATIONS, seed=SUITE_SEED):
        run(name, data)
