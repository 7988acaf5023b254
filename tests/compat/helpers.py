"""Shared helpers for the interoperability tests: read with ``deltalake``, read with us, compare.

Reading with deltalake goes through its native query engine (``QueryBuilder``), never
``DeltaTable.to_pyarrow_table()``/``to_pyarrow_dataset()``: with deltalake 1.6.6 those make
the interpreter abort at exit (exit code 134), which would turn a passing run red.

Comparisons are order-insensitive but otherwise strict. Both tables are first brought to
one canonical Arrow form (string flavours -> ``string``, binary flavours -> ``binary``,
dictionaries decoded, list flavours -> ``list<element>``, timestamps -> microseconds in UTC
or naive, field nullability and metadata dropped). Only *representation* is normalised:
the casts are safe, so a value that would change (a nanosecond, a decimal scale, an int
that overflows) makes the comparison fail instead of being rounded into agreement.
Decimal precision/scale, integer widths, float widths, naive-vs-UTC timestamps and column
names and order must match exactly.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

# Spark-written Delta acceptance tables, kept beside the repository (``../shared/dat``).
DAT_ROOT = Path(os.environ.get("LAKEHOUSE_DAT_ROOT") or Path(__file__).resolve().parents[3] / "shared" / "dat")


# --- reading --------------------------------------------------------------------------


def deltalake_table(uri: str, version: int | None = None, *,
                    storage_options: Mapping[str, str] | None = None) -> Any:
    """A ``deltalake.DeltaTable`` at ``version`` (latest when ``None``)."""
    import deltalake

    return deltalake.DeltaTable(uri, version=version,
                                storage_options=dict(storage_options) if storage_options else None)


def deltalake_rows(uri: str, version: int | None = None, *, where: str | None = None,
                   storage_options: Mapping[str, str] | None = None) -> pa.Table:
    """Rows deltalake returns for the table at ``version``, optionally with a SQL ``where``.

    Uses deltalake's own (DataFusion) reader; see the module docstring for why.
    """
    import deltalake

    table = deltalake_table(uri, version, storage_options=storage_options)
    sql = "select * from t" + (f" where {where}" if where else "")
    reader = deltalake.QueryBuilder().register("t", table).execute(sql)
    return pa.table(reader.read_all())


def our_rows(uri: str, version: int | None = None, *, filter: Any = None,  # noqa: A002
             storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Rows lakehouse returns for the table at ``version``, optionally filtered."""
    import lakehouse

    table = lakehouse.open_table(uri, storage_options=storage_options)
    return table.snapshot(version=version).scan(filter=filter).to_arrow()


def deltalake_history(uri: str) -> list[tuple[int, str]]:
    """``(version, operation)`` pairs from deltalake's ``history()``, newest first."""
    return [(int(h["version"]), h["operation"]) for h in deltalake_table(uri).history()]


def our_history(uri: str) -> list[tuple[int, str]]:
    """``(version, operation)`` pairs from our ``history()``, newest first."""
    import lakehouse

    return [(int(h["version"]), h["operation"]) for h in lakehouse.open_table(uri).history()]


def copy_table(source: Path | str, target: Path | str) -> str:
    """Copy a table folder (log and data) so a test can write to or damage the copy."""
    shutil.copytree(source, target)
    return str(target)


# --- test data ------------------------------------------------------------------------

UTC = dt.timezone.utc

