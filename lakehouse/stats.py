"""Per-file statistics written into ``add.stats`` (numRecords, min/max, nullCount).

Follows the protocol: statistics for the first ``delta.dataSkippingNumIndexedCols`` (32)
leaf columns of the non-partition schema, or exactly ``delta.dataSkippingStatsColumns``;
min/max only for numbers, decimals, dates, timestamps and strings; strings truncated to
32 characters with a tie-breaker on the max; timestamps floored (min) and ceiled (max) to
the millisecond; no min/max for float columns holding NaN or infinities.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.schema import leaf_columns

DEFAULT_INDEXED_COLUMNS = 32
STRING_PREFIX = 32


def _has_min_max(dtype: pa.DataType) -> bool:
    return (pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
            or pa.types.is_date(dtype) or pa.types.is_timestamp(dtype) or pa.types.is_string(dtype))


def indexed_columns(data_schema: pa.Schema, configuration: Mapping[str, str]) -> list[tuple[tuple[str, ...], pa.DataType]]:
    """Leaf columns that get statistics, by the table's configuration."""
    leaves = leaf_columns(data_schema)
    named = configuration.get("delta.dataSkippingStatsColumns")
    if named:
        wanted = {tuple(part.strip().strip("`") for part in name.split(".")) for name in named.split(",")}
        return [leaf for leaf in leaves if any(leaf[0][: len(w)] == w for w in wanted)]
    try:
        count = int(configuration.get("delta.dataSkippingNumIndexedCols", DEFAULT_INDEXED_COLUMNS))
    except ValueError:
        count = DEFAULT_INDEXED_COLUMNS
    return leaves if count < 0 else leaves[:count]


def _leaf_array(batch: pa.RecordBatch, path: tuple[str, ...]) -> pa.Array:
    array = batch.column(path[0])
    for name in path[1:]:
        array = pc.struct_field(array, name)  # propagates the parent's nulls
    return array


@dataclass
class _LeafStats:
    dtype: pa.DataType
    nulls: int = 0
    low: Any = None
    high: Any = None
    min_max_valid: bool = True

    def update(self, array: pa.Array) -> None:
        self.nulls += array.null_count
        if not self.min_max_valid or not _has_min_max(self.dtype) or array.null_count == len(array):
            return
        if pa.types.is_floating(self.dtype):
            finite = pc.is_finite(array)
            if pc.any(pc.invert(pc.fill_null(finite, True))).as_py():
                self.min_max_valid = False
                return
        result = pc.min_max(array)
        low, high = result["min"].as_py(), result["max"].as_py()
        if low is None:
            return
        self.low = low if self.low is None or low < self.low else self.low
        self.high = high if self.high is None or high > self.high else self.high


def _truncate_min(value: str) -> str:
    return value[:STRING_PREFIX]


def _truncate_max(value: str) -> str | None:
    if len(value) <= STRING_PREFIX:
        return value
    prefix = value[:STRING_PREFIX]
    # Any string starting with the prefix sorts below prefix + tie-breaker, provided the
    # tie-breaker is greater than the character that followed the prefix.
    if value[STRING_PREFIX] < "\x7f":
        return prefix + "\x7f"
    if value[STRING_PREFIX] < "\U0010ffff":
        return prefix + "\U0010ffff"
    return None


def _timestamp_text(value: dt.datetime, *, ceil: bool) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    micros = value.microsecond
    millis = micros // 1000
    if ceil and micros % 1000:
        value = value.replace(microsecond=0) + dt.timedelta(milliseconds=millis + 1)
        millis = value.microsecond // 1000
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def _decimal_bound(value: decimal.Decimal, *, upper: bool) -> float:
    # JSON numbers become doubles; widen by one ulp when rounding went the wrong way so
    # skipping never excludes a file that holds the exact value.
    approx = float(value)
    if upper and decimal.Decimal(approx) < value:
        approx = math.nextafter(approx, math.inf)
    if not upper and decimal.Decimal(approx) > value:
        approx = math.nextafter(approx, -math.inf)
    return approx


def _json_value(value: Any, dtype: pa.DataType, *, upper: bool) -> Any:
    if pa.types.is_timestamp(dtype):
        return _timestamp_text(value, ceil=upper)
    if pa.types.is_date(dtype):
        return value.isoformat()
    if pa.types.is_decimal(dtype):
        return _decimal_bound(value, upper=upper)
    if pa.types.is_string(dtype):
        return _truncate_max(value) if upper else _truncate_min(value)
    return value


def _set_nested(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for name in path[:-1]:
        target = target.setdefault(name, {})
    target[path[-1]] = value


@dataclass
class StatsCollector:
    """Accumulates statistics over the batches written to one data file."""

    data_schema: pa.Schema
    configuration: Mapping[str, str] = field(default_factory=dict)
    num_records: int = 0

    def __post_init__(self) -> None:
        self._leaves = {path: _LeafStats(dtype) for path, dtype in indexed_columns(self.data_schema, self.configuration)}

    def update(self, batch: pa.RecordBatch) -> None:
        self.num_records += batch.num_rows
        for path, leaf in self._leaves.items():
            leaf.update(_leaf_array(batch, path))

    def to_json(self) -> str:
        mins: dict[str, Any] = {}
        maxs: dict[str, Any] = {}
        nulls: dict[str, Any] = {}
        for path, leaf in self._leaves.items():
            _set_nested(nulls, path, leaf.nulls)
            if leaf.min_max_valid and leaf.low is not None:
                _set_nested(mins, path, _json_value(leaf.low, leaf.dtype, upper=False))
                high = _json_value(leaf.high, leaf.dtype, upper=True)
                if high is not None:
                    _set_nested(maxs, path, high)
        stats = {"numRecords": self.num_records, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
        return json.dumps(stats, separators=(",", ":"), ensure_ascii=False)
