"""Typed scalar expressions of the logical plan.

Columns are referred to by a query-unique integer id (``ColumnRef.id``), never by name, so
that self-joins, subqueries and renames cannot confuse two columns that print alike.
Every node knows its Arrow result type. Nodes are frozen and hashable, so optimizer rules
can compare and rebuild them freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow as pa


@dataclass(frozen=True)
class Field:
    """One output column of a plan node."""

    id: int
    name: str
    type: pa.DataType = field(compare=False)
    nullable: bool = field(default=True, compare=False)

    def ref(self) -> ColumnRef:
        return ColumnRef(self.id, self.name, self.type)


class Expr:
    """Base of scalar expressions."""

    type: pa.DataType

    def children(self) -> tuple[Expr, ...]:
        return ()

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return self


@dataclass(frozen=True)
class ColumnRef(Expr):
    id: int
    name: str = field(compare=False)
    type: pa.DataType = field(compare=False)


@dataclass(frozen=True)
class Literal(Expr):
    value: Any
    type: pa.DataType

    def __hash__(self) -> int:
        return hash((repr(self.value), str(self.type)))


@dataclass(frozen=True)
class Call(Expr):
    """A scalar function or operator by its registry name (``add``, ``eq``, ``upper``...)."""

    name: str
    args: tuple[Expr, ...]
    type: pa.DataType = field(compare=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return Call(self.name, children, self.type)


@dataclass(frozen=True)
class Cast(Expr):
    arg: Expr
    type: pa.DataType
    safe: bool = True  # TRY_CAST sets this False: failures become NULL

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return Cast(children[0], self.type, self.safe)

    def __hash__(self) -> int:
        return hash(("cast", self.arg, str(self.type), self.safe))


@dataclass(frozen=True)
class Case(Expr):
    """``CASE WHEN c1 THEN v1 ... ELSE d END``; ``default`` is a NULL literal when absent."""

    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr
    type: pa.DataType = field(compare=False)

    def children(self) -> tuple[Expr, ...]:
        return tuple(x for pair in self.whens for x in pair) + (self.default,)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        pairs = tuple((children[i], children[i + 1]) for i in range(0, len(children) - 1, 2))
        return Case(pairs, children[-1], self.type)


@dataclass(frozen=True)
class InList(Expr):
    arg: Expr
    values: tuple[Expr, ...]
    negated: bool = False
    type: pa.DataType = field(default=pa.bool_(), compare=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.arg, *self.values)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return InList(children[0], tuple(children[1:]), self.negated)


@dataclass(frozen=True)
class AggregateCall(Expr):
    """An aggregate (``sum``, ``count``...) evaluated by an ``Aggregate`` plan node."""

    func: str
    args: tuple[Expr, ...]
    type: pa.DataType = field(compare=False)
    distinct: bool = False

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        return AggregateCall(self.func, children, self.type, self.distinct)


@dataclass(frozen=True)
class SortKey:
    expr: Expr
    ascending: bool = True
    nulls_first: bool = False  # default: NULLS LAST for ASC, NULLS FIRST for DESC (DuckDB)


@dataclass(frozen=True)
class Frame:
    """A window frame: ``ROWS``/``RANGE`` between two bounds (None = unbounded)."""

    kind: str = "range"  # "rows" | "range"
    start: int | None = None  # offsets relative to the current row; None = unbounded
    end: int | None = 0
    start_unbounded: bool = True
    end_unbounded: bool = False


@dataclass(frozen=True)
class WindowCall(Expr):
    func: str
    args: tuple[Expr, ...]
    partition_by: tuple[Expr, ...]
    order_by: tuple[SortKey, ...]
    frame: Frame | None
    type: pa.DataType = field(compare=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args + self.partition_by + tuple(k.expr for k in self.order_by)

    def with_children(self, children: tuple[Expr, ...]) -> Expr:
        n, p = len(self.args), len(self.partition_by)
        keys = tuple(SortKey(e, k.ascending, k.nulls_first) for e, k in zip(children[n + p:], self.order_by))
        return WindowCall(self.func, children[:n], children[n:n + p], keys, self.frame, self.type)


# --- helpers -----------------------------------------------------------------------------


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))


def transform(expr: Expr, fn: Callable[[Expr], Expr | None]) -> Expr:
    """Rebuild ``expr`` bottom-up; ``fn`` returns a replacement or ``None`` to keep a node."""
    children = expr.children()
    if children:
        new_children = tuple(transform(c, fn) for c in children)
        if new_children != children or any(a is not b for a, b in zip(new_children, children)):
            expr = expr.with_children(new_children)
    replaced = fn(expr)
    return expr if replaced is None else replaced


def column_ids(expr: Expr) -> set[int]:
    return {node.id for node in walk(expr) if isinstance(node, ColumnRef)}


def conjuncts(expr: Expr | None) -> list[Expr]:
    """Split a predicate on AND (iteratively, in order)."""
    if expr is None:
        return []
    parts: list[Expr] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Call) and node.name == "and":
            stack.extend(reversed(node.args))
        else:
            parts.append(node)
    return parts


def conjunction(parts: list[Expr]) -> Expr | None:
    """AND the parts together (``None`` for none)."""
    if not parts:
        return None
    # Balanced, so thousands of conditions stay shallow for every recursive pass.
    while len(parts) > 1:
        paired = [Call("and", (parts[i], parts[i + 1]), pa.bool_()) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return parts[0]


def is_true_literal(expr: Expr) -> bool:
    return isinstance(expr, Literal) and expr.value is True


def null_literal(dtype: pa.DataType = pa.null()) -> Literal:
    return Literal(None, dtype)
