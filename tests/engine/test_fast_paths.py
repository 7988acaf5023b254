"""Fast paths must answer exactly like the general ones (DuckDB as the oracle).

- decimal trees evaluated as scaled int64 (engine/physical/scaled.py), including the bounds
  that send a tree back to the general path;
- runtime join filters (engine/physical/runtime_filters.py): a join's finished side filters
  a scan below an aggregation or another join on its other side;
- dictionary-encoded reads of low-cardinality strings (lakehouse/scan.py), with conditions
  tested once per distinct value.
"""

from __future__ import annotations

import decimal
import random

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import lakehouse
from engine.logical.expr import Call, Cast, ColumnRef, Literal
from engine.physical import runtime_filters, scaled
from engine.physical.operators import join as join_module
from tests.engine.differential import assert_same_result

D = decimal.Decimal


def _compare(session, con, sql: str, ordered: bool = False) -> pa.Table:
    ours = session.sql(sql).to_arrow()
    theirs = con.sql(sql).to_arrow_table()
    assert_same_result(ours, theirs, ordered=ordered, sql=sql)
    return ours


# --- scaled decimals -------------------------------------------------------------------------

_price = st.one_of(st.none(), st.decimals(-10**9, 10**9, places=2, allow_nan=False, allow_infinity=False))
_rate = st.one_of(st.none(), st.decimals(0, 1, places=2, allow_nan=False, allow_infinity=False))
_huge = st.one_of(st.none(), st.decimals(-(10**20), 10**20, places=10, allow_nan=False, allow_infinity=False))
_decimal_rows = st.lists(st.fixed_dictionaries({
    "g": st.integers(0, 3), "p": _price, "r": _rate, "t": _rate, "h": _huge, "n": st.one_of(st.none(), st.integers(-50, 50)),
}), max_size=40)
DECIMAL_SCHEMA = pa.schema([("g", pa.int64()), ("p", pa.decimal128(15, 2)), ("r", pa.decimal128(15, 2)),
                            ("t", pa.decimal128(15, 2)), ("h", pa.decimal128(38, 10)), ("n", pa.int32())])
DECIMAL_QUERIES = [
    "select g, sum(p * (1 - r) * (1 + t)) as a, sum(p * (1 - r)) as b, avg(p) as c, count(*) as k "
    "from d group by g",
    "select sum(p * r + t) as a, min(p * (1 - r)) as b, max(p - t * 3) as c from d",
    "select g, sum(h * r) as a, sum(h + p) as b, avg(h) as c from d group by g",  # beyond int64: general path
    "select p * (1 - r) * (1 + t) as v, p * n as w, h * r as x from d",
    "select g, sum(p * n) as a, sum(n * 2.50) as b from d group by g",
    "select p from d where p * (1 - r) > 100.00",
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_decimal_rows)
def test_decimal_arithmetic_and_sums_match_duckdb(rows):
    table = pa.Table.from_pylist(rows, schema=DECIMAL_SCHEMA)
    session = engine.connect()
    session.register("d", table)
    con = duckdb.connect()
    con.register("d", table)
    for sql in DECIMAL_QUERIES:
        _compare(session, con, sql)


def test_scaled_tree_is_exact_and_marks_nulls():
    table = pa.table({"#1": pa.array([D("10.00"), None, D("-3.50")], pa.decimal128(15, 2)),
                      "#2": pa.array([D("0.05"), D("0.10"), None], pa.decimal128(15, 2))})
    price = ColumnRef(1, "p", pa.decimal128(15, 2))
    rate = ColumnRef(2, "r", pa.decimal128(15, 2))
    one = Literal(D("1"), pa.decimal128(1, 0))
    tree = Call("multiply", (price, Call("subtract", (one, rate), pa.decimal128(16, 2))), pa.decimal128(32, 4))
    value = scaled.evaluate(tree, table)
    assert value is not None and value.scale == 4
    out = scaled.to_arrow(value, pa.decimal128(32, 4), 3)
    assert out.to_pylist() == [D("9.5000"), None, None]
    as_float = scaled.to_arrow(scaled.evaluate(Cast(tree, pa.float64()), table), pa.float64(), 3)
    assert as_float.to_pylist() == [9.5, None, None]


