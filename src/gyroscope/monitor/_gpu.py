"""GPUs through NVML (nvidia-ml-py, the ``gyroscope[gpu]`` extra): gauges, ECC and Xid errors.

Without a GPU, a driver or the library every function degrades to ``no GPU: <why>`` and no
samples; nothing raises. Xid errors (the driver's numbered fault reports: 48 double-bit ECC, 79
fallen off the bus, ...) arrive as NVML events; ``XidWatcher`` registers every GPU for
``nvmlEventTypeXidCriticalError`` and drains the queue without waiting (timeout 0) on each poll,
counting ``gpu_xid_errors_total{gpu,xid}`` and ``gpu_xid_events_total{gpu}`` (the latter starts at
0 for every watched GPU, so ``increase()`` sees the first error). Counters start at monitor start.

>>> watcher = XidWatcher()
>>> watcher.start().startswith("no GPU")   # this machine has none
True
>>> watcher.poll(), watcher.samples()
(0, [])
"""

from __future__ import annotations

import logging
from typing import Any

from gyroscope.monitor._exposition import Labels

__all__ = ["XidWatcher", "gpu_samples", "gpu_status"]

log = logging.getLogger(__name__)

Samples = list[tuple[Labels, float]]


def _labels(name: str, **labels: str) -> Labels:
    return tuple(sorted({"__name__": name, **labels}.items()))


def _load(nvml: Any | None) -> tuple[Any | None, str]:
    """The NVML module, initialised, and ``"N GPU(s)"``; or None and ``"no GPU: why"``."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return None, "no GPU: nvidia-ml-py is not installed"
        nvml = pynvml
    try:
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"no GPU: {exc}"
    if not count:
        return None, "no GPU: NVML found no devices"
    return nvml, f"{count} GPU(s)"


def gpu_status(nvml: Any | None = None) -> str:
    """``"N GPU(s)"`` or why there are none (``no GPU: ...``); never raises."""
    return _load(nvml)[1]


def gpu_samples(instance: str = "localhost", nvml: Any | None = None) -> Samples:
    """Utilisation, memory, temperature, power and ECC errors per GPU; [] when there is no GPU."""
    lib, _ = _load(nvml)
    if lib is None:
        return []
    out: Samples = []
    for index in range(lib.nvmlDeviceGetCount()):
        handle = lib.nvmlDeviceGetHandleByIndex(index)
        base = {"job": "gpu", "instance": instance, "gpu": str(index)}
        util = lib.nvmlDeviceGetUtilizationRates(handle)
        mem = lib.nvmlDeviceGetMemoryInfo(handle)
        out += [
            (_labels("gpu_utilization_percent", **base), float(util.gpu)),
            (_labels("gpu_memory_used_bytes", **base), float(mem.used)),
            (_labels("gpu_memory_total_bytes", **base), float(mem.total)),
            (
                _labels("gpu_temperature_celsius", **base),
                float(lib.nvmlDeviceGetTemperature(handle, 0)),
            ),
            (_labels("gpu_power_watts", **base), lib.nvmlDeviceGetPowerUsage(handle) / 1000.0),
        ]
        try:
            ecc = lib.nvmlDeviceGetTotalEccErrors(handle, 1, 1)  # uncorrected, aggregate
            out.append((_labels("gpu_ecc_uncorrected_errors_total", **base), float(ecc)))
        except Exception:  # noqa: S110 - ECC is not supported on every board
            pass
    return out


class XidWatcher:
    """Count Xid critical errors per GPU and Xid code from NVML events.

    ``nvml`` is the pynvml module (injectable for tests); ``max_events`` bounds one poll.

    >>> w = XidWatcher(instance="node1")
    >>> w.start()[:6]
    'no GPU'
    """

    def __init__(
        self, nvml: Any | None = None, *, instance: str = "localhost", max_events: int = 10_000
    ) -> None:
        self._given = nvml
        self._nvml: Any | None = None
        self._set: Any | None = None
        self.instance = instance
        self.max_events = max_events
        self.status = "not started"
        self.watched: list[int] = []
        self.errors: dict[tuple[int, int], int] = {}

    def start(self) -> str:
        """Register every GPU that supports Xid events; returns (and keeps) a status line."""
        lib, status = _load(self._given)
        if lib is None:
            self.status = status
            return status
        try:
            self._set = lib.nvmlEventSetCreate()
        except Exception as exc:
            self.status = f"Xid events unavailable: {exc}"
            return self.status
        skipped = []
        for index in range(int(lib.nvmlDeviceGetCount())):
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                lib.nvmlDeviceRegisterEvents(handle, lib.nvmlEventTypeXidCriticalError, self._set)
                self.watched.append(index)
            except Exception as exc:  # NotSupported on some boards (e.g. older GeForce)
                skipped.append(f"GPU {index}: {exc}")
        self._nvml = lib
        self.status = f"watching Xid errors on {len(self.watched)} GPU(s)"
        if skipped:
            self.status += "; not supported on " + ", ".join(skipped)
        return self.status

    def poll(self) -> int:
        """Drain pending events without waiting; returns how many Xid errors were new."""
        lib = self._nvml
        if lib is None or self._set is None:
            return 0
        new = 0
        for _ in range(self.max_events):
            try:
                event = lib.nvmlEventSetWait(self._set, 0)
            except Exception as exc:  # NVMLError; TIMEOUT means the queue is empty
                if getattr(exc, "value", None) != lib.NVML_ERROR_TIMEOUT:
                    log.warning("NVML event wait failed: %s", exc)  # e.g. GPU lost; try next poll
                break
            if not int(event.eventType) & lib.nvmlEventTypeXidCriticalError:
                continue
            try:
                gpu = int(lib.nvmlDeviceGetIndex(event.device))
            except Exception:
                gpu = -1  # the device vanished (Xid 79 does that); still count the error
            key = (gpu, int(event.eventData))
            self.errors[key] = self.errors.get(key, 0) + 1
            log.error("GPU %s reported Xid %s", gpu, key[1])
            new += 1
        return new

    def samples(self) -> Samples:
        base = {"job": "gpu", "instance": self.instance}
        out: Samples = []
        totals = dict.fromkeys(self.watched, 0)
        for (gpu, xid), count in sorted(self.errors.items()):
            totals[gpu] = totals.get(gpu, 0) + count
            labels = _labels("gpu_xid_errors_total", gpu=str(gpu), xid=str(xid), **base)
            out.append((labels, float(count)))
        for gpu, count in sorted(totals.items()):
            out.append((_labels("gpu_xid_events_total", gpu=str(gpu), **base), float(count)))
        return out

    def close(self) -> None:
        if self._nvml is not None and self._set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._set)
            except Exception as exc:
                log.debug("freeing the NVML event set failed: %s", exc)
        self._set = None
        self._nvml = None
