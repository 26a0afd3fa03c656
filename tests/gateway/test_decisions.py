"""Pure decisions: health thresholds, outlier ejection, panic, slow start, limits, cache, keys."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from gyroscope.gateway import (
    ClientLimiter,
    Endpoint,
    GatewayConfig,
    HealthThresholds,
    KeySpec,
    OutlierDetector,
    ResponseCache,
    RetryBudget,
    TokenBucket,
    available,
    usage_tokens,
)
from gyroscope.gateway._cache import request_cacheable, response_ttl
from gyroscope.gateway._compress import choose_encoding, compressible, make_compressor
from gyroscope.gateway._health import slow_start_weight
from gyroscope.gateway._stats import BUCKETS, ExchangeStats


def eps(n: int) -> list[Endpoint]:
    return [Endpoint(f"r{i}", "127.0.0.1", 9000 + i) for i in range(n)]


def test_health_needs_fall_failures_to_go_down_and_rise_passes_to_come_back():
    h = HealthThresholds(rise=2, fall=3)
    assert [h.observe(False) for _ in range(3)] == [False, False, True]
    assert not h.healthy
    assert h.observe(True) is False
    assert h.observe(False) is False  # a failure resets the rise streak
    assert [h.observe(True), h.observe(True)] == [False, True]
    assert h.healthy


def test_outlier_ejects_after_consecutive_gateway_errors_and_backs_off():
    all_eps = eps(4)
    ep = all_eps[0]
    det = OutlierDetector(consecutive_gateway_errors=3, base_ejection_time=10, max_ejection_time=25)
    assert not det.record(ep, 502, True, 0.0, all_eps)
    assert not det.record(ep, 502, True, 0.0, all_eps)
    assert det.record(ep, 502, True, 0.0, all_eps)
    assert ep.ejected(5.0) and not ep.ejected(10.5)
    for _ in range(3):
        det.record(ep, 503, False, 11.0, all_eps)
    assert ep.ejected_until == pytest.approx(31.0)  # second ejection lasts twice as long
    for _ in range(3):
        det.record(ep, 503, False, 40.0, all_eps)
    assert ep.ejected_until == pytest.approx(65.0)  # capped at max_ejection_time


def test_a_success_resets_the_consecutive_count():
    all_eps = eps(2)
    det = OutlierDetector(consecutive_5xx=3, consecutive_gateway_errors=0)
    for status in (500, 500, 200, 500, 500):
        assert not det.record(all_eps[0], status, False, 0.0, all_eps)


def test_max_ejection_percent_caps_ejections():
    all_eps = eps(4)
    det = OutlierDetector(consecutive_gateway_errors=1, max_ejection_percent=50)
    ejected = [det.record(ep, 502, True, 0.0, all_eps) for ep in all_eps]
    assert ejected == [True, True, False, False]


def test_success_rate_ejection():
    all_eps = eps(3)
    det = OutlierDetector(
        consecutive_5xx=0,
        consecutive_gateway_errors=0,
        success_rate_min_requests=10,
        success_rate_threshold=0.8,
    )
    for i in range(20):
        det.record(all_eps[0], 500 if i % 2 else 200, False, 0.0, all_eps)
        det.record(all_eps[1], 200, False, 0.0, all_eps)
    assert det.sweep(1.0, all_eps) == [all_eps[0]]
    assert det.sweep(2.0, all_eps) == []  # counts start again each interval


def test_available_excludes_down_ejected_draining_until_panic():
    all_eps = eps(4)
    all_eps[0].healthy = False
    all_eps[1].ejected_until = 100.0
    assert [ep.name for ep in available(all_eps, 0.0, 50)] == ["r2", "r3"]
    all_eps[2].draining = True
    # one of three serving replicas usable (< 50 %): panic, use every non-draining one
    assert [ep.name for ep in available(all_eps, 0.0, 50)] == ["r0", "r1", "r3"]
    assert [ep.name for ep in available(all_eps, 0.0, 0)] == ["r3"]


def test_slow_start_ramps_weight():
    ep = Endpoint("r", "h", 1, weight=10)
    ep.recovered_at = 100.0
    assert slow_start_weight(ep, 100.0, 10.0) == pytest.approx(1.0)  # the floor, 10 %
    assert slow_start_weight(ep, 105.0, 10.0) == pytest.approx(5.0)
    assert slow_start_weight(ep, 111.0, 10.0) == 10.0
    assert slow_start_weight(ep, 100.0, 0.0) == 10.0


def test_token_bucket_refills_over_time():
    b = TokenBucket(rate=2.0, capacity=2.0, now=0.0)
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert b.wait_time(0.0) == pytest.approx(0.5)
    assert b.take(0.5) and not b.take(0.5)


def test_client_limiter_is_per_client():
    lim = ClientLimiter(requests_per_second=1, burst=2, tokens_per_minute=None)
    assert [lim.admit("a", 0.0).allowed for _ in range(3)] == [True, True, False]
    assert lim.admit("b", 0.0).allowed
    verdict = lim.admit("a", 0.0)
    assert verdict.reason == "requests_per_second" and verdict.retry_after > 0


def test_tokens_per_minute_are_charged_from_usage():
    lim = ClientLimiter(requests_per_second=None, burst=None, tokens_per_minute=600)
    assert lim.admit("a", 0.0).allowed
    lim.charge_tokens("a", 650, 0.0)  # overdrawn by 50 tokens: refused until refilled
    verdict = lim.admit("a", 0.0)
    assert not verdict.allowed and verdict.reason == "tokens_per_minute"
    assert verdict.retry_after == pytest.approx(51 / 10)
    assert lim.admit("a", 6.0).allowed  # 10 tokens/s refill


def test_client_limiter_forgets_old_clients():
    lim = ClientLimiter(requests_per_second=1, burst=1, tokens_per_minute=None, max_clients=2)
    for key in ("a", "b", "c"):
        lim.admit(key, 0.0)
    assert lim.admit("a", 0.0).allowed  # "a" was dropped, so it starts with a full bucket


def test_retry_budget():
    budget = RetryBudget(ratio=0.2, min_retries=2)
    assert budget.allow(0)
    budget.retrying = 2
    assert not budget.allow(5)
    assert budget.allow(20)  # 20 % of 20 = 4


def test_usage_tokens_from_sse_and_json():
    sse = (
        b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16}}'
        b"\n\ndata: [DONE]\n\n"
    )
    assert usage_tokens(sse) == 16
    assert (
        usage_tokens(json.dumps({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}).encode())
        == 3
    )
    assert usage_tokens(b"no usage here") == 0


def test_cache_honours_ttl_lru_and_size():
    cache = ResponseCache(max_bytes=10, max_entry_bytes=6)
    assert cache.put(b"/a", 200, [], b"aaaa", ttl=5, now=0.0)
    assert not cache.put(b"/big", 200, [], b"x" * 7, ttl=5, now=0.0)
    cache.put(b"/b", 200, [], b"bbbb", ttl=5, now=0.0)
    cache.get(b"/a", now=1.0)  # /a is now the most recently used
    cache.put(b"/c", 200, [], b"cccc", ttl=5, now=1.0)
    assert cache.get(b"/b", 1.0) is None and cache.get(b"/a", 1.0) is not None
    assert cache.size <= 10
    assert cache.get(b"/a", 5.5) is None  # expired


def test_cache_control_rules():
    assert request_cacheable(b"GET", [])
    assert not request_cacheable(b"POST", [])
    assert not request_cacheable(b"GET", [(b"authorization", b"Bearer x")])
    assert not request_cacheable(b"GET", [(b"cache-control", b"no-cache")])
    cc = b"cache-control"
    assert response_ttl(200, [(cc, b"public, max-age=60")], 0) == 60
    assert response_ttl(200, [(cc, b"max-age=60, s-maxage=5")], 0) == 5
    assert response_ttl(200, [(cc, b"private, max-age=60")], 0) == 0
    assert response_ttl(200, [(cc, b"no-store")], 30) == 0
    assert response_ttl(200, [], 30) == 30
    assert response_ttl(200, [(b"set-cookie", b"a=b")], 30) == 0
    assert response_ttl(200, [(b"content-type", b"text/event-stream")], 30) == 0
    assert response_ttl(500, [(cc, b"max-age=60")], 0) == 0


def test_compression_negotiation_and_round_trip():
    offered = ["zstd", "br", "gzip"]
    assert choose_encoding(b"gzip, deflate", offered) == "gzip"
    assert choose_encoding(b"gzip;q=0, identity", offered) is None
    assert choose_encoding(b"zstd, gzip", offered) == "zstd"
    assert choose_encoding(b"*", offered) == "zstd"
    assert compressible(b"application/json") and not compressible(b"text/event-stream")
    assert not compressible(b"image/png")
    data = b'{"text": "' + b"hello " * 500 + b'"}'
    gz = make_compressor("gzip", 5)
    assert gzip.decompress(gz.compress(data) + gz.finish()) == data
    import brotli

    br = make_compressor("br", 3)
    assert brotli.decompress(br.compress(data) + br.finish()) == data
    zs = make_compressor("zstd", 3)
    blob = zs.compress(data) + zs.finish()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == data


def test_keys_from_each_source():
    headers = [(b"x-session", b"s1"), (b"cookie", b"a=1; sid=abc")]
    body = json.dumps({"user": "alice", "messages": [{"role": "system", "content": "long prompt"}]})
    raw = body.encode()

    def k(spec: KeySpec, data: bytes = raw) -> int | None:
        return spec.key(headers, b"/p", "10.0.0.1", data)

    assert k(KeySpec("header", name="X-Session")) == k(KeySpec("header", name="x-session"))
    assert k(KeySpec("header", name="missing")) is None
    assert k(KeySpec("cookie", name="sid")) is not None
    assert k(KeySpec("cookie", name="nope")) is None
    assert k(KeySpec("json", field="user")) != k(KeySpec("json", field="messages"))
    assert k(KeySpec("json", field="user"), b"not json") is None
    same_prefix = json.dumps({"messages": [{"role": "system", "content": "long prompt and more"}]})
    spec = KeySpec("prompt_prefix", length=11)
    assert k(spec) == k(spec, same_prefix.encode())
    assert k(KeySpec("client_ip")) != KeySpec("client_ip").key([], b"/", "10.0.0.2", b"")


def test_config_rejects_bad_combinations():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs 'hash'"):
        GatewayConfig.model_validate({"routes": [{"policy": "maglev"}]})
    with pytest.raises(ValidationError, match="admin_token"):
        GatewayConfig.model_validate({"admin": "0.0.0.0:8081"})
    with pytest.raises(ValidationError, match="unique"):
        GatewayConfig.model_validate({"backends": [{"name": "a", "address": "127.0.0.1:1"}] * 2})


def test_build_services_gives_one_gateway_service(tmp_path):
    from gyroscope.gateway import Gateway, build_services

    cfg = GatewayConfig.model_validate(
        {"name": "edge", "backends": [{"name": "a", "address": "127.0.0.1:8001"}]}
    )
    (spec,) = build_services(cfg, tmp_path)
    assert spec.name == "edge" and spec.config == cfg
    service = spec.factory()
    assert isinstance(service, Gateway) and service.health().status == "ok"


def test_build_services_refuses_workers_inside_the_daemon(tmp_path):
    from gyroscope.errors import ConfigError
    from gyroscope.gateway import build_services

    with pytest.raises(ConfigError, match="gyro gateway serve"):
        build_services(GatewayConfig(workers=2), tmp_path)


def test_latency_lands_in_the_first_bucket_whose_bound_is_not_below_it():
    """Prometheus buckets count observations <= le: a bound itself belongs to its own bucket."""
    stats = ExchangeStats()
    samples = [0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.7, 60.0, 61.0, 1e9]
    for seconds in samples:
        stats.observe(200, seconds)
    by_bound = dict(zip((*BUCKETS, "+Inf"), stats.buckets, strict=True))
    assert by_bound[0.001] == 3  # 0, 0.4 ms and exactly 1 ms
    assert by_bound[0.0025] == 2  # just over 1 ms, and exactly 2.5 ms
    assert by_bound[1.0] == 1 and by_bound[60.0] == 1
    assert by_bound["+Inf"] == 2
    assert sum(stats.buckets) == len(samples) and stats.codes[2] == len(samples)
    assert stats.total_seconds == pytest.approx(sum(samples))
