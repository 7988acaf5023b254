"""The change data feed: which rows each version inserted, deleted or updated.

Per version, following the Delta protocol: when the commit has ``cdc`` actions, its
change files are the whole answer (they carry ``_change_type``); otherwise the rows of
files it added with ``dataChange=true`` are inserts and those of files it removed with
``dataChange=true`` are deletes. Commits that only rearrange data (OPTIMIZE) change
nothing. Every row gets ``_commit_version`` and ``_commit_timestamp`` (the commit time
used by time travel). Batches stream: memory is bounded by one file's batches.
"""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.errors import DataFileError, LakehouseError, VersionNotFoundError
from lakehouse.expressions import Predicate, bind, columns_of, to_arrow_expression, to_predicate
from lakehouse.log.actions import Action, AddCDCFile, AddFile, RemoveFile
from lakehouse.log.filelist import files_from_adds
from lakehouse.log.replay import read_commits
from lakehouse.scan import Scan
from lakehouse.snapshot import Snapshot

CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
COMMIT_TIMESTAMP = "_commit_timestamp"
_META_FIELDS = (pa.field(CHANGE_TYPE, pa.string()), pa.field(COMMIT_VERSION, pa.int64()),
                pa.field(COMMIT_TIMESTAMP, pa.timestamp("us", tz="UTC")))


