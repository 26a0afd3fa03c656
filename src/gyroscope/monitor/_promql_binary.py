"""PromQL binary operators: arithmetic, comparisons (filter or ``bool``), and/or/unless, with
one-to-one and many-to-one (``group_left``/``group_right``) vector matching on/ignoring labels."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import promql_parser as pp

from gyroscope.monitor._errors import PromQLError
from gyroscope.monitor._exposition import Labels

__all__ = ["binary"]

Vector = list[tuple[Labels, float]]


def _mod(a: float, b: float) -> float:
    return math.fmod(a, b) if b != 0 else math.nan


def _div(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _pow(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(a), np.float64(b)))


ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _div,
    "%": _mod,
    "^": _pow,
    "atan2": math.atan2,
}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _drop_name(labels: Labels) -> Labels:
    return tuple(p for p in labels if p[0] != "__name__")


def _signature(labels: Labels, on: bool, names: set[str]) -> Labels:
    if on:
        return tuple(p for p in labels if p[0] in names)
    return tuple(p for p in labels if p[0] not in names and p[0] != "__name__")


def _apply(op: str, a: float, b: float, return_bool: bool) -> float | None:
    """The result value, or None when a comparison filters the sample out."""
    if op in ARITH:
        try:
            return ARITH[op](a, b)
        except (OverflowError, ValueError):
            return math.nan
    hit = COMPARE[op](a, b)
    if return_bool:
        return 1.0 if hit else 0.0
    return a if hit else None


def binary(op: str, lhs: Any, rhs: Any, modifier: Any, query: str) -> Any:
    return_bool = bool(modifier is not None and modifier.return_bool)
    if op in COMPARE and not return_bool and isinstance(lhs, float) and isinstance(rhs, float):
        raise PromQLError("comparisons between scalars must use the bool modifier", query=query)
    if isinstance(lhs, float) and isinstance(rhs, float):
        value = _apply(op, lhs, rhs, return_bool)
        return math.nan if value is None else value
    if op in ("and", "or", "unless"):
        return _set_op(op, lhs, rhs, modifier)
    if isinstance(rhs, float):
        return _with_scalar(op, lhs, rhs, return_bool, scalar_left=False)
    if isinstance(lhs, float):
        return _with_scalar(op, rhs, lhs, return_bool, scalar_left=True)
    return _vector_op(op, lhs, rhs, modifier, return_bool, query)


def _with_scalar(
    op: str, vector: Vector, scalar: float, return_bool: bool, scalar_left: bool
) -> Vector:
    out: Vector = []
    keep_name = op in COMPARE and not return_bool
    for labels, value in vector:
        a, b = (scalar, value) if scalar_left else (value, scalar)
        result = _apply(op, a, b, return_bool)
        if result is None:
            continue
        if keep_name:
            result = value  # a filter keeps the vector's own sample
        out.append((labels if keep_name else _drop_name(labels), result))
    return out


def _matching(modifier: Any) -> tuple[bool, set[str]]:
    if modifier is None or modifier.matching is None:
        return False, set()
    on = modifier.matching.type == pp.LabelModifierType.Include
    return on, set(modifier.matching.labels)


def _set_op(op: str, lhs: Vector, rhs: Vector, modifier: Any) -> Vector:
    on, names = _matching(modifier)
    right = {_signature(lb, on, names) for lb, _ in rhs}
    if op == "and":
        return [s for s in lhs if _signature(s[0], on, names) in right]
    if op == "unless":
        return [s for s in lhs if _signature(s[0], on, names) not in right]
    left = {_signature(lb, on, names) for lb, _ in lhs}
    return lhs + [s for s in rhs if _signature(s[0], on, names) not in left]


def _vector_op(
    op: str, lhs: Vector, rhs: Vector, modifier: Any, return_bool: bool, query: str
) -> Vector:
    on, names = _matching(modifier)
    card = modifier.card if modifier is not None else pp.VectorMatchCardinality.OneToOne
    include = set(modifier.group_labels or []) if modifier is not None else set()
    swap = card == pp.VectorMatchCardinality.OneToMany
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    by_sig: dict[Labels, tuple[Labels, float]] = {}
    for labels, value in one:
        sig = _signature(labels, on, names)
        if sig in by_sig:
            side = "left" if swap else "right"
            raise PromQLError(
                f"found duplicate series for the match group {dict(sig)} on the {side} hand-side "
                "of the operation; many-to-many matching is not allowed (use group_left/right)",
                query=query,
            )
        by_sig[sig] = (labels, value)
    one_to_one = card == pp.VectorMatchCardinality.OneToOne
    drop = op in ARITH or return_bool
    out: Vector = []
    seen: set[Labels] = set()
    for labels, value in many:
        match = by_sig.get(_signature(labels, on, names))
        if match is None:
            continue
        a, b = (match[1], value) if swap else (value, match[1])
        result = _apply(op, a, b, return_bool)
        if result is None:
            continue
        new = dict(_drop_name(labels) if drop else labels)
        if one_to_one:
            new = {
                k: v for k, v in new.items() if (k in names) == on or (k == "__name__" and not on)
            }
        for name in include:
            other = dict(match[0]).get(name, "")
            if other:
                new[name] = other
            else:
                new.pop(name, None)
        result_labels = tuple(sorted(new.items()))
        if result_labels in seen and one_to_one:
            raise PromQLError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                query=query,
            )
        seen.add(result_labels)
        out.append((result_labels, result))
    return out