def test_scaled_tree_refuses_what_might_overflow():
    big = pa.table({"#1": pa.array([D("99999999999999999999.0000000000")], pa.decimal128(38, 10))})
    column = ColumnRef(1, "h", pa.decimal128(38, 10))
    assert scaled.evaluate(column, big) is None  # needs more than 62 bits
    fits = pa.table({"#1": pa.array([D("3000000.00")], pa.decimal128(15, 2))})
    column = ColumnRef(1, "p", pa.decimal128(15, 2))
    square = Call("multiply", (column, column), pa.decimal128(31, 4))
    assert scaled.evaluate(square, fits) is not None
    cube = Call("multiply", (square, column), pa.decimal128(38, 6))
    assert scaled.evaluate(cube, fits) is None  # 2.7e25 scaled: beyond int64
    narrow = Cast(column, pa.decimal128(15, 1))
    assert scaled.evaluate(narrow, fits) is None  # rounding is the general path's job


# --- runtime join filters --------------------------------------------------------------------


@pytest.fixture(scope="module")
def join_data():
    rng = random.Random(7)
    parts = pa.table({
        "pk": pa.array([k if k % 17 else None for k in range(1, 2001)], pa.int64()),
        "brand": [f"b{k % 9}" for k in range(1, 2001)],
        "day": pa.array([k % 300 for k in range(1, 2001)], pa.int32()).cast(pa.date32()),
    })
    items = pa.table({
        "pk": pa.array([rng.choice([None] + list(range(1, 2600))) for _ in range(20000)], pa.int64()),
        "qty": pa.array([rng.randint(1, 50) for _ in range(20000)], pa.int64()),
        "brand": [f"b{rng.randint(0, 12)}" if rng.random() > 0.05 else None for _ in range(20000)],
        "day": pa.array([rng.randint(0, 400) for _ in range(20000)], pa.int32()).cast(pa.date32()),
    })
    session = engine.connect()
    con = duckdb.connect()
    for name, table in (("parts", parts), ("items", items)):
        session.register(name, table)
        con.register(name, table)
    return session, con


JOIN_QUERIES = [
    # TPC-H Q17's shape: the LEFT join's preserved side filters the aggregated side.
    "select sum(i.qty) as s, count(*) as c from parts p join items i on p.pk = i.pk "
    "where p.brand = 'b3' and i.qty < (select 0.5 * avg(qty) from items j where j.pk = p.pk)",
    # inner join: the aggregate's input is filtered by the dimension's keys
    "select p.pk, a.total from parts p join (select pk, sum(qty) as total from items group by pk) a "
    "on a.pk = p.pk where p.brand = 'b1'",
    # right join keeps its right side: the left (aggregated) side is the one filtered
    "select p.pk, a.total from (select pk, sum(qty) as total from items group by pk) a "
    "right join parts p on a.pk = p.pk where p.brand = 'b2'",
    # left join whose aggregated side must NOT be filtered into losing preserved rows
    "select a.pk, a.total, p.brand from (select pk, sum(qty) as total from items group by pk) a "
    "left join parts p on a.pk = p.pk",
    # semi join (IN) feeding a filter through a join below
    "select count(*) as c from items i join parts p on i.pk = p.pk "
    "where i.pk in (select pk from parts where brand = 'b4')",
    # string and date keys
    "select b.brand, b.n from (select brand, count(*) as n from items group by brand) b "
    "join (select distinct brand from parts where brand in ('b1', 'b5')) q on b.brand = q.brand",
    "select d.day, d.n from (select day, count(*) as n from items group by day) d "
    "join parts p on d.day = p.day where p.pk < 40",
    # anti join: the subquery side is never filtered by the keys it is tested against
    "select count(*) as c from parts p where not exists (select 1 from items i where i.pk = p.pk)",
]


@pytest.mark.parametrize("sql", JOIN_QUERIES)
def test_runtime_filtered_joins_match_duckdb(join_data, sql):
    session, con = join_data
    _compare(session, con, sql)


def test_runtime_filter_reaches_the_aggregated_scan(join_data):
    session, _ = join_data
    text = session.sql(JOIN_QUERIES[0]).explain(analyze=True)
    filtered = [line for line in text.splitlines() if "join-filtered=" in line]
    assert filtered, text
    dropped = int(filtered[0].split("join-filtered=")[1].split(")")[0].replace(",", ""))
    assert dropped > 10000  # most item rows belong to parts the outer query does not want


