"""Delta schema JSON <-> Arrow schema, and fitting user data to a table's schema.

Type mapping (both directions):

=============  ==============================  ==========================================
Delta          Arrow (what we read as)         also accepted on write
=============  ==============================  ==========================================
boolean        bool
byte/short     int8 / int16                    uint8 -> short
integer        int32                           uint16 -> integer
long           int64                           uint32 -> long
float/double   float32 / float64               float16 -> float
string         string                          large_string, string_view, dictionary
binary         binary                          large_binary, fixed_size_binary
date           date32                          date64
timestamp      timestamp[us, tz=UTC]           any unit/zone; naive values are taken as UTC
timestamp_ntz  timestamp[us]                   (read only: needs reader 3 / timestampNtz)
decimal(p,s)   decimal128(p, s)
struct/array/map  struct / list / map          large_list, fixed_size_list
=============  ==============================  ==========================================
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from lakehouse.errors import SchemaError

_PRIMITIVE_TO_ARROW: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "short": pa.int16(),
    "integer": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "binary": pa.binary(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "timestamp_ntz": pa.timestamp("us"),
}
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")


# --- Delta JSON -> Arrow ------------------------------------------------------------


def _type_from_delta(dtype: Any, where: str) -> pa.DataType:
    if isinstance(dtype, str):
        if dtype in _PRIMITIVE_TO_ARROW:
            return _PRIMITIVE_TO_ARROW[dtype]
        if match := _DECIMAL.match(dtype):
            precision, scale = int(match.group(1)), int(match.group(2))
            if not 0 < precision <= 38 or scale > precision:
                raise SchemaError(f"{where}: invalid {dtype}: precision must be 1-38 and scale <= precision")
            return pa.decimal128(precision, scale)
        if dtype == "decimal":
            return pa.decimal128(10, 0)
        if dtype == "void":
            return pa.null()
        raise SchemaError(f"{where}: unsupported Delta type '{dtype}'")
    if isinstance(dtype, dict):
        kind = dtype.get("type")
        if kind == "struct":
            return pa.struct(_fields_from_delta(dtype.get("fields", []), where))
        if kind == "array":
            # .get: a missing key is reported as an unrecognised type, not a KeyError.
            element = pa.field("element", _type_from_delta(dtype.get("elementType"), where), dtype.get("containsNull", True))
            return pa.list_(element)
        if kind == "map":
            key = _type_from_delta(dtype.get("keyType"), where)
            value = pa.field("value", _type_from_delta(dtype.get("valueType"), where), dtype.get("valueContainsNull", True))
            return pa.map_(pa.field("key", key, False), value)
    raise SchemaError(f"{where}: unrecognised type description {json.dumps(dtype)[:200]}")


def _fields_from_delta(fields: list[dict[str, Any]], where: str) -> list[pa.Field]:
    out = []
    if not isinstance(fields, list):
        raise SchemaError(f"{where}: struct 'fields' must be a list, got {json.dumps(fields)[:200]}")
    for f in fields:
        # The schema string comes from the log (untrusted): report malformed fields clearly.
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or "type" not in f:
            raise SchemaError(f"{where}: a schema field needs a 'name' and a 'type', got {json.dumps(f)[:200]}")
        meta = f.get("metadata") or {}
        arrow_meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()}
        out.append(pa.field(f["name"], _type_from_delta(f["type"], f"{where} column '{f['name']}'"),
                            f.get("nullable", True), metadata=arrow_meta or None))
    return out


def schema_from_json(schema_string: str, *, where: str = "table") -> pa.Schema:
    """Arrow schema for a ``metaData.schemaString``."""
    try:
        obj = json.loads(schema_string)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{where}: schemaString is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or obj.get("type") != "struct":
        raise SchemaError(f"{where}: schemaString must describe a struct")
    return pa.schema(_fields_from_delta(obj.get("fields", []), where))


# --- Arrow -> Delta JSON ------------------------------------------------------------


def _type_to_delta(dtype: pa.DataType, where: str) -> Any:
    for name, arrow in _PRIMITIVE_TO_ARROW.items():
        if dtype == arrow:
            return name
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_decimal(dtype):
        if dtype.precision > 38:
            raise SchemaError(f"{where}: decimal precision {dtype.precision} exceeds Delta's maximum of 38")
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_struct(dtype):
        return {"type": "struct", "fields": [_field_to_delta(dtype.field(i), where) for i in range(dtype.num_fields)]}
    if pa.types.is_list(dtype):
        return {"type": "array", "elementType": _type_to_delta(dtype.value_type, where),
                "containsNull": dtype.value_field.nullable}
    if pa.types.is_map(dtype):
        return {"type": "map", "keyType": _type_to_delta(dtype.key_type, where),
                "valueType": _type_to_delta(dtype.item_type, where),
                "valueContainsNull": dtype.item_field.nullable}
    raise SchemaError(f"{where}: Arrow type {dtype} has no Delta equivalent; cast the column first")


# Field metadata whose Delta value is a string even when its text looks like JSON (an
# invariant is the *string* '{"expression":...}'); other delta.* values (column mapping
# ids, identity settings, type changes) are numbers, booleans or objects on the wire.
_STRING_METADATA = frozenset({"delta.invariants", "delta.generationExpression", "delta.columnMapping.physicalName"})


def _field_to_delta(f: pa.Field, where: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for k, v in (f.metadata or {}).items():
        key, text = k.decode(), v.decode()
        try:
            meta[key] = json.loads(text) if key.startswith("delta.") and key not in _STRING_METADATA else text
        except json.JSONDecodeError:
            meta[key] = text
    return {"name": f.name, "type": _type_to_delta(f.type, f"{where} column '{f.name}'"),
            "nullable": f.nullable, "metadata": meta}


def schema_to_json(schema: pa.Schema) -> str:
    """``metaData.schemaString`` for an Arrow schema already in Delta-compatible types."""
    return json.dumps({"type": "struct", "fields": [_field_to_delta(f, "schema") for f in schema]},
                      separators=(",", ":"))


# --- normalising user types ---------------------------------------------------------


def delta_compatible_type(dtype: pa.DataType, where: str) -> pa.DataType:
    """The Arrow type we store for a user-supplied type (see the module table)."""
    if pa.types.is_dictionary(dtype):
        return delta_compatible_type(dtype.value_type, where)
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    if pa.types.is_timestamp(dtype):
        return TIMESTAMP_TYPE
    if pa.types.is_date64(dtype):
        return pa.date32()
    if pa.types.is_float16(dtype):
        return pa.float32()
    unsigned = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}
    if dtype in unsigned:
        return unsigned[dtype]
    if dtype == pa.uint64():
        raise SchemaError(f"{where}: uint64 does not fit Delta's signed 'long'; cast it to int64 or decimal(20,0)")
    if pa.types.is_null(dtype):
        raise SchemaError(f"{where}: the column holds only nulls and has no type; cast it to the type it should have")
    if pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype) or pa.types.is_list_view(dtype):
        value = dtype.value_field
        return pa.list_(pa.field("element", delta_compatible_type(value.type, where), value.nullable))
    if pa.types.is_list(dtype):
        value = dtype.value_field
        return pa.list_(pa.field("element", delta_compatible_type(value.type, where), value.nullable))
    if pa.types.is_map(dtype):
        return pa.map_(pa.field("key", delta_compatible_type(dtype.key_type, where), False),
                       pa.field("value", delta_compatible_type(dtype.item_type, where), dtype.item_field.nullable))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(dtype.field(i).name, delta_compatible_type(dtype.field(i).type, where),
                                   dtype.field(i).nullable) for i in range(dtype.num_fields)])
    _type_to_delta(dtype, where)  # raises for anything else we cannot store
    return dtype


def delta_compatible_schema(schema: pa.Schema) -> pa.Schema:
    """Schema a new table gets for data of ``schema``; checks names are unique (any case)."""
    seen: dict[str, str] = {}
    fields = []
    for f in schema:
        if not f.name:
            raise SchemaError("a column has an empty name; every column needs a name")
        lower = f.name.lower()
        if lower in seen:
            raise SchemaError(f"columns '{seen[lower]}' and '{f.name}' differ only in case; Delta column names are case-insensitive")
        seen[lower] = f.name
        fields.append(pa.field(f.name, delta_compatible_type(f.type, f"column '{f.name}'"), f.nullable, f.metadata))
    return pa.schema(fields)


def _describe(dtype: pa.DataType) -> str:
    try:
        delta = _type_to_delta(dtype, "")
        return delta if isinstance(delta, str) else json.dumps(delta)
    except SchemaError:
        return str(dtype)


_WIDENING = {
    (pa.int8(), pa.int16()), (pa.int8(), pa.int32()), (pa.int8(), pa.int64()),
    (pa.int16(), pa.int32()), (pa.int16(), pa.int64()), (pa.int32(), pa.int64()),
    (pa.float32(), pa.float64()), (pa.int8(), pa.float64()), (pa.int16(), pa.float64()),
    (pa.int32(), pa.float64()),
}


def _fits(source: pa.DataType, target: pa.DataType, where: str = "") -> bool:
    """Can values of ``source`` be stored as ``target`` without loss?

    ``where`` prefixes the error for types Delta cannot hold at all (null, uint64...).
    """
    if pa.types.is_null(source):
        return True  # only nulls (pandas' all-None object column): they fit any column type
    source = delta_compatible_type(source, where)
    if source == target or (source, target) in _WIDENING:
        return True
    if pa.types.is_timestamp(source) and pa.types.is_timestamp(target):
        return True
    if pa.types.is_decimal(source) and pa.types.is_decimal(target):
        return (target.scale >= source.scale
                and target.precision - target.scale >= source.precision - source.scale)
    if pa.types.is_integer(source) and pa.types.is_decimal(target):
        digits = {8: 3, 16: 5, 32: 10, 64: 19}[source.bit_width]
        return target.precision - target.scale >= digits
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        return source.num_fields == target.num_fields and all(
            source.field(i).name == target.field(i).name and _fits(source.field(i).type, target.field(i).type)
            for i in range(source.num_fields))
    if pa.types.is_list(source) and pa.types.is_list(target):
        return _fits(source.value_type, target.value_type)
    if pa.types.is_map(source) and pa.types.is_map(target):
        return _fits(source.key_type, target.key_type) and _fits(source.item_type, target.item_type)
    return False


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema, *, table: str) -> pa.RecordBatch:
    """Reorder and cast ``batch`` to the table ``schema``, or explain precisely why not.

    Names match exactly; a column present only in a different case is pointed out. Types
    must be equal or widen without loss. Nulls in a non-nullable column are refused.
    """
    by_name = {name: i for i, name in enumerate(batch.schema.names)}
    expected = {f.name for f in schema}
    extra = [n for n in batch.schema.names if n not in expected]
    if extra:
        lowered = {f.name.lower(): f.name for f in schema}
        hints = [f"'{n}' (did you mean '{lowered[n.lower()]}'?)" if n.lower() in lowered else f"'{n}'" for n in extra]
        raise SchemaError(
            f"table '{table}': the data has column(s) {', '.join(hints)} that the table does not have; "
            f"table columns are {', '.join(schema.names)}")
    columns = []
    for f in schema:
        if f.name not in by_name:
            if not f.nullable:
                raise SchemaError(f"table '{table}': the data lacks non-nullable column '{f.name}' ({_describe(f.type)})")
            columns.append(pa.nulls(batch.num_rows, f.type))
            continue
        column = batch.column(by_name[f.name])
        if column.type != f.type:
            if not _fits(column.type, f.type, f"table '{table}': column '{f.name}' expects {_describe(f.type)}"):
                raise SchemaError(
                    f"table '{table}': column '{f.name}' expects {_describe(f.type)}, got {_describe(column.type)}; "
                    "cast the data or change the table's schema")
            if pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            # Arrow casts a naive timestamp to a zoned one by reading it as UTC: exactly
            # the documented meaning of naive input.
            try:
                column = column.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # Only nanosecond timestamps can get here (sub-microsecond digits). Delta
                # stores microseconds, so truncate rather than refuse; documented in format.md.
                column = column.cast(f.type, safe=False)
        if not f.nullable and column.null_count:
            raise SchemaError(f"table '{table}': column '{f.name}' is not nullable but the data holds {column.null_count} null(s)")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def leaf_columns(schema: pa.Schema) -> list[tuple[tuple[str, ...], pa.DataType]]:
    """Every leaf column as (path, type), depth first; structs are walked, lists/maps are leaves."""
    out: list[tuple[tuple[str, ...], pa.DataType]] = []

    def walk(prefix: tuple[str, ...], dtype: pa.DataType) -> None:
        if pa.types.is_struct(dtype):
            for i in range(dtype.num_fields):
                walk(prefix + (dtype.field(i).name,), dtype.field(i).type)
        else:
            out.append((prefix, dtype))

    for f in schema:
        walk((f.name,), f.type)
    return out
