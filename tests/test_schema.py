"""Delta schema JSON <-> Arrow, normalising user types, and fitting data to a table."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pytest

from lakehouse import SchemaError
from lakehouse.schema import (
    conform_batch, delta_compatible_schema, delta_compatible_type, leaf_columns, schema_from_json, schema_to_json,
)

PRIMITIVES = {
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
    "decimal(10,2)": pa.decimal128(10, 2),
    "decimal(38,38)": pa.decimal128(38, 38),
    "decimal(1,0)": pa.decimal128(1, 0),
}


def field_json(name, dtype, nullable=True, metadata=None):
    return {"name": name, "type": dtype, "nullable": nullable, "metadata": metadata or {}}


def struct_json(*fields):
    return json.dumps({"type": "struct", "fields": list(fields)}, separators=(",", ":"))


@pytest.mark.parametrize("delta, arrow", PRIMITIVES.items(), ids=list(PRIMITIVES))
def test_every_primitive_both_ways(delta, arrow):
    text = struct_json(field_json("c", delta, nullable=False))
    schema = schema_from_json(text)
    assert schema.field("c").type == arrow and schema.field("c").nullable is False
    assert schema_to_json(schema) == text  # exact wire form back


def test_nested_types_both_ways():
    text = struct_json(
        field_json("s", {"type": "struct", "fields": [
            field_json("a", "integer", False),
            field_json("inner", {"type": "struct", "fields": [field_json("x", "string")]}),
        ]}),
        field_json("l", {"type": "array", "elementType": "long", "containsNull": False}),
        field_json("ll", {"type": "array", "elementType": {"type": "array", "elementType": "string",
                                                           "containsNull": True}, "containsNull": True}),
        field_json("m", {"type": "map", "keyType": "string", "valueType": "double", "valueContainsNull": False}),
        field_json("ms", {"type": "map", "keyType": "integer",
                          "valueType": {"type": "struct", "fields": [field_json("v", "date")]},
                          "valueContainsNull": True}),
    )
    schema = schema_from_json(text)
    s = schema.field("s").type
    assert pa.types.is_struct(s) and s.field("a").type == pa.int32() and not s.field("a").nullable
    assert s.field("inner").type == pa.struct([("x", pa.string())])
    assert schema.field("l").type == pa.list_(pa.field("element", pa.int64(), nullable=False))
    assert schema.field("ll").type.value_type == pa.list_(pa.string())
    m = schema.field("m").type
    assert m.key_type == pa.string() and m.item_type == pa.float64() and not m.item_field.nullable
    assert schema.field("ms").type.item_type == pa.struct([("v", pa.date32())])
    assert schema_to_json(schema) == text


def test_decimal_with_a_space_and_bare_decimal_parse():
    schema = schema_from_json(struct_json(field_json("a", "decimal(10, 2)"), field_json("b", "decimal( 5 ,0 )"),
                                          field_json("c", "decimal")))
    assert schema.field("a").type == pa.decimal128(10, 2)
    assert schema.field("b").type == pa.decimal128(5, 0)
    assert schema.field("c").type == pa.decimal128(10, 0)  # Spark's default precision
    assert json.loads(schema_to_json(schema))["fields"][0]["type"] == "decimal(10,2)"  # emitted without the space


def test_field_metadata_is_preserved():
    invariants = {"expression": {"expression": "x > 3"}}
    text = struct_json(field_json("x", "integer", metadata={"comment": "the x", "delta.invariants": json.dumps(invariants),
                                                            "delta.columnMapping.id": 5}))
    schema = schema_from_json(text)
    meta = schema.field("x").metadata
    assert meta[b"comment"] == b"the x" and meta[b"delta.columnMapping.id"] == b"5"
    # Every value comes back with its wire type: the invariant stays a string holding
    # JSON (as Spark requires), the column mapping id stays a number.
    back = json.loads(schema_to_json(schema))["fields"][0]["metadata"]
    assert back == {"comment": "the x", "delta.invariants": json.dumps(invariants), "delta.columnMapping.id": 5}
    identity = {"delta.identity.start": 1, "delta.identity.allowExplicitInsert": True,
                "delta.typeChanges": [{"fromType": "integer", "toType": "long"}],
                "delta.generationExpression": "1 + 2", "delta.columnMapping.physicalName": "col-5"}
    again = schema_from_json(struct_json(field_json("y", "long", metadata=identity)))
    assert json.loads(schema_to_json(again))["fields"][0]["metadata"] == identity


def test_void_reads_as_null():
    assert schema_from_json(struct_json(field_json("v", "void"))).field("v").type == pa.null()


@pytest.mark.parametrize("dtype, expected", [
    ("variant", "unsupported Delta type 'variant'"),
    ("interval", "unsupported Delta type 'interval'"),
    ("decimal(39,0)", "precision must be 1-38"),
    ("decimal(5,6)", "scale <= precision"),
    ("decimal(0,0)", "precision must be 1-38"),
    ({"type": "udt", "class": "x"}, "unrecognised type description"),
    ({"type": "array"}, "unrecognised type description null"),
    ({"type": "map", "keyType": "string"}, "unrecognised type description null"),
    (5, "unrecognised type description 5"),
])
def test_unsupported_delta_types_name_the_column(dtype, expected):
    with pytest.raises(SchemaError) as info:
        schema_from_json(struct_json(field_json("weird", dtype)), where="table 't'")
    assert "table 't' column 'weird'" in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("text, expected", [
    ("{", "not valid JSON"),
    ("[1]", "must describe a struct"),
    ('{"type": "array"}', "must describe a struct"),
    ('{"type": "struct", "fields": "x"}', "'fields' must be a list"),
    ('{"type": "struct", "fields": [{"type": "long"}]}', "needs a 'name' and a 'type'"),
    ('{"type": "struct", "fields": [{"name": "a"}]}', "needs a 'name' and a 'type'"),
    ('{"type": "struct", "fields": [3]}', "needs a 'name' and a 'type'"),
])
def test_malformed_schema_strings_are_schema_errors(text, expected):
    with pytest.raises(SchemaError, match=expected):
        schema_from_json(text, where="table 't'")


# --- user types -> stored types -------------------------------------------------------


@pytest.mark.parametrize("given, stored", [
    (pa.large_string(), pa.string()),
    (pa.string_view(), pa.string()),
    (pa.dictionary(pa.int32(), pa.string()), pa.string()),
    (pa.large_binary(), pa.binary()),
    (pa.binary(16), pa.binary()),
    (pa.uint8(), pa.int16()),
    (pa.uint16(), pa.int32()),
    (pa.uint32(), pa.int64()),
    (pa.float16(), pa.float32()),
    (pa.date64(), pa.date32()),
    (pa.timestamp("ns"), pa.timestamp("us", tz="UTC")),
    (pa.timestamp("s", tz="Europe/Amsterdam"), pa.timestamp("us", tz="UTC")),
    (pa.large_list(pa.uint8()), pa.list_(pa.int16())),
    (pa.list_(pa.int32(), 3), pa.list_(pa.int32())),
    (pa.map_(pa.large_string(), pa.uint16()), pa.map_(pa.string(), pa.int32())),
    (pa.struct([("a", pa.large_string())]), pa.struct([("a", pa.string())])),
])
def test_user_types_are_normalised(given, stored):
    result = delta_compatible_type(given, "column 'c'")
    assert result == stored
    schema_to_json(pa.schema([("c", result)]))  # and it has a Delta name


@pytest.mark.parametrize("dtype, expected", [
    (pa.uint64(), "uint64 does not fit"),
    (pa.null(), "only nulls"),
    (pa.time64("us"), "time64[us] has no Delta equivalent"),
    (pa.duration("s"), "duration[s] has no Delta equivalent"),
    (pa.month_day_nano_interval(), "has no Delta equivalent"),
    (pa.decimal256(40, 2), "precision 40 exceeds Delta's maximum of 38"),
    (pa.dense_union([pa.field("a", pa.int8())]), "has no Delta equivalent"),
    (pa.list_(pa.uint64()), "uint64 does not fit"),
    (pa.struct([("inner", pa.null())]), "only nulls"),
])
def test_unsupported_arrow_types_are_refused_with_the_column(dtype, expected):
    with pytest.raises(SchemaError) as info:
        delta_compatible_schema(pa.schema([("c", dtype)]))
    assert str(info.value).startswith("column 'c'") and expected in str(info.value)


def test_column_names_must_be_unique_ignoring_case_and_non_empty():
    with pytest.raises(SchemaError, match="'Id' and 'id' differ only in case"):
        delta_compatible_schema(pa.schema([("Id", pa.int64()), ("id", pa.int64())]))
    with pytest.raises(SchemaError, match="empty name"):
        delta_compatible_schema(pa.schema([("", pa.int64())]))


# --- fitting data to a table schema ---------------------------------------------------

TABLE = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("amount", pa.decimal128(12, 2)),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("tag", pa.string()),
])


def test_conform_reorders_widens_and_fills_missing_nullable_columns():
    batch = pa.record_batch({
        "tag": pa.array(["x", "y"]).dictionary_encode(),
        "ts": pa.array([dt.datetime(2024, 1, 1, 12), None], pa.timestamp("ms")),  # naive -> read as UTC
        "id": pa.array([1, 2], pa.int32()),
    })
    out = conform_batch(batch, TABLE, table="t")
    assert out.schema == TABLE
    assert out.column("id").to_pylist() == [1, 2]
    assert out.column("amount").null_count == 2
    assert out.column("ts")[0].as_py() == dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert out.column("tag").to_pylist() == ["x", "y"]


def test_conform_keeps_instants_of_zoned_timestamps_and_truncates_nanoseconds():
    zoned = pa.array([dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1)))],
                     pa.timestamp("us", tz="+01:00"))
    nanos = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC"))
    schema = pa.schema([("a", TABLE.field("ts").type), ("b", TABLE.field("ts").type)])
    out = conform_batch(pa.record_batch({"a": zoned, "b": nanos}), schema, table="t")
    assert out.column("a")[0].as_py() == dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
    assert out.column("b").cast(pa.int64())[0].as_py() == 1_700_000_000_123_456


@pytest.mark.parametrize("column, array, ok", [
    ("amount", pa.array([decimal.Decimal("1.5")], pa.decimal128(5, 1)), True),
    ("amount", pa.array([1], pa.int32()), True),  # 10 digits fit 12-2
    ("amount", pa.array([1], pa.int64()), False),  # 19 digits do not
    ("amount", pa.array([decimal.Decimal("1.555")], pa.decimal128(6, 3)), False),  # would lose a digit
    ("amount", pa.array([1.5], pa.float64()), False),
    ("id", pa.array([1.0], pa.float64()), False),
    ("tag", pa.array([1], pa.int64()), False),
])
def test_conform_only_accepts_lossless_casts(column, array, ok):
    schema = pa.schema([TABLE.field(column)])
    batch = pa.record_batch({column: array})
    if ok:
        assert conform_batch(batch, schema, table="t").schema == schema
    else:
        with pytest.raises(SchemaError, match=rf"table 't': column '{column}' expects"):
            conform_batch(batch, schema, table="t")


def test_conform_refuses_narrowing_integers():
    schema = pa.schema([("n", pa.int32())])
    with pytest.raises(SchemaError, match="column 'n' expects integer, got long"):
        conform_batch(pa.record_batch({"n": pa.array([1], pa.int64())}), schema, table="t")


def test_leaf_columns_walk_structs_but_not_lists_or_maps():
    schema = pa.schema([
        ("a", pa.int64()),
        ("s", pa.struct([("x", pa.int32()), ("t", pa.struct([("y", pa.string()), ("z", pa.date32())]))])),
        ("l", pa.list_(pa.struct([("q", pa.int8())]))),
        ("m", pa.map_(pa.string(), pa.int64())),
    ])
    assert [path for path, _ in leaf_columns(schema)] == [
        ("a",), ("s", "x"), ("s", "t", "y"), ("s", "t", "z"), ("l",), ("m",)]
