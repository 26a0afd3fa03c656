"""``gyro bench``: load, LLM, stress and A/B tests; a thin layer over ``gyroscope.bench``."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console

from gyroscope.bench import (
    LlmConfig,
    LoadConfig,
    Result,
    check_thresholds,
    compare,
    concat,
    render_html,
    render_stress_html,
    run_llm,
    run_load,
    run_stress,
    stress_levels,
    write_html,
)
from gyroscope.bench._report import Progress, result_table
from gyroscope.bench._runner import stop_on_signals
from gyroscope.core import format_validation_error
from gyroscope.core import run as run_loop
from gyroscope.errors import BenchError, BenchRunError

_err = Console(stderr=True)
_out = Console()
INTERRUPTED_EXIT = 130


def _config(cls: Any, **values: Any) -> Any:
    try:
        return cls(**{k: v for k, v in values.items() if v is not None and v != ()})
    except ValidationError as exc:
        raise BenchError(str(format_validation_error(exc, None))) from None


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-d", "--duration", help="How long to run (e.g. 30s, 2m)."),
        click.option("-n", "--requests", type=int, help="Stop after this many requests."),
        click.option("--warmup", help="Warm-up time excluded from the results (e.g. 5s)."),
        click.option(
            "--workers",
            type=int,
            default=1,
            show_default=True,
            help="Generator processes (one per core).",
        ),
        click.option("--timeout", help="Per-request timeout (default 30s; LLM 120s)."),
        click.option("--poisson", is_flag=True, help="Poisson arrivals instead of evenly spaced."),
        click.option("--seed", type=int, help="Seed for request order, Poisson arrivals, prompts."),
        click.option("-k", "--insecure", is_flag=True, help="Do not verify TLS certificates."),
        click.option(
            "--threshold",
            "thresholds",
            multiple=True,
            help="Fail (exit 1) unless it holds, e.g. 'p99<200ms', 'error_rate<1%'.",
        ),
        click.option(
            "-o",
            "--out",
            type=click.Path(path_type=Path, dir_okay=False),
            callback=_output_path,
            help="Write the full result (histograms included) as JSON.",
        ),
        click.option(
            "--html",
            type=click.Path(path_type=Path, dir_okay=False),
            callback=_output_path,
            help="Write a self-contained HTML report.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _output_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Check where a report goes before the run, not after it (a run's results must not be lost)."""
    if value is not None and not value.parent.is_dir():
        raise click.BadParameter(f"directory {value.parent} does not exist; create it first")
    return value


def _finish(
    result: Result, out: Path | None, html: Path | None, thresholds: tuple[str, ...], as_json: bool
) -> None:
    if out is not None:
        result.save(out)
    if html is not None:
        write_html(html, render_html(result))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "summary": result.summary(),
                    "warnings": result.data.warnings,
                    "interrupted": result.interrupted,
                },
                indent=1,
            )
        )
    else:
        _out.print(result_table(result))
    for warning in result.data.warnings:
        _err.print(f"[bold red]{warning}[/]", highlight=False)
    if result.interrupted:
        _err.print(
            "interrupted: the results above are partial" + (f"; written to {out}" if out else "")
        )
        sys.exit(INTERRUPTED_EXIT)
    if thresholds:
        check_thresholds(result, thresholds)
        _err.print(f"thresholds held: {', '.join(thresholds)}")


def _run_with_progress(
    make: Callable[..., Awaitable[Result]], seconds: float, workers: int
) -> Result:
    async def main() -> Result:
        stop = asyncio.Event()
        restore = stop_on_signals(stop)
        try:
            with Progress(_err, seconds, workers) as progress:
                return await make(progress=progress.update, stop=stop)
        finally:
            restore()

    return run_loop(main())


def _seconds(cfg: LoadConfig) -> float:
    return sum(s.duration for s in cfg.stage_list()) + cfg.warmup


@click.group()
def bench() -> None:
    """Load, stress and benchmark tests for HTTP and LLM servers.

    \b
    Examples:
      gyro bench run http://127.0.0.1:8080/ -c 50 -d 30s
      gyro bench run http://127.0.0.1:8080/ --rate 500 --poisson -d 1m --threshold 'p99<200ms'
      gyro bench llm http://127.0.0.1:8001 --concurrency 16 -d 30s --slo 'ttft<500ms'
      gyro bench stress http://127.0.0.1:8001/v1/models --start 100 --step 100 --max 5000
      gyro bench compare before.json after.json
    """


