"""Run one in-process harness for a while: ``python tests/fuzz/run.py HARNESS --seconds S``.

``--engine atheris`` (what ``scripts/fuzz`` uses): coverage-guided by libFuzzer, with the
project's packages instrumented, starting from a copy of the committed corpus kept under
``fuzz-out/corpus/<harness>`` (libFuzzer adds the inputs that find new coverage there).
``--engine random``: the seeded mutator of fuzz/common.py over the corpus, no atheris.

Either way an exception other than the harness's ALLOWED errors is a crash: its input is
kept as ``fuzz-out/crashes/<harness>/crash-<digest>`` with the traceback beside it, and
fuzzing goes on (distinct crashes are counted by exception type and innermost frame). An
input slower than SLOW_INPUT_SECONDS is kept too, as ``slow-<digest>``. At the end one JSON
line goes to stdout: harness, engine, seconds, executions, crashes, crash_inputs, slow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(HERE.parent)]

OUT_DIR = ROOT / "fuzz-out"
SLOW_INPUT_SECONDS = 1.0
# libFuzzer's own limits, as a backstop behind ours: one input may take this long...
LIBFUZZER_INPUT_TIMEOUT_SECONDS = 60
# ...inputs stay this small (the decoders' limits are far larger; small inputs run fast)...
LIBFUZZER_INPUT_BYTES_MAX = 64 * 1024
# ...and the process this big (the node itself runs in far less).
LIBFUZZER_RSS_MB_MAX = 3072
INSTRUMENTED_PACKAGES = ["ledger", "consensus", "node", "fuzz"]


class Session:
    def __init__(self, name: str, engine: str, seconds: float) -> None:
        self.name = name
        self.engine = engine
        self.seconds = seconds
        self.started = time.monotonic()
        self.executions = 0
        self.crash_signatures: set[str] = set()
        self.crash_inputs = 0
        self.slow = 0
        self.crash_dir = OUT_DIR / "crashes" / name
        self.module: Any = None

    def keep(self, prefix: str, data: bytes, note: str) -> Path:
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        path = self.crash_dir / f"{prefix}-{hashlib.sha1(data).hexdigest()}"
        if not path.exists():
            path.write_bytes(data)
            path.with_suffix(".txt").write_text(note)
        return path

    def one(self, data: bytes) -> None:
        if time.monotonic() - self.started >= self.seconds:
            self.finish()
        self.executions += 1
        started = time.monotonic()
        try:
            self.module.one_input(data)
        except self.module.ALLOWED:
            pass
        except Exception as error:  # the bug we are looking for
            frames = traceback.extract_tb(error.__traceback__)
            innermost = frames[-1] if frames else None
            where = f"{innermost.filename}:{innermost.lineno}" if innermost else "?"
            signature = f"{type(error).__name__} at {where}"
            self.crash_inputs += 1
            if signature not in self.crash_signatures:
                self.crash_signatures.add(signature)
                path = self.keep("crash", data, traceback.format_exc())
                print(f"CRASH {self.name}: {signature} -> {path}", file=sys.stderr, flush=True)
        elapsed = time.monotonic() - started
        if elapsed > SLOW_INPUT_SECONDS:
            self.slow += 1
            self.keep("slow", data, f"{elapsed:.2f} s\n")

    def report(self) -> dict[str, Any]:
        return {
            "harness": self.name,
            "engine": self.engine,
            "seconds": round(time.monotonic() - self.started, 1),
            "executions": self.executions,
            "crashes": len(self.crash_signatures),
            "crash_inputs": self.crash_inputs,
            "crash_signatures": sorted(self.crash_signatures),
            "slow": self.slow,
        }

    def finish(self) -> None:
        print(json.dumps(self.report()), flush=True)
        sys.stderr.flush()
        os._exit(1 if self.crash_signatures else 0)  # libFuzzer's loop never returns


def run_atheris(session: Session) -> None:
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED_PACKAGES):
        from fuzz.common import CORPUS_DIR, harness_module

        session.module = harness_module(session.name)
    work = OUT_DIR / "corpus" / session.name
    work.mkdir(parents=True, exist_ok=True)
    for path in (CORPUS_DIR / session.name).iterdir():
        shutil.copyfile(path, work / path.name)
    argv = [
        sys.argv[0], str(work),
        f"-max_total_time={int(session.seconds) + 60}",
        f"-timeout={LIBFUZZER_INPUT_TIMEOUT_SECONDS}",
        f"-max_len={LIBFUZZER_INPUT_BYTES_MAX}",
        f"-rss_limit_mb={LIBFUZZER_RSS_MB_MAX}",
        f"-artifact_prefix={session.crash_dir}/libfuzzer-",
    ]
    session.crash_dir.mkdir(parents=True, exist_ok=True)
    atheris.Setup(argv, session.one)
    atheris.Fuzz()


def run_random(session: Session, seed: int) -> None:
    from fuzz.common import corpus, harness_module, mutated_inputs

    session.module = harness_module(session.name)
    seeds = corpus(session.name)
    for data in seeds:
        session.one(data)
    while True:
        for data in mutated_inputs(seeds, count=1000, seed=seed):
            session.one(data)
        seed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harness")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    session = Session(arguments.harness, arguments.engine, arguments.seconds)
    if arguments.engine == "atheris":
        run_atheris(session)
    else:
        run_random(session, arguments.seed)


if __name__ == "__main__":
    main()
