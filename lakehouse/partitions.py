"""Partition values: typed Arrow values <-> the strings stored in ``partitionValues``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import SchemaError


def serialize_partition_value(value: Any, dtype: pa.DataType, *, column: str) -> str | None:
    """The protocol's string form of one partition value (``None`` for null)."""
    if value is None:
        return None
    if pa.types.is_boolean(dtype):
        return "true" if value else "false"
    if pa.types.is_timestamp(dtype):
        # delta-rs form: space separator, UTC, microseconds; read back as UTC.
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if pa.types.is_date(dtype):
        return value.isoformat()
    if pa.types.is_decimal(dtype):
        return format(value, "f")
    if pa.types.is_floating(dtype):
        return repr(float(value))
    if pa.types.is_integer(dtype):
        return str(int(value))
    if pa.types.is_string(dtype):
        return value
    if pa.types.is_binary(dtype):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"partition column '{column}' holds binary that is not UTF-8; partition by another column") from None
    raise SchemaError(f"partition column '{column}' has type {dtype}, which cannot be a partition column")


def _parse_timestamps(strings: pa.Array, dtype: pa.DataType) -> pa.Array:
    """Parse ``YYYY-MM-DD HH:MM:SS[.f]`` (UTC when no zone) or ISO with ``Z``/offset."""
    text = pc.replace_substring(strings, " ", "T")
    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
    zoned = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))
    return pc.cast(zoned, pa.timestamp("us", tz="UTC")).cast(dtype)


def parse_partition_values(strings: pa.Array, dtype: pa.DataType, *, column: str) -> pa.Array:
    """Typed array from partition value strings. ``null`` and ``""`` both mean null."""
    strings = pc.if_else(pc.equal(strings, ""), pa.scalar(None, pa.string()), strings)
    try:
        if pa.types.is_string(dtype):
            return strings
        if pa.types.is_binary(dtype):
            return strings.cast(pa.binary())
        if pa.types.is_boolean(dtype):
            return pc.equal(pc.utf8_lower(strings), "true")
        if pa.types.is_timestamp(dtype):
            return _parse_timestamps(strings, dtype)
        if pa.types.is_decimal(dtype):
            return strings.cast(pa.decimal128(38, dtype.scale)).cast(dtype) if dtype.precision < 38 else strings.cast(dtype)
        return strings.cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(f"partition column '{column}': cannot read partition values as {dtype}: {exc}") from None


def partition_scalar(text: str | None, dtype: pa.DataType, *, column: str) -> pa.Scalar:
    """One typed partition value as an Arrow scalar."""
    return parse_partition_values(pa.array([text], pa.string()), dtype, column=column)[0]
