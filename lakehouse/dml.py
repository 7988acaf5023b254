"""Append, overwrite and delete: each builds one commit from the latest snapshot."""

from __future__ import annotations

import json
import time
from typing import Any, Collection, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.constraints import checked_batches, compile_constraints
from lakehouse.errors import CommitConflictError, CommitOutcomeUnknownError, LakehouseError, ProtocolError, SchemaError
from lakehouse.expressions import Predicate, bind, columns_of, to_arrow_expression, to_predicate, to_sql
from lakehouse.log.actions import Action, AddFile, Metadata, Txn
from lakehouse.log.filelist import adds_from_files
from lakehouse.properties import APPEND_ONLY, is_true, isolation_level, target_file_size
from lakehouse.protocol import check_writable
from lakehouse.schema import delta_compatible_schema, schema_to_json
from lakehouse.skipping import may_match
from lakehouse.snapshot import Snapshot
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit
from lakehouse.write import FileWriter, conformed_batches, to_reader


def _now_ms() -> int:
    return int(time.time() * 1000)


def _writer(snapshot: Snapshot, schema: pa.Schema | None = None, *, target: int | None = None) -> FileWriter:
    return FileWriter(
        storage=snapshot.location.storage,
        root=snapshot.location.root,
        schema=schema or snapshot.schema,
        partition_columns=snapshot.partition_columns,
        configuration=snapshot.properties,
        target_file_size=target or target_file_size(snapshot.properties),
    )


def _base_commit(snapshot: Snapshot, operation: str, **kwargs: Any) -> Commit:
    return Commit(
        storage=snapshot.location.storage, root=snapshot.location.root, table=snapshot.location.name,
        read_version=snapshot.version, operation=operation, configuration=snapshot.properties, **kwargs)


def _write_metrics(adds: list[AddFile], rows: int) -> dict[str, int]:
    return {"numFiles": len(adds), "numOutputRows": rows, "numOutputBytes": sum(a.size for a in adds)}


def _rows(adds: list[AddFile]) -> int:
    return sum(json.loads(a.stats).get("numRecords", 0) for a in adds if a.stats)


def _publish(commit: Commit, writer: FileWriter) -> int:
    """Publish; on failure delete the new data files, unless the commit may have landed."""
    try:
        return commit.publish()
    except CommitOutcomeUnknownError:
        raise  # the files may be live now: keep them (vacuum removes them if not)
    except BaseException:
        writer.abort()
        raise


def _checked(snapshot: Snapshot, schema: pa.Schema, batches: Iterable[pa.RecordBatch],
             checked_constraints: Collection[str]) -> Iterator[pa.RecordBatch]:
    """``batches`` verified against the table's CHECK constraints (those not ``checked_constraints``)."""
    table = snapshot.location.name
    compiled = compile_constraints(snapshot.properties, schema, table=table, checked=checked_constraints)
    return checked_batches(batches, compiled, table=table) if compiled else iter(batches)


# --- exactly-once writes -------------------------------------------------------------------

TxnSpec = tuple[str, int]


def txn_actions(snapshot: Snapshot, txn: TxnSpec | None) -> tuple[list[Action], frozenset[str]] | None:
    """The ``txn`` action recording ``(app_id, batch_version)``, or ``None`` if already applied.

    Delta's application transactions make a replayed batch a no-op: a writer that crashed
    after committing batch N and retries it finds ``txn_version(app_id) >= N`` and skips.
    """
    if txn is None:
        return [], frozenset()
    try:
        app_id, batch = txn
    except (TypeError, ValueError):
        raise LakehouseError(f"txn must be a pair (app_id, batch_version), got {txn!r}") from None
    if not isinstance(app_id, str) or not app_id or isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise LakehouseError(f"txn must be (non-empty app id string, batch version >= 0), got {txn!r}")
    last = snapshot.txn_version(app_id)
    if last is not None and batch <= last:
        return None
    return [Txn(app_id, batch, _now_ms())], frozenset({app_id})


def skipped(snapshot: Snapshot, txn: TxnSpec) -> dict[str, Any]:
    """The answer of a write whose batch was applied before (nothing written)."""
    return {"version": snapshot.version, "skipped": True, "txn": {"app_id": txn[0], "version": txn[1],
                                                                     "applied": snapshot.txn_version(txn[0])}}


def publish_once(commit: Commit, writer: FileWriter, txn: TxnSpec | None, reread: Any) -> int | None:
    """Publish; ``None`` if a concurrent writer applied the same ``txn`` batch first (our files go)."""
    try:
        return _publish(commit, writer)
    except CommitConflictError as exc:
        if txn is not None and exc.kind == "concurrent_transaction":
            latest = reread()
            if (latest.txn_version(txn[0]) or -1) >= txn[1]:
                return None
        raise


