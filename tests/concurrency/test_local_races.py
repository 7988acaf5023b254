"""Real processes racing commits on one local table, and the ambiguous-commit case.

Every appended row carries ``(writer, seq)``, so a lost commit (a missing row) and a
duplicated commit (a row twice) are both visible in the final table.
"""

from __future__ import annotations

import os
import shutil
import traceback

import pyarrow as pa
import pytest

import lakehouse
from tests.processes import race
from lakehouse.log.actions import AddFile, CommitInfo, parse_commit, serialize_commit
from lakehouse.log.paths import LOG_DIR, checkpoint_name, commit_name
from lakehouse.log.replay import replay
from lakehouse.log.segment import LogListing, list_log
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit
from lakehouse.write import FileWriter

SCHEMA = pa.schema([("writer", pa.int64()), ("seq", pa.int64())])


def _append_worker(path: str, writer: int, appends: int, barrier, results, storage_options=None) -> None:
    """Append ``appends`` one-row commits; report the version each one landed at."""
    try:
        table = lakehouse.open_table(path, storage_options=storage_options)
        barrier.wait(timeout=120)  # start together so the commits really contend
        versions = [table.append(pa.table({"writer": [writer], "seq": [seq]}, schema=SCHEMA))["version"]
                    for seq in range(appends)]
        results.put((writer, versions, None))
    except BaseException:  # noqa: BLE001 - report to the parent instead of hanging it
        results.put((writer, [], traceback.format_exc()))


def run_append_race(path: str, *, writers: int, appends: int, storage_options=None) -> dict[int, list[int]]:
    """Race ``writers`` spawned processes, each appending ``appends`` times; versions per writer."""
    reports = race(_append_worker, lambda w, barrier, results: (path, w, appends, barrier, results, storage_options),
                   writers, timeout=600)
    return {writer: versions for writer, versions, _ in reports}


def assert_every_row_once(rows: pa.Table, writers: int, appends: int) -> None:
    pairs = sorted(zip(rows.column("writer").to_pylist(), rows.column("seq").to_pylist()))
    assert pairs == [(w, s) for w in range(writers) for s in range(appends)]


def _rows(snapshot) -> pa.Table:
    return snapshot.to_arrow().sort_by([("writer", "ascending"), ("seq", "ascending")])


@pytest.mark.slow
def test_four_processes_append_100_commits_without_loss(tmp_path):
    path = str(tmp_path / "raced")
    table = lakehouse.create_table(path, SCHEMA)
    writers, appends = 4, 25
    versions = run_append_race(path, writers=writers, appends=appends)

    # Each acknowledged append got its own version, and together they fill 1..100.
    landed = sorted(v for vs in versions.values() for v in vs)
    assert landed == list(range(1, 101))
    for vs in versions.values():
        assert vs == sorted(vs)  # one writer's commits are ordered

    assert table.version() == 100
    latest = table.snapshot()
    assert_every_row_once(latest.to_arrow(), writers, appends)
    assert latest.num_files == 100

    history = table.history()
    assert [h["version"] for h in history] == list(range(100, -1, -1))
    assert [h["operation"] for h in history].count("WRITE") == 100
    # Each version holds exactly one add (no commit was written twice).
    log = os.path.join(path, LOG_DIR)
    for version in range(1, 101):
        with open(os.path.join(log, commit_name(version)), "rb") as handle:
            actions = parse_commit(handle.read(), commit_name(version))
        assert sum(isinstance(a, AddFile) for a in actions) == 1

    # Checkpoints every 10 commits, and each rebuilds the same state as replaying JSON only.
    names = set(os.listdir(log))
    storage, listing = latest.location.storage, list_log(latest.location.storage, path, table="raced")
    for version in range(10, 101, 10):
        assert checkpoint_name(version) in names
        from_checkpoint = replay(storage, LogListing({}, {version: listing.checkpoints[version]}), version,
                                 table="raced")
        from_json = replay(storage, LogListing({v: listing.commits[v] for v in range(version + 1)}, {}), version,
                           table="raced")
        assert sorted(from_checkpoint.files.column("path").to_pylist()) == \
            sorted(from_json.files.column("path").to_pylist())
        assert from_checkpoint.metadata == from_json.metadata
        assert from_checkpoint.protocol == from_json.protocol
    assert not [n for n in names if n.startswith(".")], "temp files left in the log"

    # Read version 100 from its checkpoint alone (JSON commits removed in a copy) and from
    # JSON alone (checkpoints removed in another copy): same rows as snapshot(version=100).
    expected = _rows(table.snapshot(version=100))
    only_checkpoint = str(tmp_path / "only-checkpoint")
    shutil.copytree(path, only_checkpoint)
    for name in os.listdir(os.path.join(only_checkpoint, LOG_DIR)):
        if name.endswith(".json"):
            os.remove(os.path.join(only_checkpoint, LOG_DIR, name))
    assert _rows(lakehouse.open_table(only_checkpoint).snapshot()).equals(expected)
    only_json = str(tmp_path / "only-json")
    shutil.copytree(path, only_json)
    for name in os.listdir(os.path.join(only_json, LOG_DIR)):
        if not name.endswith(".json"):
            os.remove(os.path.join(only_json, LOG_DIR, name))
    assert _rows(lakehouse.open_table(only_json).snapshot(version=100)).equals(expected)
    assert_every_row_once(expected, writers, appends)


