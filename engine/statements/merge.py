"""MERGE INTO: update, delete and insert target rows from a source, in one copy-on-write commit.

The target's candidate rows (each tagged with its position) are joined with the source
rows (each tagged with its own position) by the engine, which also picks, per joined row,
the first WHEN clause that applies and evaluates every SET/VALUES expression. The rest is
array work here: a target row may be changed by at most one source row (as in DuckDB and
Delta), only files holding a changed row are rewritten, inserts go to new files.

Candidate files: when there is no ``WHEN NOT MATCHED BY SOURCE`` clause, only target rows
that the ON condition can match matter, so the ON condition's target-only conjuncts skip
files with the log's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from engine.errors import ConstraintViolationError, PlanError, UnsupportedSQLError
from engine.statements.ddl import table_name
from engine.statements.dml import (
    _POSITION, _TARGET, _candidates, _check_not_null, _registered, check_constraints, constraints_of,
)
from engine.types import type_name

if TYPE_CHECKING:
    from engine.session import Session

_SOURCE = "__lh_source"
_SOURCE_POSITION = "__lh_spos"
_CLAUSE = "__lh_clause"


@dataclass(frozen=True)
class _Clause:
    kind: str  # "matched" | "not_matched" | "by_source"
    action: str  # "update" | "delete" | "insert"
    condition: exp.Expression | None
    values: dict[str, exp.Expression]  # target column -> expression (update/insert)


def _quote(name: str) -> str:
    return exp.to_identifier(name).sql(dialect="duckdb")


def _clauses(node: exp.Merge, schema: pa.Schema, source_columns: list[str], source_alias: str,
             target: str) -> list[_Clause]:
    lookup = {name.lower(): name for name in schema.names}
    out = []
    for when in node.args["whens"].expressions:
        kind = "by_source" if when.args.get("source") else "matched" if when.args.get("matched") else "not_matched"
        then = when.args["then"]
        condition = when.args.get("condition")
        if isinstance(then, exp.Var) and then.name.upper() == "DELETE":
            if kind == "not_matched":
                raise PlanError(f"MERGE INTO {target}: WHEN NOT MATCHED can only INSERT")
            out.append(_Clause(kind, "delete", condition, {}))
            continue
        if isinstance(then, exp.Update):
            if kind == "not_matched":
                raise PlanError(f"MERGE INTO {target}: WHEN NOT MATCHED can only INSERT")
            values: dict[str, exp.Expression] = {}
            if len(then.expressions) == 1 and isinstance(then.expressions[0], exp.Star):
                if kind == "by_source":
                    raise PlanError(f"MERGE INTO {target}: UPDATE SET * needs a source row; WHEN NOT MATCHED BY "
                                    "SOURCE has none")
                values = _by_name(schema, source_columns, source_alias, target)
            for assignment in then.expressions:
                if isinstance(assignment, exp.Star):
                    continue
                column = lookup.get(assignment.this.name.lower())
                if column is None:
                    raise PlanError(f"MERGE INTO {target}: no column named '{assignment.this.name}'; columns are "
                                    f"{', '.join(schema.names)}")
                if column in values:
                    raise PlanError(f"MERGE INTO {target}: column '{column}' is assigned twice")
                values[column] = assignment.expression
            out.append(_Clause(kind, "update", condition, values))
            continue
        if isinstance(then, exp.Insert):
            if kind != "not_matched":
                raise PlanError(f"MERGE INTO {target}: INSERT is only allowed in WHEN NOT MATCHED")
            if isinstance(then.this, exp.Star) or then.this is None and then.expression is None:
                out.append(_Clause(kind, "insert", condition, _by_name(schema, source_columns, source_alias, target)))
                continue
            names = [c.name for c in then.this.expressions] if isinstance(then.this, exp.Tuple) else schema.names
            given = then.expression.expressions if isinstance(then.expression, exp.Tuple) else []
            if len(names) != len(given):
                raise PlanError(f"MERGE INTO {target}: INSERT lists {len(names)} column(s) but {len(given)} value(s)")
            values = {}
            for name, value in zip(names, given):
                column = lookup.get(name.lower())
                if column is None:
                    raise PlanError(f"MERGE INTO {target}: no column named '{name}'; columns are "
                                    f"{', '.join(schema.names)}")
                values[column] = value
            out.append(_Clause(kind, "insert", condition, values))
            continue
        raise UnsupportedSQLError(f"MERGE INTO {target}: '{then.sql(dialect='duckdb')[:60]}' is not supported")
    labels = {"matched": "WHEN MATCHED", "not_matched": "WHEN NOT MATCHED", "by_source": "WHEN NOT MATCHED BY SOURCE"}
    for kind, label in labels.items():
        same = [c for c in out if c.kind == kind]
        if any(c.condition is None for c in same[:-1]):
            raise PlanError(f"MERGE INTO {target}: a {label} clause without a condition must be the last {label} "
                            "clause; the clauses after it could never apply")
    return out


def _by_name(schema: pa.Schema, source_columns: list[str], alias: str, target: str) -> dict[str, exp.Expression]:
    """``col = source.col`` for every target column (``UPDATE SET *`` / ``INSERT *``)."""
    available = {c.lower(): c for c in source_columns}
    missing = [n for n in schema.names if n.lower() not in available]
    if missing:
        raise PlanError(f"MERGE INTO {target}: the source has no column(s) {', '.join(missing)} for SET * / INSERT *")
    return {n: exp.column(available[n.lower()], table=alias, quoted=True) for n in schema.names}


def _target_only(on: exp.Expression, alias: str, target_columns: set[str], source_columns: set[str]
                 ) -> exp.Expression | None:
    """The conjuncts of ON that only read target columns, unqualified (for file skipping)."""
    kept = []
    for part in on.flatten() if isinstance(on, exp.And) else [on]:
        columns = list(part.find_all(exp.Column))
        if not columns or part.find(exp.Subquery, exp.AggFunc):
            continue
        ok = all((c.table.lower() == alias.lower()) if c.table else
                 (c.name.lower() in target_columns and c.name.lower() not in source_columns) for c in columns)
        if ok:
            copy = part.copy()
            for column in copy.find_all(exp.Column):
                column.set("table", None)
            kept.append(copy)
    return exp.and_(*kept) if kept else None


def merge(session: Session, node: exp.Merge) -> pa.Table:
    """Run a MERGE INTO statement; returns affected/updated/deleted/inserted row counts."""
    from lakehouse.rewrite import rewrite

    target_node = node.this
    name = table_name(target_node)
    target_alias = target_node.alias_or_name if isinstance(target_node, exp.Table) else name
    using = node.args["using"]
    source_alias = using.alias_or_name if using.alias_or_name else "source"
    source_sql = using.this.sql(dialect="duckdb") if isinstance(using, exp.Subquery) else None
    if isinstance(using, exp.Table):
        plain = using.copy()
        plain.set("alias", None)
        source_sql = f"SELECT * FROM {plain.sql(dialect='duckdb')}"
    if source_sql is None:
        raise UnsupportedSQLError(f"MERGE INTO {name}: USING needs a table or a (subquery)")
    source = session.sql(source_sql).to_arrow()
    on = node.args["on"]

    snapshot_schema = session.catalog.open_table(name).schema()
    clauses = _clauses(node, snapshot_schema, source.column_names, source_alias, name)
    by_source = any(c.kind == "by_source" for c in clauses)
    target_cols = {n.lower() for n in snapshot_schema.names}
    skip_where = None if by_source else _target_only(on, target_alias, target_cols,
                                                    {c.lower() for c in source.column_names})
    snapshot, paths, rows, owners, predicate = _candidates(session, name, skip_where)
    schema = snapshot.schema
    if rows is None:
        rows = schema.empty_table()
        owners = np.zeros(0, dtype=np.int64)

    numbered = rows.append_column(_POSITION, pa.array(np.arange(rows.num_rows, dtype=np.int64)))
    sourced = source.append_column(_SOURCE_POSITION, pa.array(np.arange(source.num_rows, dtype=np.int64)))
    result = _join(session, numbered, sourced, clauses, on, target_alias, source_alias)

    tpos = result.column("__lh_tpos").to_numpy(zero_copy_only=False)
    spos_valid = np.asarray(pc.is_valid(result.column("__lh_spos")).to_numpy(zero_copy_only=False), dtype=bool)
    tpos_valid = np.asarray(pc.is_valid(result.column("__lh_tpos")).to_numpy(zero_copy_only=False), dtype=bool)
    clause = np.asarray(result.column(_CLAUSE).to_numpy(zero_copy_only=False), dtype=np.int64)
    tpos = np.where(tpos_valid, np.nan_to_num(tpos.astype(float), nan=-1), -1).astype(np.int64)

    # Target rows changed by a clause: each at most once.
    acting = (clause >= 0) & tpos_valid
    changed_positions = tpos[acting]
    if len(np.unique(changed_positions)) != len(changed_positions):
        raise PlanError(f"MERGE INTO {name}: a target row matched more than one source row; deduplicate the source "
                        "or make the ON condition unique")
    n = rows.num_rows
    row_clause = np.full(n, -1, dtype=np.int64)
    row_result = np.full(n, -1, dtype=np.int64)
    row_clause[changed_positions] = clause[acting]
    row_result[changed_positions] = np.nonzero(acting)[0]
    is_delete = np.isin(row_clause, [i for i, c in enumerate(clauses) if c.action == "delete"])
    is_update = np.isin(row_clause, [i for i, c in enumerate(clauses) if c.action == "update"])

    updated_all = _apply_updates(rows, result, clauses, row_clause, row_result, is_update, name)
    inserts = _inserts(result, clauses, clause, tpos_valid, schema, name)

    touched = np.unique(owners[is_delete | is_update]) if n else np.zeros(0, dtype=np.int64)
    in_touched = np.isin(owners, touched)
    kept = updated_all.filter(pa.array(in_touched & ~is_delete))
    before, after = rows.filter(pa.array(is_update)), updated_all.filter(pa.array(is_update))
    new_rows = pa.concat_tables([after, inserts])
    check_constraints(session, name, new_rows, constraints_of(dict(snapshot.properties)))
    _check_not_null(new_rows, schema, name)
    deleted = rows.filter(pa.array(is_delete))
    count = {"updated": int(is_update.sum()), "deleted": int(is_delete.sum()), "inserted": inserts.num_rows}
    if any(count.values()):
        change = pa.concat_tables([
            _typed(deleted, "delete"), _typed(before, "update_preimage"), _typed(after, "update_postimage"),
            _typed(inserts, "insert")])
        rewrite(snapshot, removed_paths=[paths[i] for i in touched], data=pa.concat_tables([kept, inserts]),
                change_data=change, operation="MERGE",
                parameters={"predicate": on.sql(dialect="duckdb"),
                            "matchedPredicates": [c.action for c in clauses if c.kind == "matched"],
                            "notMatchedPredicates": [c.action for c in clauses if c.kind == "not_matched"],
                            "notMatchedBySourcePredicates": [c.action for c in clauses if c.kind == "by_source"]},
                metrics={"numSourceRows": source.num_rows, "numTargetRowsInserted": count["inserted"],
                         "numTargetRowsUpdated": count["updated"], "numTargetRowsDeleted": count["deleted"],
                         "numTargetRowsCopied": kept.num_rows - count["updated"],
                         "numTargetFilesRemoved": len(touched)},
                read_predicate=None if by_source else predicate,
                checked_constraints=list(constraints_of(dict(snapshot.properties))))
    total = sum(count.values())
    return pa.table({"num_affected_rows": pa.array([total], pa.int64()),
                     "num_updated_rows": pa.array([count["updated"]], pa.int64()),
                     "num_deleted_rows": pa.array([count["deleted"]], pa.int64()),
                     "num_inserted_rows": pa.array([count["inserted"]], pa.int64())})


def _typed(rows: pa.Table, kind: str) -> pa.Table:
    return rows.append_column("_change_type", pa.array([kind] * rows.num_rows, pa.string()))


def _join(session: Session, target: pa.Table, source: pa.Table, clauses: list[_Clause], on: exp.Expression,
          target_alias: str, source_alias: str) -> pa.Table:
    """Joined rows with both positions, the chosen clause and every SET/VALUES expression."""
    t, s = _quote(target_alias), _quote(source_alias)
    has_insert = any(c.kind == "not_matched" for c in clauses)
    has_by_source = any(c.kind == "by_source" for c in clauses)
    join = {(True, True): "FULL OUTER JOIN", (True, False): "RIGHT JOIN", (False, True): "LEFT JOIN",
            (False, False): "JOIN"}[(has_insert, has_by_source)]

    def case(kind: str) -> str:
        arms = [f"WHEN coalesce(({c.condition.sql(dialect='duckdb')}), false) THEN {i}" if c.condition is not None
                else f"WHEN true THEN {i}" for i, c in enumerate(clauses) if c.kind == kind]
        return f"CASE {' '.join(arms)} ELSE -1 END" if arms else "-1"

    matched = f"{t}.{_POSITION} IS NOT NULL AND {s}.{_SOURCE_POSITION} IS NOT NULL"
    chooser = (f"CASE WHEN {matched} THEN {case('matched')} WHEN {t}.{_POSITION} IS NULL THEN {case('not_matched')} "
               f"ELSE {case('by_source')} END AS {_CLAUSE}")
    selects = [f"{t}.{_POSITION} AS __lh_tpos", f"{s}.{_SOURCE_POSITION} AS __lh_spos", chooser]
    for i, c in enumerate(clauses):
        for j, (column, value) in enumerate(c.values.items()):
            selects.append(f"({value.sql(dialect='duckdb')}) AS __lh_v{i}_{j}")
    sql = (f"SELECT {', '.join(selects)} FROM {_TARGET} AS {t} {join} {_SOURCE} AS {s} "
           f"ON ({on.sql(dialect='duckdb')})")
    with _registered(session, _TARGET, target), _registered(session, _SOURCE, source):
        return session.sql(sql).to_arrow()


def _cast(value: pa.ChunkedArray | pa.Array, field: pa.Field, target: str) -> Any:
    if value.type == field.type:
        return value
    try:
        return value.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PlanError(f"MERGE INTO {target}: a value for '{field.name}' ({type_name(value.type)}) does not fit "
                        f"{type_name(field.type)}: {str(exc).splitlines()[0]}") from None


def _apply_updates(rows: pa.Table, result: pa.Table, clauses: list[_Clause], row_clause: np.ndarray,
                   row_result: np.ndarray, is_update: np.ndarray, target: str) -> pa.Table:
    if not is_update.any():
        return rows
    columns = []
    for field in rows.schema:
        column = rows.column(field.name)
        for i, c in enumerate(clauses):
            if c.action != "update" or field.name not in c.values:
                continue
            mine = row_clause == i
            if not mine.any():
                continue
            j = list(c.values).index(field.name)
            index = pa.array(np.where(mine, row_result, 0), pa.int64())
            value = _cast(result.column(f"__lh_v{i}_{j}").take(index), field, target)
            column = pc.if_else(pa.array(mine), value, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=rows.schema)


def _inserts(result: pa.Table, clauses: list[_Clause], clause: np.ndarray, tpos_valid: np.ndarray,
             schema: pa.Schema, target: str) -> pa.Table:
    parts = []
    for i, c in enumerate(clauses):
        if c.action != "insert":
            continue
        mine = (clause == i) & ~tpos_valid
        if not mine.any():
            continue
        chosen = result.filter(pa.array(mine))
        columns = []
        for field in schema:
            if field.name in c.values:
                j = list(c.values).index(field.name)
                columns.append(_cast(chosen.column(f"__lh_v{i}_{j}"), field, target))
            else:
                columns.append(pa.nulls(chosen.num_rows, field.type))
        parts.append(pa.Table.from_arrays(columns, schema=schema))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts)


__all__ = ["merge", "ConstraintViolationError"]
