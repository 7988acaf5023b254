"""Logical plan nodes: a tree of frozen dataclasses, each knowing its output fields.

Optimizer rules are functions plan -> plan that rebuild nodes with ``dataclasses.replace``
or :meth:`Plan.with_inputs`; nothing is mutated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from engine.logical.expr import AggregateCall, Call, Expr, Field, SortKey, WindowCall, column_ids, conjuncts

if TYPE_CHECKING:
    from engine.datasource.base import TableSource


class Plan:
    """Base of logical plan nodes."""

    @property
    def fields(self) -> tuple[Field, ...]:
        raise NotImplementedError

    def inputs(self) -> tuple[Plan, ...]:
        return ()

    def with_inputs(self, inputs: tuple[Plan, ...]) -> Plan:
        return self

    def expressions(self) -> tuple[Expr, ...]:
        """Every scalar expression this node evaluates (for rules that inspect them)."""
        return ()

    def field_ids(self) -> set[int]:
        return {f.id for f in self.fields}


class Unary(Plan):
    """A node with one input, held in its ``input`` field."""

    input: Plan

    @property
    def fields(self) -> tuple[Field, ...]:
        """Row-preserving nodes output their input's columns; others override this."""
        return self.input.fields

    def inputs(self) -> tuple[Plan, ...]:
        return (self.input,)

    def with_inputs(self, inputs: tuple[Plan, ...]) -> Plan:
        return replace(self, input=inputs[0])  # type: ignore[type-var]


@dataclass(frozen=True)
class Scan(Plan):
    """Read columns of a table source; ``filters`` were pushed into the source."""

    source: TableSource = field(compare=False)
    table: str
    columns: tuple[str, ...]
    output: tuple[Field, ...]
    filters: tuple[Expr, ...] = ()
    limit: int | None = None

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.output

    def expressions(self) -> tuple[Expr, ...]:
        return self.filters

    def column_of(self) -> dict[int, str]:
        return {f.id: c for f, c in zip(self.output, self.columns)}


