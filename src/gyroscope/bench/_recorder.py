"""Recording measurements cheaply on the hot path and merging them afterwards.

Recording one value into an ``HdrHistogram`` costs about 1.5 us in Python, as much as a third of a
request's whole budget at wrk speeds. So the hot path only appends microseconds to an ``array``;
once a second (and at the end) the buffer is folded into the histograms with numpy (HdrHistogram's
index arithmetic on the whole buffer, then one ``bincount`` added to its counts). The figures are
exactly those of recording each value one by one.

``RunData`` is what one worker process measured; ``RunData.merge`` adds several together (histograms
add exactly) and ``to_json``/``from_json`` carry it between processes and into result files.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

__all__ = [
    "HISTOGRAMS",
    "Interval",
    "Recorder",
    "RunData",
    "decode_hist",
    "new_hist",
    "record_all",
]

# Values are microseconds from 1 us to one hour, three significant figures (0.1% error).
_LOW, _HIGH = 1, 3_600_000_000
# Named histograms a run may fill: latency (end to end, from the intended send time), lag (how far
# behind schedule sends ran), and the LLM figures.
HISTOGRAMS = ("latency", "lag", "ttft", "itl", "tpot")


def new_hist(figures: int = 3) -> HdrHistogram:
    return HdrHistogram(_LOW, _HIGH, figures)


def decode_hist(encoded: str) -> HdrHistogram:
    hist = new_hist()
    if encoded:
        hist.decode_and_add(encoded)
    return hist


def encode_hist(hist: HdrHistogram) -> str:
    return str(hist.encode().decode("ascii")) if hist.get_total_count() else ""


def _fold(buffer: array[int], *hists: HdrHistogram) -> None:
    if not buffer:
        return
    raw = np.clip(np.frombuffer(buffer, dtype=np.int64), _LOW, _HIGH)
    for hist in hists:
        record_all(hist, raw)
    del buffer[:]


def record_all(hist: HdrHistogram, values: np.ndarray[Any, np.dtype[np.int64]]) -> None:
    """Record every value (each within the histogram's range) into ``hist``: the same counts,
    total, min and max as ``hist.record_value(v)`` one by one, with numpy instead of a Python
    call per value (those cost ~3 us each: milliseconds per second of a streaming run)."""
    if not len(values):
        return
    # HdrHistogram's own index arithmetic, vectorised. The bit length of v | mask comes from
    # frexp's exponent, exact for integers below 2**53.
    _, bit_length = np.frexp(values | hist.sub_bucket_mask)
    bucket = bit_length.astype(np.int64) - (
        hist.unit_magnitude + hist.sub_bucket_half_count_magnitude + 1
    )
    sub_bucket = values >> (bucket + hist.unit_magnitude)
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (
        sub_bucket - hist.sub_bucket_half_count
    )
    added = np.bincount(index)
    counts = np.ctypeslib.as_array(hist.counts)
    counts[: len(added)] += added.astype(counts.dtype)
    hist.total_count += len(values)
    hist.min_value = min(hist.min_value, int(values.min()))
    hist.max_value = max(hist.max_value, int(values.max()))


@dataclass
class Interval:
    """What happened in one second of the run (``t`` seconds after the measured start)."""

    t: int
    requests: int = 0
    errors: int = 0
    bytes_in: int = 0
    tokens: int = 0
    hist: HdrHistogram = field(default_factory=lambda: new_hist(2))

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "requests": self.requests,
            "errors": self.errors,
            "bytes_in": self.bytes_in,
            "tokens": self.tokens,
            "latency_hist": encode_hist(self.hist),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Interval:
        hist = new_hist(2)
        if data.get("latency_hist"):
            hist.decode_and_add(data["latency_hist"])
        return cls(
            t=int(data["t"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            bytes_in=int(data.get("bytes_in", 0)),
            tokens=int(data.get("tokens", 0)),
            hist=hist,
        )

    def add(self, other: Interval) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.bytes_in += other.bytes_in
        self.tokens += other.tokens
        self.hist.add(other.hist)


@dataclass
class RunData:
    """Everything one run (or several merged workers) measured; mergeable and JSON-serialisable."""

    counters: Counter[str] = field(default_factory=Counter)
    status: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    hists: dict[str, HdrHistogram] = field(
        default_factory=lambda: {n: new_hist() for n in HISTOGRAMS}
    )
    series: list[Interval] = field(default_factory=list)
    elapsed: float = 0.0
    cpu_seconds: float = 0.0
    workers: int = 1
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "counters": dict(self.counters),
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "errors": dict(sorted(self.errors.items())),
            "histograms": {name: encode_hist(h) for name, h in self.hists.items()},
            "series": [i.to_json() for i in self.series],
            "elapsed": self.elapsed,
            "cpu_seconds": self.cpu_seconds,
            "workers": self.workers,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunData:
        hists = {n: new_hist() for n in HISTOGRAMS}
        for name, encoded in data.get("histograms", {}).items():
            hists[name] = decode_hist(encoded)
        return cls(
            counters=Counter({str(k): int(v) for k, v in data.get("counters", {}).items()}),
            status=Counter({int(k): int(v) for k, v in data.get("status", {}).items()}),
            errors=Counter({str(k): int(v) for k, v in data.get("errors", {}).items()}),
            hists=hists,
            series=[Interval.from_json(i) for i in data.get("series", [])],
            elapsed=float(data.get("elapsed", 0.0)),
            cpu_seconds=float(data.get("cpu_seconds", 0.0)),
            workers=int(data.get("workers", 1)),
            warnings=[str(w) for w in data.get("warnings", [])],
        )

    @classmethod
    def merge(cls, parts: list[RunData]) -> RunData:
        """Add up the runs of several workers that ran side by side over the same seconds."""
        out = cls(workers=0)
        by_t: dict[int, Interval] = {}
        for part in parts:
            out.counters.update(part.counters)
            out.status.update(part.status)
            out.errors.update(part.errors)
            for name, hist in part.hists.items():
                out.hists.setdefault(name, new_hist()).add(hist)
            for interval in part.series:
                by_t.setdefault(interval.t, Interval(t=interval.t)).add(interval)
            out.elapsed = max(out.elapsed, part.elapsed)
            out.cpu_seconds += part.cpu_seconds
            out.workers += part.workers
            out.warnings.extend(w for w in part.warnings if w not in out.warnings)
        out.series = [by_t[t] for t in sorted(by_t)]
        return out


class Recorder:
    """The hot-path side: cheap appends and counter bumps, folded into histograms every second.

    ``recording`` is False during warm-up: nothing is counted then.
    """

    def __init__(self) -> None:
        self.data = RunData()
        self.recording = True
        self.buffers: dict[str, array[int]] = {name: array("q") for name in HISTOGRAMS}
        # The latency buffer is touched on every response; keep a direct reference.
        self.latency = self.buffers["latency"]
        self.requests = 0
        self.ok = 0
        self.failed = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.tokens = 0
        self.good = 0
        self.status: Counter[int] = self.data.status
        self.errors: Counter[str] = self.data.errors
        self._interval = Interval(t=0)
        self._t0 = time.monotonic()
        self._cpu0 = time.process_time()
        self._last = (0, 0, 0, 0)

    def start(self, t0: float) -> None:
        """Begin measuring at monotonic time ``t0`` (the end of warm-up): drop what came before."""
        self._t0 = t0
        self._cpu0 = time.process_time()
        self.requests = self.ok = self.failed = self.bytes_in = self.bytes_out = 0
        self.tokens = self.good = 0
        self.status.clear()
        self.errors.clear()
        for buf in self.buffers.values():
            del buf[:]
        self._last = (0, 0, 0, 0)
        self._interval = Interval(t=0)
        self.recording = True

    def error(self, kind: str) -> None:
        if self.recording:
            self.requests += 1
            self.failed += 1
            self.errors[kind] += 1

    def tick(self, now: float) -> Interval:
        """Close the current second: fold buffers, append it to the series, start the next one."""
        interval = self._interval
        _fold(self.latency, self.data.hists["latency"], interval.hist)
        for name, buf in self.buffers.items():
            if name != "latency":
                _fold(buf, self.data.hists[name])
        req, err, bin_, tok = self._last
        interval.requests = self.requests - req
        interval.errors = self.failed - err
        interval.bytes_in = self.bytes_in - bin_
        interval.tokens = self.tokens - tok
        self._last = (self.requests, self.failed, self.bytes_in, self.tokens)
        if interval.requests or interval.errors or self.recording:
            self.data.series.append(interval)
        self._interval = Interval(t=interval.t + 1)
        return interval

    def finish(self, now: float) -> RunData:
        self.tick(now)
        data = self.data
        data.counters.update(
            requests=self.requests,
            ok=self.ok,
            errors=self.failed,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            tokens=self.tokens,
            good=self.good,
        )
        data.elapsed = max(now - self._t0, 1e-9)
        data.cpu_seconds = time.process_time() - self._cpu0
        return data