@bench.command()
@click.argument("url", required=False)
@click.option(
    "-c",
    "--connections",
    type=int,
    help="Closed model: concurrent connections (users). Open model: the connection cap.",
)
@click.option("-r", "--rate", help="Open model: requests per second (e.g. 500, 500rps).")
@click.option(
    "--stage",
    "stages",
    multiple=True,
    help="Stage DURATION:LEVEL, repeatable: 30s:100rps, 1m:100-500rps, 20s:50vu.",
)
@click.option("--think-time", help="Closed model: pause between a user's requests (e.g. 100ms).")
@click.option("-m", "--method", default="GET", show_default=True)
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("--body", help="Request body; @FILE reads it from a file.")
@click.option("--expect", type=int, multiple=True, help="Statuses that count as success.")
@click.option(
    "--scenario",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML or JSONL file of weighted requests.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CSV or JSONL rows for ${variables}.",
)
@click.option("--max-connections", type=int, help="Open model: most connections at once.")
@_common
def run(url: str | None, body: str | None, **kw: Any) -> None:
    """Load-test URL (closed model with -c, open model with --rate or rps stages).

    \b
    Examples:
      gyro bench run http://127.0.0.1:8080/ -c 50 -d 30s
      gyro bench run http://127.0.0.1:8080/ --rate 1000 --poisson -d 1m --out r.json --html r.html
      gyro bench run http://127.0.0.1:8080/ --stage 30s:100rps --stage 1m:100-500rps --warmup 5s
      gyro bench run http://127.0.0.1:8001 --scenario chat.yaml -c 20 -d 1m \\
          --threshold 'p99<500ms' --threshold 'error_rate<1%'
    """
    if not url and not kw["scenario"]:
        raise BenchError("give a URL or --scenario FILE")
    if body and body.startswith("@"):
        try:
            body = Path(body[1:]).read_text()
        except OSError as exc:
            raise BenchError(f"{body[1:]}: cannot read the body file: {exc.strerror}") from None
    out, html, thresholds, as_json = (
        kw.pop("out"),
        kw.pop("html"),
        kw.pop("thresholds"),
        kw.pop("as_json"),
    )
    cfg = _config(
        LoadConfig,
        url=url or "",
        body=body,
        headers=list(kw.pop("headers")),
        expect=list(kw.pop("expect")),
        stages=list(kw.pop("stages")),
        **kw,
    )
    for t in thresholds:  # fail on a typo before the run, not after it
        from gyroscope.bench import parse_threshold

        parse_threshold(t)
    result = _run_with_progress(lambda **k: run_load(cfg, **k), _seconds(cfg), cfg.workers)
    _finish(result, out, html, thresholds, as_json)


@bench.command()
@click.argument("url")
@click.option("--model", default="demo-model", show_default=True)
@click.option(
    "--endpoint", type=click.Choice(["chat", "completions"]), default="chat", show_default=True
)
@click.option(
    "--prompts",
    type=click.Path(path_type=Path, dir_okay=False),
    help='JSONL of {"prompt": ...} or {"messages": [...]} (optional max_tokens).',
)
@click.option("--input-tokens", type=int, help="Synthetic prompts: mean length in tokens.")
@click.option("--output-tokens", type=int, help="max_tokens asked for (mean).")
@click.option("--spread", type=float, help="Synthetic lengths vary uniformly by +- this fraction.")
@click.option("-c", "--concurrency", type=int, help="At most this many requests at once.")
@click.option("-r", "--rate", help="Arrival rate (requests/s); without it, closed model.")
@click.option(
    "--slo", multiple=True, help="Goodput SLO, repeatable: ttft<500ms, itl<50ms, tpot, e2e."
)
@click.option("--api-key", envvar="GYRO_BENCH_API_KEY", help="Bearer token (never printed).")
@_common
def llm(**kw: Any) -> None:
    """Benchmark an OpenAI-compatible LLM server with streamed requests.

    Reports time to first token, inter-token latency, time per output token, end-to-end latency,
    output tokens/s, requests/s and goodput under the SLOs.

    \b
    Examples:
      gyro bench llm http://127.0.0.1:8001 -c 16 -d 30s --slo 'ttft<500ms' --slo 'itl<50ms'
      gyro bench llm http://127.0.0.1:8001 --rate 5 --poisson -d 1m --prompts prompts.jsonl
    """
    out, html, thresholds, as_json = (
        kw.pop("out"),
        kw.pop("html"),
        kw.pop("thresholds"),
        kw.pop("as_json"),
    )
    kw["slo"] = list(kw.pop("slo"))
    cfg = _config(LlmConfig, **kw)
    seconds = (cfg.duration or 10.0) + cfg.warmup
    result = _run_with_progress(lambda **k: run_llm(cfg, **k), seconds, cfg.workers)
    _finish(result, out, html, thresholds, as_json)


