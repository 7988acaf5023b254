"""INSERT, DELETE and UPDATE on warehouse tables (copy-on-write, one version each).

DELETE and UPDATE pick candidate files with the log's statistics (the WHERE clause's
conditions that reach the table's scan), evaluate the full WHERE with the engine on every
row of those files, and rewrite only the files that hold an affected row. Files without
one are left alone, so their data is never read twice or copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

import lakehouse.expressions as lx
from engine.errors import ConstraintViolationError, PlanError, UnsupportedSQLError
from engine.statements.ddl import open_target, table_name
from engine.types import type_name

if TYPE_CHECKING:
    from engine.session import Session

_TARGET = "__lh_target"
_POSITION = "__lh_pos"
_CHECKED = "__lh_checked"


def affected_rows(count: int) -> pa.Table:
    return pa.table({"num_affected_rows": pa.array([count], pa.int64())})


# --- constraints -------------------------------------------------------------------------


def constraints_of(properties: dict[str, str]) -> dict[str, str]:
    prefix = "delta.constraints."
    return {key[len(prefix):]: value for key, value in properties.items() if key.startswith(prefix)}


def check_constraints(session: Session, table: str, rows: pa.Table, constraints: dict[str, str], *,
                      existing: bool = False) -> None:
    """Refuse ``rows`` when a CHECK constraint is false for one of them (NULL passes, as in SQL).

    The error names the constraint and shows the first failing row.
    """
    if not constraints or not rows.num_rows:
        return
    with _registered(session, _CHECKED, rows):
        for name, expression in constraints.items():
            failing = session.sql(f"SELECT * FROM {_CHECKED} WHERE NOT ({expression}) LIMIT 1").to_arrow()
            if failing.num_rows:
                row = ", ".join(f"{k}={v!r}" for k, v in failing.to_pylist()[0].items())
                where = "existing rows of" if existing else "a new row for"
                raise ConstraintViolationError(
                    f"CHECK constraint '{name}' ({expression}) is violated by {where} table '{table}': {row}")


class _registered:
    """Register an Arrow table under a reserved name for the duration of a block."""

    def __init__(self, session: Session, name: str, table: pa.Table) -> None:
        self.session, self.name, self.table = session, name, table

    def __enter__(self) -> None:
        self.session.catalog.register(self.name, self.table)

    def __exit__(self, *exc: Any) -> None:
        self.session.catalog.unregister(self.name)


# --- INSERT -------------------------------------------------------------------------------


def _conform(rows: pa.Table, schema: pa.Schema, columns: list[str] | None, table: str) -> pa.Table:
    """Rows of a VALUES list or query, as the table's columns and types (by position or by name)."""
    names = columns if columns is not None else schema.names
    if len(set(n.lower() for n in names)) != len(names):
        raise PlanError(f"INSERT INTO {table}: a column is listed twice")
    if rows.num_columns != len(names):
        raise PlanError(f"INSERT INTO {table}: {rows.num_columns} values per row for {len(names)} columns "
                        f"({', '.join(names)}); name the columns: INSERT INTO {table} (a, b) ...")
    lookup = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for field in schema:
        position = lookup.pop(field.name.lower(), None)
        if position is None:
            out.append(pa.nulls(rows.num_rows, field.type))
            continue
        column = rows.column(position)
        try:
            out.append(column.cast(field.type) if column.type != field.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PlanError(f"INSERT INTO {table}: column '{field.name}' is {type_name(field.type)}; a value of "
                            f"type {type_name(column.type)} does not fit ({str(exc).splitlines()[0]})") from None
    if lookup:
        raise PlanError(f"INSERT INTO {table}: no column named {', '.join(repr(n) for n in lookup)}; "
                        f"columns are {', '.join(schema.names)}")
    return pa.Table.from_arrays(out, schema=schema)


def insert(session: Session, node: exp.Insert) -> pa.Table:
    target = node.this
    columns = [c.name for c in target.expressions] if isinstance(target, exp.Schema) else None
    name = table_name(target)
    table = open_target(session, name)
    source = node.expression
    if source is None:
        raise PlanError(f"INSERT INTO {name} needs VALUES (...) or a SELECT")
    rows = session.sql(source.sql(dialect="duckdb")).to_arrow()
    schema = table.schema()
    data = _conform(rows, schema, columns, name)
    snapshot = table.snapshot()
    check_constraints(session, name, data, constraints_of(dict(snapshot.properties)))
    checked = list(constraints_of(dict(snapshot.properties)))
    if node.args.get("overwrite"):
        table.overwrite(data, checked_constraints=checked)
    else:
        table.append(data, checked_constraints=checked)
    return affected_rows(data.num_rows)


# --- DELETE / UPDATE ------------------------------------------------------------------------


def _skipping_predicate(session: Session, name: str, where: exp.Expression | None) -> lx.Predicate | None:
    """The WHERE conditions the planner pushes into the target's scan, as a file-skipping predicate."""
    if where is None:
        return None
    from engine.datasource.lakehouse import to_predicate
    from engine.logical.plan import Scan

    plan = session.plan(f"SELECT * FROM {exp.to_identifier(name).sql(dialect='duckdb')} WHERE "
                        f"{where.sql(dialect='duckdb')}")
    scans = [node for node in _walk(plan) if isinstance(node, Scan) and node.table.lower() == name.lower()]
    if len(scans) != 1:  # the table also appears in a subquery: do not guess which scan is which
        return None
    parts = [p for p in (to_predicate(f, scans[0].column_of()) for f in scans[0].filters) if p is not None]
    return None if not parts else parts[0] if len(parts) == 1 else lx.And(tuple(parts))


def _walk(plan: Any) -> Iterator[Any]:
    yield plan
    for child in plan.inputs():
        yield from _walk(child)


def _candidates(session: Session, name: str, where: exp.Expression | None
                ) -> tuple[Any, list[str], pa.Table | None, np.ndarray | None, lx.Predicate | None]:
    """The snapshot, the candidate files' paths, all their rows (in file order), each row's file,
    and the predicate that picked the files (``None``: every file is a candidate)."""
    table = open_target(session, name)
    snapshot = table.snapshot()
    predicate = _skipping_predicate(session, name, where)
    scan = snapshot.scan(filter=predicate)
    paths, parts, owners = [], [], []
    for index, (path, rows) in enumerate(scan.read_files()):
        paths.append(path)
        parts.append(rows)
        owners.append(np.full(rows.num_rows, index, dtype=np.int64))
    if not parts:
        return snapshot, [], None, None, predicate
    return snapshot, paths, pa.concat_tables(parts), np.concatenate(owners), predicate


def _evaluate(session: Session, rows: pa.Table, alias: str, where: exp.Expression | None,
              values: dict[str, exp.Expression]) -> tuple[np.ndarray, dict[str, pa.ChunkedArray]]:
    """Which rows the WHERE selects, and each SET expression's value per row."""
    numbered = rows.append_column(_POSITION, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    condition = f"coalesce(({where.sql(dialect='duckdb')}), false)" if where is not None else "true"
    selects = [_POSITION, f"{condition} AS __lh_hit"]
    selects += [f"({expr.sql(dialect='duckdb')}) AS __lh_set_{i}" for i, expr in enumerate(values.values())]
    sql = f"SELECT {', '.join(selects)} FROM {_TARGET} AS {exp.to_identifier(alias).sql(dialect='duckdb')} " \
          f"ORDER BY {_POSITION}"
    with _registered(session, _TARGET, numbered):
        result = session.sql(sql).to_arrow()
    hit = np.asarray(result.column("__lh_hit").to_numpy(), dtype=bool)
    new = {column: result.column(f"__lh_set_{i}") for i, column in enumerate(values)}
    return hit, new


def _alias(node: exp.Expression, name: str) -> str:
    alias = node.this.args.get("alias") if isinstance(node.this, exp.Table) else None
    return alias.name if alias is not None else name


def delete(session: Session, node: exp.Delete) -> pa.Table:
    from lakehouse.rewrite import rewrite

    name = table_name(node.this)
    where = node.args["where"].this if node.args.get("where") else None
    if node.args.get("using"):
        raise UnsupportedSQLError("DELETE ... USING is not supported; use WHERE ... IN (SELECT ...)")
    snapshot, paths, rows, owners, predicate = _candidates(session, name, where)
    if rows is None:
        return affected_rows(0)
    hit, _ = _evaluate(session, rows, _alias(node, name), where, {})
    touched = np.unique(owners[hit])
    if not len(touched):
        return affected_rows(0)
    in_touched = np.isin(owners, touched)
    kept = rows.filter(pa.array(in_touched & ~hit))
    deleted = rows.filter(pa.array(hit))
    change = deleted.append_column("_change_type", pa.array(["delete"] * deleted.num_rows, pa.string()))
    rewrite(snapshot, removed_paths=[paths[i] for i in touched], data=kept, change_data=change,
            operation="DELETE", parameters={"predicate": where.sql(dialect="duckdb") if where is not None else "true"},
            metrics={"numDeletedRows": int(hit.sum()), "numCopiedRows": kept.num_rows}, read_predicate=predicate,
            checked_constraints=list(constraints_of(dict(snapshot.properties))))
    return affected_rows(int(hit.sum()))


def update(session: Session, node: exp.Update) -> pa.Table:
    from lakehouse.rewrite import rewrite

    name = table_name(node.this)
    where = node.args["where"].this if node.args.get("where") else None
    if node.args.get("from_") or node.args.get("from"):
        raise UnsupportedSQLError("UPDATE ... FROM is not supported; use MERGE INTO or a subquery in SET/WHERE")
    snapshot, paths, rows, owners, predicate = _candidates(session, name, where)
    schema = snapshot.schema
    assignments: dict[str, exp.Expression] = {}
    for assignment in node.expressions:
        column = assignment.this.name
        match = next((f.name for f in schema if f.name.lower() == column.lower()), None)
        if match is None:
            raise PlanError(f"UPDATE {name}: no column named '{column}'; columns are {', '.join(schema.names)}")
        if match in assignments:
            raise PlanError(f"UPDATE {name}: column '{match}' is assigned twice")
        assignments[match] = assignment.expression
    if rows is None:
        return affected_rows(0)
    hit, new = _evaluate(session, rows, _alias(node, name), where, assignments)
    touched = np.unique(owners[hit])
    if not len(touched):
        return affected_rows(0)
    mask = pa.array(hit)
    columns = []
    for field in schema:
        column = rows.column(field.name)
        if field.name in new:
            value = new[field.name]
            try:
                value = value.cast(field.type) if value.type != field.type else value
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise PlanError(f"UPDATE {name}: the new value of '{field.name}' ({type_name(value.type)}) does not "
                                f"fit {type_name(field.type)}: {str(exc).splitlines()[0]}") from None
            column = pc.if_else(mask, value, column)
        columns.append(column)
    updated_all = pa.Table.from_arrays(columns, schema=schema)
    in_touched = pa.array(np.isin(owners, touched))
    data = updated_all.filter(in_touched)
    before, after = rows.filter(mask), updated_all.filter(mask)
    check_constraints(session, name, after, constraints_of(dict(snapshot.properties)))
    _check_not_null(after, schema, name)
    change = pa.concat_tables([
        before.append_column("_change_type", pa.array(["update_preimage"] * before.num_rows, pa.string())),
        after.append_column("_change_type", pa.array(["update_postimage"] * after.num_rows, pa.string())),
    ])
    count = int(hit.sum())
    rewrite(snapshot, removed_paths=[paths[i] for i in touched], data=data, change_data=change,
            operation="UPDATE", parameters={"predicate": where.sql(dialect="duckdb") if where is not None else "true"},
            metrics={"numUpdatedRows": count, "numCopiedRows": data.num_rows - count}, read_predicate=predicate,
            checked_constraints=list(constraints_of(dict(snapshot.properties))))
    return affected_rows(count)


def _check_not_null(rows: pa.Table, schema: pa.Schema, table: str) -> None:
    for field in schema:
        if not field.nullable and rows.column(field.name).null_count:
            raise ConstraintViolationError(f"table '{table}': column '{field.name}' is NOT NULL, but an UPDATE "
                                           "would set it to NULL")
