"""CI thresholds: check a result against ``p99<200ms``-style conditions."""

from __future__ import annotations

from collections.abc import Sequence

from gyroscope.bench._result import Result
from gyroscope.bench._units import Threshold, parse_threshold
from gyroscope.errors import ThresholdFailed

__all__ = ["check_thresholds", "evaluate"]


def evaluate(
    result: Result, thresholds: Sequence[Threshold]
) -> list[tuple[Threshold, float, bool]]:
    """Each threshold with the measured figure and whether it held."""
    out = []
    for t in thresholds:
        actual = result.metric(t.metric)
        out.append((t, actual, t.holds(actual)))
    return out


def check_thresholds(result: Result, texts: Sequence[str]) -> None:
    """Raise ``ThresholdFailed`` listing every threshold that did not hold.

    >>> # check_thresholds(result, ["p99<200ms", "error_rate<1%"])
    """
    failed = [
        f"{t.text} (measured {actual:.4g})"
        for t, actual, ok in evaluate(result, [parse_threshold(x) for x in texts])
        if not ok
    ]
    if failed:
        raise ThresholdFailed("threshold failed: " + "; ".join(failed))
