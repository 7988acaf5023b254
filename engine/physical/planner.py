"""Logical plan -> physical operators (one operator per logical node)."""

from __future__ import annotations

from engine.errors import PlanError
from engine.logical.plan import (
    ASOF_KINDS, Aggregate, Filter, Join, Limit, Plan, Project, Scan, SetOp, Sort, TopN, Values, Window,
)
from engine.physical.operators.aggregate import AggregateOp
from engine.physical.operators.asof import AsofJoinOp
from engine.physical.operators.base import ExecutionContext, Operator
from engine.physical.operators.basic import FilterOp, LimitOp, ProjectOp, ScanOp, ValuesOp
from engine.physical.operators.join import JoinOp
from engine.physical.operators.setop import SetOpOp
from engine.physical.operators.sort import SortOp, TopNOp
from engine.physical.operators.window import WindowOp
from engine.physical.runtime_filters import attach_runtime_filters


class PhysicalPlan:
    """The operator tree, and which operator runs each logical node (for EXPLAIN ANALYZE)."""

    def __init__(self, root: Operator, by_node: dict[int, Operator]) -> None:
        self.root = root
        self.by_node = by_node

    def operator_for(self, node: Plan) -> Operator | None:
        return self.by_node.get(id(node))


def create_physical_plan(plan: Plan, context: ExecutionContext) -> PhysicalPlan:
    by_node: dict[int, Operator] = {}

    def build(node: Plan) -> Operator:
        op = _build(node, [build(child) for child in node.inputs()], context)
        by_node[id(node)] = op
        return op

    root = build(plan)
    attach_runtime_filters(root)
    return PhysicalPlan(root, by_node)


def _build(node: Plan, children: list[Operator], context: ExecutionContext) -> Operator:
    if isinstance(node, Scan):
        return ScanOp(context, node.fields, node.source, node.columns, node.filters, node.column_of(), node.limit)
    if isinstance(node, Filter):
        return FilterOp(context, children[0], node.predicate)
    if isinstance(node, Project):
        return ProjectOp(context, children[0], node.exprs, node.fields)
    if isinstance(node, Aggregate):
        return AggregateOp(context, children[0], node.groups, node.aggregates, node.fields)
    if isinstance(node, Join) and node.kind in ASOF_KINDS:
        return AsofJoinOp(context, children[0], children[1], node.kind, node.condition, node.fields)
    if isinstance(node, Join):
        return JoinOp(context, children[0], children[1], node.kind, node.condition, node.fields, node.null_aware)
    if isinstance(node, Sort):
        return SortOp(context, children[0], node.keys)
    if isinstance(node, TopN):
        return TopNOp(context, children[0], node.keys, node.count, node.offset)
    if isinstance(node, Limit):
        return LimitOp(context, children[0], node.count, node.offset)
    if isinstance(node, SetOp):
        return SetOpOp(context, children[0], children[1], node.kind, node.all, node.fields)
    if isinstance(node, Window):
        return WindowOp(context, children[0], node.calls, node.fields)
    if isinstance(node, Values):
        return ValuesOp(context, node.fields, node.rows)
    raise PlanError(f"internal: no physical operator for {type(node).__name__}")
