"""SQL errors: the right class, and a message that names the thing and says what to do.

Every case asserts the exception class (design §6) and the parts of the message a user
needs: the position (with a caret), the nearest existing table or column, both types of a
mismatch, the construct that is not supported. Hostile inputs (deep nesting, huge ORs,
queries bigger than the memory budget) must end in a clear error or a right answer, never
in a RecursionError, MemoryError or a crashed interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

import engine
import lakehouse
from engine.errors import (
    EngineError, ExecutionError, PlanError, ResourcesExhaustedError, SQLSyntaxError, UnsupportedSQLError,
)
from lakehouse import LakehouseError, TableNotFoundError


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("warehouse")
    for name in ("lineitem", "nation"):
        lakehouse.create_table(str(root / name), pa.schema([("id", pa.int64())])).append(pa.table({"id": [1, 2]}))
    return str(root)


def _register(session: engine.Session) -> engine.Session:
    session.register("orders", pa.table({
        "o_id": pa.array([1, 2, 3], pa.int64()),
        "o_total": [1.5, 2.5, 3.5],
        "o_date": pa.array([0, 1, 2], pa.int32()).cast(pa.date32()),
        "o_code": ["1", "2", "x3"],
    }))
    session.register("customers", pa.table({"c_id": [1, 2], "o_id": [1, 2], "c_name": ["ann", "bob"]}))
    return session


@pytest.fixture(scope="module")
def session():
    """Registered tables only (no warehouse)."""
    return _register(engine.connect(None))


@pytest.fixture(scope="module")
def wsession(warehouse):
    """Warehouse tables plus the registered ones."""
    return _register(engine.connect(warehouse))


def error_of(session: engine.Session, sql: str) -> Exception:
    """The exception planning and running ``sql`` raises (the test fails if none is raised)."""
    with pytest.raises(LakehouseError) as info:
        session.sql(sql).to_arrow()
    return info.value


def caret_column(message: str) -> int:
    """The 1-based column the message's caret line points at (both lines are indented by 2)."""
    caret_line = message.splitlines()[-1]
    assert caret_line.strip() == "^", message
    return caret_line.index("^") - 2 + 1


# --- syntax errors: position and caret ------------------------------------------------------------


@pytest.mark.parametrize("sql, line, token", [
    ("select o_id from orders where o_id = = 1", 1, "= 1"),
    ("select o_id,\n       o_total\nfrom orders\nwhere o_total > 1 group o_id", 4, "group"),
    ("select o_id\nfrom orders where o_id in (1, 2\norder by o_id", 3, "order"),
    ("select o_id,\n  'unterminated from orders", 2, "'unterminated"),
    ("select o_id /* never closed\nfrom orders", 1, "/*"),
])
def test_syntax_error_points_at_the_offending_token(session, sql, line, token):
    exc = error_of(session, sql)
    assert type(exc) is SQLSyntaxError
    offending_line = sql.splitlines()[line - 1]
    col = offending_line.index(token) + 1
    assert (exc.line, exc.col) == (line, col)
    message = str(exc)
    assert f"line {line}, column {col}" in message
    # The offending line is quoted, with the caret under the token.
    assert message.splitlines()[-2].strip() == offending_line.strip()
    assert caret_column(message) == col


def test_empty_query_is_a_syntax_error(session):
    exc = error_of(session, "  \n ")
    assert type(exc) is SQLSyntaxError and "empty" in str(exc)


# --- unknown names: suggestions -------------------------------------------------------------------


def test_unknown_registered_table_suggests_the_nearest(session):
    exc = error_of(session, "select * from ordrs")
    assert isinstance(exc, TableNotFoundError)
    assert "'ordrs'" in str(exc) and "did you mean 'orders'" in str(exc)
    assert "no warehouse" in str(exc)  # and says why nothing else could be found


def test_unknown_warehouse_table_suggests_the_nearest(wsession):
    exc = error_of(wsession, "select * from lineitm")
    assert isinstance(exc, TableNotFoundError)
    assert "'lineitm'" in str(exc) and "did you mean 'lineitem'" in str(exc)


