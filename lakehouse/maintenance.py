"""Table maintenance: RESTORE, VACUUM and OPTIMIZE (compaction and Z-order).

``restore`` and ``optimize`` each publish at most one commit through
:class:`lakehouse.txn.transaction.Commit`; ``vacuum`` deletes files and commits nothing.

Decisions that differ from Spark Delta, on purpose:

- Restoring to the version that is already the latest publishes nothing (the table already
  equals that version); Spark writes an empty RESTORE commit. Any other restore commits,
  even when the file lists happen to match, so history shows the restore.
- Restore never downgrades the protocol: a newer protocol is kept, merged with the old one.
- Vacuum writes no ``VACUUM START``/``VACUUM END`` commits (Spark does): they hold no
  table change and would only lengthen the log. The returned report is the record.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import (
    ColumnNotFoundError, DataFileError, InvalidFilterError, LakehouseError, ProtocolError, RetentionCheckError,
    SchemaError,
)
from lakehouse.expressions import Predicate, bind, columns_of, to_predicate, to_sql
from lakehouse.log.actions import Action, AddCDCFile, AddFile, Protocol
from lakehouse.log.filelist import adds_from_files, file_keys
from lakehouse.log.replay import read_commits
from lakehouse.log.segment import list_log
from lakehouse.properties import (
    APPEND_ONLY, DELETED_FILE_RETENTION, interval_ms, is_true, isolation_level, target_file_size as table_target,
)
from lakehouse.protocol import check_writable
from lakehouse.skipping import may_match
from lakehouse.snapshot import Snapshot
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit
from lakehouse.write import FileWriter
from lakehouse.zorder import zorder_sort

if TYPE_CHECKING:
    from lakehouse.table import Table

DEFAULT_RETENTION_HOURS = 168.0
_HOUR_MS = 3_600_000
_CHANGE_DATA = "_change_data"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _commit(snapshot: Snapshot, operation: str, **kwargs: Any) -> Commit:
    location = snapshot.location
    return Commit(storage=location.storage, root=location.root, table=location.name,
                  read_version=snapshot.version, operation=operation, configuration=snapshot.properties, **kwargs)


# --- RESTORE ---------------------------------------------------------------------------


def restore(table: Table, *, version: int | None = None, timestamp: Any = None) -> dict[str, Any]:
    """Make the latest version equal to an older one (by ``version`` or ``timestamp``).

    Publishes one ``RESTORE`` commit removing files added since and re-adding files
    removed since (``dataChange=true``), plus the old schema/properties when they differ.
    Raises ``DataFileError`` when a file to re-add is gone from storage (vacuumed).
    Returns the new ``version`` and the restore metrics; restoring to the latest version
    commits nothing (``committed`` is ``False``).
    """
    if (version is None) == (timestamp is None):
        raise LakehouseError(f"table '{table.name}': restore needs exactly one of version= or timestamp=")
    current = table.snapshot()
    target = table.snapshot(version=version, timestamp=timestamp)
    name = current.location.name
    check_writable(current.protocol, current.metadata, table=name)
    now_keys, old_keys = file_keys(current.files), file_keys(target.files)
    removed = adds_from_files(current.files.filter(pc.invert(pc.is_in(now_keys, old_keys))))
    restored = adds_from_files(target.files.filter(pc.invert(pc.is_in(old_keys, now_keys))))
    metrics = {
        "numRemovedFiles": len(removed), "numRestoredFiles": len(restored),
        "removedFilesSize": sum(a.size for a in removed), "restoredFilesSize": sum(a.size for a in restored),
        "tableSizeAfterRestore": target.size_bytes, "numOfFilesAfterRestore": target.num_files,
    }
    if target.version == current.version:
        return {"version": current.version, "committed": False, **metrics}
    if removed and is_true(current.properties, APPEND_ONLY):
        raise ProtocolError(f"table '{name}' is append-only ({APPEND_ONLY}=true); restoring version "
                            f"{target.version} would remove {len(removed)} file(s) added since")
    _check_restorable(target, restored)

    actions: list[Action] = []
    protocol = _merged_protocol(current.protocol, target.protocol)
    if protocol is not None:
        actions.append(protocol)
    if target.metadata != current.metadata:
        actions.append(target.metadata)
    check_writable(protocol or current.protocol, target.metadata, table=name)
    now = _now_ms()
    actions += [a.remove(now) for a in removed]
    # Files re-added are changes to the table now, whatever they were when first written.
    actions += [dataclasses.replace(a, data_change=True) for a in restored]
    parameters = {"version": target.version} if version is not None else {"timestamp": str(timestamp)}
    commit = _commit(current, "RESTORE", parameters=parameters, metrics=metrics, actions=actions, read_set=ReadSet(
        reads_whole_table=True, read_files=frozenset(current.files.column("path").to_pylist()),
        removed_files=frozenset(a.path for a in removed), changes_metadata=target.metadata != current.metadata,
        changes_protocol=protocol is not None, isolation_level=isolation_level(current.properties)))
    return {"version": commit.publish(), "committed": True, **metrics}


def _merged_protocol(current: Protocol, old: Protocol) -> Protocol | None:
    """The protocol after restoring ``old``: never lower than ``current``; ``None`` if unchanged."""
    reader = max(current.min_reader_version, old.min_reader_version)
    writer = max(current.min_writer_version, old.min_writer_version)
    rf = sorted(set(current.reader_features or ()) | set(old.reader_features or ())) if reader >= 3 else None
    wf = sorted(set(current.writer_features or ()) | set(old.writer_features or ())) if writer >= 7 else None
    merged = Protocol(reader, writer, tuple(rf) if rf is not None else None, tuple(wf) if wf is not None else None)
    return None if merged == current else merged


def _check_restorable(target: Snapshot, restored: list[AddFile]) -> None:
    """Fail before committing if a file to re-add no longer exists (vacuum deleted it)."""
    location = target.location

    def missing(add: AddFile) -> str | None:
        storage, path = location.file_storage(add.path)
        return None if storage.head(path) is not None else add.path

    if location.storage.parallel_reads and len(restored) > 4:
        with ThreadPoolExecutor(max_workers=8) as pool:
            gone = [p for p in pool.map(missing, restored) if p]
    else:
        gone = [p for p in map(missing, restored) if p]
    if gone:
        shown = ", ".join(f"'{p}'" for p in gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
        raise DataFileError(
            f"table '{location.name}': cannot restore version {target.version}: {len(gone)} data file(s) it needs "
            f"no longer exist ({shown}); vacuum removed them; restore a newer version whose files are still present")


# --- VACUUM ----------------------------------------------------------------------------


def default_retention_hours(snapshot: Snapshot) -> float:
    """The table's tombstone retention (``delta.deletedFileRetentionDuration``, else 7 days)."""
    return interval_ms(snapshot.properties, DELETED_FILE_RETENTION, int(DEFAULT_RETENTION_HOURS * _HOUR_MS)) / _HOUR_MS


