"""RESTORE, VACUUM and OPTIMIZE (compaction, Z-order) through ``lakehouse.maintenance``."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse import maintenance
from lakehouse.errors import (
    ColumnNotFoundError, CommitConflictError, DataFileError, InvalidFilterError, LakehouseError, RetentionCheckError,
    SchemaError, VersionNotFoundError,
)

SCHEMA = pa.schema([("id", pa.int64()), ("p", pa.string()), ("v", pa.float64())])


def batch(ids, p: str = "a") -> pa.Table:
    ids = list(ids)
    return pa.table({"id": pa.array(ids, pa.int64()), "p": [p] * len(ids), "v": [i / 2 for i in ids]})


def ids(table_or_snapshot) -> list[int]:
    return sorted(table_or_snapshot.to_arrow().column("id").to_pylist())


def commit_actions(table: lakehouse.Table, version: int) -> list[dict]:
    data = table.location.storage.read(table.location.path("_delta_log", f"{version:020d}.json"))
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def deltalake_ids(path: str) -> list[int]:
    # deltalake's to_pyarrow_table/dataset abort the interpreter here; use its SQL engine.
    from deltalake import DeltaTable, QueryBuilder

    rows = pa.table(QueryBuilder().register("t", DeltaTable(path)).execute("select id from t").read_all())
    return sorted(rows.column("id").to_pylist())


def data_files(path: str) -> set[str]:
    out = set()
    for folder, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        out |= {os.path.relpath(os.path.join(folder, n), path) for n in names if n.endswith(".parquet")}
    return out


def age(path: str, hours: float) -> None:
    old = time.time() - hours * 3600
    os.utime(path, (old, old))


@pytest.fixture
def table(tmp_path) -> lakehouse.Table:
    return lakehouse.create_table(str(tmp_path / "t"), SCHEMA)


# --- RESTORE ---------------------------------------------------------------------------


def test_restore_older_version_rows_schema_and_one_commit(table):
    table.append(batch(range(10)))                      # v1
    table.append(batch(range(10, 20)))                  # v2
    table.delete("id < 5")                              # v3
    wide = pa.table({"id": pa.array([100], pa.int64()), "p": ["z"], "v": [1.0], "w": ["new"]})
    table.overwrite(wide, schema_mode="overwrite")      # v4: new schema
    before = table.version()
    report = maintenance.restore(table, version=2)
    assert report["version"] == before + 1 == table.version()
    assert report["committed"] is True
    assert ids(table) == list(range(20))
    assert table.schema() == table.snapshot(version=2).schema
    assert report["numOfFilesAfterRestore"] == table.snapshot().num_files
    assert report["numRestoredFiles"] >= 1 and report["numRemovedFiles"] >= 1
    entry = table.history(1)[0]
    assert entry["operation"] == "RESTORE"
    assert entry["operationParameters"] == {"version": "2"}
    assert entry["operationMetrics"]["numRestoredFiles"] == str(report["numRestoredFiles"])
    actions = commit_actions(table, report["version"])
    assert any("metaData" in a for a in actions)
    assert all(a["add"]["dataChange"] for a in actions if "add" in a)
    assert all(a["remove"]["dataChange"] for a in actions if "remove" in a)
    assert deltalake_ids(table.location.root) == list(range(20))


def test_restore_by_timestamp(table):
    table.append(batch(range(3)))
    ts = table.snapshot().timestamp_ms
    time.sleep(0.02)
    table.append(batch(range(3, 6)))
    report = maintenance.restore(table, timestamp=ts)
    assert ids(table) == [0, 1, 2]
    assert "timestamp" in table.history(1)[0]["operationParameters"]
    assert report["numRemovedFiles"] == 1 and report["numRestoredFiles"] == 0


def test_restore_to_latest_commits_nothing(table):
    table.append(batch(range(3)))
    report = maintenance.restore(table, version=1)
    assert report["committed"] is False and report["version"] == 1 == table.version()


def test_restore_validates_version(table):
    with pytest.raises(lakehouse.VersionNotFoundError):
        maintenance.restore(table, version=7)
    with pytest.raises(LakehouseError, match="exactly one"):
        maintenance.restore(table)


def test_restore_after_vacuum_names_the_missing_file(table):
    table.append(batch(range(5)))
    gone = table.snapshot().add_files()[0].path
    table.delete("id >= 0")
    maintenance.vacuum(table, 0, enforce_retention=False)
    version = table.version()
    with pytest.raises(DataFileError, match="vacuum removed them") as info:
        maintenance.restore(table, version=1)
    assert gone in str(info.value)
    assert table.version() == version  # nothing committed


# --- VACUUM ----------------------------------------------------------------------------


def _table_with_garbage(table: lakehouse.Table) -> tuple[str, str, str]:
    """Live file, tombstoned file, and an untracked (failed writer) file, all made old."""
    table.append(batch(range(5)))
    table.append(batch(range(5, 10)))
    table.delete("id < 5")  # removes the first file whole
    root = table.location.root
    live = {a.path for a in table.snapshot().add_files()}
    (tombstoned,) = data_files(root) - live
    untracked = os.path.join(root, "part-99999-orphan-c000.snappy.parquet")
    pq.write_table(pa.table({"id": [1]}), untracked)
    for name in data_files(root):
        age(os.path.join(root, name), 1)
    return next(iter(live)), tombstoned, os.path.basename(untracked)


def test_vacuum_dry_run_lists_but_keeps(table):
    live, tombstoned, untracked = _table_with_garbage(table)
    before = data_files(table.location.root)
    report = maintenance.vacuum(table, 0, dry_run=True, enforce_retention=False)
    assert report["dry_run"] is True
    assert sorted(report["files"]) == sorted([tombstoned, untracked])
    assert report["num_files"] == 2 and report["num_bytes"] > 0
    assert report["retention_hours"] == 0
    assert data_files(table.location.root) == before


def test_vacuum_refuses_short_retention_unless_forced(table):
    table.append(batch(range(3)))
    with pytest.raises(maintenance.RetentionCheckError, match="enforce_retention=False"):
        maintenance.vacuum(table, 0)
    with pytest.raises(LakehouseError):
        maintenance.vacuum(table, 24, dry_run=True)
    assert maintenance.vacuum(table, 200, dry_run=True)["num_files"] == 0


def test_vacuum_deletes_old_garbage_and_keeps_live(table):
    live, tombstoned, untracked = _table_with_garbage(table)
    root = table.location.root
    for keep in ("_lakehouse/refs/x.parquet", ".hidden/y.parquet", "_delta_log/z.parquet"):
        os.makedirs(os.path.dirname(os.path.join(root, keep)), exist_ok=True)
        pq.write_table(pa.table({"a": [1]}), os.path.join(root, keep))
        age(os.path.join(root, keep), 1000)
    version, expected = table.version(), ids(table)
    report = maintenance.vacuum(table, 0, enforce_retention=False)
    assert report["dry_run"] is False and sorted(report["files"]) == sorted([tombstoned, untracked])
    assert data_files(root) == {live}
    for keep in ("_lakehouse/refs/x.parquet", ".hidden/y.parquet", "_delta_log/z.parquet"):
        assert os.path.exists(os.path.join(root, keep))
    assert table.version() == version  # vacuum commits nothing
    assert ids(table) == expected
    with pytest.raises(DataFileError):
        table.snapshot(version=1).to_arrow()
    assert maintenance.vacuum(table, 0, enforce_retention=False)["num_files"] == 0


def test_vacuum_respects_retention_window(table):
    table.append(batch(range(5)))
    table.delete("id >= 0")  # tombstone written just now
    root = table.location.root
    orphan = os.path.join(root, "part-orphan-new.parquet")
    pq.write_table(pa.table({"id": [1]}), orphan)
    old_orphan = os.path.join(root, "part-orphan-old.parquet")
    pq.write_table(pa.table({"id": [1]}), old_orphan)
    age(old_orphan, 24 * 8)
    report = maintenance.vacuum(table)
    assert report["retention_hours"] == 168
    assert report["files"] == ["part-orphan-old.parquet"]  # the recent tombstone and orphan stay
    assert os.path.exists(orphan) and not os.path.exists(old_orphan)
    assert table.snapshot(version=1).to_arrow().num_rows == 5  # still time-travellable


def test_vacuum_uses_table_retention_property(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA,
                                   properties={"delta.deletedFileRetentionDuration": "interval 1 hours"})
    table.append(batch(range(5)))
    table.delete("id >= 0")
    report = maintenance.vacuum(table, dry_run=True)
    assert report["retention_hours"] == 1 and report["files"] == []
    with pytest.raises(maintenance.RetentionCheckError):
        maintenance.vacuum(table, 0.5)


def test_vacuum_change_data_files(table):
    root = table.location.root
    table.append(batch(range(3)))
    cdc = os.path.join(root, "_change_data", "cdc-00000-old.parquet")
    os.makedirs(os.path.dirname(cdc))
    pq.write_table(pa.table({"id": [1]}), cdc)
    age(cdc, 1)
    report = maintenance.vacuum(table, 0, enforce_retention=False)
    assert report["files"] == ["_change_data/cdc-00000-old.parquet"]


def test_vacuum_keeps_tagged_files(table):
    refs = pytest.importorskip("lakehouse.refs")
    table.append(batch(range(5)))
    refs.create_tag(table, "v1", version=1)
    tagged = {a.path for a in table.snapshot().add_files()}
    table.delete("id >= 0")
    report = maintenance.vacuum(table, 0, enforce_retention=False)
    assert set(report["kept_by_pins"]) == tagged
    assert any("v1" in reason for reason in report["kept_by_pins"][next(iter(tagged))])
    assert report["files"] == []
    assert table.snapshot(version=1).to_arrow().num_rows == 5


def test_vacuum_keeps_files_of_shallow_clones(table, tmp_path):
    clone = pytest.importorskip("lakehouse.clone")
    table.append(batch(range(5)))
    cloned = {a.path for a in table.snapshot().add_files()}
    copy = clone.shallow_clone(table, str(tmp_path / "copy"))
    table.delete("id >= 0")
    report = maintenance.vacuum(table, 0, enforce_retention=False)
    assert set(report["kept_by_pins"]) == cloned and report["files"] == []
    assert ids(copy) == list(range(5))


# --- OPTIMIZE --------------------------------------------------------------------------


def test_optimize_compacts_small_files(table):
    for i in range(20):
        table.append(batch(range(i * 10, i * 10 + 10)))
    before_files, expected = table.snapshot().num_files, ids(table)
    report = maintenance.optimize(table)
    assert report["committed"] is True and report["version"] == 21 == table.version()
    after = table.snapshot()
    assert before_files == 20 and after.num_files < before_files
    assert report["numRemovedFiles"] == 20 and report["numAddedFiles"] == after.num_files
    assert report["numBatches"] == 1 and report["numAddedBytes"] > 0 and report["numRemovedBytes"] > 0
    assert ids(table) == expected
    actions = commit_actions(table, report["version"])
    file_actions = [a.get("add") or a.get("remove") for a in actions if "add" in a or "remove" in a]
    assert file_actions and all(a["dataChange"] is False for a in file_actions)
    entry = table.history(1)[0]
    assert entry["operation"] == "OPTIMIZE" and entry["operationMetrics"]["numRemovedFiles"] == "20"
    assert json.loads(entry["operationParameters"]["zOrderBy"]) == []
    assert deltalake_ids(table.location.root) == expected
    again = maintenance.optimize(table)  # one file left: nothing to do
    assert again["committed"] is False and again["version"] is None and table.version() == 21


def test_optimize_concurrent_append_is_not_a_conflict(table):
    for i in range(5):
        table.append(batch(range(i * 10, i * 10 + 10)))
    snapshot = table.snapshot()
    table.append(batch(range(1000, 1005)))  # lands between our read and our commit
    report = maintenance.optimize_snapshot(snapshot)
    assert report["version"] == snapshot.version + 2
    assert ids(table) == sorted(list(range(50)) + list(range(1000, 1005)))
    assert table.snapshot().num_files == 2


def test_optimize_conflicts_with_concurrent_delete_of_its_files(table):
    for i in range(5):
        table.append(batch(range(i * 10, i * 10 + 10)))
    snapshot = table.snapshot()
    table.delete("id < 10")  # removes a file optimize is rewriting
    files_before = set(data_files(table.location.root))
    with pytest.raises(CommitConflictError) as info:
        maintenance.optimize_snapshot(snapshot)
    assert info.value.kind == "concurrent_delete_read"
    assert set(data_files(table.location.root)) == files_before  # its new files were cleaned up
    assert ids(table) == list(range(10, 50))


def test_optimize_where_selects_partitions(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, partition_by=["p"])
    for i in range(4):
        table.append(batch(range(i * 10, i * 10 + 10), "a"))
        table.append(batch(range(100 + i * 10, 110 + i * 10), "b"))
    report = maintenance.optimize(table, "p = 'a'")
    assert report["numRemovedFiles"] == 4 and report["numAddedFiles"] == 1
    parts = [a.partition_values["p"] for a in table.snapshot().add_files()]
    assert parts.count("a") == 1 and parts.count("b") == 4
    assert table.history(1)[0]["operationParameters"]["predicate"] == json.dumps(["p = 'a'"])
    with pytest.raises(InvalidFilterError, match="not partition columns"):
        maintenance.optimize(table, "id > 3")
    assert maintenance.optimize(table)["numRemovedFiles"] == 4
    assert len(table.snapshot().add_files()) == 2
    assert deltalake_ids(table.location.root) == ids(table)


def test_zorder_validation(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, partition_by=["p"])
    table.append(batch(range(3)))
    with pytest.raises(ColumnNotFoundError):
        maintenance.optimize(table, zorder_by=["nope"])
    with pytest.raises(SchemaError, match="partition column"):
        maintenance.optimize(table, zorder_by=["p"])


def test_zorder_narrows_file_ranges(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), [("x", pa.float64()), ("y", pa.float64()),
                                                          ("id", pa.int64())])
    rng = np.random.default_rng(7)
    n, files = 200_000, 20
    per = n // files
    for i in range(files):
        table.append(pa.table({"x": rng.uniform(0, 100, per), "y": rng.uniform(0, 100, per),
                               "id": np.arange(i * per, (i + 1) * per)}))
    condition = "x BETWEEN 10 AND 20 AND y BETWEEN 10 AND 20"
    before = table.snapshot().scan(filter=condition).metrics
    expected = table.to_arrow(filter=condition).num_rows
    report = maintenance.optimize(table, zorder_by=["x", "y"], target_file_size=128 * 1024)
    after = table.snapshot().scan(filter=condition).metrics
    assert report["numRemovedFiles"] == 20 and after.files_total >= 8
    assert before.files_selected == before.files_total
    assert after.files_selected < after.files_total / 2
    assert table.to_arrow(filter=condition).num_rows == expected
    assert table.snapshot().num_records == n
    assert json.loads(table.history(1)[0]["operationParameters"]["zOrderBy"]) == ["x", "y"]
    assert len(deltalake_ids(table.location.root)) == n


def test_zorder_key_interleaves_columns():
    from lakehouse.zorder import interleave, zorder_indices

    key = interleave([np.array([1, 0, 3], np.uint64), np.array([0, 1, 3], np.uint64)], 2)
    assert key.tolist() == [0b10, 0b01, 0b1111]
    grid = pa.table({"a": [3, 0, 1, 0, 2], "b": ["d", "a", "a", "b", "c"]})
    assert zorder_indices(grid, ["a", "b"]).tolist()[0] == 1  # (0, "a") is the curve's origin


@pytest.mark.parametrize("bad", ["a", True, float("nan"), -1, [1]])
def test_vacuum_refuses_bad_retention(tmp_path, bad):
    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("a", pa.int64())]))
    with pytest.raises(RetentionCheckError, match="retain_hours must be"):
        table.vacuum(bad, enforce_retention=False)


def test_versions_accept_numpy_integers(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("a", pa.int64())]))
    table.append(pa.table({"a": [1]}))
    assert table.snapshot(np.int64(1)).version == 1
    assert table.tag("first", version=np.int32(0)).version == 0
    for bad in (True, 1.0, "1"):
        with pytest.raises(VersionNotFoundError, match="version must be an integer"):
            table.snapshot(bad)