def _pending_append(table: lakehouse.Table, rows: pa.Table) -> Commit:
    """An append commit, built exactly as ``dml.append`` builds it, but not yet published."""
    snapshot = table.snapshot()
    location = snapshot.location
    writer = FileWriter(storage=location.storage, root=location.root, schema=snapshot.schema,
                        configuration=snapshot.properties)
    adds = writer.write(rows.to_batches())
    return Commit(storage=location.storage, root=location.root, table=location.name,
                  read_version=snapshot.version, operation="WRITE", parameters={"mode": "Append"},
                  actions=list(adds), is_blind_append=True, read_set=ReadSet(), configuration=snapshot.properties)


def test_ambiguous_commit_that_already_landed_is_not_written_twice(table_path):
    """The first PUT landed but its answer was lost; the retry must recognise its own commit."""
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(pa.table({"writer": [0], "seq": [0]}, schema=SCHEMA))
    commit = _pending_append(table, pa.table({"writer": [1], "seq": [1]}, schema=SCHEMA))

    # The bytes this Commit would have put at version 2 (same txnId; the timestamp of a
    # retry differs, which is why recognition must go by txnId, not by bytes).
    landed = serialize_commit([commit.commit_info(), *commit.actions])
    storage, log = table.location.storage, os.path.join(table_path, LOG_DIR)
    storage.write_if_absent(os.path.join(log, commit_name(2)), landed)

    assert commit.publish() == 2
    assert table.version() == 2
    assert not os.path.exists(os.path.join(log, commit_name(3))), "the commit was written a second time"
    with open(os.path.join(log, commit_name(2)), "rb") as handle:
        assert handle.read() == landed  # untouched
    assert [h["version"] for h in table.history()] == [2, 1, 0]
    rows = table.snapshot().to_arrow().sort_by("seq")
    assert rows.to_pylist() == [{"writer": 0, "seq": 0}, {"writer": 1, "seq": 1}]


def test_someone_elses_commit_at_our_version_is_not_mistaken_for_ours(table_path):
    """Same situation, but the file at version 2 is another writer's: we must move on to 3."""
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(pa.table({"writer": [0], "seq": [0]}, schema=SCHEMA))
    ours = _pending_append(table, pa.table({"writer": [1], "seq": [1]}, schema=SCHEMA))
    theirs = _pending_append(table, pa.table({"writer": [2], "seq": [2]}, schema=SCHEMA))
    assert theirs.publish() == 2
    assert ours.publish() == 3
    infos = [next(a for a in parse_commit(open(os.path.join(table_path, LOG_DIR, commit_name(v)), "rb").read(), "c")
                  if isinstance(a, CommitInfo)) for v in (2, 3)]
    assert [i.txn_id for i in infos] == [theirs.txn_id, ours.txn_id]
    assert sorted(table.snapshot().to_arrow().column("seq").to_pylist()) == [0, 1, 2]