def _is_hidden(relative: str) -> bool:
    """Paths vacuum never touches: the log, our metadata, ``_``/``.`` files and folders.

    ``_change_data/`` is vacuumable, and ``_col=value`` partition folders are data.
    """
    parts = relative.split("/")
    for depth, part in enumerate(parts):
        if depth == 0 and part == _CHANGE_DATA and len(parts) > 1:
            continue
        if part.startswith(".") or (part.startswith("_") and ("=" not in part or depth == len(parts) - 1)):
            return True
    return False


def vacuum(table: Table, retain_hours: float | None = None, *, dry_run: bool = False,
           enforce_retention: bool = True) -> dict[str, Any]:
    """Delete files under the table root that the latest version does not need.

    A file goes when it is not live, not pinned by a tag or a shallow clone, and either its
    ``remove`` is older than the retention window or no retained log entry references it
    and its modification time is older than the window (files of failed writers, old
    change data). The log and ``_``/``.`` folders are never touched. Retention defaults
    to the table's ``delta.deletedFileRetentionDuration`` (7 days); a shorter one needs
    ``enforce_retention=False`` because it breaks time travel and concurrent writers.
    Nothing is committed. Returns ``{"dry_run", "files"`` (deleted, or to delete on a dry
    run, relative to the root), ``"num_files", "num_bytes", "kept_by_pins"`` (relative path
    -> reasons, for files kept only because of a tag or clone), ``"retention_hours",
    "delete_reasons"`` (relative path -> why it goes)``}``.
    """
    from lakehouse.retention import own_path, protected_files  # lazily: retention imports tables

    snapshot = table.snapshot()
    location = snapshot.location
    name, storage, root = location.name, location.storage, location.root.rstrip("/")
    check_writable(snapshot.protocol, snapshot.metadata, table=name)  # unknown features may own files
    default = default_retention_hours(snapshot)
    if retain_hours is not None and (isinstance(retain_hours, (bool, str)) or not _is_number(retain_hours)):
        raise RetentionCheckError(f"table '{name}': retain_hours must be a number of hours, got {retain_hours!r}")
    hours = default if retain_hours is None else float(retain_hours)
    if not hours >= 0:  # also NaN
        raise RetentionCheckError(f"table '{name}': retain_hours must be zero or more, got {retain_hours}")
    if enforce_retention and hours < default:
        raise RetentionCheckError(
            f"table '{name}': refusing to vacuum with a retention of {hours:g} hours, below the table's "
            f"{default:g} hours: versions in between become unreadable and concurrent writers may lose files; "
            "pass enforce_retention=False to do it anyway")
    now = _now_ms()
    cutoff = now - int(hours * _HOUR_MS)

    def relative(raw: str) -> str | None:
        # Same resolution as the pins use; files outside the root are never ours to delete.
        path = own_path(location, raw)
        return path[len(root) + 1:] if path is not None and path.startswith(root + "/") else None

    live = {r for r in map(relative, snapshot.files.column("path").to_pylist()) if r}
    tombstoned: dict[str, int] = {}
    for remove in snapshot.state.tombstones:
        key = relative(remove.path)
        if key is not None:  # a missing timestamp counts as long ago, as in Spark
            tombstoned[key] = max(tombstoned.get(key, 0), remove.deletion_timestamp or 0)

    candidates = []
    for info in storage.walk(root):
        if not info.path.startswith(root + "/"):
            continue
        rel = info.path[len(root) + 1:]
        if _is_hidden(rel) or rel in live:
            continue
        # A tombstone dates the removal; a file the log no longer names is dated by its mtime.
        if (tombstoned[rel] if rel in tombstoned else info.modified_ms) <= cutoff:
            candidates.append((rel, info))
    if any(r.startswith(_CHANGE_DATA + "/") for r, _ in candidates):
        referenced = {r for r in map(relative, _recent_change_files(snapshot, cutoff)) if r}
        candidates = [(r, i) for r, i in candidates if r not in referenced]

    pins = {path[len(root) + 1:]: reasons for path, reasons in protected_files(table).items()
            if path.startswith(root + "/")}
    kept = {r: list(pins[r]) for r, _ in candidates if r in pins}
    doomed = [(r, i) for r, i in candidates if r not in pins]
    if not dry_run:
        _delete_all(storage, [i.path for _, i in doomed])
    return {"dry_run": dry_run, "files": sorted(r for r, _ in doomed), "num_files": len(doomed),
            "num_bytes": sum(i.size for _, i in doomed), "kept_by_pins": kept, "retention_hours": hours,
            "delete_reasons": {r: _delete_reason(r, r in tombstoned, hours) for r, _ in doomed}}