def test_unknown_table_with_nothing_close_lists_the_tables(wsession):
    message = str(error_of(wsession, "select * from zzz"))
    assert "'zzz' does not exist" in message
    for name in ("customers", "lineitem", "nation", "orders"):
        assert name in message


@pytest.mark.parametrize("sql, wanted, suggestion", [
    ("select o_tota from orders", "'o_tota'", "'o_total'"),
    ("select orders.o_tota from orders", "'orders.o_tota'", "'orders.o_total'"),
    ("select o.o_totl from orders as o", "'o.o_totl'", "'o.o_total'"),
    ("select c_nme from orders join customers on orders.o_id = customers.o_id", "'c_nme'", "'c_name'"),
    ("select o_id from orders where o_totl > 1", "'o_totl'", "'o_total'"),
])
def test_unknown_column_suggests_the_nearest(session, sql, wanted, suggestion):
    exc = error_of(session, sql)
    assert type(exc) is PlanError
    message = str(exc)
    assert f"column {wanted} does not exist" in message
    assert "did you mean" in message and suggestion in message


def test_unknown_table_alias_names_the_aliases_in_scope(session):
    message = str(error_of(session, "select x.o_id from orders as o"))
    assert "table 'x' is not in the FROM clause" in message and message.endswith("tables in scope: o")
    message = str(error_of(session, "select ordrs.o_id from orders"))
    assert "'ordrs'" in message and "did you mean 'orders'" in message


def test_ambiguous_column_names_both_tables(session):
    exc = error_of(session, "select o_id from orders, customers")
    assert type(exc) is PlanError
    message = str(exc)
    assert "'o_id' is ambiguous" in message
    assert "'orders'" in message and "'customers'" in message and "qualify" in message


# --- unsupported constructs -----------------------------------------------------------------------


@pytest.mark.parametrize("sql, construct", [
    ("with recursive r as (select 1 as n) select * from r", "WITH RECURSIVE"),
    ("select * from orders, lateral (select 1)", "LATERAL"),
    ("select * from my_table_function(1)", "table function 'MY_TABLE_FUNCTION(1)'"),
    ("select sum(o_id) over (order by o_id groups between 1 preceding and current row) from orders", "GROUPS"),
    ("select o_id from orders union by name select o_id from customers", "UNION BY NAME"),
    ("select distinct on (o_id) o_id, o_total from orders", "DISTINCT ON"),
    ("select * from unnest([1, 2])", "UNNEST"),
])
def test_unsupported_construct_is_named(session, sql, construct):
    exc = error_of(session, sql)
    assert type(exc) is UnsupportedSQLError
    assert construct in str(exc)


@pytest.mark.parametrize("sql", ["select * from read_csv('x.csv')", "select * from read_parquet('x.parquet')"])
def test_builtin_table_function_is_named_as_unsupported(session, sql):
    exc = error_of(session, sql)
    assert type(exc) is UnsupportedSQLError and "table function" in str(exc) and "table_changes" in str(exc)


@pytest.mark.parametrize("sql, message", [
    ("select * from range(0, 10, 0)", "step cannot be 0"),
    ("select * from range(1, x)", "arguments must be constants"),
    ("select * from table_changes(5, 1)", "table name as a string"),
    ("select * from table_changes('t')", "2 or 3 arguments"),
])
def test_table_function_arguments_are_checked(session, sql, message):
    exc = error_of(session, sql)
    assert isinstance(exc, LakehouseError) and message in str(exc)


def test_range_and_generate_series_match_duckdb(session):
    import duckdb

    for sql in ["select * from range(5)", "select * from range(2, 11, 3)", "select * from range(5, 0, -2)",
                "select * from generate_series(1, 4)", "select * from generate_series(10, 1, -4)",
                "select count(*), sum(range) from range(1000000)", "select * from range(3, 3)"]:
        ours = session.sql(sql).to_arrow().to_pylist()
        theirs = duckdb.sql(sql).fetchall()
        assert [tuple(r.values()) for r in ours] == theirs, sql


