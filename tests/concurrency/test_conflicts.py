"""Conflict detection between concurrent writers (Delta's rules, Serializable by default).

The races are made deterministic by writing from a *stale* snapshot: take the snapshot,
let another writer commit, then run the operation from the old snapshot through
``lakehouse.dml``. That is exactly what a slow writer does when it loses a race.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import time
import traceback
from urllib.parse import unquote

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import dml
from lakehouse.errors import CommitConflictError
from lakehouse.log.actions import AddFile, parse_commit
from lakehouse.log.paths import LOG_DIR

SCHEMA = pa.schema([("id", pa.int64()), ("p", pa.string())])


def _rows(table: lakehouse.Table, version: int | None = None) -> list[tuple]:
    data = table.snapshot(version=version).to_arrow()
    return sorted(zip(*(data.column(name).to_pylist() for name in data.column_names)))


def _data(ids: list[int], p: str | list[str] = "a") -> pa.Table:
    parts = p if isinstance(p, list) else [p] * len(ids)
    return pa.table({"id": ids, "p": parts}, schema=SCHEMA)


def assert_intact(path: str) -> None:
    """Every data file on disk was committed by some version (a losing commit cleaned up
    after itself), and every file the latest version references exists."""
    log = os.path.join(path, LOG_DIR)
    committed: set[str] = set()
    for name in sorted(os.listdir(log)):
        if name.endswith(".json"):
            with open(os.path.join(log, name), "rb") as handle:
                committed |= {unquote(a.path) for a in parse_commit(handle.read(), name) if isinstance(a, AddFile)}
    on_disk = {os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path)
               if not os.path.relpath(d, path).startswith(LOG_DIR) for f in files if f.endswith(".parquet")}
    assert on_disk == committed, f"orphaned files: {sorted(on_disk - committed)}, missing: {sorted(committed - on_disk)}"
    table = lakehouse.open_table(path)
    for add in table.snapshot().add_files():
        assert os.path.exists(os.path.join(path, unquote(add.path)))
    table.snapshot().to_arrow()  # and it reads


@pytest.fixture
def unpartitioned(table_path) -> lakehouse.Table:
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(_data([1, 2, 3, 4]))  # one file holding ids 1..4
    return table


@pytest.fixture
def partitioned(table_path) -> lakehouse.Table:
    table = lakehouse.create_table(table_path, SCHEMA, partition_by=["p"])
    table.append(_data([1, 2, 3], ["a", "a", "b"]))
    return table


# --- delete vs append ------------------------------------------------------------------------


def test_delete_racing_an_append_of_matching_rows_conflicts(unpartitioned, table_path):
    stale = unpartitioned.snapshot()
    unpartitioned.append(_data([4, 40]))  # adds another row the delete's condition matches
    with pytest.raises(CommitConflictError) as conflict:
        dml.delete(stale, "id = 4")  # would rewrite the 1..4 file and miss the new id 4
    assert conflict.value.kind == "concurrent_append"
    assert conflict.value.winning_version == stale.version + 1
    assert unpartitioned.version() == stale.version + 1  # nothing committed
    assert _rows(unpartitioned) == [(1, "a"), (2, "a"), (3, "a"), (4, "a"), (4, "a"), (40, "a")]
    assert_intact(table_path)  # the rewritten copy of the 1..4 file was removed again
    # Retried from a fresh snapshot, the delete sees both rows.
    assert unpartitioned.delete("id = 4")["num_deleted_rows"] == 2


def test_delete_racing_an_append_to_another_partition_succeeds(partitioned, table_path):
    stale = partitioned.snapshot()
    partitioned.append(_data([4], "b"))
    result = dml.delete(stale, "p = 'a'")
    assert result["version"] == stale.version + 2
    assert _rows(partitioned) == [(3, "b"), (4, "b")]
    assert_intact(table_path)


def test_delete_racing_an_append_into_the_same_partition_conflicts(partitioned, table_path):
    stale = partitioned.snapshot()
    partitioned.append(_data([5], "a"))
    with pytest.raises(CommitConflictError) as conflict:
        dml.delete(stale, "p = 'a'")
    assert conflict.value.kind == "concurrent_append"
    assert conflict.value.winning_version == stale.version + 1
    assert _rows(partitioned) == [(1, "a"), (2, "a"), (3, "b"), (5, "a")]
    assert_intact(table_path)


def test_delete_racing_an_append_that_stats_prove_irrelevant_succeeds(unpartitioned, table_path):
    stale = unpartitioned.snapshot()
    unpartitioned.append(_data(list(range(100, 111))))  # min 100: cannot hold id = 4
    result = dml.delete(stale, "id = 4")
    assert result["version"] == stale.version + 2 and result["num_deleted_rows"] == 1
    assert [r[0] for r in _rows(unpartitioned)] == [1, 2, 3, *range(100, 111)]
    assert_intact(table_path)


def test_write_serializable_ignores_a_concurrent_blind_append(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, properties={"delta.isolationLevel": "WriteSerializable"})
    table.append(_data([1, 4]))
    stale = table.snapshot()
    table.append(_data([4]))
    dml.delete(stale, "id = 4")  # allowed at this level: the blind append is ordered after the delete
    assert _rows(table) == [(1, "a"), (4, "a")]
    assert_intact(table_path)


# --- overwrite, append -------------------------------------------------------------------------


def test_overwrite_racing_an_append_conflicts(unpartitioned, table_path):
    stale = unpartitioned.snapshot()
    unpartitioned.append(_data([5]))
    with pytest.raises(CommitConflictError) as conflict:
        dml.overwrite(stale, _data([9]))  # would silently drop the concurrent row 5
    assert conflict.value.kind == "concurrent_append"
    assert conflict.value.winning_version == stale.version + 1
    assert _rows(unpartitioned) == [(1, "a"), (2, "a"), (3, "a"), (4, "a"), (5, "a")]
    assert_intact(table_path)


def test_append_racing_an_append_commits_both(unpartitioned, table_path):
    stale = unpartitioned.snapshot()
    unpartitioned.append(_data([5]))
    assert dml.append(stale, _data([6]))["version"] == stale.version + 2
    assert [r[0] for r in _rows(unpartitioned)] == [1, 2, 3, 4, 5, 6]
    assert_intact(table_path)


def test_append_racing_a_delete_commits_both(unpartitioned, table_path):
    stale = unpartitioned.snapshot()
    unpartitioned.delete("id <= 2")
    assert dml.append(stale, _data([7]))["version"] == stale.version + 2
    assert [r[0] for r in _rows(unpartitioned)] == [3, 4, 7]
    assert_intact(table_path)


# --- delete vs delete --------------------------------------------------------------------------


def test_two_deletes_of_the_same_file_conflict(unpartitioned, table_path):
    first, second = unpartitioned.snapshot(), unpartitioned.snapshot()
    dml.delete(first, "id = 1")  # removes the 1..4 file, adds a copy holding 2..4
    with pytest.raises(CommitConflictError) as conflict:
        dml.delete(second, "id = 1")  # the copy cannot match (min 2), but the file it read is gone
    assert conflict.value.kind in ("concurrent_delete_read", "concurrent_delete_delete")
    assert conflict.value.winning_version == first.version + 1
    assert [r[0] for r in _rows(unpartitioned)] == [2, 3, 4]
    assert_intact(table_path)


def test_deletes_of_different_rows_in_one_file_conflict(unpartitioned, table_path):
    first, second = unpartitioned.snapshot(), unpartitioned.snapshot()
    dml.delete(first, "id = 1")
    with pytest.raises(CommitConflictError) as conflict:
        dml.delete(second, "id = 2")  # rewrites the same 1..4 file: would resurrect id 1
    # The winner's copy (ids 2..4) may hold id 2, which Delta's checker reports first as a
    # concurrent append; either way the stale rewrite must not commit.
    assert conflict.value.kind in ("concurrent_append", "concurrent_delete_read", "concurrent_delete_delete")
    assert conflict.value.winning_version == first.version + 1
    assert [r[0] for r in _rows(unpartitioned)] == [2, 3, 4]
    assert_intact(table_path)


def test_two_partition_deletes_of_the_same_files_conflict(partitioned, table_path):
    first, second = partitioned.snapshot(), partitioned.snapshot()
    dml.delete(first, "p = 'a'")
    with pytest.raises(CommitConflictError) as conflict:
        dml.delete(second, "p = 'a'")
    assert conflict.value.kind in ("concurrent_delete_read", "concurrent_delete_delete")
    assert [r[0] for r in _rows(partitioned)] == [3]
    assert_intact(table_path)


def test_deletes_of_disjoint_partitions_both_commit(partitioned, table_path):
    partitioned.append(_data([4], "c"))
    first, second = partitioned.snapshot(), partitioned.snapshot()
    dml.delete(first, "p = 'a'")
    assert dml.delete(second, "p = 'b'")["version"] == first.version + 2
    assert _rows(partitioned) == [(4, "c")]
    assert_intact(table_path)


# --- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["append", "delete", "overwrite"])
def test_a_schema_change_fails_every_concurrent_writer(unpartitioned, table_path, operation):
    stale = unpartitioned.snapshot()
    new = pa.table({"id": [10], "p": ["z"], "extra": [1.5]})
    unpartitioned.overwrite(new, schema_mode="overwrite")
    with pytest.raises(CommitConflictError) as conflict:
        if operation == "append":
            dml.append(stale, _data([5]))
        elif operation == "delete":
            dml.delete(stale, "id = 1")
        else:
            dml.overwrite(stale, _data([6]))
    assert conflict.value.kind == "metadata_changed"
    assert conflict.value.winning_version == stale.version + 1
    assert unpartitioned.schema().names == ["id", "p", "extra"]
    assert unpartitioned.snapshot().to_arrow().to_pylist() == [{"id": 10, "p": "z", "extra": 1.5}]
    assert_intact(table_path)


# --- a real multi-process race: deletes vs appends of matching rows ------------------------------

GROUPED = pa.schema([("id", pa.int64()), ("grp", pa.string())])
_DELETE_ATTEMPTS = 12
_MAX_APPENDS = 80


def _appender(path: str, start, stop, appender_done, results) -> None:
    """Append one targeted ('x') and one kept ('y') row per commit until the deleter is done."""
    try:
        table = lakehouse.open_table(path)
        start.wait(timeout=120)
        log = []
        pause = random.Random(7)
        for i in range(_MAX_APPENDS):
            if stop.is_set():
                break
            rows = [(i * 10, "x"), (i * 10 + 1, "y")]
            data = pa.table({"id": [r[0] for r in rows], "grp": [r[1] for r in rows]}, schema=GROUPED)
            log.append((table.append(data)["version"], rows))
            time.sleep(pause.uniform(0, 0.03))  # leave gaps, so some deletes win and some lose
        results.put(("append", log, None))
    except BaseException:  # noqa: BLE001 - report to the parent instead of hanging it
        results.put(("append", [], traceback.format_exc()))
    finally:
        appender_done.set()


def _deleter(path: str, start, stop, appender_done, results) -> None:
    """Delete the 'x' rows over and over while appends land; then once more, alone."""
    try:
        table = lakehouse.open_table(path)
        start.wait(timeout=120)
        committed, conflicts = [], 0
        for _ in range(_DELETE_ATTEMPTS):
            try:
                committed.append(table.delete("grp = 'x'")["version"])
            except CommitConflictError as exc:
                assert exc.kind == "concurrent_append", exc.kind
                conflicts += 1
        stop.set()
        appender_done.wait(timeout=120)
        committed.append(table.delete("grp = 'x'")["version"])  # uncontended: must commit
        results.put(("delete", (committed, conflicts), None))
    except BaseException:  # noqa: BLE001
        stop.set()
        results.put(("delete", ([], 0), traceback.format_exc()))


@pytest.mark.slow
def test_deletes_and_appends_from_two_processes_match_a_serial_replay(table_path):
    table = lakehouse.create_table(table_path, GROUPED)
    ctx = mp.get_context("spawn")
    start, stop, appender_done, results = ctx.Barrier(2), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=fn, args=(table_path, start, stop, appender_done, results))
             for fn in (_appender, _deleter)]
    for p in procs:
        p.start()
    try:
        reports = dict((kind, (value, err)) for kind, value, err in (results.get(timeout=600) for _ in procs))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for _kind, (_value, err) in reports.items():
        assert not err, err
    appends = dict(reports["append"][0])
    deletes, conflicts = reports["delete"][0]
    assert len(deletes) + conflicts == _DELETE_ATTEMPTS + 1  # each attempt committed or conflicted

    # Every version after 0 is exactly one acknowledged operation; none is missing or extra.
    latest = table.version()
    assert sorted([*appends, *deletes]) == list(range(1, latest + 1))

    # Replaying the committed operations serially, in version order, gives every version:
    # no row lost, none surviving a delete that committed after it landed.
    state: list[tuple[int, str]] = []
    for version in range(1, latest + 1):
        if version in appends:
            state = state + list(appends[version])
        else:
            state = [row for row in state if row[1] != "x"]
        assert _rows(table, version) == sorted(state), f"version {version} differs from the serial replay"
    assert _rows(table) == sorted((i, g) for rows in appends.values() for i, g in rows if g == "y")
    assert_intact(table_path)
