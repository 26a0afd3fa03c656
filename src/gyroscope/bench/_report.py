"""Terminal output: live progress while a run goes, and the final table."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gyroscope.bench._recorder import Interval
from gyroscope.bench._result import Result

__all__ = ["Progress", "result_table"]


class Progress:
    """A one-line live view: rate, latency, errors and time left, refreshed each second.

    ``update`` is the ``progress`` callback of ``run_load``; with several workers it adds up their
    intervals for the same second.
    """

    def __init__(self, console: Console, total_seconds: float, workers: int = 1) -> None:
        self.console = console
        self.total = total_seconds
        self.workers = workers
        self.started = time.monotonic()
        self._by_t: dict[int, Interval] = {}
        self._seen: dict[int, int] = {}
        self.requests = 0
        self.errors = 0
        self.live = Live(Text("starting..."), console=console, refresh_per_second=2, transient=True)

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.console.is_terminal:
            self.live.__exit__(*exc)

    def update(self, worker: int, interval: Interval) -> None:
        self.requests += interval.requests
        self.errors += interval.errors
        slot = self._by_t.get(interval.t)
        if slot is None:
            self._by_t[interval.t] = slot = Interval(t=interval.t)
        slot.add(interval)
        self._seen[interval.t] = self._seen.get(interval.t, 0) + 1
        if self._seen[interval.t] < self.workers or not self.console.is_terminal:
            return
        hist = slot.hist
        p50 = hist.get_value_at_percentile(50) / 1000 if hist.get_total_count() else 0.0
        p99 = hist.get_value_at_percentile(99) / 1000 if hist.get_total_count() else 0.0
        left = max(0.0, self.total - (time.monotonic() - self.started))
        tokens = f"  {slot.tokens} tok/s" if slot.tokens else ""
        line = (
            f"[{interval.t + 1:>4}s] {slot.requests:>7} req/s  p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  "
            f"errors {slot.errors:>5}{tokens}  total {self.requests}  left {left:5.0f}s"
        )
        self.live.update(Text(line))


def result_table(result: Result) -> Table:
    """The final summary of one run."""
    s = result.summary()
    table = Table(
        title=f"{result.kind} test of {result.target}"
        + (" (interrupted: partial)" if result.interrupted else ""),
        show_header=True,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{s['requests']} ({s['ok']} ok, {s['errors']} errors)")
    table.add_row("duration", f"{s['duration_s']:.2f} s")
    table.add_row("throughput", f"{s['rps']:.1f} req/s ({s['throughput']:.1f} ok/s)")
    table.add_row("error rate", f"{s['error_rate']:.2%}")
    lat = s["latency_ms"]
    for key in ("p50", "p90", "p99", "p99.9", "max", "mean"):
        table.add_row(f"latency {key}", f"{lat[key]:.3f} ms")
    if "schedule_lag_ms" in s:
        lag = s["schedule_lag_ms"]
        table.add_row("behind schedule p99 / max", f"{lag['p99']:.3f} / {lag['max']:.3f} ms")
    if s["unsent"] or s["unfinished"]:
        table.add_row("never sent / unfinished", f"{s['unsent']} / {s['unfinished']}")
    table.add_row("bytes in / out", f"{s['bytes_in']} / {s['bytes_out']}")
    table.add_row(
        "status codes", ", ".join(f"{k}: {v}" for k, v in sorted(result.data.status.items())) or "-"
    )
    table.add_row(
        "errors by kind",
        ", ".join(f"{k}: {v}" for k, v in sorted(result.data.errors.items())) or "-",
    )
    table.add_row("generator CPU", f"{s['generator_cpu']:.0%} of a core per worker")
    if "llm" in s:
        llm = s["llm"]
        table.add_row(
            "output tokens", f"{llm['output_tokens']} ({llm['output_tokens_per_s']:.1f} tok/s)"
        )
        for name in ("ttft", "itl", "tpot"):
            f = llm[f"{name}_ms"]
            table.add_row(f"{name.upper()} p50 / p99", f"{f['p50']:.2f} / {f['p99']:.2f} ms")
        table.add_row(
            "goodput", f"{llm['goodput_rps']:.2f} req/s ({llm['goodput_ratio']:.1%} of requests)"
        )
    return table