def _delete_reason(relative: str, tombstoned: bool, hours: float) -> str:
    """Why vacuum deletes a file, in words (the SQL ``VACUUM ... DRY RUN`` shows it)."""
    if tombstoned:
        return f"removed from the table more than {hours:g} hours ago"
    if relative.startswith(_CHANGE_DATA + "/"):
        return f"change data of no commit in the last {hours:g} hours"
    return f"not in the log and older than {hours:g} hours (e.g. left by a failed write)"


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _recent_change_files(snapshot: Snapshot, cutoff: int) -> set[str]:
    """Log paths of change-data files named by commits inside the retention window.

    The change feed stays readable over the retention window, so those must stay; older
    ``cdc`` files are vacuumed like any other file (this bounds CDF history, as in Spark).
    """
    location = snapshot.location
    listing = list_log(location.storage, location.root, table=location.name)
    times = listing.commit_timestamps()
    infos = [listing.commits[v] for v in sorted(listing.commits) if times.get(v, 0) >= cutoff]
    out: set[str] = set()
    for actions in read_commits(location.storage, infos, table=location.name):
        for action in actions:
            if isinstance(action, AddCDCFile):
                out.add(action.path)
    return out


def _delete_all(storage: Any, paths: list[str]) -> None:
    if storage.parallel_reads and len(paths) > 4:  # remote stores: one round trip per file
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(storage.delete, paths))
    else:
        for path in paths:
            storage.delete(path)


