"""Predicate pushdown: move each filter condition as close to the data as it can go.

Conditions travel through projections (by substitution), sorts, set operations and
aggregations (when they only touch grouping keys), become join conditions when they
link both sides of an inner join, and finally reach scans, where the source says whether
it applies them exactly (the filter goes away), inexactly (it skips data, the filter stays)
or not at all.
"""

from __future__ import annotations

from dataclasses import replace

from engine.datasource.base import FilterSupport
from engine.logical.expr import ColumnRef, Expr, column_ids, conjunction, conjuncts, transform, walk
from engine.logical.plan import (
    ASOF_KINDS, Aggregate, Filter, Join, Limit, Plan, Project, Scan, SetOp, Sort, TopN, Values, Window,
)


def _deterministic(expr: Expr) -> bool:
    from engine.logical.expr import Call

    return not any(isinstance(n, Call) and n.name == "random" for n in walk(expr))


def _wrap(plan: Plan, predicates: list[Expr]) -> Plan:
    condition = conjunction(list(dict.fromkeys(predicates)))
    return Filter(plan, condition) if condition is not None else plan


def _substitute(expr: Expr, mapping: dict[int, Expr]) -> Expr:
    return transform(expr, lambda n: mapping.get(n.id) if isinstance(n, ColumnRef) else None)


def push(plan: Plan, predicates: list[Expr]) -> Plan:
    """``plan`` filtered by ``predicates``, with each predicate pushed as deep as it may go."""
    if isinstance(plan, Filter):
        return push(plan.input, predicates + conjuncts(plan.predicate))
    if isinstance(plan, Project):
        mapping = {f.id: e for f, e in zip(plan.output, plan.exprs)}
        down, keep = [], []
        for p in predicates:
            ids = column_ids(p)
            if ids <= set(mapping) and _deterministic(p) and all(_deterministic(mapping[i]) for i in ids):
                down.append(_substitute(p, mapping))
            else:
                keep.append(p)
        return _wrap(replace(plan, input=push(plan.input, down)), keep)
    if isinstance(plan, Join):
        return _push_join(plan, predicates)
    if isinstance(plan, Aggregate):
        groups = {f.id: g for f, g in zip(plan.fields, plan.groups)}
        down, keep = [], []
        for p in predicates:
            ids = column_ids(p)
            if ids and ids <= set(groups) and _deterministic(p):
                down.append(_substitute(p, groups))
            else:
                keep.append(p)
        return _wrap(replace(plan, input=push(plan.input, down)), keep)
    if isinstance(plan, Sort):
        return replace(plan, input=push(plan.input, predicates))
    if isinstance(plan, SetOp):
        left = {f.id: lf.ref() for f, lf in zip(plan.fields, plan.left.fields)}
        right = {f.id: rf.ref() for f, rf in zip(plan.fields, plan.right.fields)}
        movable = [p for p in predicates if _deterministic(p)]
        keep = [p for p in predicates if not _deterministic(p)]
        return _wrap(replace(plan, left=push(plan.left, [_substitute(p, left) for p in movable]),
                             right=push(plan.right, [_substitute(p, right) for p in movable])), keep)
    if isinstance(plan, Scan):
        return _push_scan(plan, predicates)
    if isinstance(plan, (Limit, TopN, Window, Values)):
        return _wrap(plan.with_inputs(tuple(push(child, []) for child in plan.inputs())), predicates)
    return _wrap(plan.with_inputs(tuple(push(child, []) for child in plan.inputs())), predicates)


def _push_scan(scan: Scan, predicates: list[Expr]) -> Plan:
    column_of = scan.column_of()
    filters = list(scan.filters)
    keep = []
    for p in predicates:
        ids = column_ids(p)
        if not ids or not ids <= set(column_of) or not _deterministic(p):
            keep.append(p)
            continue
        support = scan.source.filter_support(p, column_of)
        if support is FilterSupport.UNSUPPORTED:
            keep.append(p)
            continue
        if p not in filters:
            filters.append(p)
        if support is FilterSupport.INEXACT:
            keep.append(p)
    return _wrap(replace(scan, filters=tuple(filters)), keep)


def _disjuncts(expr: Expr) -> list[Expr]:
    from engine.logical.expr import Call

    if isinstance(expr, Call) and expr.name == "or":
        return _disjuncts(expr.args[0]) + _disjuncts(expr.args[1])
    return [expr]


def implied_by_or(predicate: Expr, side_ids: set[int]) -> Expr | None:
    """From ``(a1 AND b1) OR (a2 AND b2)`` with a* on one side, derive ``a1 OR a2`` for that side.

    Each branch must contribute a condition on the side alone; the derived predicate is
    implied by the original (which is kept), so adding it never changes the result but lets
    a side be filtered before the join (TPC-H Q7, Q19).
    """
    branches = _disjuncts(predicate)
    if len(branches) < 2:
        return None
    parts = []
    for branch in branches:
        local = [c for c in conjuncts(branch) if column_ids(c) and column_ids(c) <= side_ids and _deterministic(c)]
        if not local:
            return None
        parts.append(conjunction(local))
    from engine.logical.expr import Call
    import pyarrow as pa

    result = parts[0]
    for part in parts[1:]:
        result = Call("or", (result, part), pa.bool_())  # type: ignore[arg-type]
    return result


