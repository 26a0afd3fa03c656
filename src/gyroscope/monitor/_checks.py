"""Checks that produce samples: HTTP/TCP/DNS probes, host and process metrics, GPUs, databases.

Every check returns ``[(labels, value), ...]`` and never raises for a failing target: failure is a
sample (``probe_success 0``, ``db_up 0``), so alert rules can see it.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from typing import Any

import httpx
import psutil

from gyroscope.monitor._config import HostConfig, ProbeConfig
from gyroscope.monitor._dbchecks import check_database, database_samples
from gyroscope.monitor._exposition import Labels
from gyroscope.monitor._gpu import gpu_samples, gpu_status
from gyroscope.monitor._redact import label_url

__all__ = [
    "check_database",
    "database_samples",
    "gpu_samples",
    "gpu_status",
    "host_samples",
    "probe",
]

Samples = list[tuple[Labels, float]]


def _labels(name: str, **labels: str) -> Labels:
    return tuple(sorted({"__name__": name, **labels}.items()))


def _json_path(doc: Any, path: str) -> Any:
    for part in path.strip(".").split("."):
        if isinstance(doc, list) and part.isdigit():
            doc = doc[int(part)] if int(part) < len(doc) else None
        elif isinstance(doc, dict):
            doc = doc.get(part)
        else:
            return None
    return doc


async def _http(cfg: ProbeConfig, client: httpx.AsyncClient, base: dict[str, str]) -> Samples:
    out: Samples = []
    ok = True
    own: httpx.AsyncClient | None = None
    if cfg.ca_file or cfg.insecure_skip_verify:
        verify: ssl.SSLContext | bool = False
        if cfg.ca_file and not cfg.insecure_skip_verify:
            verify = ssl.create_default_context(cafile=cfg.ca_file)
        client = own = httpx.AsyncClient(verify=verify)
    try:
        response = await client.request(cfg.method, cfg.target, timeout=cfg.timeout)
        out.append((_labels("probe_http_status_code", **base), float(response.status_code)))
        ok = response.status_code in cfg.expect_status
        if ok and cfg.body_regex is not None:
            ok = re.search(cfg.body_regex, response.text) is not None
        if ok and cfg.json_path is not None:
            try:
                found = _json_path(response.json(), cfg.json_path)
            except json.JSONDecodeError:
                found = None
            ok = found is not None if cfg.json_value is None else found == cfg.json_value
        expiry = _tls_expiry(response)
        if expiry is not None:
            out.append((_labels("probe_ssl_earliest_cert_expiry", **base), expiry))
    except (httpx.HTTPError, OSError, ssl.SSLError):
        ok = False
    finally:
        if own is not None:
            await own.aclose()
    out.append((_labels("probe_success", **base), 1.0 if ok else 0.0))
    return out


def _tls_expiry(response: httpx.Response) -> float | None:
    """The server certificate's notAfter (Unix seconds), also when verification is off."""
    stream = response.extensions.get("network_stream")
    sslobj = stream.get_extra_info("ssl_object") if stream is not None else None
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


async def _tcp(cfg: ProbeConfig) -> bool:
    host, _, port = cfg.target.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), cfg.timeout
        )
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


async def _dns(cfg: ProbeConfig) -> bool:
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(loop.getaddrinfo(cfg.target, None), cfg.timeout)
    except (OSError, TimeoutError):
        return False
    return bool(found)


async def probe(cfg: ProbeConfig, client: httpx.AsyncClient) -> Samples:
    """Run one probe; ``probe_success``, ``probe_duration_seconds`` and kind-specific samples."""
    base = {"job": cfg.name, "instance": label_url(cfg.target), **cfg.labels}
    started = time.perf_counter()
    if cfg.kind == "http":
        out = await _http(cfg, client, base)
    else:
        ok = await (_tcp(cfg) if cfg.kind == "tcp" else _dns(cfg))
        out = [(_labels("probe_success", **base), 1.0 if ok else 0.0)]
    out.append((_labels("probe_duration_seconds", **base), time.perf_counter() - started))
    return out


def host_samples(cfg: HostConfig, instance: str = "localhost") -> Samples:
    """CPU, memory, disk, network, load and the named processes, as node-exporter-like series."""
    base = {"job": "host", "instance": instance}
    out: Samples = [(_labels("node_cpu_percent", **base), psutil.cpu_percent(None))]
    mem = psutil.virtual_memory()
    out += [
        (_labels("node_memory_total_bytes", **base), float(mem.total)),
        (_labels("node_memory_available_bytes", **base), float(mem.available)),
    ]
    for i, value in enumerate(psutil.getloadavg()):
        out.append((_labels(f"node_load{(1, 5, 15)[i]}", **base), value))
    disk = psutil.disk_usage("/")
    out += [
        (_labels("node_filesystem_size_bytes", mountpoint="/", **base), float(disk.total)),
        (_labels("node_filesystem_avail_bytes", mountpoint="/", **base), float(disk.free)),
    ]
    for nic, io in psutil.net_io_counters(pernic=True).items():
        out.append(
            (_labels("node_network_receive_bytes_total", device=nic, **base), float(io.bytes_recv))
        )
        out.append(
            (_labels("node_network_transmit_bytes_total", device=nic, **base), float(io.bytes_sent))
        )
    if cfg.processes:
        out += _process_samples(cfg.processes, base)
    return out


def _process_samples(names: list[str], base: dict[str, str]) -> Samples:
    out: Samples = []
    for proc in psutil.process_iter(["name", "cpu_times", "memory_info"]):
        name = proc.info["name"] or ""
        if name not in names or proc.info["memory_info"] is None:
            continue
        labels = {**base, "process": name, "pid": str(proc.pid)}
        times = proc.info["cpu_times"]
        out.append((_labels("process_cpu_seconds_total", **labels), times.user + times.system))
        out.append(
            (
                _labels("process_resident_memory_bytes", **labels),
                float(proc.info["memory_info"].rss),
            )
        )
    return out
