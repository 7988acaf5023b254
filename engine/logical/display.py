"""Text forms of expressions and plans (EXPLAIN)."""

from __future__ import annotations

from typing import Callable

from engine.logical.expr import AggregateCall, Call, Case, Cast, ColumnRef, Expr, InList, Literal, SortKey, WindowCall
from engine.logical.plan import Aggregate, Filter, Join, Limit, Plan, Project, Scan, SetOp, Sort, TopN, Values, Window
from engine.types import type_name

_INFIX = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "int_divide": "//", "mod": "%",
          "eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "and": "AND", "or": "OR",
          "concat_op": "||", "like": "LIKE", "ilike": "ILIKE", "is_distinct_from": "IS DISTINCT FROM"}


def expr_text(expr: Expr) -> str:
    """A compact SQL-like rendering of an expression."""
    if isinstance(expr, ColumnRef):
        return f"{expr.name}#{expr.id}"
    if isinstance(expr, Literal):
        if expr.value is None:
            return "NULL"
        if isinstance(expr.value, str):
            return "'" + expr.value.replace("'", "''") + "'"
        return str(expr.value)
    if isinstance(expr, Call):
        if expr.name in _INFIX and len(expr.args) == 2:
            return f"({expr_text(expr.args[0])} {_INFIX[expr.name]} {expr_text(expr.args[1])})"
        if expr.name == "not":
            return f"NOT {expr_text(expr.args[0])}"
        if expr.name == "is_null":
            return f"{expr_text(expr.args[0])} IS NULL"
        if expr.name == "is_not_null":
            return f"{expr_text(expr.args[0])} IS NOT NULL"
        if expr.name == "negate":
            return f"-{expr_text(expr.args[0])}"
        return f"{expr.name}({', '.join(expr_text(a) for a in expr.args)})"
    if isinstance(expr, Cast):
        return f"CAST({expr_text(expr.arg)} AS {type_name(expr.type)})"
    if isinstance(expr, Case):
        parts = " ".join(f"WHEN {expr_text(c)} THEN {expr_text(v)}" for c, v in expr.whens)
        return f"CASE {parts} ELSE {expr_text(expr.default)} END"
    if isinstance(expr, InList):
        return f"{expr_text(expr.arg)} {'NOT IN' if expr.negated else 'IN'} ({', '.join(expr_text(v) for v in expr.values)})"
    if isinstance(expr, AggregateCall):
        inner = ", ".join(expr_text(a) for a in expr.args) or "*"
        return f"{expr.func}({'DISTINCT ' if expr.distinct else ''}{inner})"
    if isinstance(expr, WindowCall):
        over = []
        if expr.partition_by:
            over.append("PARTITION BY " + ", ".join(expr_text(p) for p in expr.partition_by))
        if expr.order_by:
            over.append("ORDER BY " + ", ".join(sort_key_text(k) for k in expr.order_by))
        return f"{expr.func}({', '.join(expr_text(a) for a in expr.args)}) OVER ({' '.join(over)})"
    return type(expr).__name__


def sort_key_text(key: SortKey) -> str:
    return f"{expr_text(key.expr)} {'ASC' if key.ascending else 'DESC'}{' NULLS FIRST' if key.nulls_first else ''}"


def node_text(plan: Plan) -> str:
    """One line describing a plan node."""
    if isinstance(plan, Scan):
        text = f"Scan {plan.table} [{', '.join(plan.columns)}]"
        if plan.filters:
            text += f" filters=[{', '.join(expr_text(f) for f in plan.filters)}]"
        if plan.limit is not None:
            text += f" limit={plan.limit}"
        return text
    if isinstance(plan, Filter):
        return f"Filter {expr_text(plan.predicate)}"
    if isinstance(plan, Project):
        return "Project " + ", ".join(
            expr_text(e) if isinstance(e, ColumnRef) and e.id == f.id else f"{expr_text(e)} AS {f.name}#{f.id}"
            for e, f in zip(plan.exprs, plan.output))
    if isinstance(plan, Aggregate):
        groups = ", ".join(expr_text(g) for g in plan.groups)
        aggs = ", ".join(expr_text(a) for a in plan.aggregates)
        return f"Aggregate groups=[{groups}] aggregates=[{aggs}]"
    if isinstance(plan, Join):
        condition = f" on {expr_text(plan.condition)}" if plan.condition is not None else ""
        kind = plan.kind.replace("_", " ").upper()  # asof_left -> ASOF LEFT
        return f"Join {kind}{' null-aware' if plan.null_aware else ''}{condition}"
    if isinstance(plan, Sort):
        return "Sort " + ", ".join(sort_key_text(k) for k in plan.keys)
    if isinstance(plan, TopN):
        return f"TopN {plan.count}{f' offset {plan.offset}' if plan.offset else ''} by " + ", ".join(
            sort_key_text(k) for k in plan.keys)
    if isinstance(plan, Limit):
        return f"Limit {plan.count if plan.count is not None else 'ALL'}{f' offset {plan.offset}' if plan.offset else ''}"
    if isinstance(plan, SetOp):
        return f"{plan.kind.upper()}{' ALL' if plan.all else ''}"
    if isinstance(plan, Window):
        return "Window " + ", ".join(expr_text(c) for c in plan.calls)
    if isinstance(plan, Values):
        return f"Values ({len(plan.rows)} row{'s' if len(plan.rows) != 1 else ''})"
    return type(plan).__name__


def plan_text(plan: Plan, annotate: Callable[[Plan], str] | None = None) -> str:
    """The plan as an indented tree, one node per line; ``annotate`` appends per-node facts."""
    lines: list[str] = []

    def visit(node: Plan, depth: int) -> None:
        suffix = annotate(node) if annotate is not None else ""
        lines.append("  " * depth + node_text(node) + (f"  ({suffix})" if suffix else ""))
        for child in node.inputs():
            visit(child, depth + 1)

    visit(plan, 0)
    return "\n".join(lines)
