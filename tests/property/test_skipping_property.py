"""Skipping never drops a match.

Random data over many types (ints, floats with NaN/inf/NULL, strings longer than the
32-character stats prefix that share prefixes and hold non-ASCII, dates, timestamps with
microseconds, decimals, booleans, and optionally a partition column) is written as several
small files. Random predicates use every comparison operator both ways round, IN (with
NULL), IS [NOT] NULL, LIKE / NOT LIKE 'prefix%', BETWEEN and AND/OR/NOT, with literals
taken at and next to the data's own values (±1, ±1 µs, ±1 ms, next float, next cent, one
more character...), where min/max truncation and rounding bite.

The oracle is DuckDB running the same SQL text over the same Arrow data. Each filtered scan
must return exactly the rows DuckDB returns, and every file skipping left out is read
directly with pyarrow.parquet to show it holds no matching row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import tempfile
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse

UTC = dt.timezone.utc
FIELDS = [
    ("rid", pa.int64()),
    ("i", pa.int64()),
    ("f", pa.float64()),
    ("s", pa.string()),
    ("d", pa.date32()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("dec", pa.decimal128(10, 2)),
    ("b", pa.bool_()),
    ("p", pa.string()),
]
SCHEMA = pa.schema(FIELDS)
COLUMNS = ["i", "f", "s", "d", "ts", "dec", "b", "p"]
PREFIX = "ééé-shared-prefix-of-many-values-"  # 33 characters: longer than the stats prefix
assert len(PREFIX) == 33

# Characters: ASCII, Latin-1, CJK, an emoji, and the stats tie-breakers U+007F / U+10FFFF.
ALPHABET = "abzAé中😀\x7f\U0010ffff"

strings = st.one_of(
    st.text(ALPHABET, max_size=4),
    st.builds(lambda a, b: a + b, st.sampled_from([PREFIX[:31], PREFIX[:32], PREFIX, PREFIX + "x" * 10]),
              st.text(ALPHABET, max_size=3)),
)
column_values = {
    "i": st.integers(-50, 50) | st.sampled_from([-(2**63), 2**63 - 1]),
    "f": st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0]),
    "s": strings,
    "d": st.dates(dt.date(1970, 1, 1), dt.date(2040, 1, 1)),
    "ts": st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2040, 1, 1), timezones=st.just(UTC)),
    "dec": st.decimals(min_value=-10**7, max_value=10**7, places=2, allow_nan=False, allow_infinity=False),
    "b": st.booleans(),
    "p": st.sampled_from(["a", "b", "c/d", "é"]),
}


def _maybe_null(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy, strategy, strategy)


row_strategy = st.fixed_dictionaries({name: _maybe_null(s) for name, s in column_values.items()})


# --- literals -------------------------------------------------------------------------


def _neighbours(column: str, value: Any) -> list[Any]:
    """The value itself and values right next to it, where stats rounding matters."""
    if value is None:
        return []
    if column == "i":
        return [value, value - 1, value + 1]
    if column == "f":
        if not math.isfinite(value):
            return []
        return [value, math.nextafter(value, math.inf), math.nextafter(value, -math.inf), value + 0.5]
    if column in ("s", "p"):
        out = [value, value + "a", value[:-1], value + "\x7f"]
        if len(value) > 32:
            out += [value[:32], value[:32] + "\x7f", value[:32] + "\U0010ffff", value[:33]]
        return out
    if column == "d":
        return [value, value - dt.timedelta(days=1), value + dt.timedelta(days=1)]
    if column == "ts":
        one_us, one_ms = dt.timedelta(microseconds=1), dt.timedelta(milliseconds=1)
        return [value, value - one_us, value + one_us, value - one_ms, value + one_ms,
                value.replace(microsecond=(value.microsecond // 1000) * 1000)]
    if column == "dec":
        cent, tiny = decimal.Decimal("0.01"), decimal.Decimal("1e-17")
        return [value, value - cent, value + cent, value + tiny, value - tiny]
    if column == "b":
        return [value]
    raise AssertionError(column)


def _sql(column: str, value: Any, style: int) -> str:
    """A SQL literal for ``value``; ``style`` picks between equivalent spellings."""
    if column in ("s", "p"):
        return "'" + value.replace("'", "''") + "'"
    if column == "d":
        return f"DATE '{value.isoformat()}'" if style % 2 else f"'{value.isoformat()}'"
    if column == "ts":
        naive = value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return f"TIMESTAMP '{naive}'" if style % 2 else f"'{naive}+00:00'"
    if column == "b":
        return "true" if value else "false"
    if column == "f":
        return repr(float(value))
    if column == "dec":
        return format(value, "f")
    return str(value)


@st.composite
def literals(draw: st.DrawFn, column: str, data: list[dict[str, Any]]) -> Any:
    present = [r[column] for r in data if r[column] is not None]
    pool = [v for value in present for v in _neighbours(column, value)]
    if column == "f":
        pool = [v for v in pool if math.isfinite(v)]
    if pool and draw(st.integers(0, 3)):
        value = draw(st.sampled_from(pool))
    else:
        value = draw(column_values[column])
        if column == "f" and not math.isfinite(value):
            value = 1.5
    return value


@st.composite
def leaf(draw: st.DrawFn, data: list[dict[str, Any]]) -> str:
    column = draw(st.sampled_from(COLUMNS))
    kinds = ["cmp", "cmp", "cmp", "in", "null", "between"]
    if column in ("s", "p"):
        kinds += ["like", "like"]
    if column == "b":
        kinds = ["cmp", "in", "null"]
    kind = draw(st.sampled_from(kinds))
    style = draw(st.integers(0, 3))
    if kind == "null":
        return f"{column} IS {'NOT ' if style % 2 else ''}NULL"
    if kind == "cmp":
        op = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="] if column != "b" else ["=", "!="]))
        text = _sql(column, draw(literals(column, data)), style)
        if style >= 2:  # literal on the left
            flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            return f"{text} {flipped} {column}"
        return f"{column} {op} {text}"
    if kind == "in":
        items = [_sql(column, v, style) for v in draw(st.lists(literals(column, data), min_size=1, max_size=4))]
        if draw(st.integers(0, 4)) == 0:
            items.append("NULL")
        return f"{column} {'NOT ' if style == 1 else ''}IN ({', '.join(items)})"
    if kind == "between":
        low, high = draw(literals(column, data)), draw(literals(column, data))
        return f"{column} {'NOT ' if style == 1 else ''}BETWEEN {_sql(column, low, style)} AND {_sql(column, high, style)}"
    # LIKE 'prefix%' (the form skipping understands), sometimes with '_' or negated.
    base = draw(literals(column, data))
    prefix = base[: draw(st.integers(0, max(0, len(base))))]
    pattern = prefix.replace("%", "").replace("_", "") + draw(st.sampled_from(["%", "%", "_%", ""]))
    negated = "NOT " if style == 1 else ""
    return f"{column} {negated}LIKE '{pattern.replace(chr(39), chr(39) * 2)}'"


def predicates(data: list[dict[str, Any]]) -> st.SearchStrategy[str]:
    def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(children, children).map(lambda ab: f"({ab[0]}) AND ({ab[1]})"),
            st.tuples(children, children).map(lambda ab: f"({ab[0]}) OR ({ab[1]})"),
            children.map(lambda a: f"NOT ({a})"),
        )
    return st.recursive(leaf(data), extend, max_leaves=4)


# --- the property -----------------------------------------------------------------------


def _oracle(full: pa.Table, sql: str) -> set[int]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("data", full)
        return {r[0] for r in con.execute(f"SELECT rid FROM data WHERE {sql}").fetchall()}
    finally:
        con.close()


def _file_rids(folder: str, relative: str) -> set[int]:
    return set(pq.read_table(f"{folder}/t/{unquote(relative)}", columns=["rid"]).column("rid").to_pylist())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(st.lists(row_strategy, min_size=1, max_size=6), min_size=1, max_size=5),
       partitioned=st.booleans(), indexed=st.sampled_from([None, "4"]), data=st.data())
def test_skipping_never_drops_a_match(files: list[list[dict[str, Any]]], partitioned: bool,
                                      indexed: str | None, data: st.DataObject) -> None:
    rows = [dict(r, rid=n) for n, r in enumerate(r for chunk in files for r in chunk)]
    properties = {"delta.dataSkippingNumIndexedCols": indexed} if indexed else {}
    with tempfile.TemporaryDirectory() as folder:
        table = lakehouse.create_table(f"{folder}/t", SCHEMA, partition_by=["p"] if partitioned else [],
                                       properties=properties)
        start = 0
        for chunk in files:  # one append (one or more files) per chunk
            table.append(pa.Table.from_pylist(rows[start:start + len(chunk)], schema=SCHEMA))
            start += len(chunk)
        full = pa.Table.from_pylist(rows, schema=SCHEMA)
        snapshot = table.snapshot()
        all_paths = set(snapshot.files.column("path").to_pylist())

        for _ in range(4):
            sql = data.draw(predicates(rows), label="filter")
            expected = _oracle(full, sql)
            scan = snapshot.scan(filter=sql)
            got = scan.to_arrow().column("rid").to_pylist()
            assert sorted(got) == sorted(expected), sql
            selected = set(scan.selected_files.column("path").to_pylist())
            metrics = scan.metrics
            assert metrics.files_selected + metrics.files_skipped == metrics.files_total == len(all_paths)
            for path in all_paths - selected:
                assert not (_file_rids(folder, path) & expected), f"{sql}: skipped {path} holds a match"