# --- types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, parts", [
    ("select 'a' + 1", ["+", "VARCHAR", "INTEGER"]),
    ("select date '2020-01-01' + 'x'", ["+", "DATE", "VARCHAR"]),
    ("select sum('text')", ["sum()", "VARCHAR"]),
    ("select sum(c_name) from customers", ["sum()", "VARCHAR"]),
    ("select * from orders where o_date = 1", ["=", "DATE", "INTEGER"]),
    ("select * from orders where o_date > o_id", [">", "DATE", "BIGINT"]),
])
def test_type_mismatch_names_both_types(session, sql, parts):
    exc = error_of(session, sql)
    assert type(exc) is PlanError
    for part in parts:
        assert part in str(exc)


# --- aggregates ----------------------------------------------------------------------------------


def test_column_missing_from_group_by(session):
    for sql in ("select o_id, sum(o_total) from orders", "select o_id, count(*) from orders group by o_total"):
        exc = error_of(session, sql)
        assert type(exc) is PlanError
        assert "'o_id'" in str(exc) and "GROUP BY" in str(exc)


def test_aggregate_in_where_is_refused(session):
    exc = error_of(session, "select o_id from orders where sum(o_total) > 1")
    assert type(exc) is PlanError
    assert "sum(o_total)" in str(exc).lower() and "HAVING" in str(exc)


def test_nested_aggregates_are_refused(session):
    exc = error_of(session, "select sum(count(*)) from orders")
    assert type(exc) is PlanError
    assert "count(*)" in str(exc).lower() and "not allowed" in str(exc)


# --- run-time errors ------------------------------------------------------------------------------


def test_scalar_subquery_with_two_rows(session):
    exc = error_of(session, "select (select c_id from customers) as c")
    assert type(exc) is ExecutionError
    assert "scalar subquery returned 2 rows" in str(exc) and "at most one" in str(exc)


def test_failing_cast_names_the_value_and_suggests_try_cast(session):
    exc = error_of(session, "select cast('abc' as integer)")
    assert type(exc) is ExecutionError
    assert "'abc'" in str(exc) and "INTEGER" in str(exc) and "TRY_CAST" in str(exc)
    exc = error_of(session, "select cast(o_code as integer) from orders")
    assert type(exc) is ExecutionError
    assert "x3" in str(exc) and "TRY_CAST" in str(exc)
    # ...and TRY_CAST does what the message promises.
    rows = session.sql("select try_cast(o_code as integer) as c from orders").to_arrow()
    assert rows.column("c").to_pylist() == [1, 2, None]


# --- nesting ---------------------------------------------------------------------------------------


def test_60_and_150_nested_parentheses_are_answered(session):
    sql = "select " + "(" * 60 + "1" + ")" * 60 + " as x"
    assert session.sql(sql).to_arrow().column("x").to_pylist() == [1]
    sql = "select " + "(" * 150 + "o_id + 1" + ")" * 150 + " as x from orders"
    assert session.sql(sql).to_arrow().column("x").to_pylist() == [2, 3, 4]


def test_nesting_limit_is_a_syntax_error_at_the_deepest_point():
    session = _register(engine.connect(None, config=engine.Config(max_nesting=50)))
    sql = "select 1,\n  " + "(" * 60 + "1" + ")" * 60
    exc = error_of(session, sql)
    assert type(exc) is SQLSyntaxError
    assert "60 levels deep" in str(exc) and "limit is 50" in str(exc)
    assert (exc.line, exc.col) == (2, 3 + 59)  # the 60th '(' on line 2
    assert caret_column(str(exc)) == exc.col


_HOSTILE = textwrap.dedent("""
    import json, sys
    import pyarrow as pa
    import engine

    session = engine.connect(None)
    session.register("t", pa.table({"a": list(range(10))}))
    queries = {
        "parens_1000": "select " + "(" * 1000 + "1" + ")" * 1000,
        "ors_5000": "select a from t where " + " or ".join(f"a = {i}" for i in range(3, 5003)),
    }
    nested = "select a from t"
    for _ in range(120):
        nested = f"select a from ({nested}) where a < 8"
    queries["subqueries_120"] = nested
    out = {}
    for name, sql in queries.items():
        try:
            out[name] = {"rows": sorted(session.sql(sql).to_arrow().column(0).to_pylist())}
        except Exception as exc:  # the parent checks the class: anything but the two below fails
            out[name] = {"error": type(exc).__name__, "message": str(exc)[:300]}
    print(json.dumps(out))
""")


