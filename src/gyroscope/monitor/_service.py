"""The monitor as a service: scrape, probe, evaluate rules, route alerts, deliver, serve the API.

>>> svc = MonitorService(MonitorConfig(listen="127.0.0.1:0"), Path("/tmp/gyro-monitor-doc"))
>>> svc.health().status   # before start
'down'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from prometheus_client import Counter, Gauge

from gyroscope.core import (
    CollectorRegistry,
    Health,
    HttpServer,
    Response,
    Service,
    metrics_response,
    parse_host_port,
)
from gyroscope.monitor._api import MonitorApi
from gyroscope.monitor._checks import check_database, gpu_samples, gpu_status, host_samples, probe
from gyroscope.monitor._chunks import STALE_NAN
from gyroscope.monitor._config import MonitorConfig
from gyroscope.monitor._dispatch import AmAlert, Dispatcher, Notification
from gyroscope.monitor._exposition import Labels, Sample
from gyroscope.monitor._gpu import XidWatcher
from gyroscope.monitor._history import History
from gyroscope.monitor._logship import LogShipper
from gyroscope.monitor._notify import DeliveryQueue
from gyroscope.monitor._promql import Engine
from gyroscope.monitor._redact import label_url
from gyroscope.monitor._ruleeval import ActiveAlert, GroupEvaluator
from gyroscope.monitor._rulefile import Rule, RuleGroup, load_rule_file, parse_rule_groups
from gyroscope.monitor._scrape import ScrapeTarget
from gyroscope.monitor._silences import Silence
from gyroscope.monitor._slo import slo_rule_group
from gyroscope.monitor._tsdb import TSDB

__all__ = ["MonitorService"]

log = logging.getLogger(__name__)


def load_groups(config: MonitorConfig, base: Path | None = None) -> list[RuleGroup]:
    """Every rule group: the rule files (relative to ``base``) and the SLOs."""
    groups: list[RuleGroup] = []
    for name in config.rule_files:
        path = Path(name)
        if base is not None and not path.is_absolute():
            path = base / path
        groups += load_rule_file(path)
    if config.rules:
        inline, errors = parse_rule_groups(
            yaml.safe_dump({"groups": config.rules}), "monitor.rules"
        )
        if errors:
            raise errors[0]
        groups += inline
    groups += [slo_rule_group(slo) for slo in config.slos]
    return groups


def _rule_key(group: str, rule: Rule) -> tuple[object, ...]:
    """What makes a rule the same rule across a reload (its line in the file does not)."""
    return (
        group,
        rule.alert,
        rule.record,
        rule.expr,
        rule.for_s,
        rule.keep_firing_for_s,
        tuple(sorted(rule.labels.items())),
        tuple(sorted(rule.annotations.items())),
    )


class MonitorService(Service):
    """Monitoring and alerting in one event loop. ``config_dir`` resolves relative rule files."""

    def __init__(
        self, config: MonitorConfig, data_dir: Path, *, config_dir: Path | None = None
    ) -> None:
        super().__init__(config.name)
        self.config = config
        self.data_dir = data_dir
        self.config_dir = config_dir
        self.started = False
        self.registry = CollectorRegistry()
        self._m_samples = Counter(
            "gyro_monitor_samples_appended", "Samples stored", registry=self.registry
        )
        self._m_notify = Counter(
            "gyro_monitor_notifications",
            "Notification attempts",
            ["receiver", "result"],
            registry=self.registry,
        )
        self._m_alerts = Gauge(
            "gyro_monitor_alerts", "Alerts known to the dispatcher", registry=self.registry
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._probes: dict[str, dict[str, Any]] = {}
        self._xid: XidWatcher | None = None  # created on the first host collection
        self._wake_dispatch = asyncio.Event()
        self._scraped = asyncio.Event()
        self._alert_series: dict[int, set[Labels]] = {}
        self._rule_tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        groups = load_groups(cfg, self.config_dir)  # bad rule files fail the start, loudly
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = TSDB(self.data_dir / "tsdb.sqlite", retention_s=cfg.retention)
        self.history = History(self.data_dir / "alerts.sqlite")
        self.engine = Engine(self.db)
        self.client = httpx.AsyncClient(follow_redirects=False)
        self.dispatcher = Dispatcher(cfg.alerting, external_url=cfg.external_url)
        for silence in self.history.load_silences():
            self.dispatcher.add_silence(silence)
        self.logship: LogShipper | None = None
        if cfg.alerting.log_store_url:
            self.logship = LogShipper(
                cfg.alerting.log_store_url, self.client, token=cfg.alerting.log_store_token
            )
        self.delivery = DeliveryQueue(cfg.alerting.receivers, self.client, self._on_delivery)
        self.evaluators = [GroupEvaluator(g, self.engine) for g in groups]
        for evaluator in self.evaluators:
            evaluator.restore(time.time())
        self.dispatcher.restore_groups(self.history.load_nflog())
        self.dispatcher.acks.update(self.history.load_acks())
        self._saved_acks = dict(self.dispatcher.acks)
        self.targets = [
            ScrapeTarget(
                self.db,
                self.client,
                job=sc.job,
                address=addr,
                scheme=sc.scheme,
                path=sc.metrics_path,
                on_scraped=self._scraped.set,
                honor_labels=sc.honor_labels,
                interval=sc.interval,
                timeout=sc.timeout,
                labels=sc.labels,
            )
            for sc in cfg.scrape
            for addr in sc.targets
        ]
        host, port = parse_host_port(cfg.listen)
        self.http = HttpServer(
            MonitorApi(self).handle, host=host, port=port, name=self.name, check_host=True
        )
        try:
            await self.http.start()
        except BaseException:
            await self.client.aclose()  # a port in use must not leave the stores open
            self.db.close()
            self.history.close()
            raise
        self.started = True
        self._spawn(self.delivery.run())
        if self.logship is not None:
            self._spawn(self.logship.run())
        self._spawn(self._dispatch_loop())
        self._spawn(self._retention_loop())
        self._spawn(self._every(1.0, self._sync_wal))
        for target in self.targets:
            self._spawn(target.run())
        self._rule_tasks = [asyncio.create_task(self._rule_loop(g)) for g in self.evaluators]
        for pc in cfg.probes:
            self._spawn(self._every(pc.interval, lambda pc=pc: self._run_probe(pc)))
        for dc in cfg.databases:
            self._spawn(self._every(dc.interval, lambda dc=dc: self._run_database(dc)))
        if cfg.host.enabled:
            self._spawn(self._every(cfg.host.interval, self._collect_host))
        log.info("monitor listening on %s", self.url)

    @property
    def url(self) -> str:
        return self.http.url

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def stop(self, grace: float = 5.0) -> None:
        if not self.started:
            return
        self.started = False
        for task in [*self._tasks, *self._rule_tasks]:
            task.cancel()
        for task in self._rule_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.http.stop(grace)
        self._record(self.dispatcher.drain_events())
        if self.logship is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.logship.flush(), grace)
        await self.client.aclose()
        self.db.close()
        self.history.close()
        if self._xid is not None:
            self._xid.close()

    def health(self) -> Health:
        if not self.started:
            return Health(name=self.name, status="down", detail="not running")
        down = [t.url for t in self.targets if t.state.health == "down"]
        failing = self.delivery.status() if hasattr(self, "delivery") else []
        status: Literal["ok", "degraded"] = (
            "degraded" if down or any(p["attempts"] for p in failing) else "ok"
        )
        detail = f"{len(self.targets) - len(down)}/{len(self.targets)} targets up"
        if failing:
            detail += f", {len(failing)} notification(s) pending"
        return Health(
            name=self.name,
            status=status,
            detail=detail,
            data={"url": self.url, "gpu": self._gpu_status()},
        )

    # -- loops -----------------------------------------------------------------------------------
    async def _every(self, interval: float, job: Any) -> None:
        while True:
            try:
                await job()
            except Exception:
                log.exception("monitor job failed")
            await asyncio.sleep(interval)

    async def _rule_loop(self, evaluator: GroupEvaluator) -> None:
        interval = evaluator.group.interval_s or self.config.evaluation_interval
        interval_ms = int(interval * 1000)
        while True:
            # Evaluate just after the scrapes of the same tick land (scrapes run at k * interval).
            now_ms = int(time.time() * 1000)
            next_ms = (now_ms // interval_ms + 1) * interval_ms + min(100, interval_ms // 10)
            await asyncio.sleep((next_ms - now_ms) / 1000.0)
            await self._scrapes_landed(next_ms - min(100, interval_ms // 10), interval / 2)
            try:
                # The scheduled time, not the wake-up time: `for` then counts whole intervals, so
                # jitter in waking up never costs an extra interval.
                self.evaluate_group(evaluator, next_ms / 1000.0)
            except Exception:
                log.exception("rule group %s failed", evaluator.group.name)

    async def _scrapes_landed(self, tick_ms: int, limit: float) -> None:
        """Wait (at most ``limit`` s) until every scrape of this tick has been stored."""
        deadline = time.monotonic() + limit
        tick = tick_ms / 1000.0
        while any(t.state.last_scrape < tick and t.interval <= limit * 2 for t in self.targets):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._scraped.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._scraped.wait(), remaining)

    def reload_rules(self) -> int:
        """Re-read rule files (and SLOs). On any error the running rules stay and the error is
        raised; otherwise groups are swapped, and alerts of rules that did not change keep their
        state (pending time, firing). Returns the number of groups."""
        groups = load_groups(self.config, self.config_dir)
        old = {_rule_key(e.group.name, s.rule): s for e in self.evaluators for s in e.rules}
        fresh = [GroupEvaluator(g, self.engine) for g in groups]
        for evaluator in fresh:
            for state in evaluator.rules:
                kept = old.get(_rule_key(evaluator.group.name, state.rule))
                if kept is not None:
                    state.active = kept.active
        for task in self._rule_tasks:
            task.cancel()
        self.evaluators = fresh
        self._rule_tasks = [asyncio.create_task(self._rule_loop(g)) for g in fresh]
        log.info("rules reloaded: %d group(s)", len(fresh))
        return len(fresh)

    def evaluate_group(self, evaluator: GroupEvaluator, now: float) -> None:
        recorded, alerts = evaluator.evaluate(now)
        t_ms = int(now * 1000)
        for labels, value in recorded:
            self.db.append(labels, t_ms, value)
        written: set[Labels] = set()
        for alert in alerts:
            if alert.state != "resolved":
                series = {**alert.labels, "__name__": "ALERTS", "alertstate": alert.state}
                # As Prometheus: ALERTS_FOR_STATE lets a restart restore how long it was active.
                state = {**alert.labels, "__name__": "ALERTS_FOR_STATE"}
                for mapping, value in ((series, 1.0), (state, alert.active_at)):
                    key = tuple(sorted(mapping.items()))
                    self.db.append(key, t_ms, value)
                    written.add(key)
        for gone in self._alert_series.get(id(evaluator), set()) - written:
            self.db.append(gone, t_ms, STALE_NAN)
        self._alert_series[id(evaluator)] = written
        self.db.commit()
        interval = evaluator.group.interval_s or self.config.evaluation_interval
        self.receive_alerts([self._to_am(a, now, interval) for a in alerts if a.state != "pending"])

    def _to_am(self, alert: ActiveAlert, now: float, interval: float) -> AmAlert:
        ends = alert.resolved_at if alert.state == "resolved" else now + 4 * max(interval, 60.0)
        return AmAlert(
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=alert.fired_at or alert.active_at,
            ends_at=ends,
            generator_url=f"{self.config.external_url}/graph",
        )

    def receive_alerts(self, alerts: list[AmAlert]) -> None:
        if alerts:
            self.dispatcher.put(alerts, time.time())
            self._wake_dispatch.set()

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_dispatch.wait(), 0.25)
            self._wake_dispatch.clear()
            for notification in self.dispatcher.tick(time.time()):
                self.delivery.submit(notification)
                state = self.dispatcher.group_state(notification.group_key)
                if state is not None:
                    self.history.save_nflog(notification.group_key, state)
            for key in self.dispatcher.drain_dropped_groups():
                self.history.save_nflog(key, None)
            self._save_acks()
            self._record(self.dispatcher.drain_events())
            self._m_alerts.set(len(self.dispatcher.alerts))

    def _save_acks(self) -> None:
        if self.dispatcher.acks != self._saved_acks:
            self.history.save_acks(self.dispatcher.acks)
            self._saved_acks = dict(self.dispatcher.acks)

    async def _sync_wal(self) -> None:
        # commit() fsyncs the head log at most every second; this covers the last commit too
        self.db.sync()

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(3600)
            now_ms = int(time.time() * 1000)
            self.db.enforce_retention(now_ms)
            after = self.config.downsample_after
            if after is not None:
                resolution = int(self.config.downsample_resolution * 1000)
                self.db.downsample(now_ms - int(after * 1000), resolution)

    def _on_delivery(self, notification: Notification, integration: str, error: str | None) -> None:
        self._m_notify.labels(notification.receiver, "error" if error else "ok").inc()
        event: dict[str, Any] = {
            "time": time.time(),
            "event": "delivery_failed" if error else "delivered",
            "fingerprint": ",".join(notification.fingerprints),
            "labels": {},
            "receiver": notification.receiver,
            "integration": integration,
            "error": error,
        }
        self._record([event])

    def _record(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.history.record(events)
            if self.logship is not None:
                self.logship.add(events)

    # -- collectors ------------------------------------------------------------------------------
    def _store(self, samples: list[tuple[Labels, float]]) -> None:
        t_ms = int(time.time() * 1000)
        for labels, value in samples:
            self.db.append(labels, t_ms, value)
        self._m_samples.inc(len(samples))
        self.db.commit()

    async def _run_probe(self, cfg: Any) -> None:
        samples = await probe(cfg, self.client)
        self._store(samples)
        values = {dict(lb)["__name__"]: v for lb, v in samples}
        self._probes[cfg.name] = {
            "name": cfg.name,
            "kind": cfg.kind,
            "target": label_url(cfg.target),
            "success": bool(values.get("probe_success")),
            "duration": values.get("probe_duration_seconds"),
            "at": time.time(),
        }

    async def _run_database(self, cfg: Any) -> None:
        samples, reason = await check_database(cfg)
        self._store(samples)
        before = self._probes.get(f"db:{cfg.name}", {}).get("error")
        if reason and reason != before:
            log.warning("database check %s failed: %s", cfg.name, reason)
        elif before and not reason:
            log.info("database check %s is up again", cfg.name)
        values = {dict(lb)["__name__"]: v for lb, v in samples}
        self._probes[f"db:{cfg.name}"] = {
            "name": cfg.name,
            "kind": cfg.kind,
            "target": cfg.address,
            "success": not reason,
            "duration": values.get("db_query_seconds"),
            "error": reason or None,
            "at": time.time(),
        }

    def _gpu_status(self) -> str:
        if not self.config.host.gpu:
            return "off"
        return self._xid.status if self._xid is not None else gpu_status()

    def _gpu_samples(self) -> list[tuple[Labels, float]]:
        """Gauges and Xid counters (runs in a thread: NVML calls block)."""
        if self._xid is None:
            self._xid = XidWatcher()
            log.info("GPU: %s", self._xid.start())
        self._xid.poll()
        return gpu_samples() + self._xid.samples()

    async def _collect_host(self) -> None:
        samples = await asyncio.to_thread(host_samples, self.config.host)
        if self.config.host.gpu:
            samples += await asyncio.to_thread(self._gpu_samples)
        self._store(samples)

    # -- operations used by the API and CLI ---------------------------------------------------------
    def push_samples(self, samples: list[Sample]) -> tuple[int, int]:
        now_ms = int(time.time() * 1000)
        accepted = 0
        for labels, value, stamp in samples:
            accepted += self.db.append(
                labels, stamp if stamp is not None else now_ms, value, now_ms
            )
        self.db.commit()
        return accepted, len(samples) - accepted

    def add_silence(self, silence: Silence) -> None:
        self.dispatcher.add_silence(silence)
        self.history.save_silence(silence)
        self._wake_dispatch.set()

    def expire_silence(self, silence_id: str) -> bool:
        done = self.dispatcher.expire_silence(silence_id, time.time())
        if done:
            self.history.save_silence(self.dispatcher.silences[silence_id])
            self._wake_dispatch.set()
        return done

    def acknowledge(self, fps: list[str], *, by: str, comment: str) -> list[str]:
        done = self.dispatcher.acknowledge(fps, by=by, comment=comment, now=time.time())
        self._save_acks()
        self._record(self.dispatcher.drain_events())
        return done

    def targets_view(self) -> list[dict[str, object]]:
        return [t.as_dict() for t in self.targets]

    def probe_view(self) -> list[dict[str, Any]]:
        return list(self._probes.values())

    def rule_alerts(self) -> list[dict[str, object]]:
        return [a.as_dict() for g in self.evaluators for a in g.alerts() if a.state != "resolved"]

    def delivery_status(self) -> dict[str, Any]:
        return {
            "pending": self.delivery.status(),
            "delivered": self.delivery.delivered,
            "failures": self.delivery.failures,
        }

    def metrics_response(self) -> Response:
        return metrics_response(self.registry)
