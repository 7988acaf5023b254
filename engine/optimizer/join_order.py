"""Join ordering for trees of inner joins, from row estimates taken from the log's stats.

A tree of inner/cross joins is flattened into its inputs and conditions, then rebuilt
left-deep: the input with the most (estimated) rows is the probe side, and each next input
is the smallest one connected to what is joined so far by a condition, so every hash
table is built on a small side and no cross product appears while a connected input is
left. Conditions are re-attached by the pushdown rule that runs afterwards.
"""

from __future__ import annotations

from engine.logical.expr import Call, Expr, column_ids, conjunction, conjuncts, walk
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


def estimate_rows(plan: Plan) -> float:
    """A rough output row count; good enough to order joins."""
    if isinstance(plan, Scan):
        rows = plan.source.statistics().num_rows
        base = float(rows) if rows is not None else _DEFAULT_ROWS
        for f in plan.filters:
            base *= _selectivity(f)
        return max(base, 1.0)
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
    edges = [column_ids(c) for c in conditions]
    remaining = list(range(len(leaves)))
    first = max(remaining, key=lambda i: estimates[i])
    order = [first]
    remaining.remove(first)
    joined = set(ids[first])
    while remaining:
        connected = [i for i in remaining
                     if any(e & joined and e & ids[i] and e <= joined | ids[i] for e in edges)]
        pick = min(connected or remaining, key=lambda i: estimates[i])
        order.append(pick)
        remaining.remove(pick)
        joined |= ids[pick]
    tree: Plan = leaves[order[0]]
    for i in order[1:]:
        tree = Join(tree, leaves[i], "cross", None)
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
