"""Resumable change streams: a table's changes in micro-batches, with a durable offset.

A :class:`ChangeStream` cuts a table's versions into micro-batches (``batch_id`` 0, 1, 2...)
and remembers, at a *checkpoint* location, which batches the consumer has finished. The
layout follows Spark Structured Streaming's two logs, every file written put-if-absent::

    <checkpoint>/metadata.json                    stream id, table id, the resolved start
    <checkpoint>/offsets/<batch_id:020d>.json     written when a batch is PLANNED
    <checkpoint>/commits/<batch_id:020d>.json     written when the caller COMMITS it

On open, the highest committed batch ``B`` is found. If ``offsets/B+1`` exists (a batch was
planned but not committed: the consumer crashed, or never called ``commit()``) the next
batch is that batch again with *exactly* the same version range, even if more versions
arrived since, so a sink keyed by ``batch_id`` (Delta ``txn``, see ``lakehouse.dml``) sees
the same batch with the same content and can skip it. Otherwise the next range starts at
the committed batch's end + 1. A batch is redelivered until it is committed.

Nothing else coordinates consumers: two consumers on one checkpoint race on the
put-if-absent files and the loser raises :class:`CheckpointOwnedError`. (Two consumers that
both resume the same planned-but-uncommitted batch both see it; only one can commit it.)

``start`` matters only for a fresh checkpoint and is resolved once, at creation, into
``metadata.json``, so a restart never re-resolves "latest" and never skips versions:

- ``"latest"``: begin after the table's version at creation;
- an ``int``: begin at that version;
- ``"earliest"``: version 0 when commit 0 is still in the log (the change reader turns
  add/remove actions into insert/delete rows even without the change data feed), else an
  initial *snapshot batch*: every row of the latest version as an ``insert``, then the
  changes after it.

A stream needs the commits of the versions it has not processed yet. Log cleanup
(``delta.logRetentionDuration``, 30 days by default) does not know about streams and does
not protect them: a stream stopped for longer than that finds its next versions gone and
raises :class:`~lakehouse.errors.StreamBehindCleanupError` (a ``StreamCheckpointError``)
naming the checkpoint and the missing versions. It cannot continue without losing those
changes: start a new checkpoint (``start="latest"`` or a version), or raise the retention
beforehand.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import pyarrow as pa

from lakehouse.changes import CHANGE_TYPE, COMMIT_TIMESTAMP, COMMIT_VERSION
from lakehouse.errors import (CheckpointOwnedError, LakehouseError, StreamBehindCleanupError, StreamCheckpointError,
                              VersionNotFoundError)
from lakehouse.log.paths import LOG_DIR, commit_name
from lakehouse.storage import Storage, resolve

if TYPE_CHECKING:
    from lakehouse.snapshot import Snapshot
    from lakehouse.table import Table

FORMAT_VERSION = 1
METADATA = "metadata.json"
OFFSETS = "offsets"
COMMITS = "commits"


def _name(batch_id: int) -> str:
    return f"{batch_id:020d}.json"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class _Offset:
    """What ``offsets/<id>.json`` holds: the planned range of one batch."""

    batch_id: int
    start_version: int
    end_version: int
    is_snapshot: bool

    def to_json(self, table_id: str) -> bytes:
        return json.dumps({"format": FORMAT_VERSION, "batch_id": self.batch_id, "table_id": table_id,
                           "start_version": self.start_version, "end_version": self.end_version,
                           "is_snapshot": self.is_snapshot, "planned_at": _now_ms()}).encode()


class MicroBatch:
    """One planned batch: versions ``start_version``..``end_version`` (inclusive) of the table.

    Read it with :meth:`reader` / :meth:`to_arrow` (the change rows with ``_change_type``,
    ``_commit_version``, ``_commit_timestamp``), apply it, then call :meth:`commit` so a
    restarted consumer does not see it again. A snapshot batch (``is_snapshot``) holds every
    row of version ``end_version`` as an ``insert`` stamped with that version.
    """

    def __init__(self, stream: ChangeStream, offset: _Offset) -> None:
        self._stream = stream
        self._offset = offset
        self.committed = False

    batch_id = property(lambda self: self._offset.batch_id, doc="0, 1, 2... in the order batches are planned")
    start_version = property(lambda self: self._offset.start_version, doc="first version of the batch")
    end_version = property(lambda self: self._offset.end_version, doc="last version of the batch (inclusive)")
    is_snapshot = property(lambda self: self._offset.is_snapshot, doc="the initial snapshot batch of 'earliest'")

    def reader(self, columns: list[str] | None = None) -> pa.RecordBatchReader:
        """The batch's change rows as a stream (``columns``: data columns to keep)."""
        if not self.is_snapshot:
            try:
                return self._stream.table.changes(self.start_version, self.end_version, columns=columns)
            except VersionNotFoundError:
                gone = self._stream._behind_cleanup(self.start_version)
                if gone is None:
                    raise
                raise gone from None
        snapshot = self.snapshot()
        scan = snapshot.scan(columns=columns)
        data_schema = pa.schema([snapshot.schema.field(n) for n in (columns or snapshot.schema.names)])
        stamp = pa.scalar(snapshot.timestamp_ms * 1000, pa.timestamp("us", tz="UTC"))
        schema = pa.schema([*data_schema, pa.field(CHANGE_TYPE, pa.string()),
                            pa.field(COMMIT_VERSION, pa.int64()), pa.field(COMMIT_TIMESTAMP, stamp.type)])

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in scan.to_batches():
                n = batch.num_rows
                if not n:
                    continue
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array(["insert"] * n, pa.string()), pa.array([self.end_version] * n, pa.int64()),
                     pa.array([stamp.value] * n, stamp.type)], schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        """All change rows of the batch as one table."""
        return self.reader(columns).read_all()

    def snapshot(self) -> Snapshot:
        """The table as of the batch's ``end_version`` (what the batch brings the consumer to)."""
        try:
            return self._stream.table.snapshot(self.end_version)
        except VersionNotFoundError:
            gone = self._stream._behind_cleanup(self.end_version, snapshot=self.is_snapshot)
            if gone is None:
                raise
            raise gone from None

    def commit(self) -> None:
        """Record the batch as done (put-if-absent); a second call is a no-op."""
        if not self.committed:
            self._stream._commit(self)
            self.committed = True

    def __repr__(self) -> str:
        kind = "snapshot" if self.is_snapshot else "changes"
        return f"MicroBatch(id={self.batch_id}, {kind} of versions {self.start_version}..{self.end_version})"