@bench.command()
@click.argument("url")
@click.option(
    "--mode", type=click.Choice(["rate", "concurrency"]), default="rate", show_default=True
)
@click.option(
    "--start", type=float, default=10, show_default=True, help="First level (rps or users)."
)
@click.option("--step", type=float, default=10, show_default=True, help="Added each step.")
@click.option("--factor", type=float, default=0, help="Multiply each step instead (e.g. 2).")
@click.option("--max", "max_level", type=float, default=10000, show_default=True)
@click.option("--max-steps", type=int, default=30, show_default=True)
@click.option("--step-duration", default="5s", show_default=True)
@click.option("--slo", multiple=True, help="Stop when one breaks (default: p99<1s, error_rate<1%).")
@click.option("--llm", "llm_mode", is_flag=True, help="Stream LLM requests (URL is the server).")
@click.option("-m", "--method", default="GET", show_default=True)
@click.option("-H", "--header", "headers", multiple=True)
@click.option("--body")
@click.option("--workers", type=int, default=1, show_default=True)
@click.option("-o", "--out", type=click.Path(path_type=Path, dir_okay=False), callback=_output_path)
@click.option("--html", type=click.Path(path_type=Path, dir_okay=False), callback=_output_path)
@click.option("--json", "as_json", is_flag=True)
def stress(
    url: str,
    mode: str,
    start: float,
    step: float,
    factor: float,
    max_level: float,
    max_steps: int,
    step_duration: str,
    slo: tuple[str, ...],
    llm_mode: bool,
    method: str,
    headers: tuple[str, ...],
    body: str | None,
    workers: int,
    out: Path | None,
    html: Path | None,
    as_json: bool,
) -> None:
    """Raise the load step by step until an SLO breaks; report the knee and the maximum.

    The --out file (schema gyroscope.bench.stress/1) is what capacity planning reads.

    \b
    Examples:
      gyro bench stress http://127.0.0.1:8080/ --start 1000 --step 1000 --slo 'p99<50ms'
      gyro bench stress http://127.0.0.1:8001 --llm --mode concurrency --start 1 --factor 2 \\
          --slo 'p99<10s' --out capacity.json
    """
    from gyroscope.bench import parse_duration

    levels = stress_levels(start, step, factor, max_level, max_steps)
    base: Any = (
        _config(LlmConfig, url=url, workers=workers)
        if llm_mode
        else _config(
            LoadConfig, url=url, method=method, headers=list(headers), body=body, workers=workers
        )
    )

    async def main() -> Any:
        stop = asyncio.Event()
        restore = stop_on_signals(stop)
        try:
            return await run_stress(
                base,
                levels,
                mode=mode,
                step_duration=parse_duration(step_duration),
                slo=list(slo) or ("p99<1s", "error_rate<1%"),
                stop=stop,
                on_step=lambda s: _err.print(
                    f"level {s.level:g}: {s.result.metric('throughput'):.1f} ok/s, "
                    f"p99 {s.result.metric('p99'):.2f} ms, "
                    f"errors {s.result.metric('error_rate'):.2%} "
                    + ("pass" if s.passed else "FAIL: " + "; ".join(s.failed))
                ),
            )
        finally:
            restore()

    result = run_loop(main())
    doc = result.to_json()
    if out is not None:
        result.save(out)
    if html is not None:
        write_html(html, render_stress_html(doc))
    brief = {k: doc[k] for k in ("mode", "max_sustainable", "knee", "stopped_because")}
    if as_json:
        click.echo(json.dumps(brief, indent=1))
    else:
        for key, value in brief.items():
            _out.print(f"{key}: {value}", highlight=False)
    if result.interrupted:
        sys.exit(INTERRUPTED_EXIT)