def append(snapshot: Snapshot, data: Any, *, target_file_size: int | None = None,
           checked_constraints: Collection[str] = (), txn: TxnSpec | None = None) -> dict[str, Any]:
    """Add rows; a blind append, so it never conflicts with other appends.

    Rows must satisfy the table's CHECK constraints; ``checked_constraints`` names those
    the caller has verified itself (the SQL engine evaluates any SQL expression).
    ``txn=(app_id, batch_version)`` makes the write exactly-once: a batch version at or
    below the last one recorded for ``app_id`` is skipped (``{"skipped": True}``).
    """
    location = snapshot.location
    check_writable(snapshot.protocol, snapshot.metadata, table=location.name)
    once = txn_actions(snapshot, txn)
    if once is None:
        return skipped(snapshot, txn)  # type: ignore[arg-type]
    writer = _writer(snapshot, target=target_file_size)
    batches = conformed_batches(to_reader(data), snapshot.schema, table=location.name)
    adds = writer.write(_checked(snapshot, snapshot.schema, batches, checked_constraints))
    rows = _rows(adds)
    commit = _base_commit(
        snapshot, "WRITE",
        parameters={"mode": "Append", "partitionBy": list(snapshot.partition_columns)},
        metrics=_write_metrics(adds, rows), actions=[*once[0], *adds], is_blind_append=True,
        read_set=ReadSet(isolation_level=isolation_level(snapshot.properties), app_ids=once[1]),
    )
    version = publish_once(commit, writer, txn, lambda: _latest(snapshot))
    if version is None:
        return skipped(_latest(snapshot), txn)  # type: ignore[arg-type]
    return {"version": version, "num_added_files": len(adds), "num_added_rows": rows,
            "num_added_bytes": sum(a.size for a in adds)}


def overwrite(snapshot: Snapshot, data: Any, *, schema_mode: str | None = None,
              target_file_size: int | None = None, checked_constraints: Collection[str] = (),
              txn: TxnSpec | None = None) -> dict[str, Any]:
    """Replace all rows. ``schema_mode="overwrite"`` also replaces the schema."""
    location = snapshot.location
    check_writable(snapshot.protocol, snapshot.metadata, table=location.name)
    once = txn_actions(snapshot, txn)
    if once is None:
        return skipped(snapshot, txn)  # type: ignore[arg-type]
    if is_true(snapshot.properties, APPEND_ONLY):
        raise ProtocolError(f"table '{location.name}' is append-only ({APPEND_ONLY}=true); overwrite is not allowed")
    reader = to_reader(data)
    actions: list[Action] = []
    schema = snapshot.schema
    if schema_mode == "overwrite":
        schema = delta_compatible_schema(reader.schema)
        missing = [c for c in snapshot.partition_columns if c not in schema.names]
        if missing:
            raise SchemaError(f"table '{location.name}': the new schema lacks partition column(s) {', '.join(missing)}")
        old = snapshot.metadata
        actions.append(Metadata(id=old.id, schema_string=schema_to_json(schema), partition_columns=old.partition_columns,
                                configuration=old.configuration, name=old.name, description=old.description,
                                created_time=old.created_time))
    elif schema_mode is not None:
        raise SchemaError(f"schema_mode must be None or 'overwrite', got {schema_mode!r}")
    writer = _writer(snapshot, schema, target=target_file_size)
    batches = conformed_batches(reader, schema, table=location.name)
    adds = writer.write(_checked(snapshot, schema, batches, checked_constraints))
    now = _now_ms()
    removed = adds_from_files(snapshot.files)
    actions += [*once[0], *(a.remove(now) for a in removed), *adds]
    rows = _rows(adds)
    commit = _base_commit(
        snapshot, "WRITE",
        parameters={"mode": "Overwrite", "partitionBy": list(snapshot.partition_columns)},
        metrics=_write_metrics(adds, rows), actions=actions,
        read_set=ReadSet(reads_whole_table=True, removed_files=frozenset(a.path for a in removed),
                         changes_metadata=schema_mode == "overwrite",
                         isolation_level=isolation_level(snapshot.properties), app_ids=once[1]),
    )
    version = publish_once(commit, writer, txn, lambda: _latest(snapshot))
    if version is None:
        return skipped(_latest(snapshot), txn)  # type: ignore[arg-type]
    return {"version": version, "num_added_files": len(adds), "num_added_rows": rows,
            "num_removed_files": len(removed)}