class ChangeStream:
    """A table's changes in micro-batches whose progress is kept at ``checkpoint``.

    ``checkpoint`` is a folder or fsspec URL (``memory://``, ``s3://`` ...) that belongs to
    this stream alone. ``max_versions_per_batch`` caps how many versions one batch spans
    (``None``: all available). See the module docstring for the checkpoint layout.
    """

    def __init__(self, table: Table, checkpoint: str, *, start: str | int = "earliest",
                 max_versions_per_batch: int | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        if max_versions_per_batch is not None and (isinstance(max_versions_per_batch, bool)
                                                   or not isinstance(max_versions_per_batch, int)
                                                   or max_versions_per_batch < 1):
            raise LakehouseError(f"max_versions_per_batch must be a positive integer, got {max_versions_per_batch!r}")
        if not (start in ("earliest", "latest") or (isinstance(start, int) and not isinstance(start, bool)
                                                    and start >= 0)):
            raise LakehouseError(f"start must be 'earliest', 'latest' or a version number >= 0, got {start!r}")
        self.table = table
        self.max_versions_per_batch = max_versions_per_batch
        self._storage, self._root = resolve(checkpoint, storage_options)
        self.checkpoint = self._storage.to_url(self._root)
        self._table_id = table.snapshot().table_id
        self._meta = self._open_metadata(start)
        self._pending: MicroBatch | None = None
        self._next_id, self._next_start = self._recover()

    # --- checkpoint files -----------------------------------------------------------------

    @property
    def stream_id(self) -> str:
        """A unique id made when the checkpoint was created (a new one if it is deleted)."""
        return str(self._meta["stream_id"])

    @property
    def storage(self) -> Storage:
        return self._storage

    def _path(self, *parts: str) -> str:
        return self._storage.join(self._root, *parts)

    def _read_json(self, path: str) -> dict[str, Any]:
        try:
            value = json.loads(self._storage.read(path))
        except FileNotFoundError:
            raise StreamCheckpointError(f"stream checkpoint '{self.checkpoint}': {path} is missing; restore it or "
                                        "start a new checkpoint") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise StreamCheckpointError(f"stream checkpoint '{self.checkpoint}': {path} is not valid json ({exc}); "
                                        "restore it or start a new checkpoint") from None
        if not isinstance(value, dict):
            raise StreamCheckpointError(f"stream checkpoint '{self.checkpoint}': {path} is not a json object")
        return value

    def _open_metadata(self, start: str | int) -> dict[str, Any]:
        path = self._path(METADATA)
        if self._storage.head(path) is None:
            resolved = self._resolve_start(start)
            meta = {"format": FORMAT_VERSION, "stream_id": str(uuid.uuid4()), "table_id": self._table_id,
                    "table": self.table.uri, "created_at": _now_ms(), **resolved}
            try:
                self._storage.write_if_absent(path, json.dumps(meta).encode())
            except FileExistsError:
                pass  # another consumer created it at the same moment: use theirs
        meta = self._read_json(path)
        if meta.get("table_id") != self._table_id:
            raise StreamCheckpointError(
                f"stream checkpoint '{self.checkpoint}' belongs to table {meta.get('table')!r} "
                f"(id {meta.get('table_id')}), not to '{self.table.uri}' (id {self._table_id}); "
                "use another checkpoint location for this table")
        return meta

    def _resolve_start(self, start: str | int) -> dict[str, Any]:
        """``{"start_version": v, "snapshot_version": s or None}`` for a fresh checkpoint."""
        latest = self.table.version()
        if start == "latest":
            return {"start_version": latest + 1, "snapshot_version": None}
        if start == "earliest":
            location = self.table.location
            if location.storage.head(location.path(LOG_DIR, commit_name(0))) is not None:
                return {"start_version": 0, "snapshot_version": None}
            return {"start_version": latest + 1, "snapshot_version": latest}
        return {"start_version": int(start), "snapshot_version": None}

    def _ids(self, folder: str) -> list[int]:
        ids = []
        for info in self._storage.list_dir(self._path(folder)):
            stem = info.name[:-5] if info.name.endswith(".json") else ""
            if len(stem) == 20 and stem.isdigit():
                ids.append(int(stem))
        return sorted(ids)

    def _load_offset(self, batch_id: int) -> _Offset:
        raw = self._read_json(self._path(OFFSETS, _name(batch_id)))
        try:
            offset = _Offset(int(raw["batch_id"]), int(raw["start_version"]), int(raw["end_version"]),
                             bool(raw["is_snapshot"]))
        except (KeyError, TypeError, ValueError):
            raise StreamCheckpointError(f"stream checkpoint '{self.checkpoint}': offset of batch {batch_id} is "
                                        "missing fields; restore it or start a new checkpoint") from None
        if raw.get("table_id") != self._table_id:
            raise StreamCheckpointError(f"stream checkpoint '{self.checkpoint}': batch {batch_id} was planned "
                                        f"for another table (id {raw.get('table_id')}); use another checkpoint")
        return offset

    def _recover(self) -> tuple[int, int]:
        """``(next batch id, first version of the next new batch)``; loads a pending batch."""
        committed = self._ids(COMMITS)
        last = committed[-1] if committed else -1
        if last >= 0:
            next_start = self._load_offset(last).end_version + 1
        else:
            next_start = int(self._meta["start_version"])
        if self._storage.head(self._path(OFFSETS, _name(last + 1))) is not None:
            self._pending = MicroBatch(self, self._load_offset(last + 1))
        return last + 1, next_start

    # --- planning and committing ------------------------------------------------------

    def poll(self) -> MicroBatch | None:
        """The next batch to process, or ``None`` when no new version exists (never blocks).

        The batch is planned durably (``offsets/``) before it is returned; until it is
        committed, every ``poll`` (and every restarted consumer) returns the same batch.
        """
        if self._pending is not None and not self._pending.committed:
            return self._pending
        snapshot_version = self._meta.get("snapshot_version")
        if self._next_id == 0 and snapshot_version is not None:
            offset = _Offset(0, int(snapshot_version), int(snapshot_version), True)
        else:
            listing = self.table._listing()
            latest = listing.latest_version
            if self._next_start > latest:
                return None
            if self._next_start not in listing.commits:
                gone = self._behind_cleanup(self._next_start, commits=listing.commits)
                assert gone is not None
                raise gone
            end = latest if self.max_versions_per_batch is None else \
                min(latest, self._next_start + self.max_versions_per_batch - 1)
            offset = _Offset(self._next_id, self._next_start, end, False)
        try:
            self._storage.write_if_absent(self._path(OFFSETS, _name(offset.batch_id)), offset.to_json(self._table_id))
        except FileExistsError:
            raise self._owned("plan", offset.batch_id) from None
        self._pending = MicroBatch(self, offset)
        return self._pending

    def _commit(self, batch: MicroBatch) -> None:
        if batch is not self._pending:
            raise LakehouseError(f"stream checkpoint '{self.checkpoint}': batch {batch.batch_id} is not this "
                                 "stream's pending batch; commit the batch the last poll() returned")
        body = json.dumps({"format": FORMAT_VERSION, "batch_id": batch.batch_id, "committed_at": _now_ms()})
        try:
            self._storage.write_if_absent(self._path(COMMITS, _name(batch.batch_id)), body.encode())
        except FileExistsError:
            raise self._owned("commit", batch.batch_id) from None
        self._next_id = batch.batch_id + 1
        self._next_start = batch.end_version + 1

    def _behind_cleanup(self, version: int, *, commits: Mapping[int, Any] | None = None,
                        snapshot: bool = False) -> StreamBehindCleanupError | None:
        """The error for a batch that needs ``version`` after log cleanup removed it, or
        ``None`` when that version's commit is still there (the failure is something else)."""
        if commits is None:
            commits = self.table._listing().commits
        if version in commits:
            return None
        oldest = min((v for v in commits if v > version), default=None)
        last_gone = oldest - 1 if oldest is not None else version
        gone = f"versions {version}..{last_gone}" if last_gone > version else f"version {version}"
        needs = f"version {version} for its snapshot batch" if snapshot else f"the changes from version {version} on"
        restart = f"start={oldest} or " if oldest is not None else ""
        return StreamBehindCleanupError(
            f"stream checkpoint '{self.checkpoint}' fell behind log cleanup of table '{self.table.name}': it needs "
            f"{needs}, but the log no longer holds {gone} (removed after delta.logRetentionDuration), so this "
            f"checkpoint cannot continue without losing changes. Start a new checkpoint location with "
            f"{restart}start=\"latest\" to continue from there, skipping the lost changes (a feature job started "
            f"with start=\"earliest\" rebuilds its sink from a snapshot instead), and raise "
            f"delta.logRetentionDuration on the table above the longest time a stream may stay stopped",
            checkpoint=self.checkpoint, missing=(version, last_gone), earliest_available=oldest)

    def _owned(self, what: str, batch_id: int) -> CheckpointOwnedError:
        return CheckpointOwnedError(
            f"stream checkpoint '{self.checkpoint}': another consumer already {'planned' if what == 'plan' else 'committed'}"
            f" batch {batch_id}, so it owns this checkpoint; run one consumer per checkpoint (stop the other, or "
            "give this one its own checkpoint location)")

    # --- iteration ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[MicroBatch]:
        """Available batches, then stop. Commit each before asking for the next one;
        an uncommitted batch is yielded again, so forgetting to commit raises instead."""
        while True:
            batch = self.poll()
            if batch is None:
                return
            yield batch
            if not batch.committed:
                raise LakehouseError(f"stream checkpoint '{self.checkpoint}': batch {batch.batch_id} was not "
                                     "committed; call batch.commit() after applying it")

    def follow(self, poll_interval: float = 1.0, stop: Callable[[], bool] | None = None) -> Iterator[MicroBatch]:
        """Batches as they become available, waiting ``poll_interval`` seconds between empty
        polls, until ``stop()`` returns true (checked between polls). Commit each batch."""
        while stop is None or not stop():
            batch = self.poll()
            if batch is None:
                time.sleep(poll_interval)
                continue
            yield batch

    @property
    def committed_version(self) -> int:
        """The last version every committed batch covers (``start - 1`` when none is)."""
        return self._next_start - 1

    def __repr__(self) -> str:
        return f"ChangeStream(table={self.table.uri!r}, checkpoint={self.checkpoint!r}, next_batch={self._next_id})"

