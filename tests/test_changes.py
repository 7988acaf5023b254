"""Change data feed: ``Table.changes`` against deltalake's ``load_cdf``, both directions."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import engine
import lakehouse
from lakehouse.errors import DataFileError, LakehouseError, VersionNotFoundError

KEY = ["_commit_version", "_change_type", "id", "v"]


def normalized(table: pa.Table, columns: list[str]) -> list[tuple]:
    """Rows as sorted tuples, with deltalake's string_view / uint64 types made plain."""
    out = []
    for row in table.select(columns).to_pylist():
        out.append(tuple(row[c] for c in columns))
    return sorted(out, key=repr)


def theirs(path: str, start: int, end: int | None = None) -> pa.Table:
    reader = DeltaTable(path).load_cdf(starting_version=start, ending_version=end)
    table = pa.table(reader)
    return pa.table({name: table.column(name).cast(pa.string()) if pa.types.is_string_view(table.column(name).type)
                     else table.column(name) for name in table.column_names})


@pytest.fixture()
def cdf_session(tmp_path):
    session = engine.connect(str(tmp_path / "wh"))
    session.sql("CREATE TABLE t (id BIGINT, v BIGINT, p VARCHAR) PARTITIONED BY (p) "
                "TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')")
    return session, str(tmp_path / "wh" / "t")


def test_our_change_files_match_deltalake_load_cdf(cdf_session):
    session, path = cdf_session
    session.sql("INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'a'), (3, 30, 'b'), (4, NULL, 'b')")  # v1
    session.sql("UPDATE t SET v = v + 1 WHERE id IN (1, 3)")  # v2
    session.sql("DELETE FROM t WHERE id = 2")  # v3
    session.sql("CREATE TABLE s AS SELECT * FROM (VALUES (1, 100), (5, 500), (4, 400)) AS x(id, v)")
    session.sql("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.v > 300 THEN DELETE "
                "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v, p) VALUES (s.id, s.v, 'c')")  # v4
    table = lakehouse.open_table(path)
    ours = table.changes(1).read_all()
    assert ours.schema.names == ["id", "v", "p", "_change_type", "_commit_version", "_commit_timestamp"]
    columns = ["_commit_version", "_change_type", "id", "v", "p"]
    expected = sorted([
        (1, "insert", 1, 10, "a"), (1, "insert", 2, 20, "a"), (1, "insert", 3, 30, "b"), (1, "insert", 4, None, "b"),
        (2, "update_preimage", 1, 10, "a"), (2, "update_postimage", 1, 11, "a"),
        (2, "update_preimage", 3, 30, "b"), (2, "update_postimage", 3, 31, "b"),
        (3, "delete", 2, 20, "a"),
        (4, "update_preimage", 1, 11, "a"), (4, "update_postimage", 1, 100, "a"),
        (4, "delete", 4, None, "b"), (4, "insert", 5, 500, "c"),
    ], key=repr)
    assert normalized(ours, columns) == expected
    assert normalized(theirs(path, 1), columns) == expected
    # change files exist for the rewrite commits, and nothing was written for the append
    assert list((table.location.root and __import__("pathlib").Path(path) / "_change_data").rglob("*.parquet"))
    # the SQL table function gives the same rows
    sql = session.sql("SELECT * FROM table_changes('t', 2, 3)").to_arrow()
    assert normalized(sql, columns) == [r for r in expected if r[0] in (2, 3)]
    # the timestamps are the commit times that time travel uses
    history = {h["version"]: h["timestamp"] for h in table.history()}
    stamps = {r["_commit_version"]: r["_commit_timestamp"] for r in ours.to_pylist()}
    assert {v: int(ts.timestamp() * 1000) for v, ts in stamps.items()} == {v: history[v] for v in stamps}


def test_we_read_the_change_files_deltalake_writes(tmp_path):
    path = str(tmp_path / "theirs")
    write_deltalake(path, pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": pa.array([1, 2, 3], pa.int64())}),
                    configuration={"delta.enableChangeDataFeed": "true"})  # v0
    dt = DeltaTable(path)
    dt.update(updates={"v": "v * 10"}, predicate="id = 2")  # v1, with cdc files
    dt.delete("id = 3")  # v2
    write_deltalake(path, pa.table({"id": pa.array([9], pa.int64()), "v": pa.array([9], pa.int64())}), mode="append")
    table = lakehouse.open_table(path)
    ours = table.changes(0).read_all()
    assert normalized(ours, KEY) == normalized(theirs(path, 0), KEY)
    assert ("update_postimage" in ours.column("_change_type").to_pylist())