def _push_asof_join(join: Join, predicates: list[Expr]) -> Plan:
    """Pushdown around an ASOF join, which picks the *nearest* right row for each left row.

    A left row's match depends only on that row, so left-side WHERE conditions filter the
    left input first. A right-side (or mixed) WHERE condition must stay above the join:
    removing right rows first would make an earlier row the nearest one instead of dropping
    the pair. ON conditions on the right input do restrict the candidates (as in DuckDB), so
    they go down; ON conditions on the left input filter it for the inner kind only (ASOF
    LEFT keeps such a row, with NULLs). Nothing ever becomes part of the ASOF condition.
    """
    left_ids, right_ids = join.left.field_ids(), join.right.field_ids()
    to_left: list[Expr] = []
    to_right: list[Expr] = []
    keep: list[Expr] = []
    for p in predicates:
        ids = column_ids(p)
        if ids and ids <= left_ids and _deterministic(p):
            to_left.append(p)
        else:
            keep.append(p)
    condition: list[Expr] = []
    for p in conjuncts(join.condition):
        ids = column_ids(p)
        if ids and ids <= right_ids and _deterministic(p):
            to_right.append(p)
        elif ids and ids <= left_ids and join.kind == "asof" and _deterministic(p):
            to_left.append(p)
        else:
            condition.append(p)
    new = replace(join, left=push(join.left, to_left), right=push(join.right, to_right),
                  condition=conjunction(condition))
    return _wrap(new, keep)


def _push_join(join: Join, predicates: list[Expr]) -> Plan:
    if join.kind in ASOF_KINDS:
        return _push_asof_join(join, predicates)
    left_ids, right_ids = join.left.field_ids(), join.right.field_ids()
    to_left: list[Expr] = []
    to_right: list[Expr] = []
    keep: list[Expr] = []
    condition = conjuncts(join.condition)
    kind = join.kind
    if kind in ("inner", "cross"):
        candidates = predicates + condition
        condition = []
        for p in list(candidates):
            ids = column_ids(p)
            if ids & left_ids and ids & right_ids:
                for side in (left_ids, right_ids):
                    implied = implied_by_or(p, side)
                    if implied is not None and implied not in candidates:
                        candidates.append(implied)
        for p in candidates:
            ids = column_ids(p)
            if ids and ids <= left_ids and _deterministic(p):
                to_left.append(p)
            elif ids and ids <= right_ids and _deterministic(p):
                to_right.append(p)
            else:
                condition.append(p)
        kind = "inner" if condition else "cross"
    else:
        for p in predicates:
            ids = column_ids(p)
            # Above a left/semi/anti/mark/single join the left rows pass unchanged: filter them first.
            if ids and ids <= left_ids and kind in ("left", "semi", "anti", "mark", "single") and _deterministic(p):
                to_left.append(p)
            elif ids and ids <= right_ids and kind == "right" and _deterministic(p):
                to_right.append(p)
            else:
                keep.append(p)
        remaining = []
        for p in condition:
            ids = column_ids(p)
            # An ON condition on the inner side only restricts which rows can match.
            if ids and ids <= right_ids and kind in ("left", "semi", "anti", "mark") and _deterministic(p) \
                    and not join.null_aware:
                to_right.append(p)
            elif ids and ids <= left_ids and kind == "right" and _deterministic(p):
                to_left.append(p)
            else:
                remaining.append(p)
        condition = remaining
    new = replace(join, left=push(join.left, to_left), right=push(join.right, to_right),
                  kind=kind, condition=conjunction(condition))
    return _wrap(_sink_semi_join(new), keep)


def _sink_semi_join(join: Join) -> Join:
    """Move a semi/anti join below the inner joins of its left input, next to the input it filters.

    ``(A JOIN B) SEMI JOIN R ON a = r`` equals ``(A SEMI JOIN R ON a = r) JOIN B``: filtering
    A first shrinks every join above it (TPC-H Q18 filters orders to 57 rows this way).
    """
    if join.kind not in ("semi", "anti") or join.null_aware or join.condition is None:
        return join
    inner = join.left
    if not (isinstance(inner, Join) and inner.kind in ("inner", "cross")):
        return join
    from engine.optimizer.join_order import estimate_rows

    outer_refs = column_ids(join.condition) - join.right.field_ids()
    build_rows = estimate_rows(join.right)
    for position, side in enumerate((inner.left, inner.right)):
        # Only worth it when the semi join is cheap next to the input it filters: a huge build
        # side is better probed by what is left after the selective inner joins (TPC-H Q21).
        if outer_refs and outer_refs <= side.field_ids() and build_rows <= estimate_rows(side):
            sunk = _sink_semi_join(replace(join, left=side))
            return replace(inner, left=sunk) if position == 0 else replace(inner, right=sunk)
    return join


def pushdown(plan: Plan) -> Plan:
    return push(plan, [])