# --- OPTIMIZE --------------------------------------------------------------------------


def optimize(table: Table, where: Predicate | str | None = None, *, zorder_by: list[str] | None = None,
             target_file_size: int | None = None) -> dict[str, Any]:
    """Compact small files (or Z-order them) in the latest version; see :func:`optimize_snapshot`."""
    return optimize_snapshot(table.snapshot(), where, zorder_by=zorder_by, target_file_size=target_file_size)


def optimize_snapshot(snapshot: Snapshot, where: Predicate | str | None = None, *,
                      zorder_by: list[str] | None = None, target_file_size: int | None = None) -> dict[str, Any]:
    """Rewrite the files of ``snapshot`` into fewer, larger ones, without changing any row.

    Within each partition (only those matching ``where``, a condition on partition
    columns), files smaller than ``target_file_size`` (default: the table's
    ``delta.targetFileSize``) are packed into bins of about that size and each bin of two
    or more files is rewritten as one. With ``zorder_by``, every file of each selected
    partition is rewritten sorted along a Z-order curve of those columns, so files cover
    narrow ranges of each. The commit only rearranges data (``dataChange=false``), so
    concurrent appends do not conflict with it; a concurrent delete of a file it rewrote
    does. Commits nothing when there is nothing to rewrite (``committed`` is ``False``).
    """
    location = snapshot.location
    name = location.name
    check_writable(snapshot.protocol, snapshot.metadata, table=name)
    predicate = to_predicate(where)
    bound = bind(predicate, snapshot.schema) if predicate is not None else None
    if bound is not None:
        others = sorted(columns_of(bound) - set(snapshot.partition_columns))
        if others:
            raise InvalidFilterError(
                f"table '{name}': optimize can only select partitions; column(s) {', '.join(others)} are not "
                f"partition columns (partition columns: {', '.join(snapshot.partition_columns) or 'none'})")
    zorder = _zorder_columns(snapshot, zorder_by)
    target = target_file_size or table_target(snapshot.properties)
    if target <= 0:
        raise LakehouseError(f"table '{name}': target_file_size must be positive, got {target}")

    files = snapshot.files
    if bound is not None:
        files = files.filter(may_match(files, bound, snapshot.schema, snapshot.partition_columns))
    bins = _plan_bins(files, target, zorder=bool(zorder))
    metrics: dict[str, Any] = {"numAddedFiles": 0, "numRemovedFiles": 0, "numAddedBytes": 0,
                               "numRemovedBytes": 0, "numBatches": len(bins)}
    if not bins:
        return {"version": None, "committed": False, **metrics}

    from lakehouse.scan import Scan

    scan = Scan(snapshot)
    writers: list[FileWriter] = []
    removes: list[Action] = []
    adds: list[AddFile] = []
    now = _now_ms()
    try:
        for indices in bins:
            chosen = files.take(pa.array(indices, pa.int64()))
            writer = FileWriter(storage=location.storage, root=location.root, schema=snapshot.schema,
                                partition_columns=snapshot.partition_columns, configuration=snapshot.properties,
                                target_file_size=target, data_change=False)
            writers.append(writer)
            adds += writer.write(_bin_batches(scan, chosen, zorder))
            removes += [a.remove(now, data_change=False) for a in adds_from_files(chosen)]
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    removed_paths = frozenset(r.path for r in removes)  # type: ignore[union-attr]
    metrics.update(numAddedFiles=len(adds), numRemovedFiles=len(removes), numAddedBytes=sum(a.size for a in adds),
                   numRemovedBytes=sum(r.size or 0 for r in removes))  # type: ignore[union-attr]
    commit = _commit(snapshot, "OPTIMIZE", parameters={
        "predicate": [to_sql(predicate)] if predicate is not None else [], "zOrderBy": list(zorder)},
        metrics=metrics, actions=[*removes, *adds], read_set=ReadSet(
            # We read exactly the files we rewrite: a concurrent delete of one of them
            # conflicts (rule 6/7); new files from others cannot, as we only rearrange.
            read_files=removed_paths, removed_files=removed_paths, only_rearranges=True,
            isolation_level="SnapshotIsolation", partition_columns=snapshot.partition_columns,
            schema=snapshot.schema))
    try:
        version = commit.publish()
    except BaseException as exc:
        from lakehouse.errors import CommitOutcomeUnknownError

        if not isinstance(exc, CommitOutcomeUnknownError):  # the files may be live: keep them
            for writer in writers:
                writer.abort()
        raise
    return {"version": version, "committed": True, **metrics}