def read_changes(table: object, start_version: int, end_version: int | None = None, *,
                 columns: list[str] | None = None, filter: Predicate | str | None = None,  # noqa: A002
                 batch_size: int | None = None) -> pa.RecordBatchReader:
    """Changes of versions ``start_version`` through ``end_version`` (default: latest), inclusive.

    ``table`` is a :class:`lakehouse.Table`. Columns are those of the end version's
    schema (or ``columns``), then ``_change_type``, ``_commit_version``,
    ``_commit_timestamp``; ``filter`` keeps only matching change rows.
    """
    from lakehouse.table import Table

    assert isinstance(table, Table)
    name = table.name
    listing = table._listing()
    latest = listing.latest_version
    for label, value in (("start_version", start_version), ("end_version", end_version)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise VersionNotFoundError(f"table '{name}': {label} must be a version number (>= 0), got {value!r}")
    end = latest if end_version is None else end_version
    if start_version > latest:
        raise VersionNotFoundError(f"table '{name}' has no version {start_version}; the latest is {latest}")
    if end > latest:
        raise VersionNotFoundError(f"table '{name}' has no version {end}; the latest is {latest}")
    if start_version > end:
        raise LakehouseError(f"table '{name}': start version {start_version} is after end version {end}")
    missing = [v for v in range(start_version, end + 1) if v not in listing.commits]
    if missing:
        earliest = min((v for v in listing.commits if v >= start_version), default=None)
        raise VersionNotFoundError(
            f"table '{name}': the commit of version {missing[0]} was cleaned up, so its changes are gone; "
            f"read changes from version {earliest if earliest is not None else latest + 1} on")
    snapshot = table.snapshot(end)
    schema = snapshot.schema
    if isinstance(columns, str):
        columns = [columns]
    meta_names = [f.name for f in _META_FIELDS]
    data_columns = None if columns is None else [c for c in columns if c not in meta_names]
    wanted = (Scan(snapshot, columns=data_columns).columns if data_columns else None) or \
        ([] if columns is not None and not data_columns else schema.names)
    predicate = to_predicate(filter)
    # A filter on _change_type/_commit_version/_commit_timestamp is applied to the finished
    # rows; one on data columns only is pushed into the Parquet reads.
    full_schema = pa.schema([*schema, *_META_FIELDS])
    bound = bind(predicate, full_schema) if predicate is not None else None
    on_meta = bound is not None and bool(columns_of(bound) & set(meta_names))
    read = list(wanted)
    if bound is not None:
        read += [n for n in schema.names if n in columns_of(bound) and n not in read]
    read_schema = pa.schema([*(schema.field(n) for n in read), *_META_FIELDS])
    row_filter = to_arrow_expression(bound, full_schema) if bound is not None else None
    if columns is not None and any(c in meta_names for c in columns):
        out_names = [c for c in columns if c in meta_names or c in wanted]
    else:
        out_names = [*wanted, *meta_names]
    out_schema = pa.schema([read_schema.field(n) for n in out_names])
    times = listing.commit_timestamps()
    versions = list(range(start_version, end + 1))

    def batches() -> Iterator[pa.RecordBatch]:
        # Commits are read a few at a time so a long range does not hold every commit in memory.
        for offset in range(0, len(versions), 16):
            chunk = versions[offset:offset + 16]
            commits = read_commits(table.location.storage, [listing.commits[v] for v in chunk], table=name)
            for version, actions in zip(chunk, commits):
                stamp = pa.scalar(times[version] * 1000, pa.timestamp("us", tz="UTC"))
                for kind, fragment, physical in _version_files(snapshot, actions):
                    for batch in _read(snapshot, fragment, physical, kind, read, None if on_meta else row_filter,
                                       version, stamp, read_schema, batch_size):
                        if on_meta:
                            batch = pa.Table.from_batches([batch]).filter(row_filter).combine_chunks()
                            batch = batch.to_batches()[0] if batch.num_rows else None
                        if batch is not None and batch.num_rows:
                            yield batch.select(out_names) if batch.schema.names != out_names else batch

    return pa.RecordBatchReader.from_batches(out_schema, batches())


def _version_files(snapshot: Snapshot, actions: list[Action]) -> Iterator[tuple[str | None, ds.Fragment, pa.Schema]]:
    """``(change type or None for cdc files, fragment, physical schema)`` for one commit."""
    schema = snapshot.schema
    scan = Scan(snapshot)
    cdc = [a for a in actions if isinstance(a, AddCDCFile)]
    if cdc:
        as_adds = [AddFile(path=a.path, partition_values=a.partition_values, size=a.size, modification_time=0)
                   for a in cdc]
        with_type = pa.schema([*schema, pa.field(CHANGE_TYPE, pa.string())])
        for fragment in scan.fragments(files_from_adds(as_adds)):
            yield None, fragment, with_type
        return
    removed = [a for a in actions if isinstance(a, RemoveFile) and a.data_change]
    added = [a for a in actions if isinstance(a, AddFile) and a.data_change]
    if removed:
        as_adds = [AddFile(path=r.path, partition_values=r.partition_values or {}, size=r.size or 0,
                           modification_time=0) for r in removed]
        for fragment in scan.fragments(files_from_adds(as_adds)):
            yield "delete", fragment, schema
    if added:
        for fragment in scan.fragments(files_from_adds(added)):
            yield "insert", fragment, schema


def _read(snapshot: Snapshot, fragment: ds.Fragment, physical: pa.Schema, kind: str | None, wanted: list[str],
          row_filter: pc.Expression | None, version: int, stamp: pa.Scalar, out_schema: pa.Schema,
          batch_size: int | None) -> Iterator[pa.RecordBatch]:
    dataset = ds.FileSystemDataset([fragment], physical, ds.ParquetFileFormat())
    columns = wanted if kind is not None else [*wanted, CHANGE_TYPE]
    options = {"batch_size": batch_size} if batch_size else {}
    try:
        for batch in dataset.to_batches(columns=columns, filter=row_filter, **options):
            if not batch.num_rows:
                continue
            n = batch.num_rows
            change = pa.array([kind] * n, pa.string()) if kind is not None else batch.column(CHANGE_TYPE)
            arrays = [batch.column(name) for name in wanted]
            arrays += [change, pa.array([version] * n, pa.int64()), pa.array([stamp.value] * n, stamp.type)]
            yield pa.RecordBatch.from_arrays(arrays, schema=out_schema)
    except (FileNotFoundError, OSError) as exc:
        raise DataFileError(
            f"table '{snapshot.location.name}': a file of version {version}'s changes could not be read "
            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); it may have been vacuumed") from None