# Every Delta type lakehouse maps, in the Arrow type it reads back as.
ALL_TYPES = pa.schema([
    ("id", pa.int64()),
    ("p", pa.string()),
    ("b", pa.bool_()),
    ("i8", pa.int8()),
    ("i16", pa.int16()),
    ("i32", pa.int32()),
    ("f32", pa.float32()),
    ("f64", pa.float64()),
    ("s", pa.string()),
    ("bin", pa.binary()),
    ("d", pa.date32()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("dec", pa.decimal128(10, 2)),
    ("st", pa.struct([("x", pa.int32()), ("y", pa.string())])),
    ("arr", pa.list_(pa.field("element", pa.int64()))),
    ("m", pa.map_(pa.field("key", pa.string(), nullable=False), pa.field("value", pa.int32()))),
])

# Partition values that need Hive escaping or URI encoding, plus NULL.
PARTITION_VALUES = ["plain", "a/b", "with space", "100%", "12:30:00", "k=v", "ünïcødé 😀", None]


def make_rows(start: int, count: int) -> pa.Table:
    """Deterministic rows ``start .. start+count-1``; each column is NULL on different rows."""

    def value(i: int, column: int, make: Callable[[], Any]) -> Any:
        return None if (i + column) % 6 == 0 else make()

    rows = []
    for i in range(start, start + count):
        rows.append({
            "id": i,
            "p": PARTITION_VALUES[i % len(PARTITION_VALUES)],
            "b": value(i, 1, lambda: i % 3 == 0),
            "i8": value(i, 2, lambda: (i % 250) - 125),
            "i16": value(i, 3, lambda: i * 97 - 20_000),
            "i32": value(i, 4, lambda: i),
            "f32": value(i, 5, lambda: float("nan") if i % 17 == 4 else i / 4),
            "f64": value(i, 6, lambda: -i / 3 if i % 2 else i * 1e10),
            # Some strings exceed the 32-character stats prefix and sort last (their file's max).
            "s": value(i, 7, lambda: f"zz{i:04d}" + "x" * 40 if i % 5 == 1 else f"s{i:04d}"),
            "bin": value(i, 8, lambda: bytes([i % 256, 0, 255])),
            "d": value(i, 9, lambda: dt.date(1969, 12, 31) + dt.timedelta(days=i * 3)),
            "ts": value(i, 10, lambda: dt.datetime(1969, 12, 31, 23, 59, tzinfo=UTC)
                        + dt.timedelta(hours=i, microseconds=i * 1_001)),
            "dec": value(i, 11, lambda: decimal.Decimal(i * 37 - 500) / 100),
            "st": value(i, 12, lambda: {"x": None if i % 4 == 0 else i, "y": f"y{i}"}),
            "arr": value(i, 13, lambda: [] if i % 9 == 0 else [i, None, -i]),
            "m": value(i, 14, lambda: [("a", i), ("b", None)] if i % 2 else []),
        })
    return pa.Table.from_pylist(rows, schema=ALL_TYPES)


# A table partitioned by int, date, timestamp and boolean columns (all but ``v``).
PARTITION_TYPES = pa.schema([
    ("pi", pa.int32()),
    ("pd", pa.date32()),
    ("pts", pa.timestamp("us", tz="UTC")),
    ("pb", pa.bool_()),
    ("v", pa.int64()),
])
PARTITION_TIMESTAMPS = [dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
                        dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), None]


def typed_partition_rows() -> pa.Table:
    """24 rows for ``PARTITION_TYPES``; every partition column is NULL on some rows."""
    rows = []
    for i in range(24):
        rows.append({
            "pi": None if i % 5 == 4 else i % 3 - 1,
            "pd": None if i % 7 == 6 else dt.date(2024, 1, 1 + i % 3),
            "pts": PARTITION_TIMESTAMPS[i % 3],
            "pb": None if i % 4 == 3 else i % 2 == 0,
            "v": i,
        })
    return pa.Table.from_pylist(rows, schema=PARTITION_TYPES)


def matching(model: pa.Table, expression: ds.Expression) -> pa.ChunkedArray:
    """Rows where ``expression`` is true (NULL counts as false, as in SQL)."""
    mask = ds.dataset(model).to_table(columns={"m": expression}).column("m")
    return pc.fill_null(mask, False)


# --- normalising ----------------------------------------------------------------------