@dataclass(frozen=True)
class Values(Plan):
    """Literal rows (also the one empty row of ``SELECT`` without ``FROM``)."""

    output: tuple[Field, ...]
    rows: tuple[tuple[Expr, ...], ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.output

    def expressions(self) -> tuple[Expr, ...]:
        return tuple(e for row in self.rows for e in row)


@dataclass(frozen=True)
class Filter(Unary):
    input: Plan
    predicate: Expr

    def expressions(self) -> tuple[Expr, ...]:
        return (self.predicate,)


@dataclass(frozen=True)
class Project(Unary):
    input: Plan
    exprs: tuple[Expr, ...]
    output: tuple[Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.output

    def expressions(self) -> tuple[Expr, ...]:
        return self.exprs


@dataclass(frozen=True)
class Aggregate(Unary):
    """Group by ``groups`` and compute ``aggregates``; outputs group fields then aggregate fields."""

    input: Plan
    groups: tuple[Expr, ...]
    aggregates: tuple[AggregateCall, ...]
    output: tuple[Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.output

    def expressions(self) -> tuple[Expr, ...]:
        return self.groups + self.aggregates


JOIN_KINDS = ("inner", "left", "right", "full", "cross", "semi", "anti", "mark", "asof", "asof_left")
ASOF_KINDS = ("asof", "asof_left")


@dataclass(frozen=True)
class Join(Plan):
    """Join two inputs.

    ``semi``/``anti`` output only the left fields; ``mark`` outputs the left fields plus
    ``mark`` (a boolean: does a matching right row exist?). ``null_aware`` makes an anti
    join follow ``NOT IN`` semantics (a NULL on either side means "unknown", never kept).

    ``asof``/``asof_left`` (DuckDB's ``ASOF [LEFT] JOIN``) pair each left row with at most
    one right row: among those with equal keys, the nearest one by the condition's single
    inequality (see :func:`asof_parts`). Unlike other joins, a filter on the right input
    changes which row is nearest, so rules must never move conditions into or out of it
    except as :func:`engine.optimizer.pushdown` does.
    """

    left: Plan
    right: Plan
    kind: str
    condition: Expr | None = None
    mark: Field | None = None
    null_aware: bool = False

    @property
    def fields(self) -> tuple[Field, ...]:
        if self.kind in ("semi", "anti"):
            return self.left.fields
        if self.kind == "mark":
            assert self.mark is not None
            return self.left.fields + (self.mark,)
        left, right = self.left.fields, self.right.fields
        if self.kind in ("right", "full"):
            left = tuple(replace(f, nullable=True) for f in left)
        if self.kind in ("left", "full", "asof_left"):
            right = tuple(replace(f, nullable=True) for f in right)
        return left + right

    def inputs(self) -> tuple[Plan, ...]:
        return (self.left, self.right)

    def with_inputs(self, inputs: tuple[Plan, ...]) -> Plan:
        return replace(self, left=inputs[0], right=inputs[1])

    def expressions(self) -> tuple[Expr, ...]:
        return (self.condition,) if self.condition is not None else ()


@dataclass
class AsofParts:
    """An ASOF join condition taken apart (left expression first in every pair).

    ``keys``: equalities ``(left, right, null_safe)`` (``null_safe`` for IS NOT DISTINCT FROM);
    ``inequality``: ``(op, left, right)`` meaning ``left op right``, op one of lt/lte/gt/gte;
    ``left_only``/``right_only``: conditions on one input (a left row failing one matches
    nothing; a right row failing one is never a match); ``other``: anything else (refused).
    """

    keys: list[tuple[Expr, Expr, bool]] = field(default_factory=list)
    inequalities: list[tuple[str, Expr, Expr]] = field(default_factory=list)
    left_only: list[Expr] = field(default_factory=list)
    right_only: list[Expr] = field(default_factory=list)
    other: list[Expr] = field(default_factory=list)

    @property
    def inequality(self) -> tuple[str, Expr, Expr] | None:
        return self.inequalities[0] if len(self.inequalities) == 1 else None


_FLIPPED = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}


def asof_parts(condition: Expr | None, left_ids: set[int], right_ids: set[int]) -> AsofParts:
    """Classify the conjuncts of an ASOF join condition."""
    parts = AsofParts()

    def sides(a: Expr, b: Expr) -> tuple[Expr, Expr] | None:
        ids_a, ids_b = column_ids(a), column_ids(b)
        if ids_a and ids_b and ids_a <= left_ids and ids_b <= right_ids:
            return a, b
        if ids_a and ids_b and ids_a <= right_ids and ids_b <= left_ids:
            return b, a
        return None

    for part in conjuncts(condition):
        ids = column_ids(part)
        if ids <= left_ids:  # constants included: they decide per left row too
            parts.left_only.append(part)
            continue
        if ids <= right_ids:
            parts.right_only.append(part)
            continue
        if isinstance(part, Call) and part.name == "eq" and (pair := sides(*part.args)) is not None:
            parts.keys.append((pair[0], pair[1], False))
            continue
        if isinstance(part, Call) and part.name == "not" and isinstance(part.args[0], Call) \
                and part.args[0].name == "is_distinct_from" and (pair := sides(*part.args[0].args)) is not None:
            parts.keys.append((pair[0], pair[1], True))
            continue
        if isinstance(part, Call) and part.name in _FLIPPED and (pair := sides(*part.args)) is not None:
            op = part.name if pair[0] is part.args[0] else _FLIPPED[part.name]
            parts.inequalities.append((op, pair[0], pair[1]))
            continue
        parts.other.append(part)
    return parts


@dataclass(frozen=True)
class Sort(Unary):
    input: Plan
    keys: tuple[SortKey, ...]

    def expressions(self) -> tuple[Expr, ...]:
        return tuple(k.expr for k in self.keys)


@dataclass(frozen=True)
class Limit(Unary):
    input: Plan
    count: int | None
    offset: int = 0


@dataclass(frozen=True)
class TopN(Unary):
    """Sort then limit, fused so only ``offset + count`` rows are ever kept."""

    input: Plan
    keys: tuple[SortKey, ...]
    count: int
    offset: int = 0

    def expressions(self) -> tuple[Expr, ...]:
        return tuple(k.expr for k in self.keys)


@dataclass(frozen=True)
class SetOp(Plan):
    """UNION / INTERSECT / EXCEPT, with or without ALL; inputs already have equal types."""

    kind: str  # "union" | "intersect" | "except"
    all: bool
    left: Plan
    right: Plan
    output: tuple[Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.output

    def inputs(self) -> tuple[Plan, ...]:
        return (self.left, self.right)

    def with_inputs(self, inputs: tuple[Plan, ...]) -> Plan:
        return replace(self, left=inputs[0], right=inputs[1])


@dataclass(frozen=True)
class Window(Unary):
    """Evaluate window functions; outputs the input fields plus one field per call."""

    input: Plan
    calls: tuple[WindowCall, ...]
    output: tuple[Field, ...]  # only the new fields

    @property
    def fields(self) -> tuple[Field, ...]:
        return self.input.fields + self.output

    def expressions(self) -> tuple[Expr, ...]:
        return self.calls


def walk_plan(plan: Plan) -> list[Plan]:
    """Every node, parents before children."""
    out, stack = [], [plan]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.inputs()))
    return out


def schema_of(fields: tuple[Field, ...]) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in fields])


def transform_plan(plan: Plan, fn: Any) -> Plan:
    """Rebuild bottom-up: children first, then ``fn(node)`` (returning a node)."""
    inputs = plan.inputs()
    if inputs:
        new_inputs = tuple(transform_plan(i, fn) for i in inputs)
        if any(a is not b for a, b in zip(new_inputs, inputs)):
            plan = plan.with_inputs(new_inputs)
    return fn(plan)
