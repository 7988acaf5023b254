"""SQL statements: DDL, INSERT/DELETE/UPDATE (DuckDB applies the same statements as the oracle)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import lakehouse
from engine.errors import ConstraintViolationError, PlanError
from lakehouse.errors import TableAlreadyExistsError, TableNotFoundError


@pytest.fixture()
def session(tmp_path):
    return engine.connect(str(tmp_path / "wh"))


def rows(session, sql):
    return session.sql(sql).to_arrow().to_pylist()


# --- DDL ------------------------------------------------------------------------------------


def test_create_insert_describe_drop(session, tmp_path):
    session.sql("CREATE TABLE t (a INT NOT NULL, b VARCHAR, c DECIMAL(10,2)) PARTITIONED BY (b) "
                "TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')")
    assert rows(session, "SHOW TABLES") == [{"name": "t"}]
    assert rows(session, "DESCRIBE t") == [
        {"column_name": "a", "column_type": "INTEGER", "null": "NO"},
        {"column_name": "b", "column_type": "VARCHAR", "null": "YES"},
        {"column_name": "c", "column_type": "DECIMAL(10,2)", "null": "YES"}]
    assert rows(session, "INSERT INTO t (a, b) VALUES (1, 'x'), (2, NULL)") == [{"num_affected_rows": 2}]
    assert rows(session, "INSERT INTO t SELECT 3, 'y', 2.5") == [{"num_affected_rows": 1}]
    assert rows(session, "SELECT a, b, CAST(c AS VARCHAR) AS c FROM t ORDER BY a") == [
        {"a": 1, "b": "x", "c": None}, {"a": 2, "b": None, "c": None}, {"a": 3, "b": "y", "c": "2.50"}]
    (detail,) = rows(session, "DESCRIBE DETAIL t")
    assert detail["version"] == 2 and detail["numRecords"] == 3 and detail["partitionColumns"] == ["b"]
    assert detail["minWriterVersion"] >= 4  # CDF needs writer version 4
    history = rows(session, "DESCRIBE HISTORY t LIMIT 2")
    assert [h["version"] for h in history] == [2, 1] and history[0]["operation"] == "WRITE"
    table = lakehouse.open_table(str(tmp_path / "wh" / "t"))
    assert table.schema().field("a").nullable is False
    session.sql("DROP TABLE t")
    assert rows(session, "SHOW TABLES") == []
    assert not list((tmp_path / "wh" / "t").rglob("*.parquet"))
    session.sql("DROP TABLE IF EXISTS t")
    with pytest.raises(TableNotFoundError, match="IF EXISTS"):
        session.sql("DROP TABLE t")


def test_ctas_if_not_exists_and_or_replace(session, tmp_path):
    session.sql("CREATE TABLE s AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, tag)")
    assert rows(session, "SELECT id, tag FROM s ORDER BY id") == [{"id": 1, "tag": "a"}, {"id": 2, "tag": "b"}]
    session.sql("CREATE TABLE IF NOT EXISTS s AS SELECT 9 AS id")
    assert len(rows(session, "SELECT * FROM s")) == 2
    with pytest.raises(TableAlreadyExistsError, match="OR REPLACE"):
        session.sql("CREATE TABLE s (x INT)")
    session.sql("CREATE OR REPLACE TABLE s AS SELECT 'z' AS q")
    assert rows(session, "SELECT * FROM s") == [{"q": "z"}]
    assert rows(session, "SELECT count(*) AS n FROM s VERSION AS OF 1") == [{"n": 2}]  # history kept
    from deltalake import DeltaTable, QueryBuilder

    read = pa.table(QueryBuilder().register("s", DeltaTable(str(tmp_path / "wh" / "s"))).execute("select * from s").read_all())
    assert read.to_pylist() == [{"q": "z"}]


def test_insert_errors_name_the_problem(session):
    session.sql("CREATE TABLE t (a INT, b VARCHAR)")
    with pytest.raises(PlanError, match="1 values per row for 2 columns"):
        session.sql("INSERT INTO t VALUES (1)")
    with pytest.raises(PlanError, match="no column named 'zz'"):
        session.sql("INSERT INTO t (a, zz) VALUES (1, 2)")
    with pytest.raises(PlanError, match="column 'a' is INTEGER"):
        session.sql("INSERT INTO t VALUES ('x', 'y')")
    assert rows(session, "SELECT count(*) AS n FROM t") == [{"n": 0}]


def test_insert_overwrite_replaces_rows(session):
    session.sql("CREATE TABLE t AS SELECT 1 AS a")
    session.sql("INSERT OVERWRITE t SELECT 5 AS a UNION ALL SELECT 6")
    assert rows(session, "SELECT a FROM t ORDER BY a") == [{"a": 5}, {"a": 6}]


# --- DELETE / UPDATE against DuckDB ------------------------------------------------------------

_row = st.fixed_dictionaries({
    "id": st.integers(0, 10_000),
    "g": st.one_of(st.none(), st.integers(0, 3)),
    "x": st.one_of(st.none(), st.integers(-100, 100)),
    "s": st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""])),
})
SCHEMA = pa.schema([("id", pa.int64()), ("g", pa.int64()), ("x", pa.int64()), ("s", pa.string())])
STATEMENTS = [
    "DELETE FROM t WHERE x > 10",
    "DELETE FROM t WHERE s = 'a' OR x IS NULL",
    "DELETE FROM t WHERE g IN (SELECT g FROM t WHERE x < 0)",
    "DELETE FROM t",
    "UPDATE t SET x = x + 1 WHERE g = 1",
    "UPDATE t SET s = 'z', x = NULL WHERE x < 0 AND s IS NOT NULL",
    "UPDATE t SET x = coalesce(x, 0) * 2",
    "UPDATE t SET g = (SELECT max(g) FROM t) WHERE x > 50",
    "DELETE FROM t WHERE x BETWEEN -5 AND 5",
    "INSERT INTO t SELECT id + 1000, g, x * 2, s FROM t WHERE x > 0",
    "INSERT INTO t (id, s) VALUES (7, NULL), (8, 'n')",
]
METRIC = {"DELETE": "numDeletedRows", "UPDATE": "numUpdatedRows", "INSERT": "numOutputRows"}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.lists(_row, max_size=30), chunks=st.integers(1, 4),
       statements=st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=3))
def test_delete_and_update_match_duckdb(tmp_path_factory, data, chunks, statements):
    root = tmp_path_factory.mktemp("dml")
    start = pa.Table.from_pylist(data, schema=SCHEMA)
    table = lakehouse.create_table(str(root / "t"), SCHEMA, properties={"delta.enableChangeDataFeed": "true"})
    size = max(1, -(-len(data) // chunks))
    for offset in range(0, len(data), size):  # several files, so some are untouched
        table.append(start.slice(offset, size))
    session = engine.connect(str(root))
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id BIGINT, g BIGINT, x BIGINT, s VARCHAR)")
    if len(data):
        con.register("start_rows", start)
        con.execute("INSERT INTO t SELECT * FROM start_rows")
    for statement in statements:
        before = table.version()
        ours = rows(session, statement)[0]["num_affected_rows"]
        theirs = con.execute(statement).fetchall()[0][0]
        assert ours == theirs, statement
        assert table.version() in (before, before + 1)  # one version, none when nothing changed
        if table.version() == before + 1:
            metrics = table.history(limit=1)[0]["operationMetrics"]
            assert int(metrics[METRIC[statement.split()[0]]]) == ours, (statement, metrics)
        expected = sorted(con.execute("SELECT * FROM t").fetchall(), key=repr)
        got = sorted([tuple(r.values()) for r in table.to_arrow().to_pylist()], key=repr)
        assert got == expected, statement
    # deltalake reads every version we wrote, and its change feed equals ours
    from deltalake import DeltaTable, QueryBuilder

    path = str(root / "t")
    for version in range(table.version() + 1):
        theirs = pa.table(QueryBuilder().register("t", DeltaTable(path, version=version))
                          .execute("select id, g, x, s from t").read_all())
        assert sorted(map(repr, theirs.to_pylist())) == sorted(map(repr, table.snapshot(version).to_arrow().to_pylist()))
    cdf = pa.table(DeltaTable(path).load_cdf(starting_version=0))
    columns = ["id", "g", "x", "s", "_change_type", "_commit_version"]
    def changes(t: pa.Table) -> list[str]:
        return sorted(repr(tuple(None if v is None else str(v) for v in r.values()))
                      for r in t.select(columns).to_pylist())
    assert changes(cdf) == changes(table.changes(0).read_all())


def test_delete_rewrites_only_files_with_matching_rows(session, tmp_path):
    session.sql("CREATE TABLE t (id BIGINT, x BIGINT)")
    for k in range(4):
        session.sql(f"INSERT INTO t SELECT {k} * 100 + r AS id, {k} AS x FROM range(100) AS v(r)")
    table = lakehouse.open_table(str(tmp_path / "wh" / "t"))
    files_before = set(table.snapshot().files.column("path").to_pylist())
    assert rows(session, "DELETE FROM t WHERE id = 250") == [{"num_affected_rows": 1}]
    files_after = set(table.snapshot().files.column("path").to_pylist())
    assert len(files_before - files_after) == 1  # only the file holding id 250 was rewritten
    assert rows(session, "SELECT count(*) AS n FROM t") == [{"n": 399}]
    assert table.history(limit=1)[0]["operation"] == "DELETE"
    assert rows(session, "DELETE FROM t WHERE id = 99999") == [{"num_affected_rows": 0}]


def test_check_constraint_is_enforced(session):
    session.sql("CREATE TABLE t (a INT, b VARCHAR)")
    session.sql("INSERT INTO t VALUES (1, 'x')")
    session.sql("ALTER TABLE t ADD CONSTRAINT positive CHECK (a > 0)")
    with pytest.raises(ConstraintViolationError, match="positive.*a=-1"):
        session.sql("INSERT INTO t VALUES (-1, 'y')")
    session.sql("INSERT INTO t VALUES (NULL, 'z')")  # NULL passes a CHECK, as in SQL
    with pytest.raises(ConstraintViolationError, match="positive"):
        session.sql("UPDATE t SET a = a - 5 WHERE b = 'x'")
    with pytest.raises(ConstraintViolationError, match="existing rows"):
        session.sql("ALTER TABLE t ADD CONSTRAINT small CHECK (a < 0)")
    assert rows(session, "SELECT a FROM t ORDER BY a NULLS LAST") == [{"a": 1}, {"a": None}]
