"""Metadata-only commits: add columns, set table properties, add or drop CHECK constraints.

Each builds a new ``metaData`` action (and a ``protocol`` action when a feature needs a
higher writer version) and publishes it as one version. A metadata change conflicts with
every concurrent commit, so these commits carry ``changes_metadata`` in their read set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping, Sequence

import pyarrow as pa

from lakehouse.constraints import PREFIX, compile_constraints, constraints_of, validate_name
from lakehouse.errors import LakehouseError, SchemaError
from lakehouse.log.actions import Action, Metadata
from lakehouse.properties import validate as validate_properties
from lakehouse.protocol import check_writable, upgraded
from lakehouse.schema import delta_compatible_schema, schema_to_json
from lakehouse.snapshot import Snapshot
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit


def _commit(snapshot: Snapshot, metadata: Metadata, operation: str, parameters: Mapping[str, Any]) -> int:
    location = snapshot.location
    check_writable(snapshot.protocol, snapshot.metadata, table=location.name)
    protocol = upgraded(snapshot.protocol, metadata.configuration)
    actions: list[Action] = [metadata]
    if protocol != snapshot.protocol:
        actions.insert(0, protocol)
    return Commit(storage=location.storage, root=location.root, table=location.name,
                  read_version=snapshot.version, operation=operation, parameters=dict(parameters),
                  actions=actions, configuration=metadata.configuration,
                  read_set=ReadSet(changes_metadata=True, changes_protocol=protocol != snapshot.protocol)).publish()


def add_columns(snapshot: Snapshot, fields: Sequence[pa.Field]) -> dict[str, Any]:
    """Append nullable columns to the schema; existing files read them as NULL."""
    table = snapshot.location.name
    existing = {name.lower() for name in snapshot.schema.names}
    for field in fields:
        if field.name.lower() in existing:
            raise SchemaError(f"table '{table}' already has a column named '{field.name}'")
        if not field.nullable:
            raise SchemaError(f"table '{table}': a new column ('{field.name}') must be nullable, since existing "
                              "rows have no value for it")
        existing.add(field.name.lower())
    schema = delta_compatible_schema(pa.schema([*snapshot.schema, *fields]))
    metadata = replace(snapshot.metadata, schema_string=schema_to_json(schema))
    columns = [{"name": f.name, "type": str(f.type)} for f in fields]
    version = _commit(snapshot, metadata, "ADD COLUMNS", {"columns": json.dumps(columns)})
    return {"version": version, "num_added_columns": len(fields)}


def set_properties(snapshot: Snapshot, properties: Mapping[str, str]) -> dict[str, Any]:
    """Set table properties (``delta.*`` ones are validated); upgrades the protocol when needed."""
    table = snapshot.location.name
    changes = {str(k): str(v) for k, v in properties.items()}
    if any(key.startswith(PREFIX) for key in changes):
        raise LakehouseError(f"table '{table}': add CHECK constraints with ADD CONSTRAINT, not as properties")
    configuration = {**snapshot.properties, **changes}
    validate_properties(configuration)
    metadata = replace(snapshot.metadata, configuration=configuration)
    version = _commit(snapshot, metadata, "SET TBLPROPERTIES", {"properties": json.dumps(changes, sort_keys=True)})
    return {"version": version}


def unset_properties(snapshot: Snapshot, keys: Sequence[str], *, if_exists: bool = False) -> dict[str, Any]:
    """Remove table properties; an unknown key is an error unless ``if_exists``."""
    table = snapshot.location.name
    missing = [k for k in keys if k not in snapshot.properties]
    if missing and not if_exists:
        raise LakehouseError(f"table '{table}' has no property {', '.join(map(repr, missing))}")
    configuration = {k: v for k, v in snapshot.properties.items() if k not in set(keys)}
    metadata = replace(snapshot.metadata, configuration=configuration)
    version = _commit(snapshot, metadata, "UNSET TBLPROPERTIES", {"properties": json.dumps(list(keys))})
    return {"version": version}


def add_constraint(snapshot: Snapshot, name: str, expression: str, *, verify: bool = True) -> dict[str, Any]:
    """Add ``CHECK (expression)`` as ``delta.constraints.<name>``; every later write must satisfy it.

    With ``verify`` the current rows are checked first (the expression must then be in the
    predicate subset lakehouse evaluates); the SQL engine checks them itself with any SQL
    expression and passes ``verify=False``.
    """
    table = snapshot.location.name
    key = validate_name(name, table=table)
    if key in {n.lower() for n in constraints_of(snapshot.properties)}:
        raise LakehouseError(f"table '{table}' already has a constraint named '{key}'; drop it first")
    configuration = {**snapshot.properties, PREFIX + key: expression}
    if verify:
        from lakehouse.constraints import check_batch

        compiled = compile_constraints({PREFIX + key: expression}, snapshot.schema, table=table)
        for batch in snapshot.scan().to_batches():
            try:
                check_batch(batch, compiled, table=table)
            except LakehouseError as exc:
                raise type(exc)(str(exc).replace("a new row for", "an existing row of")) from None
    metadata = replace(snapshot.metadata, configuration=configuration)
    version = _commit(snapshot, metadata, "ADD CONSTRAINT", {"name": key, "expr": expression})
    return {"version": version}


def drop_constraint(snapshot: Snapshot, name: str, *, if_exists: bool = False) -> dict[str, Any]:
    """Remove a CHECK constraint."""
    table = snapshot.location.name
    keys = {n.lower(): PREFIX + n for n in constraints_of(snapshot.properties)}
    if name.lower() not in keys:
        if if_exists:
            return {"version": snapshot.version}
        raise LakehouseError(f"table '{table}' has no constraint named '{name}'; it has "
                             f"{', '.join(sorted(keys)) or 'none'}")
    configuration = {k: v for k, v in snapshot.properties.items() if k != keys[name.lower()]}
    metadata = replace(snapshot.metadata, configuration=configuration)
    version = _commit(snapshot, metadata, "DROP CONSTRAINT", {"name": name.lower()})
    return {"version": version}
