"""Feature jobs: keep a feature table up to date from a source table's changes.

A :class:`FeatureJob` follows the source with a :class:`lakehouse.stream.ChangeStream`.
For each micro-batch it

1. collects the *affected keys*: the key values of every change row (inserts, deletes,
   update pre- and post-images), so a row that moved from key ``a`` to key ``b`` touches both;
2. recomputes the features of exactly those keys from the source **as of the batch's end
   version**: the source rows of those keys are registered as ``source`` in an engine
   session and the job's SQL ``query`` runs over them (or a Python ``transform`` gets them);
3. replaces those keys' rows in the sink in **one** commit (``STREAMING UPDATE``): sink files
   that hold an affected key are rewritten without its rows, and the recomputed rows are
   added. A key that vanished from the source yields no rows, so it vanishes from the sink;
4. commits the batch in the stream checkpoint.

Keys are matched null- and NaN-aware: a NULL key is one key, and so is a float NaN key
(as ``GROUP BY`` treats them), so their rows are found, recomputed and replaced like any other.

Why any aggregate is right: after batch *k*, every key's sink rows equal the query over the
source at batch *k*'s end version. Keys the batch touched were just recomputed at that
version; keys it did not touch have the same source rows as at the previous batch's end.
No aggregate needs to be invertible (``min``, ``count(distinct)``, medians all work) and
updates and deletes need no special handling.

**Other tables the query reads (inputs).** A query may join other lakehouse tables (a
dimension table, say). Their changes do not show up in the source's stream, so the job
*follows* them: the tables the query reads besides ``source`` are found by planning it (every
name the engine's catalog resolves to a lakehouse table at its latest version; ``VERSION AS
OF``/``TIMESTAMP AS OF`` reads are fixed and not followed, plain Parquet files are not
followed). Each sink commit records, next to its ``txn``, the version of every input it was
computed with (``operationParameters.inputVersions``), and every computation reads each
input pinned at the version it records. When an input has a newer version whose commits
change data (an ``OPTIMIZE`` does not), the job recomputes **all** keys: which keys a
changed dimension row affects depends on the query (a join on another column, a filter, a
subquery) and cannot be derived robustly, so the job does not guess. That happens in the
next source batch (which then replaces the whole sink) or, when the source has no new
version, in an *input refresh*: a full recompute at the source version the checkpoint has
processed, committed without a ``txn`` (it is idempotent: replaying it rewrites the same
rows, and once its commit lands the recorded versions say it is done). The invariant becomes:
after every sink commit, the sink equals the query over the source at the processed version
and each input at its recorded version. A ``transform`` sees only the source rows; tables it
reads by itself are not followed. A query that reads its own sink is refused.

Why exactly once: the sink commit carries Delta's ``txn=(app_id, batch_id)``. If the job
dies between the sink commit and the checkpoint commit, the restarted stream replans the
same batch with the same version range (see ``lakehouse.stream``), the sink already records
``batch_id`` for ``app_id``, and the write is skipped. The default ``app_id`` comes from the
checkpoint's stream id, so a fresh checkpoint never collides with an old one's batch ids.
A concurrent commit to the sink (an ``OPTIMIZE``, say) that conflicts with the job's commit
makes the job re-read the sink and redo the batch, up to :data:`MAX_COMMIT_ATTEMPTS` times.

A stream that fell behind the source's log cleanup raises
:class:`lakehouse.errors.StreamBehindCleanupError`; nothing keeps cleanup from removing
versions a stopped job still needs.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

import lakehouse
from engine.catalog import Catalog
from engine.datasource.base import TableSource
from engine.datasource.lakehouse import LakehouseSource
from lakehouse.errors import CommitConflictError, LakehouseError, SchemaError, TableNotFoundError
from lakehouse.expressions import And, Comparison, In, IsNull, Or, Predicate
from lakehouse.rewrite import rewrite
from lakehouse.snapshot import Snapshot
from lakehouse.stream import ChangeStream, MicroBatch

MAX_IN_VALUES = 5000  # above this many affected keys, files are picked by the keys' min/max
MAX_COMMIT_ATTEMPTS = 5  # sink commits tried per batch when concurrent commits conflict
OPERATION = "STREAMING UPDATE"


class FeatureJobError(LakehouseError):
    """A feature job is misconfigured, its query/transform failed or produced unusable rows,
    or its sink commit kept conflicting with other writers."""


class FeatureKeyTypeError(FeatureJobError, SchemaError):
    """A key column has one type in the source and another in the query's result or the sink."""


