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

Why any aggregate is right: after batch *k*, every key's sink rows equal the query over the
source at batch *k*'s end version. Keys the batch touched were just recomputed at that
version; keys it did not touch have the same source rows as at the previous batch's end.
No aggregate needs to be invertible (``min``, ``count(distinct)``, medians all work) and
updates and deletes need no special handling.

Why exactly once: the sink commit carries Delta's ``txn=(app_id, batch_id)``. If the job
dies between the sink commit and the checkpoint commit, the restarted stream replans the
same batch with the same version range (see ``lakehouse.stream``), the sink already records
``batch_id`` for ``app_id``, and the write is skipped. The default ``app_id`` comes from the
checkpoint's stream id, so a fresh checkpoint never collides with an old one's batch ids.
"""

from __future__ import annotations

import os
import posixpath
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

import lakehouse
from lakehouse.errors import LakehouseError, SchemaError, TableNotFoundError
from lakehouse.expressions import And, Comparison, In, Predicate
from lakehouse.rewrite import rewrite
from lakehouse.snapshot import Snapshot
from lakehouse.stream import ChangeStream, MicroBatch

MAX_IN_VALUES = 5000  # above this many affected keys, files are picked by the keys' min/max


class FeatureJobError(LakehouseError):
    """A feature job is misconfigured or its query/transform produced unusable rows."""


Transform = Callable[[pa.Table], pa.Table]


class FeatureJob:
    """Maintain ``sink`` = ``query``/``transform`` over ``source``, grouped by ``keys``.

    ``source`` and ``sink`` are :class:`lakehouse.Table` handles or locations (a bare name
    is a table of ``warehouse``). The query reads the table ``source`` and must return the
    ``keys`` columns plus features, one or more rows per key (e.g. ``SELECT user_id,
    count(*) AS n FROM source GROUP BY user_id``); it may join other ``warehouse`` tables.
    ``transform`` instead maps the source rows of the affected keys to the feature rows.
    The sink is created from the first result when missing. ``checkpoint`` is the stream
    checkpoint location (one per job); ``start`` is ``"earliest"`` for a complete feature
    table (see :class:`lakehouse.stream.ChangeStream` for the other starts).
    """

    def __init__(self, source: lakehouse.Table | str, sink: lakehouse.Table | str, *, keys: str | Sequence[str],
                 query: str | None = None, transform: Transform | None = None, checkpoint: str,
                 app_id: str | None = None, warehouse: str | None = None,
                 max_versions_per_batch: int | None = None, start: str | int = "earliest",
                 storage_options: Mapping[str, Any] | None = None) -> None:
        if (query is None) == (transform is None):
            raise FeatureJobError("a feature job needs exactly one of query= (SQL over 'source') or transform=")
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise FeatureJobError("a feature job needs at least one key column (keys=)")
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
        """Process every batch available now, then return totals (see :meth:`run`)."""
        return self._run(iter(lambda: self.stream.poll(), None), on_batch)

    def run(self, follow: bool = True, *, poll_interval: float = 1.0, stop: Callable[[], bool] | None = None,
            on_batch: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Process batches; with ``follow`` keep waiting for new versions until ``stop()`` is true.

        ``on_batch`` gets each batch's stats dict (batch_id, start_version, end_version,
        change_rows, keys, feature_rows, sink_version, skipped, seconds). Returns totals.
        """
        if not follow:
            return self.run_once(on_batch=on_batch)
        return self._run(self.stream.follow(poll_interval, stop), on_batch)

    def _run(self, batches: Iterable[MicroBatch], on_batch: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
        totals = {"batches": 0, "change_rows": 0, "keys": 0, "feature_rows": 0, "skipped": 0, "last_version": None}
        for batch in batches:
            stats = self.process(batch)
            totals["batches"] += 1
            for name in ("change_rows", "keys", "feature_rows"):
                totals[name] += stats[name]
            totals["skipped"] += int(stats["skipped"])
            totals["last_version"] = batch.end_version
            if on_batch is not None:
                on_batch(stats)
        return totals

    def process(self, batch: MicroBatch) -> dict[str, Any]:
        """Apply one micro-batch to the sink (exactly once) and commit it in the checkpoint."""
        started = time.perf_counter()
        stats: dict[str, Any] = {"batch_id": batch.batch_id, "start_version": batch.start_version,
                                 "end_version": batch.end_version, "is_snapshot": batch.is_snapshot,
                                 "change_rows": 0, "keys": 0, "feature_rows": 0, "sink_version": None,
                                 "skipped": False}
        sink = self._sink_table()
        applied = sink.txn_version(self.app_id) if sink is not None else None
        if applied is not None and applied >= batch.batch_id:
            stats["skipped"] = True  # the sink holds this batch already (crash before batch.commit())
        else:
            self._apply(batch, stats)
        batch.commit()
        stats["seconds"] = time.perf_counter() - started
        return stats

    def _apply(self, batch: MicroBatch, stats: dict[str, Any]) -> None:
        everything = batch.is_snapshot
        source = self.source.snapshot(batch.end_version)
        missing = [k for k in self.keys if k not in source.schema.names]
        if missing:
            raise FeatureJobError(f"feature job on '{self.source.uri}': key column(s) {', '.join(missing)} are not in "
                                  f"the source; its columns are {', '.join(source.schema.names)}")
        affected: pa.Table | None = None
        if not everything:
            changes = batch.to_arrow(columns=self.keys)
            stats["change_rows"] = changes.num_rows
            affected = changes.select(self.keys).group_by(self.keys, use_threads=False).aggregate([])
            stats["keys"] = affected.num_rows
            if not affected.num_rows:
                return  # nothing but rearrangements (OPTIMIZE) or empty commits
        rows = self._source_rows(source, affected)
        if everything:
            stats["change_rows"] = rows.num_rows
        features = self._features(rows, affected)
        stats["feature_rows"] = features.num_rows
        if everything:
            stats["keys"] = features.select(self.keys).group_by(self.keys, use_threads=False).aggregate([]).num_rows
        sink = self._sink_table()
        if sink is None:
            sink = lakehouse.create_table(self.sink_location, features.schema, exist_ok=True,
                                          storage_options=self.storage_options)
            self._sink = sink
        snapshot = sink.snapshot()
        removed, kept = self._sink_rows_to_replace(snapshot, affected)
        data = pa.concat_tables([*kept, self._conformed(features, snapshot)])
        result = rewrite(snapshot, removed_paths=removed, data=data, operation="STREAMING UPDATE",
                         parameters={"source": self.source.uri, "batchId": batch.batch_id,
                                     "sourceVersions": f"{batch.start_version}..{batch.end_version}"},
                         metrics={"numAffectedKeys": stats["keys"], "numFeatureRows": features.num_rows},
                         txn=(self.app_id, batch.batch_id))
        stats["skipped"] = bool(result.get("skipped"))
        stats["sink_version"] = result["version"]

    # --- the pieces -----------------------------------------------------------------------

    def _filter(self, schema: pa.Schema, affected: pa.Table | None) -> Predicate | None:
        """A predicate that lets the log's stats skip files holding none of the affected keys."""
        if affected is None:
            return None
        first = affected.column(self.keys[0])
        if first.null_count or self.keys[0] not in schema.names:
            return None
        values = pc.unique(first)
        if len(values) <= MAX_IN_VALUES:
            return In(self.keys[0], tuple(values.to_pylist()))
        bounds = pc.min_max(first)
        return And((Comparison(self.keys[0], ">=", bounds["min"].as_py()),
                    Comparison(self.keys[0], "<=", bounds["max"].as_py())))

    def _mask(self, rows: pa.Table, affected: pa.Table) -> pa.ChunkedArray | pa.Array:
        """True where a row's key is among ``affected`` (null keys match null keys)."""
        if len(self.keys) == 1:
            key = self.keys[0]
            return pc.is_in(rows.column(key), value_set=affected.column(key).combine_chunks(), skip_nulls=False)
        wanted = set(zip(*(affected.column(k).to_pylist() for k in self.keys)))
        return pa.array([row in wanted for row in zip(*(rows.column(k).to_pylist() for k in self.keys))], pa.bool_())

    def _source_rows(self, source: Snapshot, affected: pa.Table | None) -> pa.Table:
        rows = source.to_arrow(filter=self._filter(source.schema, affected))
        return rows if affected is None else rows.filter(self._mask(rows, affected))

    def _features(self, rows: pa.Table, affected: pa.Table | None) -> pa.Table:
        """The query/transform over ``rows``, restricted to the affected keys."""
        if self.transform is not None:
            result = self.transform(rows)
            if not isinstance(result, pa.Table):
                raise FeatureJobError(f"feature job transform must return a pyarrow.Table, got {type(result).__name__}")
        else:
            if self._session is None:
                import engine

                self._session = engine.connect(self.warehouse, storage_options=self.storage_options)
            self._session.register("source", rows)
            result = self._session.sql(self.query).to_arrow()  # type: ignore[arg-type]
        missing = [k for k in self.keys if k not in result.column_names]
        if missing:
            raise FeatureJobError(f"feature job for '{self.sink_location}': the query/transform result lacks key "
                                  f"column(s) {', '.join(missing)}; return the keys with the features")
        # Rows for keys outside the batch would be added without their old rows removed.
        return result if affected is None else result.filter(self._mask(result, affected))

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
            raise SchemaError(f"feature table '{snapshot.location.name}' has columns {', '.join(schema.names)} but the "
                              f"query/transform returns {', '.join(features.column_names)}; make them match or "
                              "write to a new sink")
        try:
            return features.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise SchemaError(f"feature table '{snapshot.location.name}': the query/transform result does not fit "
                              f"its schema ({exc})") from None

    def __repr__(self) -> str:
        return f"FeatureJob(source={self._source_spec!r}, sink={self.sink_location!r}, keys={self.keys})"