def delete(snapshot: Snapshot, filter: Predicate | str | None = None,  # noqa: A002
           *, txn: TxnSpec | None = None) -> dict[str, Any]:
    """Delete matching rows, copy-on-write.

    Only files whose partition values and stats say they may hold a match are opened; a
    file with no matching row is left alone, a file whose rows all match is removed
    without rewriting, the rest are rewritten without the matching rows.
    """
    started = time.perf_counter()
    location = snapshot.location
    check_writable(snapshot.protocol, snapshot.metadata, table=location.name)
    if is_true(snapshot.properties, APPEND_ONLY):
        raise ProtocolError(f"table '{location.name}' is append-only ({APPEND_ONLY}=true); delete is not allowed")
    once = txn_actions(snapshot, txn)
    if once is None:
        return skipped(snapshot, txn)  # type: ignore[arg-type]
    predicate = to_predicate(filter)
    bound = bind(predicate, snapshot.schema) if predicate is not None else None
    files = snapshot.files
    candidates = files.filter(may_match(files, bound, snapshot.schema, snapshot.partition_columns)) \
        if bound is not None else files
    partition_only = bound is None or columns_of(bound) <= set(snapshot.partition_columns)

    now = _now_ms()
    removes: list[Action] = []
    removed_bytes = 0
    counts = {"deleted": 0, "copied": 0}
    scanned: list[str] = []
    row_filter = to_arrow_expression(bound, snapshot.schema) if bound is not None else None
    # With the change data feed on, a rewritten file's deleted rows go to _change_data/: a
    # reader cannot tell them from the copied rows otherwise. Whole-file deletes (partition
    # predicates, never read) need none: readers take a remove without change files as deletes.
    from lakehouse.rewrite import cdf_enabled

    deleted_rows: list[pa.Table] | None = [] if cdf_enabled(snapshot) and not partition_only else None

    def kept_rows() -> Any:
        nonlocal removed_bytes
        for add, table in _candidate_tables(snapshot, candidates, read=not partition_only):
            scanned.append(add.path)
            if table is None:
                # The file-level verdict is exact for partition predicates: every row matches.
                hit, keep = _rows([add]), None
            else:
                matched = pc.fill_null(ds.dataset(table).to_table(columns={"m": row_filter}).column("m"), False)
                hit = pc.sum(matched.cast(pa.int64())).as_py() or 0
                keep = table.filter(pc.invert(matched)) if hit else None
                if hit and deleted_rows is not None:
                    deleted_rows.append(table.filter(matched))
            if hit == 0:
                continue
            removes.append(add.remove(now))
            removed_bytes += add.size
            counts["deleted"] += hit
            if keep is not None and keep.num_rows:
                counts["copied"] += keep.num_rows
                yield from keep.to_batches()

    writer = _writer(snapshot)
    added = writer.write(kept_rows())
    cdc, change_writer = _deleted_change_files(snapshot, deleted_rows, writer)
    metrics = {
        "numRemovedFiles": len(removes), "numAddedFiles": len(added), "numDeletedRows": counts["deleted"],
        "numCopiedRows": counts["copied"], "numAddedBytes": sum(a.size for a in added),
        "numRemovedBytes": removed_bytes, "numAddedChangeFiles": len(cdc),
        "executionTimeMs": int((time.perf_counter() - started) * 1000),
    }
    commit = _base_commit(
        snapshot, "DELETE",
        parameters={"predicate": [to_sql(predicate)] if predicate is not None else []},
        metrics=metrics, actions=[*once[0], *removes, *added, *cdc],
        read_set=ReadSet(reads_whole_table=bound is None, read_predicate=bound, app_ids=once[1],
                         read_files=frozenset(scanned),
                         removed_files=frozenset(r.path for r in removes),  # type: ignore[union-attr]
                         isolation_level=isolation_level(snapshot.properties),
                         partition_columns=snapshot.partition_columns, schema=snapshot.schema),
    )
    try:
        version = publish_once(commit, writer, txn, lambda: _latest(snapshot))
    except CommitOutcomeUnknownError:
        raise  # the change files may be referenced by a commit that landed
    except BaseException:
        if change_writer is not None:
            change_writer.abort()
        raise
    if version is None:
        if change_writer is not None:
            change_writer.abort()
        return skipped(_latest(snapshot), txn)  # type: ignore[arg-type]
    return {"version": version, "num_deleted_rows": counts["deleted"], "num_removed_files": len(removes),
            "num_added_files": len(added), "num_copied_rows": counts["copied"]}


def _deleted_change_files(snapshot: Snapshot, deleted: list[pa.Table] | None,
                          writer: FileWriter) -> tuple[list[Action], FileWriter | None]:
    """Write ``deleted`` rows as ``delete`` change data; aborts ``writer`` too if that fails."""
    from lakehouse.log.actions import AddCDCFile
    from lakehouse.rewrite import CHANGE_TYPE, _change_batches, _change_writer

    if not deleted:
        return [], None
    rows = pa.concat_tables(deleted)
    rows = rows.append_column(CHANGE_TYPE, pa.array(["delete"] * rows.num_rows, pa.string()))
    change_writer = _change_writer(snapshot)
    try:
        written = change_writer.write(_change_batches(rows, snapshot.schema, snapshot.location.name))
    except BaseException:
        change_writer.abort()
        writer.abort()
        raise
    return [AddCDCFile(path=a.path, partition_values=a.partition_values, size=a.size) for a in written], change_writer


def _latest(snapshot: Snapshot) -> Snapshot:
    from lakehouse.table import Table

    return Table(snapshot.location).snapshot()


def _candidate_tables(snapshot: Snapshot, candidates: pa.Table, *, read: bool) -> Any:
    """Yield ``(add, rows)`` per candidate file; rows in the table schema, or ``None`` unread."""
    from lakehouse.scan import Scan

    adds = adds_from_files(candidates)
    if not read:
        for add in adds:
            yield add, None
        return
    fragments = Scan(snapshot).fragments(candidates)
    for add, fragment in zip(adds, fragments):
        dataset = ds.FileSystemDataset([fragment], snapshot.schema, ds.ParquetFileFormat())
        yield add, dataset.to_table()