Transform = Callable[[pa.Table], pa.Table]


class _InputsCatalog(Catalog):
    """The job session's catalog: records the lakehouse tables a query reads at their latest
    version (``inputs``) and serves them pinned to the versions in ``pins``."""

    def __init__(self, warehouse: str | None, storage_options: Mapping[str, Any] | None) -> None:
        super().__init__(warehouse, storage_options)
        self.inputs: dict[str, lakehouse.Table] = {}
        self.pins: dict[str, Snapshot] = {}
        self._fixed = False

    def open_table(self, name: str) -> lakehouse.Table:
        table = super().open_table(name)
        if not self._fixed:
            self.inputs.setdefault(name.lower(), table)
        return table

    def resolve(self, name: str, *, version: tuple[str, Any] | None = None) -> TableSource:
        key = name.lower()
        if key in self._registered:
            return super().resolve(name, version=version)
        if version is not None:  # VERSION/TIMESTAMP AS OF: a fixed version, nothing to follow
            self._fixed = True
            try:
                return super().resolve(name, version=version)
            finally:
                self._fixed = False
        pinned = self.pins.get(key)
        if pinned is not None:
            return LakehouseSource(name, pinned)
        return super().resolve(name)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _key_family(dtype: pa.DataType) -> str:
    """Types whose values convert losslessly enough to match keys across them."""
    if pa.types.is_dictionary(dtype):
        return _key_family(dtype.value_type)
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return "binary"
    if pa.types.is_timestamp(dtype):
        return f"timestamp[{dtype.tz is not None}]"
    if pa.types.is_date(dtype):
        return "date"
    return str(dtype)


_NAN = ("NaN",)  # NaN keys as one hashable value that equals itself


