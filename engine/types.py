"""SQL types as Arrow types: names for messages, parsing type names, and coercion rules."""

from __future__ import annotations

import re

import pyarrow as pa

from engine.errors import PlanError, UnsupportedSQLError

_NAMED: dict[str, pa.DataType] = {
    "boolean": pa.bool_(), "bool": pa.bool_(),
    "tinyint": pa.int8(), "int1": pa.int8(), "byte": pa.int8(),
    "smallint": pa.int16(), "int2": pa.int16(), "short": pa.int16(),
    "integer": pa.int32(), "int": pa.int32(), "int4": pa.int32(), "signed": pa.int32(),
    "bigint": pa.int64(), "int8": pa.int64(), "long": pa.int64(),
    "hugeint": pa.decimal128(38, 0),
    "real": pa.float32(), "float4": pa.float32(), "float": pa.float32(),
    "double": pa.float64(), "float8": pa.float64(), "double precision": pa.float64(),
    "varchar": pa.string(), "text": pa.string(), "string": pa.string(), "char": pa.string(),
    "bpchar": pa.string(), "nvarchar": pa.string(), "nchar": pa.string(),
    "blob": pa.binary(), "binary": pa.binary(), "varbinary": pa.binary(), "bytea": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"), "datetime": pa.timestamp("us"), "timestamp_ntz": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"), "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp_ltz": pa.timestamp("us", tz="UTC"),
    "interval": pa.month_day_nano_interval(),
}
_DECIMAL = re.compile(r"^(?:decimal|numeric)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$")


def parse_type(name: str) -> pa.DataType:
    """Arrow type for a SQL type name (``DECIMAL(15,2)``, ``VARCHAR(25)``, ``BIGINT``...)."""
    text = " ".join(name.lower().split())
    text = re.sub(r"^(varchar|char|nvarchar|nchar|bpchar|string|text)\s*\(\s*\d+\s*\)$", r"\1", text)
    if text in _NAMED:
        return _NAMED[text]
    if match := _DECIMAL.match(text):
        precision = int(match.group(1) or 18)
        scale = int(match.group(2) or (0 if match.group(1) else 3))
        if not 0 < precision <= 38 or scale > precision:
            raise PlanError(f"invalid type {name}: precision must be 1-38 and scale at most the precision")
        return pa.decimal128(precision, scale)
    raise UnsupportedSQLError(f"type '{name}' is not supported")


def type_name(dtype: pa.DataType) -> str:
    """The SQL name of an Arrow type, for messages and DESCRIBE."""
    for name in ("boolean", "tinyint", "smallint", "integer", "bigint", "float", "double", "varchar",
                 "blob", "date"):
        if _NAMED[name] == dtype:
            return name.upper()
    if pa.types.is_float32(dtype):
        return "FLOAT"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "VARCHAR"
    if pa.types.is_decimal(dtype):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if pa.types.is_timestamp(dtype):
        return "TIMESTAMP WITH TIME ZONE" if dtype.tz else "TIMESTAMP"
    if pa.types.is_interval(dtype):
        return "INTERVAL"
    if pa.types.is_null(dtype):
        return "NULL"
    if pa.types.is_list(dtype):
        return f"{type_name(dtype.value_type)}[]"
    if pa.types.is_struct(dtype):
        return "STRUCT(" + ", ".join(f"{f.name} {type_name(f.type)}" for f in dtype) + ")"
    if pa.types.is_map(dtype):
        return f"MAP({type_name(dtype.key_type)}, {type_name(dtype.item_type)})"
    return str(dtype).upper()


def is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)


def is_string(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


def is_temporal(dtype: pa.DataType) -> bool:
    return pa.types.is_date(dtype) or pa.types.is_timestamp(dtype)


_INT_RANK = {pa.int8(): 1, pa.int16(): 2, pa.int32(): 3, pa.int64(): 4,
             pa.uint8(): 2, pa.uint16(): 3, pa.uint32(): 4, pa.uint64(): 5}
_INT_DIGITS = {1: 3, 2: 5, 3: 10, 4: 19, 5: 20}


def integer_as_decimal(dtype: pa.DataType) -> pa.DataType:
    return pa.decimal128(_INT_DIGITS[_INT_RANK[dtype]], 0)


def common_numeric(left: pa.DataType, right: pa.DataType) -> pa.DataType:
    """The type both sides of a numeric comparison or arithmetic are brought to."""
    if pa.types.is_floating(left) or pa.types.is_floating(right):
        return pa.float64() if pa.float64() in (left, right) or not (
            pa.types.is_float32(left) and pa.types.is_float32(right)) else pa.float32()
    if pa.types.is_decimal(left) or pa.types.is_decimal(right):
        left = integer_as_decimal(left) if pa.types.is_integer(left) else left
        right = integer_as_decimal(right) if pa.types.is_integer(right) else right
        scale = max(left.scale, right.scale)
        digits = max(left.precision - left.scale, right.precision - right.scale)
        return pa.decimal128(min(38, digits + scale), scale)
    if pa.types.is_integer(left) and pa.types.is_integer(right):
        rank = max(_INT_RANK[left], _INT_RANK[right])
        return {1: pa.int8(), 2: pa.int16(), 3: pa.int32(), 4: pa.int64(), 5: pa.int64()}[rank]
    raise PlanError(f"cannot combine {type_name(left)} and {type_name(right)}")


def common_type(left: pa.DataType, right: pa.DataType, *, context: str) -> pa.DataType:
    """A type both values can be cast to (comparisons, CASE branches, UNION columns, COALESCE)."""
    if left == right:
        return left
    if pa.types.is_null(left):
        return right
    if pa.types.is_null(right):
        return left
    if is_numeric(left) and is_numeric(right):
        return common_numeric(left, right)
    if is_string(left) and is_string(right):
        return pa.string()
    if is_temporal(left) and is_temporal(right):
        if pa.types.is_timestamp(left) and pa.types.is_timestamp(right):
            return left if left.tz else right
        return left if pa.types.is_timestamp(left) else right
    # String literals meet typed values: the typed side wins (date '...' = '2020-01-01').
    if is_string(left) and (is_temporal(right) or is_numeric(right) or pa.types.is_boolean(right)):
        return right
    if is_string(right) and (is_temporal(left) or is_numeric(left) or pa.types.is_boolean(left)):
        return left
    raise PlanError(f"{context}: cannot compare or combine {type_name(left)} with {type_name(right)}")


def normalize(dtype: pa.DataType) -> pa.DataType:
    """The type the engine computes with (string views and large strings become string)."""
    if pa.types.is_string_view(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype):
        return pa.string() if not pa.types.is_dictionary(dtype) else normalize(dtype.value_type)
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    return dtype
