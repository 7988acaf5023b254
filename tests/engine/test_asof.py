"""ASOF JOIN: DuckDB's semantics, checked against DuckDB on the same Arrow tables.

DuckDB semantics (2.0): for each left row, among right rows with equal keys (``=`` never
matches NULL, ``IS NOT DISTINCT FROM`` does) that pass the ON conditions on the right input,
the one with the greatest right value satisfying ``l.v >= r.v`` / ``l.v > r.v`` (the smallest
for ``<=`` / ``<``); NULL ordering values never match; NaN is above +inf and equals itself,
-0.0 equals 0.0. ``ASOF JOIN`` drops left rows without a match, ``ASOF LEFT JOIN`` pads them
with NULLs; an ON condition on the left input makes a row match nothing.
``USING (k, ..., v)`` means ``l.k = r.k AND ... AND l.v >= r.v``.

Ties: when several right rows share the keys *and* the ordering value, which one DuckDB
picks depends on its plan (a nested-loop rewrite below ``asof_loop_join_threshold`` rows
takes the first, its sort-based operator an arbitrary one), so generated data never repeats
(keys, value) on the right; ours takes the last in input order for ``>=``/``>``, the first
for ``<=``/``<`` (``test_ties_pick_a_deterministic_row``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import random

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.config import Config
from engine.errors import PlanError, UnsupportedSQLError
from engine.kernels.asof import _asof_numpy, _group_sort_numpy, asof_match, group_sort, probe_order
from engine.logical.display import expr_text
from engine.logical.plan import Filter, Join, Scan, walk_plan
from engine.optimizer import optimize
from engine.sql.binder import Binder
from engine.sql.parser import parse
from tests.engine.differential import assert_same_result

OPS = (">=", ">", "<=", "<")
BASE_TS = dt.datetime(2024, 1, 1, 9, 30)
BASE_DATE = dt.date(2024, 1, 1)


def _duck(tables: dict[str, pa.Table], threshold: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    if threshold is not None:
        con.execute(f"set asof_loop_join_threshold = {threshold}")  # 0: DuckDB's sort-based operator
    for name, table in tables.items():
        con.register(name, table)
    return con


def _session(tables: dict[str, pa.Table], batch_size: int = 1 << 17) -> engine.Session:
    s = engine.connect(config=Config(batch_size=batch_size))
    for name, table in tables.items():
        s.register(name, table)
    return s


def _compare(tables: dict[str, pa.Table], sql: str, *, batch_size: int = 1 << 17, sort_based: bool = True) -> pa.Table:
    ours = _session(tables, batch_size).sql(sql).to_arrow()
    for threshold in ((None, 0) if sort_based else (None,)):
        con = _duck(tables, threshold)
        assert_same_result(ours, con.sql(sql).to_arrow_table(), ordered=False, sql=f"{sql} [threshold={threshold}]")
        con.close()
    return ours


# --- generated data ------------------------------------------------------------------------

_KEY_TYPES = {
    "str": (pa.string(), lambda n: f"k{n}"),
    "int": (pa.int32(), lambda n: n),
    "date": (pa.date32(), lambda n: BASE_DATE + dt.timedelta(days=n)),
}
_VALUE_TYPES = {
    "int": (pa.int64(), lambda n: n),
    "float": (pa.float64(), lambda n: n / 4),
    "timestamp": (pa.timestamp("us"), lambda n: BASE_TS + dt.timedelta(seconds=n)),
    "date": (pa.date32(), lambda n: BASE_DATE + dt.timedelta(days=n)),
}


@st.composite
def asof_case(draw):  # noqa: ANN001, ANN201
    key_kinds = draw(st.lists(st.sampled_from(sorted(_KEY_TYPES)), min_size=0, max_size=2))
    value_kind = draw(st.sampled_from(sorted(_VALUE_TYPES)))
    key_domain = draw(st.integers(1, 3))
    value_domain = draw(st.integers(1, 12))
    null_rate = draw(st.sampled_from([0.0, 0.15, 0.4]))

    def rows(count: int) -> list[tuple]:
        out = []
        for _ in range(count):
            keys = tuple(None if draw(st.floats(0, 1)) < null_rate else draw(st.integers(0, key_domain - 1))
                         for _ in key_kinds)
            value = None if draw(st.floats(0, 1)) < null_rate else draw(st.integers(0, value_domain))
            out.append(keys + (value,))
        return out

    left = rows(draw(st.integers(0, 25)))
    right = list(dict.fromkeys(rows(draw(st.integers(0, 25)))))  # no repeated (keys, value): see ties
    draw(st.randoms()).shuffle(right)

    def table(data: list[tuple], id_name: str, first_id: int) -> pa.Table:
        columns = {id_name: pa.array(range(first_id, first_id + len(data)), pa.int64())}
        for i, kind in enumerate(key_kinds):
            dtype, make = _KEY_TYPES[kind]
            columns[f"k{i}"] = pa.array([None if r[i] is None else make(r[i]) for r in data], dtype)
        dtype, make = _VALUE_TYPES[value_kind]
        columns["v"] = pa.array([None if r[-1] is None else make(r[-1]) for r in data], dtype)
        columns["x"] = pa.array([(n * 7) % 5 for n in range(len(data))], pa.int64())
        return pa.table(columns)

    return {"l": table(left, "id", 1), "r": table(right, "rid", 1000)}, len(key_kinds)


def _on(key_count: int, op: str) -> str:
    return " and ".join([f"l.k{i} = r.k{i}" for i in range(key_count)] + [f"l.v {op} r.v"])


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=asof_case(), op=st.sampled_from(OPS), left_join=st.booleans(), batch_size=st.sampled_from([4, 1 << 17]))
def test_asof_matches_duckdb(case, op, left_join, batch_size):
    tables, key_count = case
    sql = (f"select l.id, l.v as lv, r.rid, r.v as rv from l asof {'left ' if left_join else ''}join r "
           f"on {_on(key_count, op)}")
    _compare(tables, sql, batch_size=batch_size)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=asof_case(), left_join=st.booleans())
def test_asof_using_matches_duckdb(case, left_join):
    tables, key_count = case
    using = ", ".join([f"k{i}" for i in range(key_count)] + ["v"])
    _compare(tables, f"select * from l asof {'left ' if left_join else ''}join r using ({using})")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=asof_case())
def test_no_joined_feature_is_later_than_its_label(case):
    """For ``label.ts >= feature.ts`` the joined feature is never from the future, and it is the latest one."""
    tables, key_count = case
    s = _session(tables)
    on = _on(key_count, ">=")
    joined = s.sql(f"select l.id, l.v as lv, r.rid, r.v as rv from l asof join r on {on}").to_arrow().to_pylist()
    right = tables["r"].to_pylist()
    left = {row["id"]: row for row in tables["l"].to_pylist()}
    assert len({row["id"] for row in joined}) == len(joined)  # at most one feature per label
    for row in joined:
        assert row["rv"] <= row["lv"]
        label = left[row["id"]]
        keys = [label[f"k{i}"] for i in range(key_count)]
        later = [r["v"] for r in right if r["v"] is not None and r["v"] <= label["v"] and r["v"] > row["rv"]
                 and [r[f"k{i}"] for i in range(key_count)] == keys]
        assert not later, f"row {row}: a later feature exists ({later})"


# --- kernel ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(groups=st.lists(st.lists(st.integers(-5, 5), max_size=8), min_size=1, max_size=4),
       probes=st.lists(st.tuples(st.integers(-1, 3), st.integers(-7, 7)), max_size=30),
       op=st.sampled_from(["gte", "gt", "lte", "lt"]))
def test_kernel_matches_the_numpy_fallback(groups, probes, op):
    values = np.array([v for g in groups for v in sorted(g)], dtype=np.int64)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    probe_groups = np.array([min(g, len(groups) - 1) for g, _ in probes], dtype=np.int64)
    probe_values = np.array([v for _, v in probes], dtype=np.int64)
    candidates = np.flatnonzero(probe_groups >= 0)
    order = candidates[np.lexsort((probe_values[candidates], probe_groups[candidates]))]
    fast = asof_match(values, starts, ends, probe_groups, probe_values, order, op)
    inclusive, backward = {"gte": (True, True), "gt": (False, True), "lte": (False, False), "lt": (True, False)}[op]
    slow = _asof_numpy(values, starts, ends, probe_groups, probe_values, order, inclusive, backward)
    assert np.array_equal(fast, slow)  # same row even among equal values: last (backward) or first (forward)
    compare = {"gte": np.greater_equal, "gt": np.greater, "lte": np.less_equal, "lt": np.less}[op]
    for i in np.flatnonzero(fast >= 0):
        g = probe_groups[i]
        assert starts[g] <= fast[i] < ends[g] and compare(probe_values[i], values[fast[i]])


def test_kernel_on_a_large_input_agrees_with_the_fallback():
    rng = np.random.default_rng(7)
    right_groups = np.sort(rng.integers(0, 50, 200_000))
    values = np.empty(len(right_groups), dtype=np.int64)
    starts = np.searchsorted(right_groups, np.arange(50), "left")
    ends = np.searchsorted(right_groups, np.arange(50), "right")
    for g in range(50):
        values[starts[g]:ends[g]] = np.sort(rng.integers(0, 10**6, ends[g] - starts[g]))
    groups = rng.integers(-1, 50, 30_000)
    probe = rng.integers(-10, 10**6 + 10, 30_000)
    candidates = np.flatnonzero(groups >= 0)
    order = candidates[np.lexsort((probe[candidates], groups[candidates]))]
    for op, mode in (("gte", (True, True)), ("lt", (True, False))):
        fast = asof_match(values, starts, ends, groups, probe, order, op)
        slow = _asof_numpy(values, starts, ends, groups, probe, order, *mode)
        assert np.array_equal(fast, slow)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(-1, 6), st.integers(-3, 3)), max_size=80),
       big=st.booleans())
def test_group_sorts_equal_a_lexsort(rows, big):
    """The right side's counting sort is np.lexsort (stable) plus group bounds; the left side's
    order sorts by (group, value) too, ties in any order. ``big`` makes groups past the
    insertion-sort size."""
    if big:
        rows = rows * 10
    groups = np.array([g for g, _ in rows], dtype=np.int64)
    values = np.array([v for _, v in rows], dtype=np.int64)
    order, starts, ends = group_sort(groups, values, 7)
    expected, expected_starts, expected_ends = _group_sort_numpy(groups, values, 7)
    assert np.array_equal(order, expected) and np.array_equal(starts, expected_starts)
    assert np.array_equal(ends, expected_ends)
    probes = probe_order(groups, values)
    assert sorted(probes.tolist()) == sorted(expected.tolist())
    assert np.array_equal(groups[probes], groups[expected]) and np.array_equal(values[probes], values[expected])


@pytest.mark.parametrize("spread", [1, 10**12])
def test_integer_keys_dense_and_sparse_match_duckdb(spread):
    """Integer keys are probed through a lookup built once per join: a direct table for a dense
    key range, a binary search for a sparse one; with two keys, their combination too."""
    rng = np.random.default_rng(spread % 97)

    def side(n: int, id_name: str, first: int) -> pa.Table:
        k0 = rng.integers(-40, 40, n) * spread
        return pa.table({id_name: pa.array(np.arange(first, first + n)),
                         "k0": pa.array(k0, mask=rng.random(n) < 0.05),
                         "k1": pa.array(rng.integers(0, 3, n).astype(np.int32)),
                         "v": pa.array(rng.permutation(n * 4)[:n].astype(np.int64))})

    tables = {"l": side(3000, "id", 1), "r": side(2000, "rid", 10_000)}
    _compare(tables, "select l.id, r.rid from l asof left join r on l.k0 = r.k0 and l.v >= r.v", batch_size=700)
    _compare(tables, "select l.id, r.rid from l asof join r on l.k0 = r.k0 and l.k1 = r.k1 and l.v < r.v",
             batch_size=700)


# --- fixed cases against DuckDB --------------------------------------------------------------


@pytest.fixture(scope="module")
def prices():
    """Trades (left) and quotes (right) over three symbols, in many small chunks."""
    rng = random.Random(11)
    symbols = ["AAPL", "MSFT", "NVDA", None]
    trades, quotes = [], []
    for n in range(3000):
        stamp = BASE_TS + dt.timedelta(milliseconds=rng.randint(0, 10**6))
        trades.append({"tid": n, "sym": rng.choice(symbols), "ts": stamp,
                       "qty": rng.randint(1, 100), "venue": rng.randint(0, 3)})
    seen = set()
    for n in range(2000):
        sym, ts = rng.choice(symbols), BASE_TS + dt.timedelta(milliseconds=rng.randint(0, 10**6))
        if ts in seen:  # no ties on any ordering value the queries use (see the module docstring)
            continue
        seen.add(ts)
        quotes.append({"qid": n, "sym": sym, "ts": ts if rng.random() > 0.02 else None,
                       "price": decimal.Decimal(n * 37 % 99000 + 1000) / 100, "venue": rng.randint(0, 3)})
    trades_table = pa.Table.from_pylist(trades).cast(pa.schema([
        ("tid", pa.int64()), ("sym", pa.string()), ("ts", pa.timestamp("us")), ("qty", pa.int64()),
        ("venue", pa.int64())]))
    quotes_table = pa.Table.from_pylist(quotes).cast(pa.schema([
        ("qid", pa.int64()), ("sym", pa.string()), ("ts", pa.timestamp("us")), ("price", pa.decimal128(9, 2)),
        ("venue", pa.int64())]))
    venues = pa.table({"venue": pa.array([0, 1, 2], pa.int64()), "vname": ["X", "Y", "Z"]})
    return {"trades": pa.Table.from_batches(trades_table.to_batches(max_chunksize=257)),
            "quotes": pa.Table.from_batches(quotes_table.to_batches(max_chunksize=311)), "venues": venues}


PRICE_QUERIES = [
    "select t.tid, q.qid, q.price from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts",
    "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.ts > q.ts",
    "select t.tid, q.qid from trades t asof join quotes q on q.sym = t.sym and q.ts >= t.ts",
    "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.venue = q.venue and t.ts < q.ts",
    "select t.tid, q.qid from trades t asof join quotes q on t.ts >= q.ts",
    "select * from trades asof left join quotes using (sym, venue, ts)",
    # ON conditions on one input: the right one restricts the candidates, the left one the matching rows.
    "select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts and q.price > 500",
    "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.ts >= q.ts and t.qty > 50",
    "select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts and t.qty > 50",
    # WHERE above the join: left conditions filter labels, right ones filter joined rows.
    "select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts where q.price > 500",
    "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.ts >= q.ts "
    "where q.qid is null or t.qty < 10",
    "select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts where t.qty > 90",
    # Expressions as keys and ordering values, ordering by a decimal and a date.
    "select t.tid, q.qid from trades t asof join quotes q on lower(t.sym) = lower(q.sym) "
    "and t.ts + interval 1 second >= q.ts",
    "select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.qty * 10 >= q.price",
    "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.tid > q.qid / 2 "
    "where t.tid < 400",
    # Inside bigger queries: aggregated, joined again (on a right-side column), in a subquery.
    "select q.sym, count(*) as n, sum(q.price) as s from trades t asof join quotes q "
    "on t.sym = q.sym and t.ts >= q.ts group by q.sym",
    "select t.tid, v.vname from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts "
    "join venues v on v.venue = q.venue where v.vname <> 'Y'",
    "select x.tid, x.qid from (select t.tid, q.qid, q.venue from trades t asof left join quotes q "
    "on t.sym = q.sym and t.ts >= q.ts) x where x.venue = 2",
    "select t.tid, q.qid from (select * from trades where venue = 1) t asof join "
    "(select * from quotes where venue = 1) q on t.sym = q.sym and t.ts >= q.ts",
]


@pytest.mark.parametrize("sql", PRICE_QUERIES)
def test_prices_match_duckdb(prices, sql):
    _compare(prices, sql, batch_size=1000)


def test_float_ordering_nan_and_negative_zero_as_in_duckdb():
    nan, inf = float("nan"), float("inf")
    tables = {"l": pa.table({"id": [1, 2, 3, 4, 5, 6], "v": [nan, 1.0, inf, -0.0, 0.0, None]}),
              "r": pa.table({"rid": [10, 11, 12, 13, 14], "v": [nan, 0.5, inf, 0.0, -inf]})}
    for op in OPS:
        _compare(tables, f"select l.id, r.rid from l asof left join r on l.v {op} r.v")
    keyed = {"l": pa.table({"id": [1, 2, 3, 4], "k": [-0.0, 0.0, nan, None], "v": [5, 5, 5, 5]}),
             "r": pa.table({"rid": [10, 11, 12], "k": [0.0, nan, None], "v": [1, 2, 3]})}
    _compare(keyed, "select l.id, r.rid from l asof left join r on l.k = r.k and l.v >= r.v")


def test_ordering_by_strings_and_decimals_and_mixed_types():
    tables = {
        "l": pa.table({"id": [1, 2, 3, 4, 5], "s": ["b", "bb", "a", "zz", None],
                       "p": pa.array([decimal.Decimal(x) for x in ["1.50", "2.00", "0.01", "9.99", "3.25"]],
                                     pa.decimal128(6, 2)),
                       "d": pa.array([BASE_DATE + dt.timedelta(days=n) for n in (0, 1, 2, 3, 4)], pa.date32())}),
        "r": pa.table({"rid": [10, 11, 12, 13], "s": ["a", "b", "bc", "c"],
                       "p": pa.array([decimal.Decimal(x) for x in ["1.5", "0.5", "2.1", "3.3"]], pa.decimal128(5, 1)),
                       "ts": pa.array([BASE_TS - dt.timedelta(days=1), BASE_TS, BASE_TS + dt.timedelta(days=1),
                                       BASE_TS + dt.timedelta(days=2)], pa.timestamp("us"))}),
    }
    for op in OPS:
        _compare(tables, f"select l.id, r.rid from l asof left join r on l.s {op} r.s")
        _compare(tables, f"select l.id, r.rid from l asof left join r on l.p {op} r.p")
        _compare(tables, f"select l.id, r.rid from l asof left join r on l.d {op} r.ts")


def test_null_safe_keys_match_nulls():
    tables = {"l": pa.table({"id": [1, 2, 3], "k": ["a", None, "b"], "v": [5, 5, 5]}),
              "r": pa.table({"rid": [10, 11, 12], "k": ["a", None, "c"], "v": [1, 2, 3]})}
    ours = _compare(tables, "select l.id, r.rid from l asof join r on l.k is not distinct from r.k and l.v >= r.v")
    assert sorted(ours.column("rid").to_pylist()) == [10, 11]


def test_empty_inputs_and_impossible_conditions():
    tables = {"l": pa.table({"id": [1, 2], "v": [1, 2]}), "r": pa.table({"rid": [10], "v": [1]}),
              "e": pa.table({"rid": pa.array([], pa.int64()), "v": pa.array([], pa.int64())})}
    _compare(tables, "select l.id, e.rid from l asof left join e on l.v >= e.v")
    _compare(tables, "select l.id, e.rid from l asof join e on l.v >= e.v")
    _compare(tables, "select e.rid, r.rid as r2 from e asof left join r on e.v >= r.v")
    _compare(tables, "select l.id, r.rid from l asof left join r on l.v >= r.v and 1 = 0")
    _compare(tables, "select l.id, r.rid from l asof join r on l.v >= r.v and false")


def test_ties_pick_a_deterministic_row():
    """Right rows with equal keys and values: the last one for >=/>, the first one for <=/< (DuckDB: any)."""
    tables = {"l": pa.table({"id": [1], "v": [5]}), "r": pa.table({"rid": [10, 11, 12, 13], "v": [5, 5, 7, 7]})}
    s = _session(tables)
    picked = {op: s.sql(f"select r.rid from l asof join r on l.v {op} r.v").to_arrow().column(0).to_pylist()
              for op in OPS}
    assert picked == {">=": [11], ">": [], "<=": [10], "<": [12]}


# --- plans -----------------------------------------------------------------------------------


def _optimized(tables: dict[str, pa.Table], sql: str):  # noqa: ANN202
    s = _session(tables)
    return optimize(Binder(s.catalog).bind(parse(sql)[0]))


def test_where_on_the_right_of_an_asof_join_stays_above_it(prices):
    sql = ("select t.tid, q.qid from trades t asof join quotes q on t.sym = q.sym and t.ts >= q.ts and q.venue <> 3 "
           "where q.price > 500 and t.qty > 10")
    plan = _optimized(prices, sql)
    (join,) = [n for n in walk_plan(plan) if isinstance(n, Join)]
    assert join.kind == "asof"
    above = next(n for n in walk_plan(plan) if join in n.inputs())
    # Pushed below, the filter would make an older quote the match instead of dropping the trade.
    assert isinstance(above, Filter) and "price" in expr_text(above.predicate), expr_text(above.predicate)
    right_scan = next(n for n in walk_plan(join.right) if isinstance(n, Scan))
    assert all("price" not in expr_text(f) for f in right_scan.filters)
    assert not any(isinstance(n, Filter) and "price" in expr_text(n.predicate) for n in walk_plan(join.right))
    # The ON condition on the right input and the WHERE condition on the left input go down.
    assert any("venue" in expr_text(e) for n in walk_plan(join.right) for e in n.expressions())
    assert any("qty" in expr_text(e) for n in walk_plan(join.left) for e in n.expressions())
    assert "qty" not in expr_text(join.condition) and "venue" not in expr_text(join.condition)
    _compare(prices, sql, sort_based=False)


def test_left_only_on_condition_of_asof_left_join_stays_in_the_join(prices):
    sql = "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.ts >= q.ts and t.qty > 50"
    plan = _optimized(prices, sql)
    (join,) = [n for n in walk_plan(plan) if isinstance(n, Join)]
    assert join.kind == "asof_left" and "qty" in expr_text(join.condition)
    assert not any("qty" in expr_text(e) for n in walk_plan(join.left) for e in n.expressions())


def test_explain_shows_the_asof_join(prices):
    s = _session(prices)
    sql = "select t.tid, q.qid from trades t asof left join quotes q on t.sym = q.sym and t.ts >= q.ts"
    text = s.sql(sql).explain()
    assert "Join ASOF LEFT on" in text and ">=" in text, text
    text = s.sql("select * from trades asof join quotes using (sym, ts)").explain(analyze=True)
    assert "Join ASOF on" in text, text


# --- refusals --------------------------------------------------------------------------------

REFUSED = [
    ("select * from l asof join r on l.k = r.k", PlanError, "inequality"),
    ("select * from l asof join r on l.k = r.k and l.v >= r.v and l.v < r.v + 10", PlanError, "only one inequality"),
    ("select * from l asof join r on l.k <> r.k and l.v >= r.v", UnsupportedSQLError, "not supported"),
    ("select * from l asof join r on l.k = r.k and l.v >= r.v or l.id = 1", PlanError, "inequality"),
    ("select * from l asof right join r on l.k = r.k and l.v >= r.v", UnsupportedSQLError, "ASOF LEFT JOIN"),
    ("select * from l asof full join r on l.k = r.k and l.v >= r.v", UnsupportedSQLError, "ASOF LEFT JOIN"),
]


@pytest.mark.parametrize("sql,error,message", REFUSED)
def test_unsupported_asof_conditions_are_refused(sql, error, message):
    tables = {"l": pa.table({"id": [1], "k": ["a"], "v": [1]}), "r": pa.table({"rid": [1], "k": ["a"], "v": [1]})}
    with pytest.raises(error, match=message):
        _session(tables).sql(sql).to_arrow()


@settings(max_examples=60, deadline=None)
@given(distinct=st.sets(st.text(alphabet="ab\u00e9\u4e2d\x00", max_size=4), max_size=12),
       values=st.lists(st.one_of(st.none(), st.text(alphabet="ab\u00e9\u4e2d\x00", max_size=5)), max_size=30))
def test_string_ranks_on_buffers_match_python_order(distinct, values):
    # UTF-8 byte order is code point order: the same order as Python's str comparison.
    from engine.kernels.string_rank import string_ranks

    ordered = sorted(distinct)
    got = string_ranks(pa.array(ordered, pa.string()), pa.array(values, pa.string()).slice(0))
    expected = [0 if v is None else 2 * sum(d < v for d in ordered) + (v in distinct) for v in values]
    assert got.tolist() == expected
    # large_string and sliced inputs read the right bytes
    sliced = pa.array(["zz", *values], pa.large_string()).slice(1)
    assert string_ranks(pa.array(ordered, pa.string()), sliced).tolist() == expected
