"""Join ordering for trees of inner joins, from row estimates taken from the log's stats.

A tree of inner/cross joins is flattened into its inputs and conditions, then rebuilt
left-deep: the input with the most (estimated) rows is the probe side, and each next input
is the smallest one connected to what is joined so far by a condition, so every hash
table is built on a small side and no cross product appears while a connected input is
left. Conditions are re-attached by the pushdown rule that runs afterwards.
"""

from __future__ import annotations

from engine.logical.expr import Call, ColumnRef, Expr, Literal, column_ids, conjunction, conjuncts, walk
from engine.logical.plan import Aggregate, Filter, Join, Limit, Plan, Project, Scan, TopN, Values

_DEFAULT_ROWS = 1_000_000.0


def _selectivity(predicate: Expr) -> float:
    estimate = 1.0
    for part in conjuncts(predicate):
        if isinstance(part, Call) and part.name == "eq":
            estimate *= 0.1
        elif isinstance(part, Call) and part.name in ("like", "ilike"):
            estimate *= 0.25
        elif isinstance(part, Call) and part.name == "or":
            estimate *= 0.5
        else:
            estimate *= 0.4
    return estimate


def _as_number(value: object) -> float | None:
    import datetime as dt
    import decimal

    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, decimal.Decimal)):
        return float(value)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return float((value - dt.date(1970, 1, 1)).days)
    return None


def _scan_selectivity(scan: Scan, predicates: list[Expr]) -> float:
    """Selectivity of a scan's conditions; ranges on one column use the column's min/max."""
    column_of = scan.column_of()
    ranges: dict[str, list[float | None]] = {}
    estimate = 1.0
    for part in [c for p in predicates for c in conjuncts(p)]:
        if isinstance(part, Call) and part.name in ("lt", "lte", "gt", "gte") and len(part.args) == 2:
            left, right = part.args
            name = part.name
            if isinstance(right, ColumnRef) and isinstance(left, Literal):
                left, right = right, left
                name = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}[name]
            if isinstance(left, ColumnRef) and isinstance(right, Literal) and left.id in column_of:
                value = _as_number(right.value)
                bounds = scan.source.column_bounds(column_of[left.id])
                if value is not None and bounds is not None:
                    low_high = ranges.setdefault(column_of[left.id], [bounds[0], bounds[1]])
                    if name in ("gt", "gte"):
                        low_high[0] = max(low_high[0], value)  # type: ignore[type-var]
                    else:
                        low_high[1] = min(low_high[1], value)  # type: ignore[type-var]
                    continue
        estimate *= _selectivity(part)
    for column, (low, high) in ranges.items():
        lo, hi = scan.source.column_bounds(column)  # type: ignore[misc]
        width = hi - lo
        estimate *= 1.0 if width <= 0 else min(1.0, max(0.0, (high - low) / width))  # type: ignore[operator]
    return estimate


def estimate_rows(plan: Plan) -> float:
    """A rough output row count; good enough to order joins."""
    if isinstance(plan, Scan):
        rows = plan.source.statistics().num_rows
        base = float(rows) if rows is not None else _DEFAULT_ROWS
        return max(base * _scan_selectivity(plan, list(plan.filters)), 1.0)
    if isinstance(plan, Filter) and isinstance(plan.input, Scan):
        scan = plan.input
        rows = scan.source.statistics().num_rows
        base = float(rows) if rows is not None else _DEFAULT_ROWS
        extra = [p for p in conjuncts(plan.predicate) if p not in scan.filters]
        return max(base * _scan_selectivity(scan, list(scan.filters) + extra), 1.0)
    if isinstance(plan, Filter):
        return max(estimate_rows(plan.input) * _selectivity(plan.predicate), 1.0)
    if isinstance(plan, Project):
        return estimate_rows(plan.input)
    if isinstance(plan, Aggregate):
        return 1.0 if not plan.groups else max(estimate_rows(plan.input) * 0.3, 1.0)
    if isinstance(plan, (Limit, TopN)):
        limit = plan.count if plan.count is not None else None
        return min(estimate_rows(plan.input), float(limit)) if limit is not None else estimate_rows(plan.input)
    if isinstance(plan, Values):
        return float(len(plan.rows))
    if isinstance(plan, Join):
        left, right = estimate_rows(plan.left), estimate_rows(plan.right)
        if plan.kind in ("semi", "anti", "mark", "single"):
            return left
        if plan.kind == "cross":
            return left * right
        return max(left, right)
    inputs = plan.inputs()
    return estimate_rows(inputs[0]) if inputs else _DEFAULT_ROWS