def normalize_type(dtype: pa.DataType) -> pa.DataType:
    """The canonical Arrow type used for comparisons (see the module docstring)."""
    if pa.types.is_dictionary(dtype):
        return normalize_type(dtype.value_type)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if (pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype)
            or pa.types.is_fixed_size_binary(dtype)):
        return pa.binary()
    if pa.types.is_timestamp(dtype):
        return pa.timestamp("us", tz="UTC" if dtype.tz is not None else None)
    if pa.types.is_date(dtype):
        return pa.date32()
    if pa.types.is_decimal(dtype):
        return pa.decimal128(dtype.precision, dtype.scale) if dtype.precision <= 38 else dtype
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)
            or pa.types.is_list_view(dtype) or pa.types.is_large_list_view(dtype)):
        return pa.list_(pa.field("element", normalize_type(dtype.value_type)))
    if pa.types.is_map(dtype):
        return pa.map_(pa.field("key", normalize_type(dtype.key_type), nullable=False),
                       pa.field("value", normalize_type(dtype.item_type)))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(dtype.field(i).name, normalize_type(dtype.field(i).type))
                          for i in range(dtype.num_fields)])
    return dtype


def normalize_table(table: pa.Table) -> pa.Table:
    """``table`` in canonical types, nullability and metadata dropped, values unchanged."""
    columns = []
    fields = []
    for f, column in zip(table.schema, table.columns):
        target = normalize_type(f.type)
        if column.type != target:
            if pa.types.is_dictionary(column.type):
                column = pa.chunked_array([c.dictionary_decode() for c in column.chunks], column.type.value_type)
            column = column.cast(target)  # safe cast: a lossy conversion raises
        columns.append(column)
        fields.append(pa.field(f.name, target))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# --- comparing ------------------------------------------------------------------------

_NAN = ("<NaN>",)


def _canonical(value: Any) -> Any:
    """A Python value whose ``repr`` identifies the Arrow value exactly (NaN equals NaN)."""
    if isinstance(value, float):
        return _NAN if math.isnan(value) else value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return ("utc", value.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat())
        return ("naive", value.isoformat())
    if isinstance(value, dt.date):
        return ("date", value.isoformat())
    if isinstance(value, decimal.Decimal):
        return ("dec", str(value))
    if isinstance(value, dict):
        return tuple((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    return value


def canonical_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows of a normalised table as canonical tuples in a total, content-defined order.

    Sorting on the ``repr`` orders every row, including rows that differ only in nested
    columns (which Arrow cannot sort on), so equal multisets give equal lists.
    """
    rows = [tuple(_canonical(row[name]) for name in table.column_names) for row in table.to_pylist()]
    return sorted(rows, key=repr)


def assert_same_rows(actual: pa.Table, expected: pa.Table, *, context: str = "") -> None:
    """Assert both tables hold the same columns (names, order, canonical types) and rows.

    Row order is ignored; duplicates count. The failure message shows the differing schema
    or a few rows present on one side only.
    """
    where = f"{context}: " if context else ""
    left, right = normalize_table(actual), normalize_table(expected)
    assert left.column_names == right.column_names, (
        f"{where}columns differ: {left.column_names} != {right.column_names}")
    assert left.schema == right.schema, f"{where}types differ:\n{left.schema}\n!=\n{right.schema}"
    a_rows, e_rows = canonical_rows(left), canonical_rows(right)
    if a_rows != e_rows:
        only_actual = _difference(a_rows, e_rows)
        only_expected = _difference(e_rows, a_rows)
        raise AssertionError(
            f"{where}rows differ ({len(a_rows)} vs {len(e_rows)} rows)\n"
            f"  only in actual ({len(only_actual)}): {only_actual[:5]}\n"
            f"  only in expected ({len(only_expected)}): {only_expected[:5]}")


def _difference(rows: list[Any], other: Iterable[Any]) -> list[Any]:
    """Multiset difference ``rows - other``."""
    from collections import Counter

    remaining = Counter(repr(r) for r in other)
    out = []
    for row in rows:
        key = repr(row)
        if remaining[key]:
            remaining[key] -= 1
        else:
            out.append(row)
    return out
