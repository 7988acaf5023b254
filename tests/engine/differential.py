"""Differential testing against DuckDB: shared data, corpus entries and result comparison.

DuckDB is the oracle (design §7): the same deterministic tables are registered in DuckDB and
in our session, the same SQL runs on both, and :func:`assert_same_result` compares answers.
Every corpus entry states whether its ORDER BY fully determines the row order (``ordered``);
only then is the sequence compared, otherwise rows are compared as multisets.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pyarrow as pa

REL_TOL = 1e-6
ABS_TOL = 1e-9


@dataclass(frozen=True)
class Query:
    """One corpus entry. ``ordered`` must be True only if ORDER BY makes the order unique."""

    sql: str
    ordered: bool

    def __post_init__(self) -> None:
        if self.ordered and not re.search(r"\border\s+by\b", self.sql, re.IGNORECASE):
            raise ValueError(f"query claims a determined order but has no ORDER BY: {self.sql}")


# --- data -------------------------------------------------------------------------------

_WORDS = ["apple", "Apple", "APPLE", "banana", "cherry", "", " padded ", "ünïcödé", "日本語",
          "a_b%c", "x-y-z", "mixed Case", "zebra", "a,b,c", "  ", "dog", "Dog"]


def _maybe(rng: random.Random, value: Any, null_rate: float) -> Any:
    return None if rng.random() < null_rate else value


def make_tables(rows: int = 300) -> dict[str, pa.Table]:
    """The corpus tables, generated deterministically.

    ``t``  main fact table: every type, ~20% NULLs per column (``id`` is a unique non-NULL key).
    ``u``  child of ``t`` (``t_id`` references ``t.id``; some dangle, some are NULL).
    ``k``  tiny lookup table with duplicate and NULL keys (IN / NOT IN / set operations).
    ``e``  empty, with ``t``'s schema.
    ``n``  floats with NaN and infinities (kept apart: NaN ordering differs between engines).
    """
    rng = random.Random(20240611)
    base_date = dt.date(2020, 1, 1)
    base_ts = dt.datetime(2021, 3, 14, 1, 59, 26)
    t_schema = pa.schema([
        ("id", pa.int64()), ("g", pa.int32()), ("i", pa.int64()), ("f", pa.float64()),
        ("d", pa.decimal128(12, 2)), ("s", pa.string()), ("dt", pa.date32()),
        ("ts", pa.timestamp("us")), ("b", pa.bool_()),
    ])
    t_rows = []
    for n in range(rows):
        t_rows.append({
            "id": n + 1,
            "g": _maybe(rng, rng.randint(0, 7), 0.15),
            "i": _maybe(rng, rng.randint(-1000, 1000), 0.2),
            "f": _maybe(rng, round(rng.uniform(-500, 500), 3), 0.2),
            "d": _maybe(rng, decimal.Decimal(rng.randint(-99999, 99999)) / 100, 0.2),
            "s": _maybe(rng, rng.choice(_WORDS), 0.2),
            "dt": _maybe(rng, base_date + dt.timedelta(days=rng.randint(0, 1200)), 0.2),
            "ts": _maybe(rng, base_ts + dt.timedelta(seconds=rng.randint(0, 400 * 86400)), 0.2),
            "b": _maybe(rng, rng.random() < 0.5, 0.25),
        })
    t = pa.Table.from_pylist(t_rows, schema=t_schema)

    u_schema = pa.schema([
        ("uid", pa.int64()), ("t_id", pa.int64()), ("g", pa.int32()), ("amount", pa.decimal128(10, 2)),
        ("qty", pa.int32()), ("label", pa.string()), ("day", pa.date32()),
    ])
    u_rows = []
    for n in range(200):
        u_rows.append({
            "uid": n + 1,
            "t_id": _maybe(rng, rng.randint(1, rows + 40), 0.1),  # > rows: dangling references
            "g": _maybe(rng, rng.randint(0, 9), 0.15),
            "amount": _maybe(rng, decimal.Decimal(rng.randint(0, 50000)) / 100, 0.2),
            "qty": _maybe(rng, rng.randint(-5, 50), 0.2),
            "label": _maybe(rng, rng.choice(["red", "green", "blue", "Red", "", "grün"]), 0.2),
            "day": _maybe(rng, base_date + dt.timedelta(days=rng.randint(0, 1200)), 0.2),
        })
    u = pa.Table.from_pylist(u_rows, schema=u_schema)

    k = pa.table({
        "key": pa.array([1, 2, 2, 3, None, 5, None, 7], pa.int32()),
        "name": pa.array(["one", "two", "two", None, "null-key", "five", "null-key", "seven"]),
        "w": pa.array([1.5, None, 2.5, 3.5, 0.0, -1.0, None, 7.25]),
    })
    e = t_schema.empty_table()
    nan = float("nan")
    inf = float("inf")
    n_table = pa.table({
        "id": pa.array(range(1, 13), pa.int64()),
        "x": pa.array([1.0, nan, -inf, None, 0.0, -0.0, inf, nan, 2.5, None, -3.0, 1.0]),
        "grp": pa.array(["a", "a", "b", "b", "c", None, "c", "a", "b", None, "a", "c"]),
    })
    return {"t": t, "u": u, "k": k, "e": e, "n": n_table}


# --- comparison -------------------------------------------------------------------------


def _kind(dtype: pa.DataType) -> str:
    """A coarse type class: engines may pick different widths, never different kinds."""
    if pa.types.is_null(dtype):
        return "null"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "number"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_interval(dtype) or pa.types.is_duration(dtype):
        return "interval"
    return str(dtype)


def _normalize(value: Any) -> Any:
    """Python values from both engines brought to comparable forms (decimals stay exact)."""
    if isinstance(value, pa.MonthDayNano):
        return ("interval", value.months, value.days, value.nanoseconds)
    if isinstance(value, dt.datetime) and value.tzinfo is not None and value.utcoffset() == dt.timedelta(0):
        # Lakehouse tables store naive timestamps as UTC (docs/format.md) and read them back
        # zone-aware; the instant is the same, so compare the UTC wall clock.
        return value.replace(tzinfo=None)
    if isinstance(value, dt.timedelta):
        # DuckDB intervals arrive as month_day_nano; ours may be durations. Compare as days+ns.
        micros = value.days * 86_400_000_000 + value.seconds * 1_000_000 + value.microseconds
        return ("interval", 0, micros // 86_400_000_000, (micros % 86_400_000_000) * 1000)
    return value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def values_equal(a: Any, b: Any) -> bool:
    """NULL = NULL, NaN = NaN, floats within 1e-6 relative, decimals numerically."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float, decimal.Decimal)) or not isinstance(b, (int, float, decimal.Decimal)):
            return False
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        if math.isinf(fa) or math.isinf(fb):
            return fa == fb
        return math.isclose(fa, fb, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, (int, decimal.Decimal)) and isinstance(b, (int, decimal.Decimal)):
        return decimal.Decimal(a) == decimal.Decimal(b)
    return a == b


