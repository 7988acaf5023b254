"""Copy-on-write rewrites: replace some files with new ones in one commit (UPDATE, MERGE...).

The caller (the SQL engine's DELETE/UPDATE/MERGE) decides which files it touched and what
rows replace them; this module writes the new data files, the change-data files when the
table has the change data feed on, and publishes one commit whose read set makes
concurrent writers that touched the same files (or added rows the statement's condition
may match) conflict instead of being silently overwritten.
"""

from __future__ import annotations

import time
from typing import Any, Collection, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.constraints import checked_batches, compile_constraints
from lakehouse.dml import TxnSpec, _latest, _writer, publish_once, skipped, txn_actions
from lakehouse.errors import CommitOutcomeUnknownError, LakehouseError, ProtocolError, SchemaError
from lakehouse.expressions import Predicate, bind
from lakehouse.log.actions import Action, AddCDCFile
from lakehouse.log.filelist import adds_from_files
from lakehouse.properties import APPEND_ONLY, ENABLE_CDF, is_true, isolation_level
from lakehouse.protocol import check_writable
from lakehouse.snapshot import Snapshot
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit
from lakehouse.write import FileWriter, conformed_batches

CHANGE_TYPE = "_change_type"
CHANGE_DATA_DIR = "_change_data"
CHANGE_TYPES = frozenset({"insert", "delete", "update_preimage", "update_postimage"})


def cdf_enabled(snapshot: Snapshot) -> bool:
    return is_true(snapshot.properties, ENABLE_CDF) or is_true(snapshot.properties, "delta.enableChangeDataCapture")


def rewrite(snapshot: Snapshot, *, removed_paths: Sequence[str], data: pa.Table | None,
            change_data: pa.Table | None = None, operation: str, parameters: Mapping[str, Any] | None = None,
            metrics: Mapping[str, Any] | None = None, read_predicate: Predicate | None = None,
            checked_constraints: Collection[str] = (), target_file_size: int | None = None,
            txn: TxnSpec | None = None) -> dict[str, Any]:
    """Remove ``removed_paths`` and add ``data`` in one commit on top of ``snapshot``.

    ``data`` holds every row that replaces the removed files (kept rows and new ones) in the
    table schema. ``change_data`` holds the changed rows plus a ``_change_type`` column; it
    is written to ``_change_data/`` only when ``delta.enableChangeDataFeed`` is on, and must
    then cover every change of the commit, inserts included. ``read_predicate`` is the
    condition the caller used to pick candidate files (``None``: it read the whole table),
    so a concurrent commit adding matching rows is a conflict. ``txn=(app_id, batch)``
    makes it exactly-once (see :func:`lakehouse.dml.append`). Returns the metrics.
    """
    started = time.perf_counter()
    location = snapshot.location
    table = location.name
    check_writable(snapshot.protocol, snapshot.metadata, table=table)
    once = txn_actions(snapshot, txn)
    if once is None:
        return skipped(snapshot, txn)  # type: ignore[arg-type]
    removed = _removed_adds(snapshot, removed_paths)
    if removed and is_true(snapshot.properties, APPEND_ONLY):
        raise ProtocolError(f"table '{table}' is append-only ({APPEND_ONLY}=true); {operation} would change or "
                            "delete existing rows")
    schema = snapshot.schema
    writer = _writer(snapshot, target=target_file_size)
    change_writer: FileWriter | None = None
    try:
        compiled = compile_constraints(snapshot.properties, schema, table=table, checked=checked_constraints)
        batches = conformed_batches((data if data is not None else schema.empty_table()).to_reader(), schema,
                                    table=table)
        added = writer.write(checked_batches(batches, compiled, table=table))
        cdc: list[AddCDCFile] = []
        if change_data is not None and change_data.num_rows and cdf_enabled(snapshot):
            change_writer = _change_writer(snapshot)
            cdc = [AddCDCFile(path=a.path, partition_values=a.partition_values, size=a.size)
                   for a in change_writer.write(_change_batches(change_data, schema, table))]
    except BaseException:
        writer.abort()
        if change_writer is not None:
            change_writer.abort()
        raise
    now = int(time.time() * 1000)
    actions: list[Action] = [*once[0], *(add.remove(now) for add in removed)]
    actions += added
    actions += cdc
    result = {
        "numRemovedFiles": len(removed), "numAddedFiles": len(added), "numAddedChangeFiles": len(cdc),
        "numRemovedBytes": sum(a.size for a in removed), "numAddedBytes": sum(a.size for a in added),
        **dict(metrics or {}),
    }
    result["executionTimeMs"] = int((time.perf_counter() - started) * 1000)
    bound = bind(read_predicate, schema) if read_predicate is not None else None
    commit = Commit(
        storage=location.storage, root=location.root, table=table, read_version=snapshot.version,
        operation=operation, parameters=dict(parameters or {}), metrics=result, actions=actions,
        configuration=snapshot.properties,
        read_set=ReadSet(reads_whole_table=bound is None, read_predicate=bound,
                         read_files=frozenset(a.path for a in removed), removed_files=frozenset(a.path for a in removed),
                         isolation_level=isolation_level(snapshot.properties), app_ids=once[1],
                         partition_columns=snapshot.partition_columns, schema=schema))
    try:
        version = publish_once(commit, writer, txn, lambda: _latest(snapshot))
    except CommitOutcomeUnknownError:
        raise
    except BaseException:
        if change_writer is not None:
            change_writer.abort()
        raise
    if version is None:
        if change_writer is not None:
            change_writer.abort()
        return skipped(_latest(snapshot), txn)  # type: ignore[arg-type]
    return {"version": version, **result}


