"""Subqueries in expressions, and their rewriting into joins (decorrelation).

While binding, ``IN (SELECT ...)``, ``EXISTS (...)`` and scalar subqueries become
:class:`SubqueryExpr` placeholders. :func:`plan_subqueries` then turns each into a join on
the plan where the expression is evaluated:

* a top-level ``[NOT] EXISTS`` / ``[NOT] IN`` conjunct of a filter -> semi / anti join
  (``NOT IN`` as a null-aware anti join);
* elsewhere -> a *mark* join that adds a boolean column;
* a scalar subquery -> a ``single`` join (at most one row) when uncorrelated, else a left
  join on the correlation keys against the subquery grouped by those keys.

Correlated conditions were pulled out of the subquery's WHERE by the binder; they become
the join condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from engine.errors import PlanError
from engine.logical.expr import (
    Call, Case, ColumnRef, Expr, Field, Literal, conjunction, conjuncts, transform, walk,
)
from engine.logical.plan import Filter, Join, Plan


@dataclass(frozen=True, eq=False)
class SubqueryExpr(Expr):
    """A subquery inside an expression, before it is planned as a join."""

    kind: str  # "scalar" | "exists" | "in"
    plan: Plan
    output: Field | None  # the subquery's value column (scalar / in)
    correlation: tuple[Expr, ...] = ()  # conditions linking inner and outer columns
    arg: Expr | None = None  # IN: the outer value
    type: pa.DataType = field(default=pa.bool_())
    empty_value: Expr | None = None  # scalar: value when the correlated group is empty (count -> 0)

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,) if self.arg is not None else ()

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return SubqueryExpr(self.kind, self.plan, self.output, self.correlation, children[0] if children else None,
                            self.type, self.empty_value)


def has_subquery(expr: Expr) -> bool:
    return any(isinstance(node, SubqueryExpr) for node in walk(expr))


def _membership(sub: SubqueryExpr) -> Expr | None:
    assert sub.output is not None and sub.arg is not None
    return Call("eq", (sub.arg, sub.output.ref()), pa.bool_())


def plan_filter(plan: Plan, predicate: Expr, new_field) -> Plan:  # noqa: ANN001
    """Filter ``plan`` by ``predicate``, turning subquery conjuncts into joins."""
    remaining: list[Expr] = []
    for part in conjuncts(predicate):
        negated = isinstance(part, Call) and part.name == "not" and isinstance(part.args[0], SubqueryExpr)
        sub = part.args[0] if negated else part
        if isinstance(sub, SubqueryExpr) and sub.kind in ("exists", "in"):
            condition = list(sub.correlation)
            if sub.kind == "in":
                condition.insert(0, _membership(sub))
            kind = "anti" if negated else "semi"
            plan = Join(plan, sub.plan, kind, conjunction(condition),
                        null_aware=negated and sub.kind == "in")
            continue
        plan, rewritten = plan_expression(plan, part, new_field)
        remaining.append(rewritten)
    condition = conjunction(remaining)
    return Filter(plan, condition) if condition is not None else plan


def plan_expression(plan: Plan, expr: Expr, new_field) -> tuple[Plan, Expr]:  # noqa: ANN001
    """Replace every subquery in ``expr`` by a column produced by a join added to ``plan``."""
    if not has_subquery(expr):
        return plan, expr
    joins: list[tuple[str, SubqueryExpr, Field | None]] = []

    def replace(node: Expr) -> Expr | None:
        nonlocal plan
        if not isinstance(node, SubqueryExpr):
            return None
        if node.kind in ("exists", "in"):
            mark = new_field("mark", pa.bool_())
            condition = list(node.correlation)
            if node.kind == "in":
                condition.insert(0, _membership(node))
            plan = Join(plan, node.plan, "mark", conjunction(condition), mark=mark, null_aware=node.kind == "in")
            return mark.ref()
        assert node.output is not None
        if not node.correlation:
            plan = Join(plan, node.plan, "single", None)
            return node.output.ref()
        plan = Join(plan, node.plan, "left", conjunction(list(node.correlation)))
        value = node.output.ref()
        if node.empty_value is not None and not (isinstance(node.empty_value, Literal) and node.empty_value.value is None):
            # A group that does not exist means the aggregate saw no rows: count gives 0, not NULL.
            key = _right_key(node)
            matched = Call("is_not_null", (key,), pa.bool_())
            return Case(((matched, value),), node.empty_value, value.type)
        return value

    rewritten = transform(expr, replace)
    return plan, rewritten


def _right_key(node: SubqueryExpr) -> Expr:
    inner = node.plan.field_ids()
    for cond in node.correlation:
        for ref in walk(cond):
            if isinstance(ref, ColumnRef) and ref.id in inner:
                return ref
    raise PlanError("internal: correlated subquery without an inner key")
