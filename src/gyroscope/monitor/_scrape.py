"""Scraping: fetch a target's exposition text and store it, one sample per series per scrape.

Samples are stamped with the scheduled scrape time (not the moment the answer came), so the
timestamps of a steady target are exactly regular and compress to almost nothing. A series that
disappears, or every series of a target that stops answering, gets a staleness marker, so queries
stop seeing it at once instead of 5 minutes later. ``up`` is 1 or 0 for every scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from dataclasses import dataclass, field

import httpx

from gyroscope.monitor._chunks import STALE_NAN
from gyroscope.monitor._errors import ScrapeError
from gyroscope.monitor._exposition import Labels, parse_labels_text
from gyroscope.monitor._tsdb import TSDB, Head

__all__ = ["ScrapeTarget", "TargetState", "ingest_text"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TargetState:
    """What one target's scrapes remember: series text -> head, the heads seen last time, health."""

    ids: dict[str, Head] = field(default_factory=dict)
    last_seen: set[Head] = field(default_factory=set)
    health: str = "unknown"
    last_error: str = ""
    last_scrape: float = 0.0
    last_duration: float = 0.0
    samples: int = 0
    honor_labels: bool = False


def ingest_text(
    text: str, db: TSDB, state: TargetState, extra: Labels, t_ms: int, *, target: str = "target"
) -> int:
    """Parse ``text`` and append every sample at ``t_ms`` (or its own timestamp); returns the count.

    A line that is not the exposition format raises ``ScrapeError`` and takes back what this
    scrape had appended: a target answering garbage stores nothing. The hot path is a steady
    target: a ``series value`` line whose series text was seen before costs one split, one dict
    lookup, one ``float()`` and four array appends (two for the head log, so ``commit()`` need
    not walk the heads again); everything else goes through ``_slow_line``.
    """
    get = state.ids.get
    size = db.chunk_samples
    touched: list[Head] = []
    touch = touched.append
    late: list[Head] = []  # heads with older unlogged samples: commit() logs them in order
    log_sids: array[int] = array("q")
    log_values: array[float] = array("d")
    log_sid, log_value = log_sids.append, log_values.append
    stamped: list[tuple[int, int, float]] = []
    number = 0
    try:
        for number, line in enumerate(text.split("\n"), 1):  # noqa: B007 - used in the error
            key, _, raw = line.rpartition(" ")
            head = get(key)
            if head is not None:
                value = float(raw)
                if t_ms > head.last:
                    head.ts.append(t_ms)
                    head.values.append(value)
                    head.last = t_ms
                    touch(head)
                    n = len(head.ts)
                    if head.logged == n - 1:
                        head.logged = n
                        log_sid(head.sid)
                        log_value(value)
                    else:
                        late.append(head)
                    if n == size:
                        db.mark_full(head)
            elif line and line[0] != "#":
                before = len(touched)
                _slow_line(line, db, state, extra, t_ms, touched, stamped)
                if len(touched) > before:  # a new series: commit() logs it after its record
                    late.append(touched[-1])
    except ValueError as exc:
        db.rollback(touched, t_ms)
        raise ScrapeError(
            f"not the Prometheus text format: {exc}", target=target, line=number
        ) from None
    db.appended += len(touched)
    db.log_scrape(t_ms, log_sids, log_values, touched)
    db.touch(late)
    seen = set(touched)
    for sid, stamp, value in stamped:
        db.append_id(sid, stamp, value)
        # Present, even when its timestamp has not moved since the last scrape (a federated
        # sample probed less often than it is scraped): only a series gone from the page is
        # stale. Marking it would hide it until a newer timestamp arrived.
        seen.add(db.head(sid))
    mark_stale(db, state.last_seen - seen, t_ms)
    state.last_seen = seen
    return len(touched) + len(stamped)


