"""CREATE / DROP / SHOW / DESCRIBE / ALTER TABLE over warehouse tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
from sqlglot import exp

import lakehouse
from engine.errors import PlanError, UnsupportedSQLError
from engine.types import parse_type, type_name
from lakehouse.errors import LakehouseError, TableAlreadyExistsError, TableNotFoundError

if TYPE_CHECKING:
    from engine.session import Session

NOTHING = pa.table({})  # what a statement without a result answers


def table_name(node: exp.Expression) -> str:
    """The name a statement targets: an identifier, or a quoted path (``'data/t'``)."""
    table = node.find(exp.Table) if not isinstance(node, exp.Table) else node
    if table is None or not table.name:
        raise PlanError("the statement names no table")
    if table.args.get("db"):
        raise UnsupportedSQLError(f"schema-qualified names ('{table.sql()}') are not supported; "
                                  "a warehouse is one flat namespace of tables")
    return table.name


def open_target(session: Session, name: str) -> lakehouse.Table:
    """The warehouse table ``name`` (or a path), as a writable :class:`lakehouse.Table`."""
    return lakehouse.open_table(session.catalog.table_location(name), storage_options=session.catalog.storage_options)


def _exists(session: Session, name: str) -> bool:
    try:
        open_target(session, name)
    except TableNotFoundError:
        return False
    return True


def _properties(node: exp.Create) -> tuple[list[str], dict[str, str]]:
    partitions: list[str] = []
    properties: dict[str, str] = {}
    for prop in (node.args.get("properties").expressions if node.args.get("properties") else []):
        if isinstance(prop, exp.PartitionedByProperty):
            partitions = [e.name for e in prop.this.expressions]
        elif isinstance(prop, exp.Property):
            key = prop.this.name if isinstance(prop.this, (exp.Literal, exp.Identifier)) else prop.name
            properties[str(key)] = prop.args["value"].name if prop.args.get("value") is not None else ""
        else:
            raise UnsupportedSQLError(f"table option '{prop.sql(dialect='duckdb')}' is not supported; "
                                      "use PARTITIONED BY (...) and TBLPROPERTIES (...)")
    return partitions, properties


def column_field(column: exp.ColumnDef) -> pa.Field:
    """An Arrow field for a column definition; ``NOT NULL`` makes it non-nullable."""
    kind = column.args.get("kind")
    if kind is None:
        raise PlanError(f"column '{column.name}' needs a type")
    constraints = column.args.get("constraints") or []
    not_null = any(isinstance(c.args.get("kind"), exp.NotNullColumnConstraint)
                   and not c.args["kind"].args.get("allow_null") for c in constraints)
    return pa.field(column.name, parse_type(kind.sql(dialect="duckdb")), nullable=not not_null)


def create(session: Session, node: exp.Create) -> pa.Table:
    kind = str(node.args.get("kind") or "").upper()
    if kind != "TABLE":
        raise UnsupportedSQLError(f"CREATE {kind} is not supported; only CREATE TABLE")
    name = table_name(node.this)
    location = session.catalog.table_location(name)
    partitions, properties = _properties(node)
    replace, if_not_exists = bool(node.args.get("replace")), bool(node.args.get("exists"))
    exists = _exists(session, name)
    if exists and if_not_exists:
        return NOTHING
    if exists and not replace:
        raise TableAlreadyExistsError(f"table '{name}' already exists; use CREATE OR REPLACE TABLE, "
                                      "CREATE TABLE IF NOT EXISTS, or DROP TABLE first")
    query = node.args.get("expression")
    if query is not None:
        data = session.sql(query.sql(dialect="duckdb")).to_arrow()
        schema = data.schema
    else:
        if not isinstance(node.this, exp.Schema):
            raise PlanError(f"CREATE TABLE {name} needs a column list or AS SELECT ...")
        schema = pa.schema([column_field(c) for c in node.this.expressions if isinstance(c, exp.ColumnDef)])
        data = None
    options: dict[str, Any] = {"storage_options": session.catalog.storage_options}
    if exists:  # CREATE OR REPLACE: a new version holding the new schema and rows, history kept
        table = open_target(session, name)
        table.overwrite(data if data is not None else schema.empty_table(), schema_mode="overwrite")
        return NOTHING
    table = lakehouse.create_table(location, schema, partition_by=partitions, properties=properties, **options)
    if data is not None and data.num_rows:
        table.append(data)
    return NOTHING


def drop(session: Session, node: exp.Drop) -> pa.Table:
    kind = str(node.args.get("kind") or "").upper()
    if kind != "TABLE":
        raise UnsupportedSQLError(f"DROP {kind} is not supported; only DROP TABLE")
    name = table_name(node)
    if not _exists(session, name):
        if node.args.get("exists"):
            return NOTHING
        raise TableNotFoundError(f"table '{name}' does not exist; use DROP TABLE IF EXISTS to ignore that")
    table = open_target(session, name)
    from lakehouse.clone import registered_clones

    live = [url for url in registered_clones(table) if _is_table(url, session)]
    if live:
        raise LakehouseError(f"table '{name}' has shallow clone(s) that read its files ({', '.join(live)}); "
                             "drop them first, or make them independent with CREATE TABLE c AS SELECT * FROM clone")
    storage, root = table.location.storage, table.location.root
    # Delete the log last: until it goes, the folder is still a (shrinking) table, never a
    # half-deleted one that looks valid.
    infos = sorted(storage.walk(root), key=lambda info: "/_delta_log/" in info.path)
    for info in infos:
        storage.delete(info.path)
    return NOTHING


def _is_table(url: str, session: Session) -> bool:
    try:
        lakehouse.open_table(url, storage_options=session.catalog.storage_options)
    except TableNotFoundError:
        return False
    return True


def show(session: Session, node: exp.Show) -> pa.Table:
    what = str(node.this or "").upper()
    if what != "TABLES":
        raise UnsupportedSQLError(f"SHOW {what} is not supported; try SHOW TABLES or SHOW TAGS t")
    return pa.table({"name": pa.array(sorted(session.catalog.table_names()), pa.string())})


def describe(session: Session, node: exp.Describe) -> pa.Table:
    name = table_name(node)
    source = session.catalog.resolve(name)
    schema = source.schema
    return pa.table({
        "column_name": pa.array(schema.names, pa.string()),
        "column_type": pa.array([type_name(f.type) for f in schema], pa.string()),
        "null": pa.array(["YES" if f.nullable else "NO" for f in schema], pa.string()),
    })


def alter(session: Session, node: exp.Alter) -> pa.Table:
    from lakehouse import alter as lakehouse_alter

    name = table_name(node)
    table = open_target(session, name)
    for action in node.args.get("actions") or []:
        if isinstance(action, exp.ColumnDef):
            lakehouse_alter.add_columns(table.snapshot(), [column_field(action).with_nullable(True)])
        elif isinstance(action, exp.AlterSet):
            props: dict[str, str] = {}
            for group in action.expressions:
                for prop in group.expressions:
                    props[str(prop.this.name)] = prop.args["value"].name
            lakehouse_alter.set_properties(table.snapshot(), props)
        elif isinstance(action, exp.AddConstraint):
            for constraint in action.expressions:
                check = next((e for e in constraint.expressions if isinstance(e, exp.CheckColumnConstraint)), None)
                if check is None:
                    raise UnsupportedSQLError("only CHECK constraints can be added: ADD CONSTRAINT name CHECK (expr)")
                # Validate the expression against the table's current rows before storing it.
                from engine.statements.dml import check_constraints

                sql_text = check.this.sql(dialect="duckdb")
                check_constraints(session, name, table.to_arrow(), {constraint.name: sql_text}, existing=True)
                lakehouse_alter.add_constraint(table.snapshot(), constraint.name, sql_text, verify=False)
        else:
            raise UnsupportedSQLError(f"ALTER TABLE ... {action.sql(dialect='duckdb')} is not supported; "
                                      "supported: ADD COLUMN, SET TBLPROPERTIES, ADD CONSTRAINT, CREATE/DROP TAG")
    return NOTHING