def test_large_left_side_falls_back_to_streaming(join_data, monkeypatch):
    session, con = join_data
    monkeypatch.setattr(join_module, "_LEFT_FIRST_ROWS", 10)
    monkeypatch.setattr(runtime_filters, "_MAX_BITMAP_RANGE", 4)  # string/hashed path for ints too
    for sql in JOIN_QUERIES:
        _compare(session, con, sql)


def test_streaming_join_without_reader_source_matches_duckdb(join_data, monkeypatch):
    # pyarrow < 26 has no RecordBatchReaderSourceNodeOptions: the probe side is joined in chunks.
    session, con = join_data
    monkeypatch.setattr(join_module, "_LEFT_FIRST_ROWS", 10)
    monkeypatch.delattr(join_module.acero, "RecordBatchReaderSourceNodeOptions", raising=False)
    monkeypatch.setattr(join_module, "_PROBE_CHUNK_BATCHES", 1)
    for sql in JOIN_QUERIES:
        _compare(session, con, sql)


def test_unselective_filter_turns_itself_off():
    key_filter = runtime_filters.KeyFilter(pa.int64())
    key_filter.publish(pa.chunked_array([pa.array(range(1000), pa.int64())]))
    batch = pa.record_batch({"k": pa.array(list(range(1000)) * 300, pa.int64())})
    kept = key_filter.apply(batch, "k")
    assert kept.num_rows == batch.num_rows and not key_filter.enabled


# --- dictionary-encoded string reads ------------------------------------------------------


@pytest.fixture(scope="module")
def dictionary_table(tmp_path_factory):
    rng = random.Random(3)
    n = 30000
    data = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "mode": [rng.choice(["AIR", "AIR REG", "MAIL", "SHIP", "TRUCK", None]) for _ in range(n)],
        "flag": [rng.choice(["A", "N", "R"]) for _ in range(n)],
        "note": [f"note {rng.random():.12f}" for _ in range(n)],
        "x": pa.array([rng.random() for _ in range(n)], pa.float64()),
    })
    root = tmp_path_factory.mktemp("dict")
    table = lakehouse.create_table(str(root / "lines"), data.schema)
    table.append(data.slice(0, n // 2))
    table.append(data.slice(n // 2))
    return str(root), table, data


DICTIONARY_FILTERS = [
    "mode = 'AIR'",
    "mode in ('AIR', 'AIR REG') and flag = 'R'",
    "mode is null",
    "not (mode in ('MAIL', 'SHIP'))",
    "mode != 'TRUCK' and x < 0.5",
    "(mode = 'AIR' or mode is null) and id > 100",
    "mode = 'AIR' or flag = 'N'",
    "mode like 'AIR%'",
    "note = 'nope'",
]


@pytest.mark.parametrize("condition", DICTIONARY_FILTERS)
def test_dictionary_reads_match_duckdb(dictionary_table, condition):
    root, table, data = dictionary_table
    session = engine.connect(root)
    con = duckdb.connect()
    con.register("lines", data)
    sql = f"select id, mode, flag from lines where {condition} order by id"
    ours = _compare(session, con, sql, ordered=True)
    assert ours.schema.field("mode").type == pa.string()
    assert table.scan(filter=condition).count() == ours.num_rows


def test_low_cardinality_columns_are_read_as_dictionaries(dictionary_table):
    _, table, data = dictionary_table
    scan = table.scan(columns=["mode", "flag", "note"], filter="mode = 'AIR'")
    plan = scan._read_plan()
    assert plan.dictionary_columns == {"mode", "flag"}  # 'note' has a value per row
    assert [name for name, _ in plan.filters] == ["mode"]
    result = scan.to_arrow()
    assert result.schema == pa.schema([("mode", pa.string()), ("flag", pa.string()), ("note", pa.string())])
    assert result.num_rows == data.filter(pa.compute.equal(data["mode"], "AIR")).num_rows
    reader = table.scan(columns=["id", "mode"], filter="flag = 'A'").to_reader()
    assert reader.schema.field("mode").type == pa.string()
    assert sum(b.num_rows for b in reader) == data.filter(pa.compute.equal(data["flag"], "A")).num_rows
