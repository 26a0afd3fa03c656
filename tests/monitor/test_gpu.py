"""GPU Xid errors: the mapping from NVML events to ``gpu_xid_errors_total{gpu,xid}``.

This machine has no GPU, so the NVML side is a small fake module object injected into
``XidWatcher`` (the one place in the suite where a fake stands in for a real engine: NVML cannot
run without NVIDIA hardware and driver). It mimics pynvml's names and behaviour: ``NVMLError``
with ``.value``, ``nvmlEventSetWait`` raising NVML_ERROR_TIMEOUT when the queue is empty, event
data with ``device``, ``eventType`` and ``eventData`` (the Xid). The real library without a GPU is
tested as it is: it must degrade to "no GPU: ...".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from gyroscope.monitor._gpu import XidWatcher, gpu_samples, gpu_status

XID_CRITICAL = 0x8
CLOCK_EVENT = 0x10
TIMEOUT, NOT_SUPPORTED, GPU_IS_LOST = 10, 3, 15


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class Event:
    device: Any
    eventType: int
    eventData: int


@dataclass
class FakeNvml:  # attribute and method names are pynvml's
    devices: int = 2
    unsupported: set[int] = field(default_factory=set)
    init_error: int | None = None
    queue: list[Event | NVMLError] = field(default_factory=list)
    registered: dict[int, int] = field(default_factory=dict)
    freed: bool = False
    endless: bool = False

    NVMLError = NVMLError
    NVML_ERROR_TIMEOUT = TIMEOUT
    nvmlEventTypeXidCriticalError = XID_CRITICAL

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlDeviceGetCount(self) -> int:
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return ("handle", index)

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        if handle == "gone":
            raise NVMLError(GPU_IS_LOST)
        return int(handle[1])

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceRegisterEvents(self, handle: Any, types: int, event_set: str) -> None:
        assert event_set == "set"
        if handle[1] in self.unsupported:
            raise NVMLError(NOT_SUPPORTED)
        self.registered[handle[1]] = types

    def nvmlEventSetWait(self, event_set: str, timeout_ms: int) -> Event:
        assert timeout_ms == 0, "a poll must never block"
        if self.endless:
            return Event(("handle", 0), XID_CRITICAL, 31)
        if not self.queue:
            raise NVMLError(TIMEOUT)
        item = self.queue.pop(0)
        if isinstance(item, NVMLError):
            raise item
        return item

    def nvmlEventSetFree(self, event_set: str) -> None:
        self.freed = True


def _series(watcher: XidWatcher) -> dict[tuple[str, ...], float]:
    out = {}
    for labels, value in watcher.samples():
        d = dict(labels)
        assert d["job"] == "gpu" and d["instance"] == "node1"
        out[(d["__name__"], d["gpu"], d.get("xid", ""))] = value
    return out


def test_xid_events_are_counted_per_gpu_and_code() -> None:
    nvml = FakeNvml(devices=3)
    watcher = XidWatcher(nvml, instance="node1")
    assert watcher.start() == "watching Xid errors on 3 GPU(s)"
    assert nvml.registered == {0: XID_CRITICAL, 1: XID_CRITICAL, 2: XID_CRITICAL}
    assert watcher.poll() == 0
    # before any error every GPU has a zero total, so increase() sees the first one
    assert _series(watcher) == {
        ("gpu_xid_events_total", "0", ""): 0.0,
        ("gpu_xid_events_total", "1", ""): 0.0,
        ("gpu_xid_events_total", "2", ""): 0.0,
    }
    nvml.queue += [
        Event(("handle", 0), XID_CRITICAL, 79),
        Event(("handle", 1), XID_CRITICAL, 48),
        Event(("handle", 0), CLOCK_EVENT, 0),  # not an Xid: ignored
        Event(("handle", 0), XID_CRITICAL, 79),
    ]
    assert watcher.poll() == 3
    nvml.queue.append(Event(("handle", 1), XID_CRITICAL, 13))
    assert watcher.poll() == 1
    assert _series(watcher) == {
        ("gpu_xid_errors_total", "0", "79"): 2.0,
        ("gpu_xid_errors_total", "1", "13"): 1.0,
        ("gpu_xid_errors_total", "1", "48"): 1.0,
        ("gpu_xid_events_total", "0", ""): 2.0,
        ("gpu_xid_events_total", "1", ""): 2.0,
        ("gpu_xid_events_total", "2", ""): 0.0,
    }
    watcher.close()
    assert nvml.freed and watcher.poll() == 0


def test_gpu_without_xid_support_is_skipped_and_said() -> None:
    watcher = XidWatcher(FakeNvml(devices=2, unsupported={1}), instance="node1")
    status = watcher.start()
    assert status.startswith("watching Xid errors on 1 GPU(s); not supported on GPU 1:")
    assert watcher.watched == [0]


def test_driver_missing_degrades_to_no_gpu() -> None:
    watcher = XidWatcher(FakeNvml(init_error=9), instance="node1")  # DRIVER_NOT_LOADED
    assert watcher.start() == "no GPU: NVML error 9"
    assert watcher.poll() == 0 and watcher.samples() == []
    assert gpu_status(FakeNvml(devices=0)) == "no GPU: NVML found no devices"
    assert gpu_samples(nvml=FakeNvml(init_error=9)) == []


def test_a_lost_gpu_is_counted_and_errors_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml(devices=1)
    watcher = XidWatcher(nvml, instance="node1")
    watcher.start()
    nvml.queue += [Event("gone", XID_CRITICAL, 79), NVMLError(GPU_IS_LOST)]
    with caplog.at_level(logging.WARNING, logger="gyroscope.monitor._gpu"):
        assert watcher.poll() == 1  # the wait failure stops this poll, not the monitor
    assert "NVML event wait failed" in caplog.text and "Xid 79" in caplog.text
    assert _series(watcher)[("gpu_xid_errors_total", "-1", "79")] == 1.0


def test_one_poll_is_bounded() -> None:
    watcher = XidWatcher(FakeNvml(devices=1, endless=True), instance="node1", max_events=50)
    watcher.start()
    assert watcher.poll() == 50


def test_real_nvml_without_a_gpu_says_why() -> None:
    """The installed nvidia-ml-py (or its absence) on this GPU-less machine: no fake here."""
    watcher = XidWatcher(instance="node1")
    assert watcher.start().startswith("no GPU: ")
    assert watcher.poll() == 0 and watcher.samples() == []
    watcher.close()
    assert gpu_status().startswith("no GPU: ") and gpu_samples() == []
