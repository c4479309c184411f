"""The load tester at the terminal: a progress bar redrawn in place when the stream is a
terminal, plain periodic lines otherwise (logs, CI), and the summary at the end."""

from __future__ import annotations

import math
import time
from typing import Any, TextIO

import trio

from node.loadtest.config import LoadtestConfig
from node.loadtest.runner import Round

BAR_REFRESH_SECONDS = 0.5
LINE_INTERVAL_SECONDS = 5.0
BAR_WIDTH_CHARACTERS = 30


def eta(round_: Round, config: LoadtestConfig, now: float, phase: str) -> str:
    """Time left in the round: the planned seconds left, or for a round of N txs the txs
    left at the measured send rate; while draining, at most the drain timeout left."""
    if phase == "draining":
        if not math.isfinite(round_.drain_deadline):
            return "-"
        return f"<= {max(round_.drain_deadline - now, 0.0):,.0f} s"
    if config.tx_count:
        if phase == "warm-up":
            return "-"
        sent = round_.tracker.measured.submitted
        measured_for = now - round_.warmup_end
        if sent <= 0 or measured_for <= 0:
            return "-"
        return f"{max(config.tx_count - sent, 0) / (sent / measured_for):,.0f} s"
    return f"{max(round_.measured_end - now, 0.0):,.0f} s"


class Progress:
    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())
        self._bar_shown = False

    def line(self, text: str) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    async def follow(self, round_: Round, config: LoadtestConfig) -> None:
        """Until cancelled: the bar every half second, or a line every five."""
        if not self.enabled:
            return
        interval = BAR_REFRESH_SECONDS if self.terminal else LINE_INTERVAL_SECONDS
        previous_committed, previous_time = 0, time.monotonic()
        while True:
            await trio.sleep(interval)
            now = time.monotonic()
            tracker = round_.tracker
            committed = tracker.measured.committed + tracker.warmup.committed
            rate = (committed - previous_committed) / max(now - previous_time, 1e-9)
            previous_committed, previous_time = committed, now
            text = self.status(round_, config, now, rate)
            if self.terminal:
                self.stream.write("\r" + text + "\x1b[K")
                self._bar_shown = True
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def status(self, round_: Round, config: LoadtestConfig, now: float, rate: float) -> str:
        tracker = round_.tracker
        elapsed = now - tracker.start
        total = config.warmup_seconds + (config.duration_seconds if not config.tx_count
                                         else math.nan)
        phase = "warm-up" if now < round_.warmup_end else (
            "measured" if math.isinf(round_.submit_end) else "draining")
        fraction = min(1.0, elapsed / total) if total == total and total > 0 else 0.0
        filled = round(fraction * BAR_WIDTH_CHARACTERS)
        bar = "#" * filled + "." * (BAR_WIDTH_CHARACTERS - filled)
        in_flight = sum(worker.in_flight for worker in round_.workers)
        measured = tracker.measured
        counts = (f"{elapsed:6.1f} s {phase:8}  submitted {measured.submitted:>9,}  "
                  f"committed {measured.committed:>9,}  in flight {in_flight:>7,}  "
                  f"{rate:>8,.0f} tx/s  ETA {eta(round_, config, now, phase)}")
        return f"[{bar}] {counts}" if self.terminal else counts.strip()

    def summary(self, report: dict[str, Any]) -> None:
        summary = report["summary"]
        latency = summary["latency_seconds"]

        def milliseconds(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:,.0f} ms"

        throughput = summary["committed_tx_per_second"]
        send = summary["send_rate_tx_per_second"]
        self.line(
            f"measured round: sent {summary['submitted']:,} "
            f"({'-' if send is None else f'{send:,.0f}'} tx/s), committed "
            f"{summary['committed']:,} ({'-' if throughput is None else f'{throughput:,.0f}'} "
            f"tx/s), latency p50 {milliseconds(latency['p50'])} p95 "
            f"{milliseconds(latency['p95'])} p99 {milliseconds(latency['p99'])} max "
            f"{milliseconds(latency['max'])}; invalid {summary['committed_invalid']}, "
            f"rejected {summary['rejected']}, failed {summary['failed']}, timed out "
            f"{summary['timed_out']}; chain check {report['chain_check']['status']}"
        )
        mix = report.get("mix", {})
        ran = ", ".join(f"{row['tx_type']} {row['submitted']:,}"
                        for row in mix.get("by_type", []) if row["submitted"])
        self.line(f"submitted by type: {ran or 'none'}")
        for item in mix.get("left_out", []):
            lanes = "all lanes" if item["all_lanes"] else f"lanes {item['lanes']}"
            self.line(f"left out: {item['tx_type']} ({lanes}): {item['reason']}")
        for url, figures in report.get("nodes", {}).get("by_node", {}).items():
            per_tx, rss = figures["cpu_seconds_per_committed_tx"], figures["rss_bytes_max"]
            self.line(
                f"node {url} (/metrics): "
                f"{'-' if per_tx is None else f'{per_tx * 1000:,.3f} ms'} CPU per committed "
                f"tx, RSS max {'-' if rss is None else f'{rss / 2**20:,.0f} MiB'}")