def _removed_adds(snapshot: Snapshot, paths: Sequence[str]) -> list[Any]:
    if not paths:
        return []
    wanted = pa.array(list(dict.fromkeys(paths)), pa.string())
    files = snapshot.files
    found = adds_from_files(files.filter(pc.is_in(files.column("path"), value_set=wanted)))
    if len(found) != len(wanted):
        missing = sorted(set(wanted.to_pylist()) - {a.path for a in found})
        raise LakehouseError(f"table '{snapshot.location.name}': file(s) {', '.join(missing[:3])} are not live in "
                             f"version {snapshot.version}; re-read the table and retry")
    return found


def _change_writer(snapshot: Snapshot) -> FileWriter:
    schema = pa.schema([*snapshot.schema, pa.field(CHANGE_TYPE, pa.string())])
    location = snapshot.location
    return FileWriter(storage=location.storage, root=location.root, schema=schema,
                      partition_columns=snapshot.partition_columns, configuration={},
                      target_file_size=_writer(snapshot).target_file_size, data_change=False,
                      folder=CHANGE_DATA_DIR)


def _change_batches(change_data: pa.Table, schema: pa.Schema, table: str) -> Any:
    """The change rows in the table schema, followed by their ``_change_type``."""
    if CHANGE_TYPE not in change_data.column_names:
        raise SchemaError(f"table '{table}': change data needs a '{CHANGE_TYPE}' column")
    kinds = set(pc.unique(change_data.column(CHANGE_TYPE)).to_pylist())
    if not kinds <= CHANGE_TYPES:
        raise SchemaError(f"table '{table}': unknown change type(s) {sorted(map(str, kinds - CHANGE_TYPES))}")
    change_type = change_data.column(CHANGE_TYPE).cast(pa.string()).combine_chunks()
    rows = change_data.drop_columns([CHANGE_TYPE])
    change_schema = pa.schema([*schema, pa.field(CHANGE_TYPE, pa.string())])
    offset = 0
    for batch in conformed_batches(rows.to_reader(), schema, table=table):
        kinds_here = change_type.slice(offset, batch.num_rows)
        offset += batch.num_rows
        yield pa.RecordBatch.from_arrays([*batch.columns, kinds_here], schema=change_schema)