def _values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A key column as Python values that compare equal when ``GROUP BY`` would group them."""
    values = column.to_pylist()
    if pa.types.is_floating(column.type):
        return [_NAN if isinstance(v, float) and math.isnan(v) else v for v in values]
    return values


class FeatureJob:
    """Maintain ``sink`` = ``query``/``transform`` over ``source``, grouped by ``keys``.

    ``source`` and ``sink`` are :class:`lakehouse.Table` handles or locations (a bare name
    is a table of ``warehouse``). The query reads the table ``source`` and must return the
    ``keys`` columns (with the source's key types) plus features, one or more rows per key
    (e.g. ``SELECT user_id, count(*) AS n FROM source GROUP BY user_id``); it may join other
    ``warehouse`` tables, whose changes make the job recompute every key (see the module
    docstring). ``transform`` instead maps the source rows of the affected keys to the
    feature rows. The sink is created from the first result when missing. ``checkpoint`` is
    the stream checkpoint location (one per job); ``start`` is ``"earliest"`` for a complete
    feature table (see :class:`lakehouse.stream.ChangeStream` for the other starts).
    ``name`` names the job in messages (default: the sink's name).
    """

    def __init__(self, source: lakehouse.Table | str, sink: lakehouse.Table | str, *,
                 keys: str | Sequence[str] | None = None, query: str | None = None,
                 transform: Transform | None = None, checkpoint: str | None = None,
                 app_id: str | None = None, warehouse: str | None = None,
                 max_versions_per_batch: int | None = None, start: str | int = "earliest",
                 storage_options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
        for what, spec in (("sink", sink), ("source", source)):
            if not (isinstance(spec, lakehouse.Table) or (isinstance(spec, str) and spec.strip())):
                raise FeatureJobError(f"feature job: {what} must be a lakehouse.Table or a table name/location, "
                                      f"got {spec!r}")
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise FeatureJobError(f"feature job: name= must be a non-empty string, got {name!r}")
        self.name = name or (sink.name if isinstance(sink, lakehouse.Table) else
                             posixpath.basename(sink.rstrip("/").replace(os.sep, "/")) or sink)
        job = f"feature job '{self.name}'"
        if (query is None) == (transform is None):
            raise FeatureJobError(f"{job}: a feature job needs exactly one of query= (SQL over 'source') or "
                                  "transform=")
        if query is not None and not (isinstance(query, str) and query.strip()):
            raise FeatureJobError(f"{job}: query= must be SQL text reading the table 'source', got {query!r}")
        if transform is not None and not callable(transform):
            raise FeatureJobError(f"{job}: transform= must be a function from a pyarrow.Table to a pyarrow.Table, "
                                  f"got {type(transform).__name__}")
        key_list = [keys] if isinstance(keys, str) else list(keys) if isinstance(keys, (list, tuple)) else None
        if key_list is None or not all(isinstance(k, str) and k for k in key_list):
            raise FeatureJobError(f"{job}: keys= must name the key column(s): a column name or a list of names, "
                                  f"got {keys!r}")
        if not key_list:
            raise FeatureJobError(f"{job}: a feature job needs at least one key column (keys=)")
        if len(set(key_list)) != len(key_list):
            raise FeatureJobError(f"{job}: keys= names a column twice: {key_list}")
        if not (isinstance(checkpoint, str) and checkpoint.strip()):
            raise FeatureJobError(f"{job}: checkpoint= must be a folder or URL for the job's stream checkpoint "
                                  f"(one per job), got {checkpoint!r}")
        for option, value in (("app_id", app_id), ("warehouse", warehouse)):
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise FeatureJobError(f"{job}: {option}= must be a non-empty string, got {value!r}")
        if max_versions_per_batch is not None and (isinstance(max_versions_per_batch, bool) or
                                                   not isinstance(max_versions_per_batch, int) or
                                                   max_versions_per_batch < 1):
            raise FeatureJobError(f"{job}: max_versions_per_batch= must be a positive integer, "
                                  f"got {max_versions_per_batch!r}")
        if not (start in ("earliest", "latest") or (isinstance(start, int) and not isinstance(start, bool)
                                                    and start >= 0)):
            raise FeatureJobError(f"{job}: start= must be 'earliest', 'latest' or a version number >= 0, "
                                  f"got {start!r}")
        if storage_options is not None and not isinstance(storage_options, Mapping):
            raise FeatureJobError(f"{job}: storage_options= must be a mapping, got {type(storage_options).__name__}")
        self.keys = key_list
        self.query = query
        self.transform = transform
        self.warehouse = warehouse
        self.checkpoint = checkpoint
        self.max_versions_per_batch = max_versions_per_batch
        self.start = start
        self.storage_options = storage_options
        self._source_spec = source
        self._sink_spec = sink
        self._app_id = app_id
        self._stream: ChangeStream | None = None
        self._source: lakehouse.Table | None = None
        self._sink: lakehouse.Table | None = None
        self._session: Any = None
        self._catalog: _InputsCatalog | None = None
        self._inputs: dict[str, lakehouse.Table] | None = None
        self._reflected: dict[str, Any] | None = None  # input versions the sink holds (cache)
        self._pinned: dict[str, Snapshot] = {}  # the latest snapshot of each input (cache)
        self._sink_not_an_input = False  # the inputs were checked not to include the sink

    # --- wiring ---------------------------------------------------------------------------

    def _location(self, spec: str) -> str:
        if self.warehouse and "/" not in spec and os.sep not in spec and "://" not in spec:
            if "://" in self.warehouse:
                return posixpath.join(self.warehouse.rstrip("/"), spec)
            return os.path.join(self.warehouse, spec)
        return spec

    @property
    def source(self) -> lakehouse.Table:
        if self._source is None:
            spec = self._source_spec
            self._source = spec if isinstance(spec, lakehouse.Table) else \
                lakehouse.open_table(self._location(spec), storage_options=self.storage_options)
        return self._source

    @property
    def sink_location(self) -> str:
        spec = self._sink_spec
        return spec.uri if isinstance(spec, lakehouse.Table) else self._location(spec)

    @property
    def _label(self) -> str:
        return f"feature job '{self.name}' (sink '{self.sink_location}')"

    def _sink_table(self) -> lakehouse.Table | None:
        """The sink, or ``None`` while it does not exist yet."""
        if self._sink is None:
            spec = self._sink_spec
            try:
                self._sink = spec if isinstance(spec, lakehouse.Table) else \
                    lakehouse.open_table(self._location(spec), storage_options=self.storage_options)
            except TableNotFoundError:
                return None
        return self._sink

    @property
    def stream(self) -> ChangeStream:
        """The change stream (opened, and its checkpoint created, on first use)."""
        if self._stream is None:
            self._stream = ChangeStream(self.source, self.checkpoint, start=self.start,
                                        max_versions_per_batch=self.max_versions_per_batch,
                                        storage_options=self.storage_options)
        return self._stream

    @property
    def app_id(self) -> str:
        """The sink ``txn`` app id: given, or derived from the checkpoint's stream id."""
        return self._app_id or f"lakehouse-feature-job-{self.stream.stream_id}"

    # --- running --------------------------------------------------------------------------

    def run_once(self, *, on_batch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Process every batch available now (and refresh for changed inputs), then return totals."""
        return self._run(self._work(follow=False, poll_interval=0.0, stop=None), on_batch)

    def run(self, follow: bool = True, *, poll_interval: float = 1.0, stop: Callable[[], bool] | None = None,
            on_batch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Process batches; with ``follow`` keep waiting for new versions until ``stop()`` is true.

        ``on_batch`` gets each batch's stats dict (batch_id, start_version, end_version,
        change_rows, keys, feature_rows, sink_version, skipped, seconds, and
        ``inputs_changed``: why all keys were recomputed, or ``None``). An input refresh
        (see the module docstring) reports ``refresh=True`` and ``batch_id=None``.
        Returns totals (``batches``, ``refreshes``, rows...).
        """
        if not follow:
            return self.run_once(on_batch=on_batch)
        return self._run(self._work(follow=True, poll_interval=poll_interval, stop=stop), on_batch)

    def _work(self, *, follow: bool, poll_interval: float,
              stop: Callable[[], bool] | None) -> Iterator[tuple[MicroBatch | None, dict[str, Any]]]:
        """``(batch, stats)`` of every processed batch or input refresh, in order."""
        while not (follow and stop is not None and stop()):
            batch = self.stream.poll()
            if batch is not None:
                yield batch, self.process(batch)
                continue
            stats = self._refresh()
            if stats is not None:
                yield None, stats
            elif not follow:
                return
            else:
                time.sleep(poll_interval)

    def _run(self, work: Iterable[tuple[MicroBatch | None, dict[str, Any]]],
             on_batch: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        totals = {"batches": 0, "refreshes": 0, "change_rows": 0, "keys": 0, "feature_rows": 0, "skipped": 0,
                  "last_version": None}
        for batch, stats in work:
            if batch is None:
                totals["refreshes"] += 1
            else:
                totals["batches"] += 1
                totals["last_version"] = batch.end_version
            for name in ("change_rows", "keys", "feature_rows"):
                totals[name] += stats[name]
            totals["skipped"] += int(stats["skipped"])
            if on_batch is not None:
                on_batch(stats)
        return totals

    def process(self, batch: MicroBatch) -> dict[str, Any]:
        """Apply one micro-batch to the sink (exactly once) and commit it in the checkpoint."""
        started = time.perf_counter()
        stats: dict[str, Any] = {"batch_id": batch.batch_id, "start_version": batch.start_version,
                                 "end_version": batch.end_version, "is_snapshot": batch.is_snapshot,
                                 "change_rows": 0, "keys": 0, "feature_rows": 0, "sink_version": None,
                                 "skipped": False, "refresh": False, "inputs_changed": None}
        what = f"batch {batch.batch_id} (source versions {batch.start_version}..{batch.end_version})"

        def attempt() -> None:
            stats.update(change_rows=0, keys=0, feature_rows=0, skipped=False, inputs_changed=None)
            sink = self._sink_table()
            applied = sink.txn_version(self.app_id) if sink is not None else None
            if applied is not None and applied >= batch.batch_id:
                stats["skipped"] = True  # the sink holds this batch already (crash before batch.commit())
            else:
                self._apply(batch, stats, what)

        self._with_retries(attempt, what)
        batch.commit()
        stats["seconds"] = time.perf_counter() - started
        return stats

    def refresh_inputs(self) -> dict[str, Any] | None:
        """Recompute every key when a table the query reads (besides ``source``) changed since
        the sink's last commit; ``None`` when nothing changed (or nothing can be refreshed yet).

        Called by :meth:`run`/:meth:`run_once` whenever the source has no new batch. It reads
        the source at the version the checkpoint has processed, so it is only done when no
        batch is pending.
        """
        if self.query is None or self._inputs == {} or self.stream.poll() is not None:
            return None  # nothing to follow, or a batch is pending: process() comes first
        return self._refresh()

    def _refresh(self) -> dict[str, Any] | None:
        """:meth:`refresh_inputs` once the stream has no pending batch."""
        if self.query is None or self._inputs == {}:
            return None
        version = self.stream.committed_version
        sink = self._sink_table()
        if sink is None or version < 0:
            return None
        started = time.perf_counter()
        stats: dict[str, Any] = {"batch_id": None, "start_version": version, "end_version": version,
                                 "is_snapshot": False, "change_rows": 0, "keys": 0, "feature_rows": 0,
                                 "sink_version": None, "skipped": False, "refresh": True, "inputs_changed": None}
        what = f"the input refresh (source version {version})"
        sources: list[Snapshot] = []

        def source() -> Snapshot:
            if not sources:
                sources.append(self.source.snapshot(version))
            return sources[0]

        def attempt() -> None:
            pins, recorded, changed = self._pin_inputs(source, self._sink_table(), what)
            stats["inputs_changed"] = changed
            if changed is None:
                return  # (again) nothing to do, e.g. another run refreshed it during our retry
            rows = self._source_rows(source(), None)
            features = self._features(rows, None, source(), pins, what)
            stats["feature_rows"] = features.num_rows
            stats["keys"] = self._count_keys(features)
            self._replace(features, None, source(), stats, txn=None, recorded=recorded,
                          parameters={"sourceVersions": f"{version}..{version}"})

        self._with_retries(attempt, what)
        if stats["inputs_changed"] is None:
            return None
        stats["seconds"] = time.perf_counter() - started
        return stats

    def _with_retries(self, attempt: Callable[[], None], what: str) -> None:
        """Run ``attempt``, again (re-reading the sink) when a concurrent sink commit conflicts."""
        for number in range(1, MAX_COMMIT_ATTEMPTS + 1):
            try:
                attempt()
                return
            except CommitConflictError as exc:
                self._reflected = None
                if number == MAX_COMMIT_ATTEMPTS:
                    raise FeatureJobError(
                        f"{self._label}: {what}: the sink commit conflicted with concurrent commits "
                        f"{MAX_COMMIT_ATTEMPTS} times (last: {exc}); stop other writers of the sink (run OPTIMIZE "
                        "and other maintenance while the job is stopped) and rerun the job, which resumes where "
                        "it stopped") from exc
                time.sleep(min(0.05 * 2 ** (number - 1), 1.0))

    def _apply(self, batch: MicroBatch, stats: dict[str, Any], what: str) -> None:
        everything = batch.is_snapshot
        source = batch.snapshot()
        missing = [k for k in self.keys if k not in source.schema.names]
        if missing:
            raise FeatureJobError(f"{self._label}: key column(s) {', '.join(missing)} are not in the source "
                                  f"'{self.source.uri}'; its columns are {', '.join(source.schema.names)}")
        affected: pa.Table | None = None
        if not everything:
            changes = batch.to_arrow(columns=self.keys)
            stats["change_rows"] = changes.num_rows
            affected = changes.select(self.keys).group_by(self.keys, use_threads=False).aggregate([])
            stats["keys"] = affected.num_rows
        sink = self._sink_table()
        pins, recorded, changed = self._pin_inputs(lambda: source, sink, what)
        if changed is not None and sink is not None:
            everything, affected = True, None  # an input changed: recompute every key
            stats["inputs_changed"] = changed
        if affected is not None and not affected.num_rows:
            return  # nothing but rearrangements (OPTIMIZE) or empty commits
        rows = self._source_rows(source, affected)
        if batch.is_snapshot:
            stats["change_rows"] = rows.num_rows
        features = self._features(rows, affected, source, pins, what)
        stats["feature_rows"] = features.num_rows
        if everything:
            stats["keys"] = self._count_keys(features)
        self._replace(features, affected, source, stats, txn=(self.app_id, batch.batch_id), recorded=recorded,
                      parameters={"batchId": batch.batch_id,
                                             "sourceVersions": f"{batch.start_version}..{batch.end_version}"})

    def _replace(self, features: pa.Table, affected: pa.Table | None, source: Snapshot, stats: dict[str, Any], *,
                 txn: tuple[str, int] | None, recorded: dict[str, Any], parameters: dict[str, Any]) -> None:
        """Replace the affected keys' sink rows (all rows when ``affected`` is None) in one commit."""
        sink = self._sink_table()
        if sink is None:
            sink = lakehouse.create_table(self.sink_location, features.schema, exist_ok=True,
                                          storage_options=self.storage_options)
            self._sink = sink
        snapshot = sink.snapshot()
        self._check_sink_keys(snapshot, source)
        removed, kept = self._sink_rows_to_replace(snapshot, affected)
        data = pa.concat_tables([*kept, self._conformed(features, snapshot)])
        self._reflected = None
        result = rewrite(snapshot, removed_paths=removed, data=data, operation=OPERATION,
                         parameters={"source": self.source.uri, **parameters, "appId": self.app_id,
                                     "inputVersions": json.dumps(recorded, sort_keys=True)},
                         metrics={"numAffectedKeys": stats["keys"], "numFeatureRows": features.num_rows},
                         txn=txn)
        stats["skipped"] = bool(result.get("skipped"))
        stats["sink_version"] = result["version"]
        if not stats["skipped"]:
            self._reflected = recorded

    # --- inputs: the other tables the query reads --------------------------------------

    def _engine(self) -> Any:
        if self._session is None:
            import engine

            session = engine.connect(self.warehouse, storage_options=self.storage_options)
            self._catalog = _InputsCatalog(self.warehouse, self.storage_options)
            session.catalog = self._catalog
            self._session = session
        return self._session

    def inputs(self, source: Snapshot | None = None) -> dict[str, lakehouse.Table]:
        """The lakehouse tables the query reads besides ``source`` (name -> table), found by
        planning it once (over an empty ``source`` of ``source``'s schema); empty for a ``transform``."""
        if self._inputs is None:
            if self.query is None:
                self._inputs = {}
                return self._inputs
            session = self._engine()
            assert self._catalog is not None
            source = source if source is not None else self.source.snapshot()
            session.register("source", source.schema.empty_table())
            self._catalog.inputs.clear()
            self._catalog.pins = {}
            session.plan(self.query)
            self._inputs = dict(self._catalog.inputs)
        return self._inputs

    def _pin_inputs(self, source: Callable[[], Snapshot], sink: lakehouse.Table | None,
                    what: str) -> tuple[dict[str, Snapshot], dict[str, Any], str | None]:
        """``(pins, recorded, changed)``: each input's current snapshot, the versions to record
        in the sink commit, and why every key must be recomputed (``None``: no input changed)."""
        if self._inputs is None:
            try:
                self.inputs(source())
            except LakehouseError as exc:
                raise FeatureJobError(f"{self._label}: the query failed on {what}: {_first_line(exc)}") from exc
        inputs = self._inputs or {}
        if not inputs:
            return {}, {}, None
        if sink is not None and not self._sink_not_an_input:
            sink_id, sink_uri = sink.snapshot().table_id, sink.uri.rstrip("/")
            for key, table in inputs.items():
                if table.uri.rstrip("/") == sink_uri or table.snapshot().table_id == sink_id:
                    raise FeatureJobError(f"{self._label}: the query reads the job's own sink ('{key}'); a feature "
                                          "job's query may read 'source' and other tables, not the table it writes")
            self._sink_not_an_input = True
        pins, recorded = {}, {}
        for key, table in inputs.items():
            snapshot = self._pinned.get(key)
            if snapshot is None or snapshot.version != table.version():
                snapshot = self._pinned[key] = table.snapshot()
            pins[key] = snapshot
            recorded[key] = {"table": table.uri, "id": snapshot.table_id, "version": snapshot.version}
        if sink is None:
            return pins, recorded, None  # the first commit creates the sink from this batch's keys
        reflected = self._reflected_inputs(sink)
        reasons = []
        for key, now in recorded.items():
            old = (reflected or {}).get(key)
            if not (isinstance(old, dict) and old.get("id") == now["id"] and isinstance(old.get("version"), int)
                    and old["version"] <= now["version"]):
                known = "no version of it" if not isinstance(old, dict) else \
                    f"version {old.get('version')} of another table there" if old.get("id") != now["id"] else \
                    f"a later version, {old.get('version')}"
                reasons.append(f"{key} (version {now['version']}; the sink records {known})")
            elif old["version"] < now["version"] and self._data_changed(inputs[key], old["version"], now["version"]):
                reasons.append(f"{key} (version {old['version']} -> {now['version']})")
        if not reasons:
            self._reflected = recorded  # same data as the recorded versions
            return pins, recorded, None
        return pins, recorded, ", ".join(reasons)

    @staticmethod
    def _data_changed(table: lakehouse.Table, old: int, new: int) -> bool:
        """Whether versions ``old+1..new`` of ``table`` change any row (``OPTIMIZE`` does not)."""
        try:
            return table.changes(old + 1, new, columns=[]).read_all().num_rows > 0
        except LakehouseError:
            return True  # e.g. the commits were cleaned up: assume they did

    def _reflected_inputs(self, sink: lakehouse.Table) -> dict[str, Any] | None:
        """The input versions recorded by this job's latest sink commit (``None``: none found)."""
        if self._reflected is not None:
            return self._reflected
        limit = 8
        while True:
            entries = sink.history(limit)
            for entry in entries:
                parameters = entry.get("operationParameters") or {}
                if entry.get("operation") == OPERATION and parameters.get("appId") == self.app_id:
                    try:
                        value = json.loads(parameters.get("inputVersions") or "null")
                    except (TypeError, ValueError):
                        value = None
                    self._reflected = value if isinstance(value, dict) else None
                    return self._reflected
            if len(entries) < limit:
                return None
            limit *= 8

    # --- the pieces -----------------------------------------------------------------------

    def _count_keys(self, rows: pa.Table) -> int:
        return rows.select(self.keys).group_by(self.keys, use_threads=False).aggregate([]).num_rows

    def _filter(self, schema: pa.Schema, affected: pa.Table | None) -> Predicate | None:
        """A predicate that lets the log's stats skip files holding none of the affected keys."""
        if affected is None:
            return None
        key = self.keys[0]
        if key not in schema.names:
            return None
        first = affected.column(key)
        if pa.types.is_floating(first.type) and pc.any(pc.is_nan(first)).as_py():
            return None  # NaN equals nothing in a predicate, and file statistics leave it out: read every file
        values = pc.unique(first.drop_null())
        parts: list[Predicate] = []
        if len(values) and len(values) <= MAX_IN_VALUES:
            parts.append(In(key, tuple(values.to_pylist())))
        elif len(values):
            bounds = pc.min_max(values)
            parts.append(And((Comparison(key, ">=", bounds["min"].as_py()),
                              Comparison(key, "<=", bounds["max"].as_py()))))
        if first.null_count:
            parts.append(IsNull(key))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _mask(self, rows: pa.Table, affected: pa.Table) -> pa.ChunkedArray | pa.Array:
        """True where a row's key is among ``affected`` (NULL keys match NULL keys, NaN NaN)."""
        if len(self.keys) == 1:
            key = self.keys[0]
            column, wanted = rows.column(key), affected.column(key).combine_chunks()
            if column.type != wanted.type:
                try:
                    column = column.cast(wanted.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    wanted = wanted.cast(column.type)
            return pc.is_in(column, value_set=wanted, skip_nulls=False)
        wanted_keys = set(zip(*(_values(affected.column(k)) for k in self.keys)))
        return pa.array([row in wanted_keys for row in zip(*(_values(rows.column(k)) for k in self.keys))], pa.bool_())

    def _source_rows(self, source: Snapshot, affected: pa.Table | None) -> pa.Table:
        rows = source.to_arrow(filter=self._filter(source.schema, affected))
        return rows if affected is None else rows.filter(self._mask(rows, affected))

    def _features(self, rows: pa.Table, affected: pa.Table | None, source: Snapshot, pins: dict[str, Snapshot],
                  what: str) -> pa.Table:
        """The query/transform over ``rows``, restricted to the affected keys."""
        kind = "transform" if self.transform is not None else "query"
        try:
            if self.transform is not None:
                result = self.transform(rows)
            else:
                session = self._engine()
                assert self._catalog is not None
                self._catalog.pins = pins
                session.register("source", rows)
                result = session.sql(self.query).to_arrow()  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the user's code or SQL: name the job and the batch
            raise FeatureJobError(f"{self._label}: the {kind} failed on {what}: {_first_line(exc)}") from exc
        if not isinstance(result, pa.Table):
            raise FeatureJobError(f"{self._label}: the transform must return a pyarrow.Table, got "
                                  f"{type(result).__name__} on {what}")
        missing = [k for k in self.keys if k not in result.column_names]
        if missing:
            raise FeatureJobError(f"{self._label}: the {kind} result lacks key column(s) {', '.join(missing)}; "
                                  "return the keys with the features")
        for key in self.keys:
            want, got = source.schema.field(key).type, result.schema.field(key).type
            if got == want:
                continue
            mismatch = FeatureKeyTypeError(
                f"{self._label}: the {kind} returns key column '{key}' as {got}, but the source's '{key}' is "
                f"{want}; return the key with the source's type (e.g. without a CAST of the key)")
            if _key_family(got) != _key_family(want):
                raise mismatch
            try:
                index = result.schema.get_field_index(key)
                result = result.set_column(index, pa.field(key, want), result.column(key).cast(want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise mismatch from None
        # Rows for keys outside the batch would be added without their old rows removed.
        return result if affected is None else result.filter(self._mask(result, affected))

    def _check_sink_keys(self, snapshot: Snapshot, source: Snapshot) -> None:
        """The sink must hold every key column, with a type matching the source's."""
        names = snapshot.schema.names
        missing = [k for k in self.keys if k not in names]
        if missing:
            raise FeatureJobError(f"{self._label}: the sink has no key column(s) {', '.join(missing)} (its columns "
                                  f"are {', '.join(names)}); write to a new sink or fix keys=")
        for key in self.keys:
            want, got = source.schema.field(key).type, snapshot.schema.field(key).type
            if _key_family(got) != _key_family(want):
                raise FeatureKeyTypeError(
                    f"{self._label}: key column '{key}' is {got} in the sink but {want} in the source; write to a "
                    "new sink, or recreate this one with the source's key type")

    def _sink_rows_to_replace(self, snapshot: Snapshot, affected: pa.Table | None) -> tuple[list[str], list[pa.Table]]:
        """Paths of sink files holding affected keys, and those files' other rows (kept)."""
        if affected is None:
            return snapshot.files.column("path").to_pylist(), []
        removed, kept = [], []
        scan = snapshot.scan(filter=self._filter(snapshot.schema, affected))
        for path, rows in scan.read_files():
            mask = self._mask(rows, affected)
            if pc.any(mask).as_py():
                removed.append(path)
                kept.append(rows.filter(pc.invert(mask)))
        return removed, kept

    def _conformed(self, features: pa.Table, snapshot: Snapshot) -> pa.Table:
        schema = snapshot.schema
        if set(features.column_names) != set(schema.names):
            raise SchemaError(f"{self._label}: the sink has columns {', '.join(schema.names)} but the "
                              f"query/transform returns {', '.join(features.column_names)}; make them match or "
                              "write to a new sink")
        try:
            return features.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise SchemaError(f"{self._label}: the query/transform result does not fit the sink's schema "
                              f"({_first_line(exc)})") from None

    def __repr__(self) -> str:
        return (f"FeatureJob(name={self.name!r}, source={self._source_spec!r}, sink={self.sink_location!r}, "
                f"keys={self.keys})")
