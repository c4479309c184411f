"""``scripts/fuzz``: run harnesses one process each, ``--jobs`` at a time, for ``--seconds``.

Prints each harness's JSON line (see run.py and fuzz_peer.py) as it finishes, then exits
1 if any harness reported a crash or did not report at all. Each harness's stderr (libFuzzer
statistics, crash tracebacks) goes to ``fuzz-out/logs/<harness>.log``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT), str(HERE.parent)]

from fuzz.common import HARNESSES, PEER_HARNESS  # noqa: E402

LOG_DIR = ROOT / "fuzz-out" / "logs"
# A harness process gets this long beyond its --seconds (start-up, libFuzzer's backstop).
SLACK_SECONDS = 180
POLL_SECONDS = 0.5


def command(name: str, seconds: float, engine: str, seed: int) -> list[str]:
    if name == PEER_HARNESS:
        return [sys.executable, str(HERE / "fuzz_peer.py"), "--seconds", str(seconds),
                "--seed", str(seed)]
    return [sys.executable, str(HERE / "run.py"), name, "--seconds", str(seconds),
            "--engine", engine, "--seed", str(seed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("harnesses", nargs="*", help=f"default: {' '.join(HARNESSES)} peer")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=2, help="harness processes at once")
    parser.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    parser.add_argument("--seed", type=int, default=1, help="for the random engine and peer")
    arguments = parser.parse_args()
    names = arguments.harnesses or [*HARNESSES, PEER_HARNESS]
    unknown = set(names) - {*HARNESSES, PEER_HARNESS}
    if unknown:
        parser.error(f"unknown harness(es): {', '.join(sorted(unknown))}")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    waiting = list(names)
    running: dict[str, tuple[subprocess.Popen[str], float]] = {}
    failed = False
    while waiting or running:
        while waiting and len(running) < max(1, arguments.jobs):
            name = waiting.pop(0)
            with open(LOG_DIR / f"{name}.log", "w") as log:
                process = subprocess.Popen(
                    command(name, arguments.seconds, arguments.engine, arguments.seed),
                    stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
            running[name] = (process, time.monotonic() + arguments.seconds + SLACK_SECONDS)
        for name, (process, deadline) in list(running.items()):
            if process.poll() is None and time.monotonic() < deadline:
                continue
            if process.poll() is None:
                process.kill()
            output, _ = process.communicate(timeout=30)
            del running[name]
            lines = [line for line in output.splitlines() if line.startswith("{")]
            if not lines:
                failed = True
                print(json.dumps({"harness": name, "error": "no report",
                                  "exit_code": process.returncode,
                                  "log": str(LOG_DIR / f"{name}.log")}), flush=True)
                continue
            report = json.loads(lines[-1])
            failed = failed or bool(report.get("crashes"))
            print(json.dumps(report), flush=True)
        time.sleep(POLL_SECONDS)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