def test_without_change_files_adds_are_inserts_and_removes_deletes(tmp_path):
    path = str(tmp_path / "plain")
    table = lakehouse.create_table(path, pa.schema([("id", pa.int64()), ("v", pa.int64())]))
    table.append(pa.table({"id": [1, 2], "v": [1, 2]}))
    table.append(pa.table({"id": [3], "v": [3]}))
    table.overwrite(pa.table({"id": [7], "v": [7]}))
    ours = table.changes(1).read_all()
    assert normalized(ours, KEY) == normalized(theirs(path, 1), KEY)
    kinds = [(r["_commit_version"], r["_change_type"]) for r in ours.to_pylist()]
    assert kinds.count((3, "delete")) == 3 and kinds.count((3, "insert")) == 1


def test_optimize_commits_change_nothing(tmp_path):
    path = str(tmp_path / "opt")
    table = lakehouse.create_table(path, pa.schema([("id", pa.int64())]))
    for i in range(3):
        table.append(pa.table({"id": [i]}))
    table.optimize()
    assert table.version() == 4
    assert table.changes(4).read_all().num_rows == 0
    assert normalized(table.changes(0).read_all(), ["_change_type", "id"]) == [("insert", 0), ("insert", 1), ("insert", 2)]


def test_columns_filter_and_streaming(cdf_session):
    session, path = cdf_session
    session.sql("INSERT INTO t SELECT r, r * 2, CASE WHEN r % 2 = 0 THEN 'a' ELSE 'b' END FROM range(0, 1000) AS x(r)")
    session.sql("DELETE FROM t WHERE id < 10")
    reader = lakehouse.open_table(path).changes(1, columns=["id"], filter="id >= 995")
    assert isinstance(reader, pa.RecordBatchReader)
    rows = reader.read_all()
    assert rows.schema.names == ["id", "_change_type", "_commit_version", "_commit_timestamp"]
    assert sorted(rows.column("id").to_pylist()) == [995, 996, 997, 998, 999]


def test_change_errors_are_clear(cdf_session, tmp_path):
    session, path = cdf_session
    session.sql("INSERT INTO t VALUES (1, 1, 'a')")
    table = lakehouse.open_table(path)
    with pytest.raises(VersionNotFoundError, match="no version 5; the latest is 1"):
        table.changes(5)
    with pytest.raises(LakehouseError, match="start version 1 is after end version 0"):
        table.changes(1, 0)
    with pytest.raises(LakehouseError, match="table function"):
        session.sql("SELECT * FROM nonsense_fn(1)")
    with pytest.raises(LakehouseError, match="does not exist"):
        session.sql("SELECT * FROM table_changes('nope', 0)")
    for part in (__import__("pathlib").Path(path)).glob("p=a/*.parquet"):
        part.unlink()
    with pytest.raises(DataFileError, match="vacuumed"):
        table.changes(1).read_all()


def test_python_delete_writes_change_files(cdf_session):
    # Table.delete rewrites a file holding other rows too: only the deleted rows may show up.
    session, path = cdf_session
    session.sql("INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'a'), (3, 30, 'b'), (4, 40, 'b')")  # v1
    table = lakehouse.open_table(path)
    table.delete("v = 20")  # v2: rewrites partition a's file, change file holds id 2
    table.delete("p = 'b'")  # v3: whole files removed, no change file needed
    assert int(table.history(limit=2)[1]["operationMetrics"]["numAddedChangeFiles"]) == 1
    columns = ["_commit_version", "_change_type", "id", "v", "p"]
    expected = [(2, "delete", 2, 20, "a"), (3, "delete", 3, 30, "b"), (3, "delete", 4, 40, "b")]
    assert normalized(table.changes(2).read_all(), columns) == expected
    assert normalized(theirs(path, 2), columns) == expected
    assert sorted(table.to_arrow().column("id").to_pylist()) == [1]


def test_change_columns_can_be_selected_and_filtered(cdf_session):
    session, path = cdf_session
    session.sql("INSERT INTO t VALUES (1, 10, 'a'), (2, 20, 'a')")  # v1
    session.sql("UPDATE t SET v = 11 WHERE id = 1")  # v2
    table = lakehouse.open_table(path)
    out = table.changes(1, columns=["id", "_change_type"], filter="_change_type <> 'update_preimage' AND v > 10")
    assert out.schema.names == ["id", "_change_type"]
    assert sorted(map(tuple, (r.values() for r in out.read_all().to_pylist()))) == [
        (1, "update_postimage"), (2, "insert")]
    assert table.changes(1, columns="id").schema.names == ["id", "_change_type", "_commit_version",
                                                          "_commit_timestamp"]
    only_versions = table.changes(1, columns=["_commit_version"], filter="_commit_version = 2").read_all()
    assert only_versions.column_names == ["_commit_version"] and only_versions.num_rows == 2
