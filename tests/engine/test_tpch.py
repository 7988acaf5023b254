"""All 22 TPC-H queries over lakehouse tables equal DuckDB's answers on the same Parquet files."""

from __future__ import annotations

import decimal
import math

import duckdb
import pytest

import engine
from benchmarks.tpch.data import generate_parquet, load_warehouse
from benchmarks.tpch.queries import QUERIES

SCALE = 0.01
# Output columns that each query's ORDER BY sorts on: their sequence must equal DuckDB's.
ORDER_COLUMNS = {
    1: ["l_returnflag", "l_linestatus"], 2: ["s_acctbal", "n_name", "s_name", "p_partkey"],
    3: ["revenue", "o_orderdate"], 4: ["o_orderpriority"], 5: ["revenue"], 6: [],
    7: ["supp_nation", "cust_nation", "l_year"], 8: ["o_year"], 9: ["nation", "o_year"], 10: ["revenue"],
    11: ["value"], 12: ["l_shipmode"], 13: ["custdist", "c_count"], 14: [], 15: ["s_suppkey"],
    16: ["supplier_cnt", "p_brand", "p_type", "p_size"], 17: [], 18: ["o_totalprice", "o_orderdate"],
    19: [], 20: ["s_name"], 21: ["numwait", "s_name"], 22: ["cntrycode"],
}


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    base = tmp_path_factory.mktemp("tpch")
    paths = generate_parquet(SCALE, str(base / "parquet"))
    # A small target size gives every table several files, so skipping and multi-file scans run.
    load_warehouse(paths, str(base / "warehouse"), target_file_size=256 * 1024)
    duck = duckdb.connect()
    for name, path in paths.items():
        duck.execute(f"create view {name} as select * from read_parquet('{path}')")
    return engine.connect(str(base / "warehouse")), duck


def _value(v):
    return float(v) if isinstance(v, decimal.Decimal) else v


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _rows(table):
    return [tuple(_value(v) for v in row) for row in zip(*[c.to_pylist() for c in table.columns])]


def _sort_key(row):
    return tuple((v is None, round(v, 6) if isinstance(v, float) else v) for v in row)


@pytest.mark.parametrize("number", sorted(QUERIES))
def test_tpch_query_matches_duckdb(tpch, number):
    session, duck = tpch
    ours = session.sql(QUERIES[number]).to_arrow()
    theirs = duck.sql(QUERIES[number]).to_arrow_table()
    assert ours.column_names == theirs.column_names
    mine, reference = _rows(ours), _rows(theirs)
    assert len(mine) == len(reference), f"Q{number}: {len(mine)} rows, DuckDB {len(reference)}"
    assert len(reference) > 0, f"Q{number} returns nothing at this scale; the comparison would prove little"
    for a, b in zip(sorted(mine, key=_sort_key), sorted(reference, key=_sort_key)):
        assert all(_same(x, y) for x, y in zip(a, b)), f"Q{number}: {a} != {b}"
    keys = [ours.column_names.index(c) for c in ORDER_COLUMNS[number]]
    for a, b in zip(mine, reference):
        assert all(_same(a[k], b[k]) for k in keys), f"Q{number}: order differs at {a} vs {b}"
