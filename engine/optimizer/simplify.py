"""Constant folding and boolean simplification.

Any expression whose inputs are all literals is evaluated once at plan time (with the
same implementation the executor uses, so folding can never change a result);
``x AND TRUE`` -> ``x``, ``x OR TRUE`` -> ``TRUE``, ``NOT NOT x`` -> ``x``; a filter that is
always true disappears.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from engine.errors import LakehouseError
from engine.logical.expr import (
    AggregateCall, Call, Case, Cast, Expr, InList, Literal, SortKey, WindowCall, conjunction, conjuncts, transform,
)
from engine.logical.plan import Aggregate, Filter, Join, Plan, Project, Scan, Sort, TopN, Values, Window, transform_plan
from engine.physical.exprs import evaluate

_VOLATILE = {"random"}
_EMPTY = pa.RecordBatch.from_pydict({"_": [None]})


def _fold(node: Expr) -> Expr | None:
    if isinstance(node, Call):
        if node.name in _VOLATILE:
            return None
        args = node.args
        if node.name == "and":
            for a, b in ((args[0], args[1]), (args[1], args[0])):
                if isinstance(a, Literal) and a.value is True:
                    return b
                if isinstance(a, Literal) and a.value is False:
                    return Literal(False, pa.bool_())
        if node.name == "or":
            for a, b in ((args[0], args[1]), (args[1], args[0])):
                if isinstance(a, Literal) and a.value is False:
                    return b
                if isinstance(a, Literal) and a.value is True:
                    return Literal(True, pa.bool_())
        if node.name == "not" and isinstance(args[0], Call) and args[0].name == "not":
            return args[0].args[0]
    if isinstance(node, (AggregateCall, WindowCall)):
        return None
    if isinstance(node, (Call, Cast, InList, Case)) and node.children() and all(
            isinstance(c, Literal) for c in node.children()):
        try:
            value = evaluate(node, _EMPTY)
        except (LakehouseError, pa.ArrowException, ValueError, ArithmeticError, TypeError):
            return None  # leave it: if the row is ever reached, the error surfaces at run time
        if isinstance(value, pa.Scalar):
            return Literal(value.as_py(), node.type) if value.type == node.type or value.as_py() is None else \
                Literal(value.cast(node.type).as_py(), node.type)
    return None


def _factor_or(node: Expr) -> Expr | None:
    """``(a AND b) OR (a AND c)`` -> ``a AND (b OR c)``: exposes join keys repeated in every branch."""
    if not (isinstance(node, Call) and node.name == "or"):
        return None
    branches = _disjuncts(node)
    parts = [conjuncts(b) for b in branches]
    common = [c for c in parts[0] if all(c in p for p in parts[1:])]
    if not common:
        return None
    rests = [[c for c in p if c not in common] for p in parts]
    if any(not r for r in rests):
        return conjunction(common)  # one branch is just the common part: the OR adds nothing
    remainder = conjunction(rests[0])
    for rest in rests[1:]:
        remainder = Call("or", (remainder, conjunction(rest)), pa.bool_())
    return conjunction(common + [remainder])


def _disjuncts(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.name == "or":
        return _disjuncts(expr.args[0]) + _disjuncts(expr.args[1])
    return [expr]


_FLIP = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte", "eq": "eq", "neq": "neq"}


def _unwrap_date_cast(node: Expr) -> Expr | None:
    """``CAST(d AS TIMESTAMP) < ts`` -> ``d < date`` so date filters reach scans and stats.

    ``date + INTERVAL`` yields a timestamp (as in DuckDB), which would otherwise hide the
    date column behind a cast. The rewrite is exact: a date compares with a timestamp as
    its midnight, so the bound is rounded in the direction that keeps the same rows.
    """
    if not (isinstance(node, Call) and node.name in _FLIP):
        return None
    left, right = node.args
    name = node.name
    if isinstance(left, Literal) and isinstance(right, Cast):
        left, right, name = right, left, _FLIP[name]
    if not (isinstance(left, Cast) and pa.types.is_timestamp(left.type) and pa.types.is_date(left.arg.type)
            and isinstance(right, Literal) and right.value is not None and left.type.tz is None):
        return None
    import datetime as dt

    stamp = right.value
    if not isinstance(stamp, dt.datetime):
        return None
    day = stamp.date()
    midnight = stamp == dt.datetime(day.year, day.month, day.day, tzinfo=stamp.tzinfo)
    next_day = day + dt.timedelta(days=1)
    column = left.arg
    if name in ("lt", "gte"):  # d < ts  <=>  d < ceil(ts);  d >= ts  <=>  d >= ceil(ts)
        bound = day if midnight else next_day
    elif name in ("lte", "gt"):  # d <= ts  <=>  d <= floor(ts);  d > ts  <=>  d > floor(ts)
        bound = day
    elif name == "eq":
        if not midnight:
            return Literal(False, pa.bool_())
        bound = day
    else:
        if not midnight:
            return None
        bound = day
    return Call(name, (column, Literal(bound, pa.date32())), pa.bool_())


def fold(expr: Expr) -> Expr:
    return transform(transform(transform(expr, _fold), _unwrap_date_cast), _factor_or)


def simplify(plan: Plan) -> Plan:
    def rule(node: Plan) -> Plan:
        if isinstance(node, Filter):
            predicate = fold(node.predicate)
            if isinstance(predicate, Literal) and predicate.value is True:
                return node.input
            return replace(node, predicate=predicate)
        if isinstance(node, Project):
            return replace(node, exprs=tuple(fold(e) for e in node.exprs))
        if isinstance(node, Join) and node.condition is not None:
            condition = fold(node.condition)
            if isinstance(condition, Literal) and condition.value is True and node.kind in ("inner", "cross"):
                return replace(node, kind="cross", condition=None)
            return replace(node, condition=condition)
        if isinstance(node, Aggregate):
            return replace(node, groups=tuple(fold(g) for g in node.groups),
                           aggregates=tuple(fold(a) for a in node.aggregates))  # type: ignore[misc]
        if isinstance(node, (Sort, TopN)):
            return replace(node, keys=tuple(SortKey(fold(k.expr), k.ascending, k.nulls_first) for k in node.keys))
        if isinstance(node, Scan):
            return replace(node, filters=tuple(fold(f) for f in node.filters))
        if isinstance(node, Window):
            return replace(node, calls=tuple(fold(c) for c in node.calls))  # type: ignore[misc]
        if isinstance(node, Values):
            return replace(node, rows=tuple(tuple(fold(e) for e in row) for row in node.rows))
        return node

    return transform_plan(plan, rule)
