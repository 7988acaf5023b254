"""Point-in-time correct training sets: ``training_set(labels, features, on=..., timestamp=...)``.

For every label row (an entity key, an event time and whatever the model learns), each
feature source contributes its columns from the **latest feature row with the same key whose
own event time is at or before the label's time** (Feast's semantics). With a ``ttl``, a
feature row older than ``label_time - ttl`` counts as missing. No match gives NULLs; NULL
keys and NULL label times never match. Nothing from the future can leak into a label's row:
the join condition is ``label_time >= feature_time``.

How it runs: the labels (only their key and time columns, plus a row number) are registered
in an engine session, every feature source is registered as a lakehouse source pinned to one
snapshot, and one SQL query chains an ``ASOF LEFT JOIN`` per source. Planning through SQL
rather than calling :class:`engine.physical.operators.asof.AsofJoinOp` directly buys, for
free, what a hand-built plan would have to redo: the binder's type coercion between label and
feature columns, projection pushdown (a scan reads only the feature columns asked for),
filter pushdown into the lakehouse scan (files whose statistics lie outside the labels'
key/time range are never opened) and the operator's parallel probe. DuckDB never runs here;
it is the tests' oracle only.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import lakehouse
from engine.datasource.lakehouse import LakehouseSource
from engine.errors import ExecutionError, PlanError
from engine.session import Session, connect
from engine.types import normalize, type_name

__all__ = ["FeatureSource", "training_set"]

_EPOCH = dt.datetime(1970, 1, 1)
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
# The TTL becomes a SQL interval whose nanoseconds are an int64 (about 292 years).
MAX_TTL = dt.timedelta(days=365 * 200)
# Below this many distinct label keys (single-key joins), the feature scan also gets an IN
# list: it cuts the rows the ASOF join materializes, not only the files opened.
MAX_IN_KEYS = 1000


@dataclass(frozen=True)
class FeatureSource:
    """One feature table as :func:`training_set` should read it.

    ``table``: a :class:`lakehouse.Table` (read at its current version when the training set
    is built), a :class:`lakehouse.Snapshot` (a pinned version: the same training set on every
    run), or a table location (path, URL, or a bare name in the session's warehouse).
    ``columns``: the feature columns to bring (default: every column but the keys and the
    event-time column). ``timestamp``: the feature table's own event-time column (default:
    the labels' ``timestamp`` name). ``ttl``: overrides ``training_set``'s ``ttl`` for this
    source. ``prefix``: put before each of its output column names (``"user_"`` ->
    ``user_orders``), to tell apart same-named columns of different sources.
    """

    table: lakehouse.Table | lakehouse.Snapshot | str
    columns: Sequence[str] | None = None
    timestamp: str | None = None
    ttl: dt.timedelta | None = None
    prefix: str | None = None


FeatureLike = Union[FeatureSource, lakehouse.Table, lakehouse.Snapshot, str]


@dataclass(frozen=True)
class _Resolved:
    """A feature source after validation: what the SQL query needs."""

    name: str  # for messages
    snapshot: lakehouse.Snapshot
    timestamp: str
    columns: tuple[str, ...]
    outputs: tuple[str, ...]  # output column names, prefix applied
    ttl: dt.timedelta | None


def training_set(labels: Any, features: FeatureLike | Sequence[FeatureLike], *, on: str | Sequence[str],
                 timestamp: str, ttl: dt.timedelta | None = None, session: Session | None = None) -> Any:
    """The labels with point-in-time correct feature columns joined on.

    ``labels``: a pyarrow Table, pandas or polars DataFrame holding the ``on`` key columns and
    the ``timestamp`` event-time column (timestamp, date or integer). ``features``: one feature
    source or a list: :class:`FeatureSource`, :class:`lakehouse.Table`,
    :class:`lakehouse.Snapshot` or a table location. ``on``: the key column(s), named alike in
    the labels and every feature table. ``ttl``: a :class:`datetime.timedelta`; a feature row
    older than ``label_time - ttl`` is treated as missing. ``session``: the engine session to
    run in (its warehouse resolves bare table names); a fresh one by default.

    Returns the labels' own type (pyarrow Table for Arrow input), one row per label row in
    the labels' order: the label columns, then each source's feature columns holding the
    latest feature row with the same keys and ``feature_time <= label_time`` (and within the
    TTL), or NULL. Label times are compared at microsecond precision, the precision of Delta
    timestamps. Raises :class:`engine.errors.PlanError` naming the column or table when a
    column is missing, types do not match, ``ttl`` is not a timedelta, or output names collide.
    """
    keys = [on] if isinstance(on, str) else list(on)
    if not isinstance(timestamp, str):
        raise PlanError(f"training_set: timestamp= must be the name of the labels' event-time column, "
                        f"got {type(timestamp).__name__}")
    _check_ttl(ttl, "training_set")
    label_table = _labels_table(labels)
    for column in [*keys, timestamp]:
        if column not in label_table.column_names:
            role = "key" if column in keys else "timestamp"
            raise PlanError(f"training_set: the labels have no {role} column '{column}' (columns: "
                            f"{', '.join(label_table.column_names)}); pass on=/timestamp= naming label columns")
    if len(set(keys)) != len(keys) or timestamp in keys:
        raise PlanError(f"training_set: on={keys} and timestamp='{timestamp}' must name distinct columns")
    sources = [features] if not isinstance(features, (list, tuple)) else list(features)
    if not sources:
        raise PlanError("training_set: features= is empty; pass at least one feature table")
    session = session if session is not None else connect()
    resolved = [_resolve(source, session, keys, timestamp, ttl) for source in sources]
    _check_types(label_table, resolved, keys, timestamp)
    _check_names(label_table.column_names, resolved)

    token = uuid.uuid4().hex[:12]
    label_name = f"__training_labels_{token}"
    source_names = [f"__training_features_{token}_{i}" for i in range(len(resolved))]
    probe = _probe_table(label_table, keys, timestamp)
    session.register(label_name, probe)
    try:
        for name, source in zip(source_names, resolved):
            # A pinned snapshot as a scan source (file skipping, column pruning), still named
            # after its table in plans and errors.
            session.register(name, LakehouseSource(source.name, source.snapshot))
        query = _query(label_name, source_names, resolved, probe, keys)
        joined = session.sql(query).to_arrow()
    finally:
        for name in [label_name, *source_names]:
            session.catalog.unregister(name)
    if joined.num_rows != label_table.num_rows:
        raise ExecutionError(f"internal: training_set produced {joined.num_rows} rows for "
                             f"{label_table.num_rows} labels")
    row = joined.column(0).to_numpy()
    if len(row) > 1 and not bool(np.all(row[1:] > row[:-1])):
        joined = joined.take(pa.array(np.argsort(row, kind="stable")))
    names = [name for source in resolved for name in source.outputs]
    values = pa.Table.from_arrays(joined.columns[1:], names=names) if names else None
    return _attach(labels, label_table, values)


# --- inputs ----------------------------------------------------------------------------------

def _check_ttl(ttl: Any, where: str) -> None:
    if ttl is not None and (not isinstance(ttl, dt.timedelta) or ttl < dt.timedelta(0)):
        shown = f"{ttl!r}" if isinstance(ttl, dt.timedelta) else f"a {type(ttl).__name__}"
        raise PlanError(f"{where}: ttl must be a non-negative datetime.timedelta (e.g. timedelta(days=7)), got {shown}")
    if ttl is not None and ttl > MAX_TTL:
        raise PlanError(f"{where}: ttl {ttl} is longer than {MAX_TTL.days} days; pass ttl=None for no limit")


def _labels_table(labels: Any) -> pa.Table:
    from lakehouse.write import to_reader

    if isinstance(labels, pa.Table):
        return labels
    try:
        return to_reader(labels).read_all()
    except lakehouse.SchemaError:
        raise PlanError(f"training_set: labels must be a pyarrow Table, pandas or polars DataFrame, "
                        f"got {type(labels).__name__}") from None


def _table_name(snapshot: lakehouse.Snapshot) -> str:
    return f"{snapshot.location.name}@v{snapshot.version}"


def _resolve(source: FeatureLike, session: Session, keys: list[str], timestamp: str,
             ttl: dt.timedelta | None) -> _Resolved:
    spec = source if isinstance(source, FeatureSource) else FeatureSource(source)
    table = spec.table
    if isinstance(table, lakehouse.Snapshot):
        snapshot = table
    elif isinstance(table, lakehouse.Table):
        snapshot = table.snapshot()  # one version for the whole join, even if writers go on
    elif isinstance(table, str):
        snapshot = session.catalog.open_table(table).snapshot()
    else:
        raise PlanError(f"training_set: a feature source must be a lakehouse Table, Snapshot, table location or "
                        f"FeatureSource, got {type(table).__name__}")
    name = _table_name(snapshot)
    _check_ttl(spec.ttl, f"feature table '{name}'")
    schema_names = snapshot.schema.names
    event_time = spec.timestamp or timestamp
    for column, role in [*[(k, "key") for k in keys], (event_time, "timestamp")]:
        if column not in schema_names:
            hint = ("pass FeatureSource(table, timestamp='<its event-time column>')" if role == "timestamp"
                    else "rename the key so labels and features share its name")
            raise PlanError(f"training_set: feature table '{name}' has no {role} column '{column}' "
                            f"(columns: {', '.join(schema_names)}); {hint}")
    if spec.columns is None:
        columns = tuple(c for c in schema_names if c not in keys and c != event_time)
    else:
        columns = (spec.columns,) if isinstance(spec.columns, str) else tuple(spec.columns)
        for column in columns:
            if column not in schema_names:
                raise PlanError(f"training_set: feature table '{name}' has no column '{column}' "
                                f"(columns: {', '.join(schema_names)}); fix FeatureSource(columns=...)")
    if not columns:
        raise PlanError(f"training_set: feature table '{name}' has no feature columns besides the keys and "
                        f"'{event_time}'; pass FeatureSource(table, columns=[...])")
    prefix = spec.prefix or ""
    return _Resolved(name, snapshot, event_time, columns, tuple(prefix + c for c in columns),
                     spec.ttl if spec.ttl is not None else ttl)


def _kind(dtype: pa.DataType) -> str:
    """Type families whose values compare with each other."""
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_dictionary(dtype):
        return _kind(dtype.value_type)
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_null(dtype):
        return "null"
    return str(normalize(dtype))


def _check_types(labels: pa.Table, sources: list[_Resolved], keys: list[str], timestamp: str) -> None:
    label_ts = labels.schema.field(timestamp).type
    if not (pa.types.is_timestamp(label_ts) or pa.types.is_date(label_ts) or pa.types.is_integer(label_ts)
            or pa.types.is_null(label_ts)):
        raise PlanError(f"training_set: the labels' timestamp column '{timestamp}' is {type_name(label_ts)}; "
                        "it must be a timestamp, date or integer column (cast it first)")
    for source in sources:
        feature_ts = source.snapshot.schema.field(source.timestamp).type
        if _kind(label_ts) != "null" and (_kind(label_ts) != _kind(feature_ts)
                                          or (_kind(label_ts) == "number" and not pa.types.is_integer(feature_ts))):
            raise PlanError(f"training_set: the labels' timestamp column '{timestamp}' is {type_name(label_ts)} but "
                            f"feature table '{source.name}' has '{source.timestamp}' as {type_name(feature_ts)}; "
                            f"cast the labels' column to {type_name(feature_ts)} so both compare alike")
        if source.ttl is not None and not (pa.types.is_timestamp(feature_ts) or pa.types.is_date(feature_ts)):
            raise PlanError(f"training_set: a ttl needs timestamp or date event times, but feature table "
                            f"'{source.name}' has '{source.timestamp}' as {type_name(feature_ts)}; drop the ttl")
        for key in keys:
            left, right = labels.schema.field(key).type, source.snapshot.schema.field(key).type
            if _kind(left) not in ("null", _kind(right)):
                raise PlanError(f"training_set: key column '{key}' is {type_name(left)} in the labels but "
                                f"{type_name(right)} in feature table '{source.name}'; cast the labels' column")


def _check_names(label_columns: list[str], sources: list[_Resolved]) -> None:
    owner = {name: "the labels" for name in label_columns}
    for source in sources:
        for column, output in zip(source.columns, source.outputs):
            if output in owner:
                raise PlanError(f"training_set: feature column '{output}' of table '{source.name}' collides with a "
                                f"column of {owner[output]}; pass FeatureSource(table, prefix='...') or "
                                f"columns=[...] without '{column}'")
            owner[output] = f"feature table '{source.name}'"


# --- the query -------------------------------------------------------------------------------

def _probe_table(labels: pa.Table, keys: list[str], timestamp: str) -> pa.Table:
    """What the join needs of the labels: keys, time (whole microseconds) and the row number."""
    columns = {}
    for i, key in enumerate(keys):
        column = labels.column(key)
        # The engine's own types (pandas categoricals and large strings become strings), so
        # the pruning below sees plain arrays.
        columns[f"k{i}"] = column.cast(normalize(column.type)) if normalize(column.type) != column.type else column
    ts = labels.column(timestamp)
    if pa.types.is_timestamp(ts.type) and ts.type.unit == "ns":
        # Feature times are whole microseconds (Delta), so f <= t  <=>  f <= floor_us(t).
        values = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
        nanos = values.view(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        missing = ~np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        ts = pa.array(np.floor_divide(nanos, 1000), pa.int64(), mask=missing).view(pa.timestamp("us", ts.type.tz))
    columns["ts"] = ts
    columns["row"] = pa.array(np.arange(labels.num_rows, dtype=np.int64))
    return pa.table(columns)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _micros(value: pa.Scalar) -> int:
    unit = value.type.unit
    raw = value.cast(pa.int64()).as_py()
    return raw * _MICROS[unit] if _MICROS[unit] else raw // 1000


def _literal(value: pa.Scalar, *, round_up: bool = False, minus: dt.timedelta | None = None) -> str | None:
    """A SQL literal for a label bound, or None when the type gets no pruning filter.

    Only used to prune files and rows, so it may be looser than the value: timestamps are
    rounded outwards, and ``minus`` (a TTL) is subtracted before formatting.
    """
    dtype = value.type
    if pa.types.is_integer(dtype):
        return str(value.as_py())
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "'" + value.as_py().replace("'", "''") + "'"
    try:
        if pa.types.is_date(dtype):
            day = value.cast(pa.date32()).as_py()
            if minus is not None:
                day = (dt.datetime.combine(day, dt.time()) - minus).date()  # floor: looser
            return f"DATE '{day.isoformat()}'"
        if pa.types.is_timestamp(dtype):
            micros = _micros(value) + (1 if round_up else 0)
            moment = _EPOCH + dt.timedelta(microseconds=micros) - (minus or dt.timedelta(0))
            # A naive literal: the engine reads it as UTC against a zoned column, like Delta.
            return f"TIMESTAMP '{moment.isoformat(sep=' ', timespec='microseconds')}'"
    except OverflowError:
        return None  # a bound beyond year 1..9999 prunes nothing anyway
    return None


def _prune(source: _Resolved, probe: pa.Table, keys: list[str]) -> list[str]:
    """WHERE terms that keep every feature row any label could match, and let the scan skip files."""
    terms = []
    ts = probe.column("ts")
    if pa.types.is_null(ts.type):
        return ["FALSE"]  # no label has a time: nothing can match
    bounds = pc.min_max(ts)
    low, high = bounds["min"], bounds["max"]
    if not high.is_valid:
        return ["FALSE"]  # no label has a time: nothing can match
    column = _ident(source.timestamp)
    upper = _literal(high, round_up=True)
    if upper is not None:
        terms.append(f"{column} <= {upper}")
    if source.ttl is not None:
        lower = _literal(low, minus=source.ttl)
        if lower is not None:
            terms.append(f"{column} >= {lower}")
    for i, key in enumerate(keys):
        values = probe.column(f"k{i}")
        bounds = pc.min_max(values) if _kind(values.type) in ("number", "string", "date", "timestamp") else None
        if bounds is None or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type):
            continue
        if not bounds["min"].is_valid:
            return ["FALSE"]  # every label key is NULL: nothing can match
        if len(keys) == 1 and (pa.types.is_integer(values.type) or pa.types.is_string(values.type)):
            # A first slice already past the limit spares hashing every label key.
            few = len(pc.unique(values.slice(0, 20 * MAX_IN_KEYS))) <= MAX_IN_KEYS
            distinct = pc.unique(values.drop_null()) if few else None
            if distinct is not None and len(distinct) <= MAX_IN_KEYS:
                items = [_literal(v) for v in distinct]
                terms.append(f"{_ident(key)} IN ({', '.join(items)})")  # type: ignore[arg-type]
                continue
        for op, bound in ((">=", bounds["min"]), ("<=", bounds["max"])):
            text = _literal(bound, round_up=op == "<=")
            if text is not None:
                terms.append(f"{_ident(key)} {op} {text}")
    return terms


def _query(label_name: str, source_names: list[str], sources: list[_Resolved], probe: pa.Table,
           keys: list[str]) -> str:
    """One SELECT chaining an ASOF LEFT JOIN per source; columns ``row, r0_c0, r0_c1, ..., r1_c0, ...``."""
    select = ['l."row"']
    joins = []
    for n, (name, source) in enumerate(zip(source_names, sources)):
        alias = f"r{n}"
        inner = [f'{_ident(k)} AS "k{i}"' for i, k in enumerate(keys)] + [f'{_ident(source.timestamp)} AS "ts"']
        inner += [f'{_ident(c)} AS "c{j}"' for j, c in enumerate(source.columns)]
        where = _prune(source, probe, keys)
        subquery = f"SELECT {', '.join(inner)} FROM {_ident(name)}" + (
            f" WHERE {' AND '.join(where)}" if where else "")
        condition = " AND ".join([f'l."k{i}" = {alias}."k{i}"' for i in range(len(keys))]
                                 + [f'l."ts" >= {alias}."ts"'])
        joins.append(f"ASOF LEFT JOIN ({subquery}) AS {alias} ON {condition}")
        for j in range(len(source.columns)):
            value = f'{alias}."c{j}"'
            if source.ttl is not None:
                # TTL: the matched row is the latest at or before the label; if even that one is
                # older than label_time - ttl, every other candidate is too, so NULL is right.
                micros = source.ttl // dt.timedelta(microseconds=1)
                value = (f"CASE WHEN {alias}.\"ts\" >= l.\"ts\" - INTERVAL '{micros} microseconds' "
                         f"THEN {value} END")
            select.append(f'{value} AS "{alias}_c{j}"')
    return f"SELECT {', '.join(select)} FROM {_ident(label_name)} AS l " + " ".join(joins)


# --- output ----------------------------------------------------------------------------------

def _attach(labels: Any, label_table: pa.Table, values: pa.Table | None) -> Any:
    """The label columns followed by the feature columns, in the labels' own type."""
    module = type(labels).__module__
    if values is None:
        return labels
    if module.startswith("pandas"):
        import pandas as pd

        frame = values.to_pandas()
        frame.index = labels.index
        return pd.concat([labels, frame], axis=1)
    if module.startswith("polars"):
        import polars as pl

        return labels.hstack(pl.from_arrow(values))  # type: ignore[union-attr]
    out = label_table
    for name, column in zip(values.column_names, values.columns):
        out = out.append_column(name, column)
    return out
