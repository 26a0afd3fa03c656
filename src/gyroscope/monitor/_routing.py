"""The routing tree: the first matching child wins unless it says ``continue``; children inherit
receiver, grouping and timing from their parent (as in Alertmanager)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gyroscope.monitor._config import EscalationConfig, RouteConfig
from gyroscope.monitor._silences import LabelMatcher, matches_all, parse_matcher

__all__ = ["Route", "build_route"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    id: str
    receiver: str
    matchers: tuple[LabelMatcher, ...]
    group_by: tuple[str, ...] | None  # None: every label ("...")
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool = False
    escalate: tuple[EscalationConfig, ...] = ()
    children: tuple[Route, ...] = field(default_factory=tuple)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` goes to (deepest matching ones)."""
        if not matches_all(self.matchers, labels):
            return []
        out: list[Route] = []
        for child in self.children:
            found = child.match(labels)
            if found:
                out += found
                if not child.continue_:
                    break
        return out or [self]

    def group_key(self, labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        if self.group_by is None:
            return tuple(sorted(labels.items()))
        return tuple((name, labels.get(name, "")) for name in self.group_by)


def build_route(cfg: RouteConfig, parent: Route | None = None, rid: str = "0") -> Route:
    matchers = [parse_matcher(m) for m in cfg.matchers]
    matchers += [LabelMatcher(k, "=", v) for k, v in cfg.match.items()]
    group_by: tuple[str, ...] | None
    if cfg.group_by is None:
        group_by = parent.group_by if parent is not None else ()
    else:
        group_by = None if "..." in cfg.group_by else tuple(cfg.group_by)

    def pick(own: float | None, inherited: float | None, default: float) -> float:
        return own if own is not None else inherited if inherited is not None else default

    node = Route(
        id=rid,
        receiver=cfg.receiver or (parent.receiver if parent else "default"),
        matchers=tuple(matchers),
        group_by=group_by,
        group_wait=pick(cfg.group_wait, parent.group_wait if parent else None, 30.0),
        group_interval=pick(cfg.group_interval, parent.group_interval if parent else None, 300.0),
        repeat_interval=pick(
            cfg.repeat_interval, parent.repeat_interval if parent else None, 14400.0
        ),
        continue_=cfg.continue_,
        escalate=tuple(cfg.escalate) or (parent.escalate if parent else ()),
    )
    children = tuple(build_route(c, node, f"{rid}.{i}") for i, c in enumerate(cfg.routes))
    return replace(node, children=children)