def _flatten(plan: Plan, leaves: list[Plan], conditions: list[Expr]) -> None:
    if isinstance(plan, Join) and plan.kind in ("inner", "cross"):
        _flatten(plan.left, leaves, conditions)
        _flatten(plan.right, leaves, conditions)
        conditions.extend(conjuncts(plan.condition))
        return
    if isinstance(plan, Filter) and isinstance(plan.input, Join) and plan.input.kind in ("inner", "cross"):
        _flatten(plan.input, leaves, conditions)
        conditions.extend(conjuncts(plan.predicate))
        return
    leaves.append(plan)


def distinct_values(plan: Plan, field_id: int) -> float | None:
    """Distinct-count estimate of a column, traced through filters and projections to its source."""
    if isinstance(plan, Scan):
        column = plan.column_of().get(field_id)
        return plan.source.distinct_estimate(column) if column is not None else None
    if isinstance(plan, Filter):
        return distinct_values(plan.input, field_id)
    if isinstance(plan, Project):
        for expr, f in zip(plan.exprs, plan.output):
            if f.id == field_id and isinstance(expr, ColumnRef):
                return distinct_values(plan.input, expr.id)
        return None
    if isinstance(plan, Aggregate):
        for expr, f in zip(plan.groups, plan.fields):
            if f.id == field_id and isinstance(expr, ColumnRef):
                return distinct_values(plan.input, expr.id)
        return None
    if isinstance(plan, Join):
        side = plan.left if field_id in plan.left.field_ids() else plan.right
        return distinct_values(side, field_id)
    return None


def _join_rows(left_rows: float, right_rows: float, left: Plan, right: Plan, edges: list[Expr]) -> float:
    """Output of an equi-join: |L| * |R| / max(ndv(key)), taking the most selective key."""
    best = left_rows * right_rows
    for edge in edges:
        if not (isinstance(edge, Call) and edge.name == "eq"):
            continue
        a, b = edge.args
        if not (isinstance(a, ColumnRef) and isinstance(b, ColumnRef)):
            continue
        if a.id in right.field_ids():
            a, b = b, a
        ndv_left = distinct_values(left, a.id) or left_rows
        ndv_right = distinct_values(right, b.id) or right_rows
        best = min(best, left_rows * right_rows / max(ndv_left, ndv_right, 1.0))
    return max(best, 1.0)


def _reorder(plan: Plan) -> Plan:
    leaves: list[Plan] = []
    conditions: list[Expr] = []
    _flatten(plan, leaves, conditions)
    if len(leaves) < 3:
        return plan
    if any(isinstance(n, Call) and n.name == "random" for c in conditions for n in walk(c)):
        return plan
    estimates = [estimate_rows(leaf) for leaf in leaves]
    ids = [leaf.field_ids() for leaf in leaves]
    edges = [(column_ids(c), c) for c in conditions]
    remaining = list(range(len(leaves)))
    first = max(remaining, key=lambda i: estimates[i])
    order = [first]
    remaining.remove(first)
    joined = set(ids[first])
    tree: Plan = leaves[first]
    rows = estimates[first]
    while remaining:
        options = []
        for i in remaining:
            linking = [c for e, c in edges if e & joined and e & ids[i] and e <= joined | ids[i]]
            if linking:
                options.append((_join_rows(rows, estimates[i], tree, leaves[i], linking), estimates[i], i))
        if options:
            rows, _, pick = min(options)
        else:  # nothing connects: a cross product with the smallest input
            pick = min(remaining, key=lambda i: estimates[i])
            rows = rows * estimates[pick]
        order.append(pick)
        remaining.remove(pick)
        joined |= ids[pick]
        tree = Join(tree, leaves[pick], "cross", None)
    condition = conjunction(conditions)
    from engine.optimizer.pushdown import push

    rebuilt = push(tree, conjuncts(condition)) if condition is not None else tree
    # Keep the original column order for the parent.
    if [f.id for f in rebuilt.fields] != [f.id for f in plan.fields]:
        rebuilt = Project(rebuilt, tuple(f.ref() for f in plan.fields), plan.fields)
    return rebuilt


def join_order(plan: Plan) -> Plan:
    # Reorder top-down so each maximal inner-join tree is handled once, at its root.
    def visit(node: Plan) -> Plan:
        if (isinstance(node, Join) and node.kind in ("inner", "cross")) or (
                isinstance(node, Filter) and isinstance(node.input, Join) and node.input.kind in ("inner", "cross")):
            leaves: list[Plan] = []
            conditions: list[Expr] = []
            _flatten(node, leaves, conditions)
            new_leaves = [visit(leaf) for leaf in leaves]
            if any(a is not b for a, b in zip(new_leaves, leaves)):
                node = _replace_leaves(node, dict(zip(map(id, leaves), new_leaves)))
            return _reorder(node)
        return node.with_inputs(tuple(visit(child) for child in node.inputs()))

    return visit(plan)


def _replace_leaves(node: Plan, mapping: dict[int, Plan]) -> Plan:
    if id(node) in mapping:
        return mapping[id(node)]
    return node.with_inputs(tuple(_replace_leaves(c, mapping) for c in node.inputs()))