def test_hostile_nesting_never_crashes_the_interpreter():
    """Run in a child process: a segfault (sqlglot's C build, a C-stack overflow) shows as a signal."""
    done = subprocess.run([sys.executable, "-c", _HOSTILE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"child died (rc={done.returncode}): {done.stderr[-2000:]}"
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["parens_1000"]["error"] == "SQLSyntaxError"
    assert "1000 levels deep" in out["parens_1000"]["message"] and "limit is 200" in out["parens_1000"]["message"]

    assert out["subqueries_120"] == {"rows": list(range(8))}

    ors = out["ors_5000"]
    if "error" in ors:
        # Allowed by the contract (a clear error), but DuckDB answers this: see the report.
        assert ors["error"] == "UnsupportedSQLError" and "nested too deeply" in ors["message"], ors
        pytest.xfail("5,000 ORed terms: the optimizer's recursive expression rewrites overflow; "
                     f"got {ors['error']}: {ors['message']}")
    assert ors == {"rows": list(range(3, 10))}


# --- memory budget ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight():
    """A 1 MiB budget; ``big`` holds 2.4 MB, the two 5,000-row tables 40 KB each."""
    session = engine.connect(None, config=engine.Config(memory_limit=1 << 20))
    session.register("a", pa.table({"x": np.arange(5000)}))
    session.register("b", pa.table({"y": np.arange(5000)}))
    session.register("big", pa.table({"v": np.random.default_rng(7).random(300_000)}))
    session.register("small", pa.table({"k": [0.5, 0.25]}))
    return session


@pytest.mark.parametrize("sql, what", [
    ("select count(*) from a, b", "cross join"),
    ("select x, y from a cross join b", "cross join"),
    ("select * from big order by v", "sort"),
    ("select v, count(*) from big group by v", "aggregation"),
    ("select row_number() over (order by v) as r from big", "window"),
    ("select v from big union select v from big", "union"),
])
def test_over_memory_limit_is_resources_exhausted(tight, sql, what):
    exc = error_of(tight, sql)
    assert type(exc) is ResourcesExhaustedError and isinstance(exc, ExecutionError)
    message = str(exc)
    assert what in message and "memory limit of 1 MiB" in message and "config.memory_limit" in message


def test_within_memory_limit_streaming_queries_still_run(tight):
    # A top-N keeps 3 rows, a filter streams, an equi-join builds on 5,000 rows: all fit in 1 MiB.
    top = tight.sql("select v from big order by v desc limit 3").to_arrow().column("v").to_pylist()
    assert top == sorted(top, reverse=True) and len(top) == 3
    assert tight.sql("select count(*) as n from big where v < 0").to_arrow().column("n").to_pylist() == [0]
    assert tight.sql("select count(*) as n from a join b on x = y").to_arrow().column("n").to_pylist() == [5000]


def test_ungrouped_aggregate_streams_under_the_memory_limit(tight):
    total = tight.sql("select sum(v) as s, count(*) as n from big").to_arrow()
    assert total.column("n").to_pylist() == [300_000] and 0 < total.column("s")[0].as_py() < 300_000


def test_hash_join_streams_its_probe_side(tight):
    n = tight.sql("select count(*) as n from big join small on v = k").to_arrow().column("n").to_pylist()
    assert n == [0]


def test_errors_are_engine_errors(session):
    for sql in ("selec 1", "select nope from orders", "select * from orders, lateral (select 1)"):
        assert isinstance(error_of(session, sql), EngineError)


def test_cancel_stops_a_running_query_and_the_session_goes_on(session):
    import threading
    import time

    from engine.errors import QueryCancelledError

    result = session.sql("select count(*) from range(2000000000) a where a.range % 7 = 3")
    timer = threading.Timer(0.3, result.cancel)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(QueryCancelledError, match="query cancelled"):
        result.to_arrow()
    assert time.perf_counter() - started < 20  # the full query would take minutes
    assert session.sql("select 1 + 1 as two").to_arrow().to_pylist() == [{"two": 2}]
    early = session.sql("select 1")
    early.cancel()  # cancelled before it runs: it never starts
    with pytest.raises(QueryCancelledError):
        early.to_arrow()