@bench.command(name="compare")
@click.argument("a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("b", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--min-effect",
    type=float,
    default=0.10,
    show_default=True,
    help="Smallest relative change that counts (0.10 = 10%).",
)
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(a: Path, b: Path, min_effect: float, as_json: bool) -> None:
    """Compare two result files: is B faster, slower, or not different from A?

    \b
    Example:
      gyro bench compare before.json after.json
    """
    comparison = compare(Result.load(a), Result.load(b), min_effect=min_effect)
    _print_comparison(comparison, as_json)


def _print_comparison(comparison: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(comparison.to_json(), indent=1))
        return
    for name, f in comparison.latency.items():
        _out.print(
            f"{name}: A {f['a']} ms  B {f['b']} ms  diff {f['diff']:+.3f} ms "
            f"(95% CI {f['ci_low']:+.3f} .. {f['ci_high']:+.3f})",
            highlight=False,
        )
    t = comparison.throughput
    _out.print(
        f"throughput: A {t['a_rps']} req/s  B {t['b_rps']} req/s  ratio {t['ratio']} "
        f"(95% CI {t['ci_low']} .. {t['ci_high']})",
        highlight=False,
    )
    _out.print(f"Mann-Whitney U p = {comparison.latency_p_value:.3g}", highlight=False)
    for note in comparison.notes:
        _out.print(f"note: {note}", highlight=False)
    _out.print(
        f"verdict: B is {comparison.verdict}"
        if comparison.verdict != "no significant difference"
        else "verdict: no significant difference",
        highlight=False,
    )


@bench.command()
@click.argument("url_a")
@click.argument("url_b")
@click.option("-c", "--connections", type=int, default=10, show_default=True)
@click.option("-r", "--rate", help="Open model at this rate instead of -c.")
@click.option("-d", "--duration", default="10s", show_default=True, help="Per side, all rounds.")
@click.option(
    "--rounds", type=int, default=5, show_default=True, help="Interleaved rounds A B A B."
)
@click.option("-m", "--method", default="GET", show_default=True)
@click.option("-H", "--header", "headers", multiple=True, help="'Name: value', repeatable.")
@click.option("--body", help="Request body.")
@click.option("--json", "as_json", is_flag=True)
def ab(
    url_a: str,
    url_b: str,
    connections: int,
    rate: str | None,
    duration: str,
    rounds: int,
    method: str,
    headers: tuple[str, ...],
    body: str | None,
    as_json: bool,
) -> None:
    """Live A/B: interleaved rounds against two URLs, then the comparison of B with A.

    \b
    Example:
      gyro bench ab http://127.0.0.1:8001/v1/models http://127.0.0.1:8002/v1/models -c 20 -d 20s
    """
    from gyroscope.bench import parse_duration

    per_round = parse_duration(duration) / max(rounds, 1)

    async def main() -> tuple[Result, Result]:
        stop = asyncio.Event()
        restore = stop_on_signals(stop)
        parts: dict[str, list[Result]] = {"a": [], "b": []}
        try:
            for _ in range(rounds):
                for side, url in (("a", url_a), ("b", url_b)):
                    if stop.is_set():
                        break
                    cfg = _config(
                        LoadConfig,
                        url=url,
                        connections=None if rate else connections,
                        rate=rate,
                        duration=per_round,
                        method=method,
                        headers=list(headers),
                        body=body,
                    )
                    parts[side].append(await run_load(cfg, stop=stop))
        finally:
            restore()
        if not parts["a"] or not parts["b"]:
            raise BenchRunError("interrupted before both sides ran")
        return tuple(  # type: ignore[return-value]
            Result(
                kind="load",
                target=p[0].target,
                data=concat([r.data for r in p]),
                config=p[0].config,
            )
            for p in (parts["a"], parts["b"])
        )

    a, b = run_loop(main())
    _print_comparison(compare(a, b), as_json)
