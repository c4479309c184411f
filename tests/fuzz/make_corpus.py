"""Regenerate the committed seed corpus: ``python tests/fuzz/make_corpus.py``.

Each harness's ``seeds()`` (valid encodings made by the project's own builders, plus a few
edge cases) goes to ``corpus/<harness>/<label>-<digest>``, and its ``regressions()``
(inputs that once crashed it) to ``regression-<label>-<digest>``. Output is
deterministic (fixed keys, fixed timestamps), so a re-run changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

from fuzz.common import (  # noqa: E402
    CORPUS_DIR,
    HARNESSES,
    corpus_file_name,
    harness_module,
    regressions,
)

# A seed larger than this is a mistake: the corpus stays kilobytes.
SEED_BYTES_MAX = 16 * 1024


def main() -> None:
    for name in HARNESSES:
        directory = CORPUS_DIR / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        module = harness_module(name)
        for label, data in module.seeds().items():
            assert len(data) <= SEED_BYTES_MAX, f"{name}/{label}: {len(data)} bytes"
            (directory / corpus_file_name(data, label)).write_bytes(data)
        for label, data in regressions(module).items():
            assert len(data) <= SEED_BYTES_MAX, f"{name}/{label}: {len(data)} bytes"
            (directory / corpus_file_name(data, f"regression-{label}")).write_bytes(data)
        print(f"{name}: {sum(1 for _ in directory.iterdir())} files")


if __name__ == "__main__":
    main()