def _slow_line(
    line: str,
    db: TSDB,
    state: TargetState,
    extra: Labels,
    t_ms: int,
    touched: list[Head],
    stamped: list[tuple[int, int, float]],
) -> None:
    line = line.strip()
    if not line or line[0] == "#":
        return
    ids, honor = state.ids, state.honor_labels
    end = line.rfind("}") + 1 if "{" in line else line.find(" ")
    if end <= 0:
        raise ValueError("no value after the series name")
    rest = line[end:].split()
    if not rest or len(rest) > 2:
        raise ValueError("expected a value and an optional timestamp after the series")
    value = float(rest[0])
    stamp = int(rest[1]) if len(rest) == 2 else None
    text = line[:end]
    head = ids.get(text)
    if head is None:
        head = db.head(db.series_id(parse_labels_text(text, extra, honor=honor)))
        if len(ids) < 200_000:
            ids[text] = head
    if stamp is not None:
        stamped.append((head.sid, stamp, value))
    elif t_ms > head.last:
        head.ts.append(t_ms)
        head.values.append(value)
        head.last = t_ms
        touched.append(head)
        if len(head.ts) == db.chunk_samples:
            db.mark_full(head)


def mark_stale(db: TSDB, heads: set[Head], t_ms: int) -> None:
    for head in heads:
        db.append_id(head.sid, t_ms, STALE_NAN)


class ScrapeTarget:
    """Scrape one ``host:port`` every ``interval`` seconds until cancelled."""

    def __init__(
        self,
        db: TSDB,
        client: httpx.AsyncClient,
        *,
        job: str,
        address: str,
        scheme: str = "http",
        path: str = "/metrics",
        interval: float = 15.0,
        timeout: float = 10.0,
        labels: dict[str, str] | None = None,
        on_scraped: object = None,
        honor_labels: bool = False,
    ) -> None:
        self.db = db
        self.client = client
        self.job = job
        self.address = address
        self.url = f"{scheme}://{address}{path}"
        self.interval = interval
        self.timeout = min(timeout, interval)
        base = {"job": job, "instance": address, **(labels or {})}
        self.extra: Labels = tuple(sorted(base.items()))
        self.state = TargetState(honor_labels=honor_labels)
        self.on_scraped = on_scraped

    def _meta(self, name: str) -> Labels:
        return tuple(sorted((*self.extra, ("__name__", name))))

    async def scrape_once(self, t_ms: int) -> None:
        started = time.perf_counter()
        try:
            response = await self.client.get(self.url, timeout=self.timeout)
            if response.status_code != 200:
                raise ScrapeError(f"HTTP {response.status_code}", target=self.url)
            count = ingest_text(
                response.text, self.db, self.state, self.extra, t_ms, target=self.url
            )
            self.state.health, self.state.last_error, self.state.samples = "up", "", count
            up = 1.0
        except (httpx.HTTPError, ScrapeError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            if self.state.health != "down":
                log.warning("scrape of %s failed: %s", self.url, reason)
            self.state.health, self.state.last_error, self.state.samples = "down", reason, 0
            mark_stale(self.db, self.state.last_seen, t_ms)
            self.state.last_seen = set()
            up = 0.0
        duration = time.perf_counter() - started
        self.state.last_scrape, self.state.last_duration = t_ms / 1000.0, duration
        self.db.append(self._meta("up"), t_ms, up)
        self.db.append(self._meta("scrape_duration_seconds"), t_ms, round(duration, 6))
        self.db.append(self._meta("scrape_samples_scraped"), t_ms, float(self.state.samples))
        self.db.commit()
        if callable(self.on_scraped):
            self.on_scraped()

    async def run(self) -> None:
        """Scrape at ``k * interval`` wall-clock ticks (so timestamps are exactly regular)."""
        interval_ms = int(self.interval * 1000)
        while True:
            now_ms = int(time.time() * 1000)
            next_ms = (now_ms // interval_ms + 1) * interval_ms
            await asyncio.sleep((next_ms - now_ms) / 1000.0)
            await self.scrape_once(next_ms)

    def as_dict(self) -> dict[str, object]:
        """The target as Prometheus's /api/v1/targets shows it."""
        return {
            "labels": dict(self.extra),
            "scrapePool": self.job,
            "scrapeUrl": self.url,
            "health": self.state.health,
            "lastError": self.state.last_error,
            "lastScrape": self.state.last_scrape,
            "lastScrapeDuration": self.state.last_duration,
            "scrapeInterval": f"{self.interval:g}s",
        }
