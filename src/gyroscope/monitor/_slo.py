"""SLOs as first-class objects: each one becomes recording rules for its error ratio over five
windows and the multi-window, multi-burn-rate alerts of the Google SRE workbook:
page at 14.4x burn over 1h and 5m, page at 6x over 6h and 30m, ticket at 1x over 3d and 6h.

>>> from gyroscope.monitor._config import SloConfig
>>> slo = SloConfig(name="api", objective=0.999, errors='req{code=~"5.."}', total="req")
>>> g = slo_rule_group(slo)
>>> [r.name for r in g.rules][-3:]
['SLOBurnRateFast', 'SLOBurnRateMedium', 'SLOBurnRateSlow']
"""

from __future__ import annotations

from gyroscope.monitor._config import SloConfig
from gyroscope.monitor._rulefile import Rule, RuleGroup

__all__ = ["BURN_WINDOWS", "slo_rule_group"]

# (alert name, burn factor, long window, short window, severity)
BURN_WINDOWS = (
    ("SLOBurnRateFast", 14.4, "1h", "5m", "page"),
    ("SLOBurnRateMedium", 6.0, "6h", "30m", "page"),
    ("SLOBurnRateSlow", 1.0, "3d", "6h", "ticket"),
)


def _record_name(window: str) -> str:
    return f"slo:error_ratio:rate{window}"


def slo_rule_group(slo: SloConfig) -> RuleGroup:
    budget = 1.0 - slo.objective
    windows = sorted({w for _, _, long, short, _ in BURN_WINDOWS for w in (long, short)})
    rules = [
        Rule(
            record=_record_name(w),
            expr=f"sum(rate({slo.errors}[{w}])) / sum(rate({slo.total}[{w}]))",
            labels={"slo": slo.name, **slo.labels},
        )
        for w in windows
    ]
    for name, factor, long, short, severity in BURN_WINDOWS:
        threshold = f"{factor * budget:.10g}"
        sel = f'{{slo="{slo.name}"}}'
        rules.append(
            Rule(
                alert=name,
                expr=(
                    f"{_record_name(long)}{sel} > {threshold} "
                    f"and {_record_name(short)}{sel} > {threshold}"
                ),
                labels={"slo": slo.name, "severity": severity, **slo.labels},
                annotations={
                    "summary": f"SLO {slo.name} burns its error budget {factor:g}x too fast "
                    f"({long} and {short} windows)",
                    "error_ratio": "{{ $value | humanizePercentage }}",
                },
            )
        )
    return RuleGroup(name=f"slo:{slo.name}", rules=rules)
