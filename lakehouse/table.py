"""The ``Table`` handle and the functions that create and open tables."""

from __future__ import annotations

import datetime as dt
import operator
import time
import uuid
from typing import Any, Collection, Mapping, Sequence

import numpy as np
import pyarrow as pa

from lakehouse import dml
from lakehouse.errors import (
    LakehouseError, SchemaError, TableAlreadyExistsError, TableNotFoundError, VersionNotFoundError,
)
from lakehouse.expressions import Predicate
from lakehouse.location import TableLocation
from lakehouse.log.actions import CommitInfo, Metadata
from lakehouse.log.paths import LAST_CHECKPOINT, LOG_DIR, commit_name
from lakehouse.log.replay import read_commits, replay
from lakehouse.log.segment import LogListing, list_log
from lakehouse.properties import validate as validate_properties
from lakehouse.protocol import check_readable, default_protocol
from lakehouse.schema import delta_compatible_schema, schema_to_json
from lakehouse.snapshot import Snapshot
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit


def _timestamp_ms(value: dt.datetime | dt.date | str | int | float) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise VersionNotFoundError(
                f"cannot read {value!r} as a timestamp; use ISO form such as '2026-11-01 10:00:00'") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)  # naive times are UTC, like TIMESTAMP columns
    return int(value.timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


class Table:
    """A Delta table at a location. Holds no version: each call reads the log afresh.

    Reads go through :meth:`snapshot`; each write (:meth:`append`, :meth:`overwrite`,
    :meth:`delete`) creates exactly one new version and returns a metrics dict.
    """

    def __init__(self, location: TableLocation) -> None:
        self._location = location

    # --- identity -----------------------------------------------------------------------

    @property
    def location(self) -> TableLocation:
        return self._location

    @property
    def name(self) -> str:
        return self._location.name

    @property
    def uri(self) -> str:
        return self._location.url

    def __repr__(self) -> str:
        return f"Table({self.uri!r})"

    # --- reading the log ----------------------------------------------------------------

    def _listing(self) -> LogListing:
        return list_log(self._location.storage, self._location.root, table=self.name)

    def version(self) -> int:
        """The latest committed version."""
        return self._listing().latest_version

    def snapshot(self, version: int | None = None, *,
                 timestamp: dt.datetime | dt.date | str | int | None = None, tag: str | None = None) -> Snapshot:
        """The table as of ``version``, as of ``timestamp`` (newest commit at or before it), or
        at the version a ``tag`` pins.

        Without arguments, the latest version. Timestamps are commit times: the commit
        file's modification time, made strictly increasing across versions.
        """
        if sum(x is not None for x in (version, timestamp, tag)) > 1:
            raise LakehouseError("pass either version= or timestamp= or tag=, not several")
        if tag is not None:
            from lakehouse.refs import get_tag

            version = get_tag(self, tag).version
        listing = self._listing()
        times = listing.commit_timestamps()
        if timestamp is not None:
            version = self._version_at(listing, times, _timestamp_ms(timestamp), timestamp)
        elif version is not None:
            version = as_version(version, table=self.name)
        state = replay(self._location.storage, listing, version, table=self.name)
        check_readable(state.protocol, table=self.name)
        ts = times.get(state.version)
        if ts is None:  # commit cleaned up; only its checkpoint remains
            ts = listing.checkpoints[state.version][0].modified_ms
        return Snapshot(self._location, state.version, ts, state)

    def _version_at(self, listing: LogListing, times: dict[int, int], target: int, shown: Any) -> int:
        earliest = listing.earliest_version
        available = {v: t for v, t in times.items() if v >= earliest}
        if not available:
            raise VersionNotFoundError(f"table '{self.name}' has no commit files left to time-travel by timestamp")
        first_version = min(available)
        if target < available[first_version]:
            raise VersionNotFoundError(
                f"table '{self.name}' has no version at {shown}: the earliest available commit is version "
                f"{first_version} at {_iso(available[first_version])}; commits run to version {max(available)} "
                f"at {_iso(available[max(available)])}")
        now = int(time.time() * 1000)
        if target > now + 1000:
            raise VersionNotFoundError(
                f"table '{self.name}': timestamp {shown} is in the future; the latest commit is version "
                f"{max(available)} at {_iso(available[max(available)])}")
        return max(v for v, t in available.items() if t <= target)

    def schema(self) -> pa.Schema:
        """The latest schema, in Arrow types."""
        return self.snapshot().schema

    def history(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits newest first: version, timestamp (ms), operation, parameters, metrics..."""
        listing = self._listing()
        versions = sorted(listing.commits, reverse=True)
        if limit is not None:
            versions = versions[: max(0, limit)]
        times = listing.commit_timestamps()
        storage = self._location.storage
        commits = read_commits(storage, [listing.commits[v] for v in versions], table=self.name)
        out = []
        for version, actions in zip(versions, commits):
            info = next((a for a in actions if isinstance(a, CommitInfo)), CommitInfo({}))
            entry: dict[str, Any] = {"version": version, "timestamp": times[version]}
            entry.update({k: v for k, v in info.values.items() if k != "timestamp"})
            entry.setdefault("operation", None)
            entry["commitTimestamp"] = info.timestamp
            out.append(entry)
        return out

    def scan(self, columns: list[str] | None = None, filter: Predicate | str | None = None) -> Any:  # noqa: A002
        """Shortcut for ``table.snapshot().scan(...)`` on the latest version."""
        return self.snapshot().scan(columns=columns, filter=filter)

    def to_arrow(self, columns: list[str] | None = None, filter: Predicate | str | None = None) -> pa.Table:  # noqa: A002
        return self.snapshot().to_arrow(columns=columns, filter=filter)

    def changes(self, start_version: int, end_version: int | None = None, *, columns: list[str] | None = None,
                filter: Predicate | str | None = None) -> pa.RecordBatchReader:  # noqa: A002
        """The change data feed of versions ``start_version``..``end_version`` (inclusive) as a stream.

        Rows carry ``_change_type`` (insert, delete, update_preimage, update_postimage),
        ``_commit_version`` and ``_commit_timestamp``; see :mod:`lakehouse.changes`.
        """
        from lakehouse.changes import read_changes

        return read_changes(self, start_version, end_version, columns=columns, filter=filter)

    def stream(self, checkpoint: str, *, start: str | int = "earliest", max_versions_per_batch: int | None = None,
               storage_options: Mapping[str, Any] | None = None) -> Any:
        """A resumable stream of this table's changes in micro-batches (``lakehouse.stream.ChangeStream``).

        Progress lives at ``checkpoint`` (a folder or URL owned by this consumer) and moves
        only when a batch's ``commit()`` is called, so a restarted consumer resumes after the
        last committed batch. ``start`` is ``"earliest"`` (the first snapshot as inserts when
        the change feed cannot reach back, then every change), ``"latest"`` or a version.
        ``storage_options`` are for the checkpoint's storage.
        """
        from lakehouse.stream import ChangeStream

        return ChangeStream(self, checkpoint, start=start, max_versions_per_batch=max_versions_per_batch,
                            storage_options=storage_options)

    # --- tags -------------------------------------------------------------------------

    def tag(self, name: str, *, version: int | None = None, retain: dt.timedelta | float | None = None,
            note: str | None = None, hash_rows: bool = True) -> Any:
        """Pin ``version`` (latest when ``None``) under ``name``; vacuum and log cleanup keep what it
        needs while the tag lives (or until ``retain``, a timedelta or hours, has passed).
        ``hash_rows`` records a hash of the rows for :meth:`verify` (``False`` skips reading
        them, for huge tables). Returns the ``Tag``."""
        from lakehouse.refs import create_tag

        return create_tag(self, name, version=version, retain=retain, note=note, hash_rows=hash_rows)

    def tags(self) -> dict[str, Any]:
        """Live tags by name (each a ``lakehouse.refs.Tag`` with ``version``, ``note``...)."""
        from lakehouse.refs import list_tags

        return list_tags(self)

    def drop_tag(self, name: str) -> None:
        """Remove a tag; its files become vacuumable once nothing else needs them."""
        from lakehouse.refs import drop_tag

        drop_tag(self, name)

    def verify(self, tag: str, *, rows: bool = True) -> Any:
        """Re-check a tag: fingerprint, every file present with its size, rows hash the same.

        Returns a ``lakehouse.verify.VerifyReport`` (``ok``, ``missing``, ``size_mismatch``,
        ``rows_hash_ok``...); mismatches are reported, not raised. ``rows=False`` skips
        reading the rows.
        """
        from lakehouse.verify import verify

        return verify(self, tag, rows=rows)

    def cleanup_log(self, *, now_ms: int | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Delete ``_delta_log`` entries older than ``delta.logRetentionDuration`` (30 days) that
        no retained version and no live tag needs; see ``lakehouse.logcleanup``."""
        from lakehouse.logcleanup import cleanup_log

        return cleanup_log(self, now_ms=now_ms, dry_run=dry_run)

    # --- maintenance ------------------------------------------------------------------

    def restore(self, version: int | None = None, *,
                timestamp: dt.datetime | dt.date | str | int | None = None) -> dict[str, Any]:
        """Make the latest version equal an older one (one new commit); see ``lakehouse.maintenance``."""
        from lakehouse import maintenance

        return maintenance.restore(self, version=version, timestamp=timestamp)

    def vacuum(self, retain_hours: float | None = None, *, dry_run: bool = False,
               enforce_retention: bool = True) -> dict[str, Any]:
        """Delete files no version within the retention window, tag or clone needs (default 7 days)."""
        from lakehouse import maintenance

        return maintenance.vacuum(self, retain_hours, dry_run=dry_run, enforce_retention=enforce_retention)

    def optimize(self, where: Predicate | str | None = None, *, zorder_by: Sequence[str] | None = None,
                 target_file_size: int | None = None) -> dict[str, Any]:
        """Compact small files (and cluster by ``zorder_by``) without changing data (dataChange=false)."""
        from lakehouse import maintenance

        return maintenance.optimize(self, where, zorder_by=list(zorder_by) if zorder_by else None,
                                    target_file_size=target_file_size)

    def clone(self, location: str, *, version: int | None = None,
              storage_options: Mapping[str, Any] | None = None) -> Table:
        """A zero-copy shallow clone of this table (at ``version``) at ``location``."""
        from lakehouse.clone import shallow_clone

        return shallow_clone(self, location, version=version, storage_options=storage_options)

    # --- writing ------------------------------------------------------------------------

    def append(self, data: Any, *, target_file_size: int | None = None,
               checked_constraints: Collection[str] = (), txn: tuple[str, int] | None = None) -> dict[str, Any]:
        """Add rows (pyarrow Table/RecordBatchReader, pandas or polars DataFrame).

        Rows breaking a CHECK constraint raise ``ConstraintViolationError`` and nothing is
        written; ``checked_constraints`` names constraints the caller already verified.
        ``txn=(app_id, batch_version)`` records Delta's ``txn`` action: a batch at or below
        the last one applied for ``app_id`` is skipped, so replays never duplicate.
        """
        return dml.append(self.snapshot(), data, target_file_size=target_file_size,
                          checked_constraints=checked_constraints, txn=txn)

    def overwrite(self, data: Any, *, schema_mode: str | None = None, target_file_size: int | None = None,
                  checked_constraints: Collection[str] = (), txn: tuple[str, int] | None = None) -> dict[str, Any]:
        """Replace every row; ``schema_mode="overwrite"`` replaces the schema too."""
        return dml.overwrite(self.snapshot(), data, schema_mode=schema_mode, target_file_size=target_file_size,
                             checked_constraints=checked_constraints, txn=txn)

    def delete(self, filter: Predicate | str | None = None, *,  # noqa: A002
               txn: tuple[str, int] | None = None) -> dict[str, Any]:
        """Delete rows matching ``filter`` (all rows when ``None``), rewriting only affected files."""
        return dml.delete(self.snapshot(), filter, txn=txn)

    def txn_version(self, app_id: str) -> int | None:
        """The last batch version an exactly-once writer recorded for ``app_id`` (``None``: none)."""
        return self.snapshot().txn_version(app_id)


def _schema_of(schema: Any) -> pa.Schema:
    if isinstance(schema, pa.Schema):
        return schema
    if isinstance(schema, (list, tuple)):
        try:
            return pa.schema(schema)
        except (TypeError, pa.ArrowInvalid) as exc:
            raise SchemaError(f"cannot build a schema from {schema!r}: {exc}") from None
    if hasattr(schema, "schema") and isinstance(schema.schema, pa.Schema):
        return schema.schema  # a pyarrow Table or RecordBatch: take its schema
    raise SchemaError(f"schema must be a pyarrow.Schema or a list of (name, type) pairs, got {type(schema).__name__}")


def create_table(location: str, schema: pa.Schema | Sequence[tuple[str, pa.DataType]], *,
                 partition_by: Sequence[str] = (), properties: Mapping[str, str] | None = None,
                 name: str | None = None, description: str | None = None,
                 storage_options: Mapping[str, Any] | None = None, exist_ok: bool = False) -> Table:
    """Create an empty Delta table (version 0) at ``location`` and return it.

    ``location`` is a folder path or an fsspec URL (``s3://bucket/t``, ``memory://t``);
    ``storage_options`` reach the storage client (endpoint, keys, region) and are never
    logged. Raises ``TableAlreadyExistsError`` unless ``exist_ok``.
    """
    loc = TableLocation.of(location, storage_options=storage_options)
    table = Table(loc)
    try:
        table.version()
    except TableNotFoundError:
        pass
    else:
        if exist_ok:
            return table
        raise TableAlreadyExistsError(f"a table already exists at '{loc.url}'; open it with open_table")
    arrow_schema = delta_compatible_schema(_schema_of(schema))
    partition_by = _partition_columns(partition_by)
    for column in partition_by:
        if column not in arrow_schema.names:
            raise SchemaError(f"partition column '{column}' is not in the schema ({', '.join(arrow_schema.names)})")
        dtype = arrow_schema.field(column).type
        if pa.types.is_nested(dtype) or pa.types.is_floating(dtype):
            raise SchemaError(f"column '{column}' has type {dtype}, which cannot be a partition column")
    if len(partition_by) and len(partition_by) == len(arrow_schema):
        raise SchemaError("every column is a partition column; a table needs at least one data column")
    configuration = {str(k): str(v) for k, v in (properties or {}).items()}
    validate_properties(configuration)
    metadata = Metadata(id=str(uuid.uuid4()), schema_string=schema_to_json(arrow_schema),
                        partition_columns=tuple(partition_by), configuration=configuration, name=name,
                        description=description, created_time=int(time.time() * 1000))
    protocol = default_protocol(configuration)
    Commit(storage=loc.storage, root=loc.root, table=loc.name, read_version=None, operation="CREATE TABLE",
           parameters={"partitionBy": list(partition_by), "description": description or "",
                       "properties": configuration},
           actions=[protocol, metadata], read_set=ReadSet(), configuration=configuration).publish()
    return table


def open_table(location: str, *, storage_options: Mapping[str, Any] | None = None,
               allowed_roots: Sequence[str] = ()) -> Table:
    """Open the Delta table at ``location``; raises ``TableNotFoundError`` if there is none.

    ``allowed_roots`` lists outside locations (URLs) whose files the log may reference by
    absolute URI, e.g. the source of a shallow clone. Nothing else outside is ever read.
    """
    from lakehouse.clone import clone_source_roots

    loc = TableLocation.of(location, storage_options=storage_options, allowed_roots=tuple(allowed_roots))
    # A shallow clone records the source it reads; trust it as if the caller had passed it.
    roots = clone_source_roots(loc)
    if roots:
        loc = TableLocation.of(location, storage_options=storage_options,
                               allowed_roots=tuple(dict.fromkeys([*allowed_roots, *roots])))
    table = Table(loc)
    # Cheap existence check first (one stat); a full listing only when the first commit or
    # the checkpoint hint is missing (e.g. the log was cleaned up).
    first = loc.storage.join(loc.root, LOG_DIR, commit_name(0))
    hint = loc.storage.join(loc.root, LOG_DIR, LAST_CHECKPOINT)
    if loc.storage.head(first) is None and loc.storage.head(hint) is None:
        table.version()  # raises TableNotFoundError with the location
    return table


def as_version(value: Any, *, table: str) -> int:
    """``value`` as a version number: any integer type (NumPy's too), never a bool or float."""
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise VersionNotFoundError(f"table '{table}': version must be an integer, got {value!r}")


def _partition_columns(partition_by: Any) -> tuple[str, ...]:
    """``partition_by`` as a tuple of names: ``None`` means none, a string one column."""
    if partition_by is None:
        return ()
    if isinstance(partition_by, str):
        return (partition_by,)
    try:
        names = tuple(partition_by)
    except TypeError:
        raise SchemaError(f"partition_by must be a list of column names, got {partition_by!r}") from None
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise SchemaError(f"partition_by must be a list of column names, got {bad[0]!r} in it")
    return names