def _zorder_columns(snapshot: Snapshot, zorder_by: list[str] | None) -> list[str]:
    if not zorder_by:
        return []
    if isinstance(zorder_by, str):
        zorder_by = [zorder_by]
    name, schema = snapshot.location.name, snapshot.schema
    out: list[str] = []
    for column in zorder_by:
        if column not in schema.names:
            raise ColumnNotFoundError(f"table '{name}' has no column '{column}' to z-order by; "
                                      f"columns are {', '.join(schema.names)}")
        if column in snapshot.partition_columns:
            raise SchemaError(f"table '{name}': '{column}' is a partition column; each file holds one value of it, "
                              "so z-ordering by it does nothing; drop it from zorder_by")
        dtype = schema.field(column).type
        if pa.types.is_nested(dtype) or pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
            raise SchemaError(f"table '{name}': cannot z-order by column '{column}' of type {dtype}; "
                              "choose numeric, string, date or timestamp columns")
        if column not in out:
            out.append(column)
    return out


def _plan_bins(files: pa.Table, target: int, *, zorder: bool) -> list[list[int]]:
    """Row indices of ``files`` to rewrite together, one list per output batch.

    Compaction packs each partition's small files (smallest first) into bins of about
    ``target`` bytes; a lone file is left alone. Z-order takes a whole partition as one
    bin, unless it is a single file already within the target.
    """
    partitions: dict[str, list[int]] = defaultdict(list)
    rows = files.select(["partitionValues", "size"]).to_pylist()
    for index, row in enumerate(rows):
        key = json.dumps(sorted((row["partitionValues"] or [])), default=str)
        partitions[key].append(index)
    bins: list[list[int]] = []
    for key in sorted(partitions):
        indices = partitions[key]
        if zorder:
            if len(indices) > 1 or rows[indices[0]]["size"] > target:
                bins.append(indices)
            continue
        small = sorted((i for i in indices if rows[i]["size"] < target), key=lambda i: (rows[i]["size"], i))
        current: list[int] = []
        size = 0
        for index in small:
            if current and size + rows[index]["size"] > target:
                bins.append(current)
                current, size = [], 0
            current.append(index)
            size += rows[index]["size"]
        bins.append(current)
    return [b for b in bins if len(b) > 1 or (zorder and b)]


def _bin_batches(scan: Any, chosen: pa.Table, zorder: list[str]) -> Iterator[pa.RecordBatch]:
    """The rows of one bin: file by file for compaction, all at once sorted for Z-order."""
    if not zorder:
        for _path, rows in scan.read_files(chosen):
            yield from rows.to_batches()
        return
    rows = pa.concat_tables([t for _p, t in scan.read_files(chosen)])
    yield from zorder_sort(rows, zorder).to_batches()