def _sort_key(row: Sequence[Any]) -> tuple:
    """A total order over rows of mixed values, coarse enough that float noise rarely matters."""
    key = []
    for v in row:
        if v is None:
            key.append((0, 0))
        elif _is_nan(v):
            key.append((1, 0))
        elif isinstance(v, bool):
            key.append((2, int(v)))
        elif isinstance(v, (int, float, decimal.Decimal)):
            f = float(v)
            key.append((3, f if math.isinf(f) or f == 0 else float(f"{f:.6g}")))
        else:
            key.append((4, repr(v)))
    return tuple(key)


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [[_normalize(v) for v in c.to_pylist()] for c in table.columns]
    return list(zip(*columns)) if columns else []


def _show(rows: Iterable[Sequence[Any]], limit: int = 8) -> str:
    rows = list(rows)
    text = "\n    ".join(repr(r) for r in rows[:limit])
    return f"{text}\n    ... ({len(rows)} rows)" if len(rows) > limit else text


def assert_same_result(ours: pa.Table, theirs: pa.Table, *, ordered: bool, sql: str = "") -> None:
    """Raise AssertionError describing the first difference between two query results."""
    where = f"\nquery: {sql}" if sql else ""
    assert [c.lower() for c in ours.column_names] == [c.lower() for c in theirs.column_names], (
        f"column names differ: ours {ours.column_names}, duckdb {theirs.column_names}{where}")
    kinds = [(_kind(a.type), _kind(b.type)) for a, b in zip(ours.schema, theirs.schema)]
    for name, (mine, reference) in zip(ours.column_names, kinds):
        assert mine == reference or "null" in (mine, reference), (
            f"column {name!r} is a {mine} in ours, a {reference} in duckdb{where}")
    mine, reference = rows_of(ours), rows_of(theirs)
    assert len(mine) == len(reference), (
        f"{len(mine)} rows, duckdb {len(reference)}{where}\n  ours:\n    {_show(mine)}\n"
        f"  duckdb:\n    {_show(reference)}")
    if not ordered:
        mine, reference = sorted(mine, key=_sort_key), sorted(reference, key=_sort_key)
    for position, (a, b) in enumerate(zip(mine, reference)):
        if not all(values_equal(x, y) for x, y in zip(a, b)):
            raise AssertionError(f"row {position} differs{' (sorted)' if not ordered else ''}: "
                                 f"ours {a!r}, duckdb {b!r}{where}")
