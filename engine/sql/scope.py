"""Name resolution for the binder: which relation and field a column name refers to."""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass, field

from engine.errors import PlanError
from engine.logical.expr import Field


class IdGenerator:
    """Query-unique column ids."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def field(self, name: str, dtype, nullable: bool = True) -> Field:  # noqa: ANN001
        return Field(next(self._counter), name, dtype, nullable)


@dataclass
class Relation:
    """One FROM item as seen by name resolution: an alias and its visible columns."""

    alias: str | None
    names: list[str]
    fields: list[Field]
    hidden: set[str] = field(default_factory=set)  # USING columns already shown by the left side


@dataclass
class Scope:
    relations: list[Relation] = field(default_factory=list)
    outer: Scope | None = None

    def all_fields(self) -> list[Field]:
        return [f for r in self.relations for f in r.fields]

    def merged(self, other: Scope) -> Scope:
        return Scope(self.relations + other.relations, self.outer)

    def _candidates(self, table: str | None, column: str) -> list[Field]:
        found = []
        lowered = column.lower()
        for relation in self.relations:
            if table is not None and (relation.alias or "").lower() != table.lower():
                continue
            for name, f in zip(relation.names, relation.fields):
                if name.lower() == lowered and (table is not None or name not in relation.hidden):
                    found.append(f)
        return found

    def resolve(self, table: str | None, column: str) -> tuple[Field, int]:
        """The field a (possibly qualified) column name means, and how many scopes out it is."""
        scope: Scope | None = self
        depth = 0
        while scope is not None:
            found = scope._candidates(table, column)
            if len(found) == 1:
                return found[0], depth
            if len(found) > 1:
                tables = [r.alias for r in scope.relations if any(f in found for f in r.fields)]
                raise PlanError(f"column reference '{column}' is ambiguous: it exists in "
                                f"{', '.join(repr(t) for t in tables if t)}; qualify it (e.g. {tables[0]}.{column})")
            scope = scope.outer
            depth += 1
        raise PlanError(self._not_found(table, column))

    def has_table(self, table: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if any((r.alias or "").lower() == table.lower() for r in scope.relations):
                return True
            scope = scope.outer
        return False

    def _not_found(self, table: str | None, column: str) -> str:
        names: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            for r in scope.relations:
                names += [f"{r.alias}.{n}" if table else n for n in r.names]
            scope = scope.outer
        wanted = f"{table}.{column}" if table else column
        if table is not None and not self.has_table(table):
            aliases = [r.alias for r in self.relations if r.alias]
            close = difflib.get_close_matches(table, aliases, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
                f"; tables in scope: {', '.join(aliases)}" if aliases else "")
            return f"table '{table}' is not in the FROM clause{hint}"
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.5)
        if not close:
            close = difflib.get_close_matches(wanted.lower(), [n.lower() for n in names], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"column '{wanted}' does not exist{hint}"
