"""Projection pruning: every node produces only the columns something above it uses.

Most importantly, scans read only the columns the query needs.
"""

from __future__ import annotations

from dataclasses import replace

from engine.logical.expr import column_ids
from engine.logical.plan import (
    Aggregate, Filter, Join, Limit, Plan, Project, Scan, SetOp, Sort, TopN, Values, Window,
)


def _ids(exprs) -> set[int]:  # noqa: ANN001
    out: set[int] = set()
    for e in exprs:
        out |= column_ids(e)
    return out


def prune_node(plan: Plan, required: set[int]) -> Plan:
    if isinstance(plan, Scan):
        needed = required | _ids(plan.filters)
        keep = [i for i, f in enumerate(plan.output) if f.id in needed]
        if not keep:  # something must be read to count rows: take the first column
            keep = [0] if plan.output else []
        return replace(plan, columns=tuple(plan.columns[i] for i in keep), output=tuple(plan.output[i] for i in keep))
    if isinstance(plan, Project):
        pairs = [(e, f) for e, f in zip(plan.exprs, plan.output) if f.id in required]
        child = prune_node(plan.input, _ids(e for e, _ in pairs))
        return replace(plan, input=child, exprs=tuple(e for e, _ in pairs), output=tuple(f for _, f in pairs))
    if isinstance(plan, Filter):
        return replace(plan, input=prune_node(plan.input, required | column_ids(plan.predicate)))
    if isinstance(plan, (Sort, TopN)):
        return replace(plan, input=prune_node(plan.input, required | _ids(k.expr for k in plan.keys)))
    if isinstance(plan, Limit):
        return replace(plan, input=prune_node(plan.input, required))
    if isinstance(plan, Aggregate):
        group_count = len(plan.groups)
        agg_fields = plan.output[group_count:]
        kept = [(a, f) for a, f in zip(plan.aggregates, agg_fields) if f.id in required]
        child = prune_node(plan.input, _ids(plan.groups) | _ids(a for a, _ in kept))
        return replace(plan, input=child, aggregates=tuple(a for a, _ in kept),
                       output=plan.output[:group_count] + tuple(f for _, f in kept))
    if isinstance(plan, Join):
        needed = required | (column_ids(plan.condition) if plan.condition is not None else set())
        left = prune_node(plan.left, needed & plan.left.field_ids())
        right_needed = needed & plan.right.field_ids()
        if plan.kind == "single":
            right_needed = set(plan.right.field_ids())  # the subquery's row count is checked
        right = prune_node(plan.right, right_needed)
        return replace(plan, left=left, right=right)
    if isinstance(plan, Window):
        kept = [(c, f) for c, f in zip(plan.calls, plan.output) if f.id in required]
        input_ids = plan.input.field_ids()
        child = prune_node(plan.input, (required & input_ids) | _ids(c for c, _ in kept))
        return replace(plan, input=child, calls=tuple(c for c, _ in kept), output=tuple(f for _, f in kept))
    if isinstance(plan, SetOp):
        return replace(plan, left=prune_node(plan.left, plan.left.field_ids()),
                       right=prune_node(plan.right, plan.right.field_ids()))
    if isinstance(plan, Values):
        return plan
    return plan.with_inputs(tuple(prune_node(c, c.field_ids()) for c in plan.inputs()))


def prune(plan: Plan) -> Plan:
    return prune_node(plan, plan.field_ids())
