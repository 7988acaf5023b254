"""CHECK constraints: stored as ``delta.constraints.<name>`` table properties, enforced on write.

The protocol obliges every writer of a table with CHECK constraints to refuse rows for
which a constraint is false (NULL passes, as in SQL). This module evaluates constraints
written in the predicate subset that :mod:`lakehouse.expressions` understands (comparisons,
AND/OR/NOT, IN, IS NULL, LIKE). A constraint outside that subset can still be enforced by
a caller that evaluates SQL itself (the engine does), which then names it in
``checked``; otherwise the write is refused rather than left unchecked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Collection, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.errors import ConstraintViolationError, InvalidFilterError, LakehouseError, UnsupportedFeatureError

PREFIX = "delta.constraints."
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def constraints_of(configuration: Mapping[str, str]) -> dict[str, str]:
    """``{name: sql}`` of every CHECK constraint in a table's properties."""
    return {key[len(PREFIX):]: value for key, value in configuration.items() if key.startswith(PREFIX)}


def validate_name(name: str, *, table: str) -> str:
    if not _NAME.match(name or ""):
        raise LakehouseError(f"table '{table}': {name!r} is not a valid constraint name; use letters, digits "
                             "and underscores, starting with a letter")
    return name.lower()


@dataclass(frozen=True)
class CompiledConstraint:
    name: str
    sql: str
    expression: pc.Expression


def compile_constraints(configuration: Mapping[str, str], schema: pa.Schema, *, table: str,
                        checked: Collection[str] = ()) -> list[CompiledConstraint]:
    """Arrow expressions for the constraints the caller has not ``checked`` already.

    Raises ``UnsupportedFeatureError`` for a constraint this module cannot evaluate, so a
    write never skips one silently.
    """
    from lakehouse.expressions import bind, parse_filter, to_arrow_expression

    done = {c.lower() for c in checked}
    compiled = []
    for name, sql in constraints_of(configuration).items():
        if name.lower() in done:
            continue
        try:
            bound = bind(parse_filter(sql), schema)
        except (InvalidFilterError, LakehouseError) as exc:
            raise UnsupportedFeatureError(
                f"table '{table}' has CHECK constraint '{name}' ({sql}), which the Python writer cannot evaluate "
                f"({exc}); write through SQL (engine.connect(...).sql('INSERT ...')), which checks it") from None
        compiled.append(CompiledConstraint(name, sql, to_arrow_expression(bound, schema)))
    return compiled


def check_batch(batch: pa.RecordBatch, constraints: list[CompiledConstraint], *, table: str) -> None:
    """Raise ``ConstraintViolationError`` naming the first constraint ``batch`` breaks and a failing row."""
    if not constraints or not batch.num_rows:
        return
    data = ds.dataset(pa.Table.from_batches([batch]))
    results = data.to_table(columns={c.name: c.expression for c in constraints})
    for constraint in constraints:
        # NULL passes: only a definite false is a violation.
        failing = pc.equal(results.column(constraint.name), False)
        if pc.any(failing).as_py():
            position = pc.index(failing, True).as_py()
            row = ", ".join(f"{k}={v!r}" for k, v in batch.slice(position, 1).to_pylist()[0].items())
            raise ConstraintViolationError(
                f"CHECK constraint '{constraint.name}' ({constraint.sql}) is violated by a new row for table "
                f"'{table}': {row}")


def checked_batches(batches: Iterable[pa.RecordBatch], constraints: list[CompiledConstraint], *,
                    table: str) -> Iterator[pa.RecordBatch]:
    """Pass ``batches`` through, checking each against ``constraints`` first."""
    for batch in batches:
        check_batch(batch, constraints, table=table)
        yield batch
