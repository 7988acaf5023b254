"""Expired log cleanup (lakehouse.logcleanup): retention, checkpoints as cut points, tag pins."""

from __future__ import annotations

import datetime as dt
import os
import time

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.errors import LakehouseWarning, VersionNotFoundError
from lakehouse.logcleanup import plan_cleanup
from lakehouse.log.segment import list_log

SCHEMA = pa.schema([("id", pa.int64())])
NO_RETENTION = {"delta.logRetentionDuration": "interval 0 seconds"}
DAY_MS = 86_400_000


def commits(table: lakehouse.Table, start: int, stop: int) -> None:
    """Append one row per commit, row ``i`` at version ``i + 1`` (version 0 creates)."""
    for i in range(start, stop):
        table.append(pa.table({"id": [i]}, schema=SCHEMA))


def log_names(table: lakehouse.Table) -> list[str]:
    storage = table.location.storage
    return sorted(info.name for info in storage.list_dir(table.location.path("_delta_log")))


def versions_of(names: list[str], suffix: str) -> list[int]:
    return sorted(int(n[:20]) for n in names if n.endswith(suffix) and n[:20].isdigit())


def ids(snapshot) -> list[int]:
    return sorted(snapshot.to_arrow().column("id").to_pylist())


def deltalake_ids(path: str, version: int | None = None) -> list[int]:
    # deltalake's to_pyarrow_table/dataset abort the interpreter here; use its SQL engine.
    from deltalake import DeltaTable, QueryBuilder

    delta = DeltaTable(path) if version is None else DeltaTable(path, version=version)
    rows = pa.table(QueryBuilder().register("t", delta).execute("select id from t").read_all())
    return sorted(rows.column("id").to_pylist())


@pytest.fixture(params=["local", "memory"])
def location(request, tmp_path, memory_path) -> str:
    return str(tmp_path / "t") if request.param == "local" else memory_path


def test_default_retention_keeps_a_young_log(location):
    table = lakehouse.create_table(location, SCHEMA)
    commits(table, 0, 24)  # checkpoints at 10 and 20, cleanup ran after each: nothing is 30 days old
    assert versions_of(log_names(table), ".json") == list(range(25))
    report = table.cleanup_log()
    assert report["num_files"] == 0 and report["files"] == [] and report["earliest_version"] == 0
    assert report["retention_ms"] == 30 * DAY_MS
    # Thirty-one days later the log below the newest checkpoint has expired.
    later = table.cleanup_log(now_ms=int(time.time() * 1000) + 31 * DAY_MS, dry_run=True)
    assert later["earliest_version"] == 20
    assert later["files"][:2] == [f"{0:020d}.json", f"{1:020d}.json"]  # oldest first
    assert {int(n[:20]) for n in later["files"]} == set(range(20))
    assert versions_of(log_names(table), ".json") == list(range(25))  # a dry run deletes nothing


def test_commits_clean_the_log_after_each_checkpoint(location):
    table = lakehouse.create_table(location, SCHEMA, properties=NO_RETENTION)
    commits(table, 0, 9)
    assert versions_of(log_names(table), ".json") == list(range(10))  # no checkpoint yet: nothing goes
    commits(table, 9, 13)  # version 10 writes the first checkpoint, then cleans up
    names = log_names(table)
    assert versions_of(names, ".json") == [10, 11, 12, 13]
    assert versions_of(names, ".checkpoint.parquet") == [10]
    assert ids(table.snapshot()) == list(range(13))
    for version in range(10, 14):  # every remaining version rebuilds
        assert ids(table.snapshot(version)) == list(range(version))
    with pytest.raises(VersionNotFoundError, match=r"has no version 4: versions 10 to 13 can be read; older log entries were removed by log cleanup"):
        table.snapshot(4)


def test_disabled_by_table_property(location):
    table = lakehouse.create_table(location, SCHEMA, properties={
        **NO_RETENTION, "delta.enableExpiredLogCleanup": "false"})
    commits(table, 0, 12)
    assert versions_of(log_names(table), ".json") == list(range(13))
    report = table.cleanup_log()  # an explicit call still cleans
    assert report["earliest_version"] == 10 and report["num_files"] == 10  # commits 0..9
    assert versions_of(log_names(table), ".json") == [10, 11, 12]


def test_only_below_the_checkpoint_before_the_oldest_retained_version(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties={
        "delta.logRetentionDuration": "interval 1 days", "delta.enableExpiredLogCleanup": "false"})
    commits(table, 0, 25)  # checkpoints at 10 and 20
    old = time.time() - 2 * 86_400
    log = tmp_path / "t" / "_delta_log"
    for name in os.listdir(log):
        if name[:20].isdigit() and int(name[:20]) <= 14:
            os.utime(log / name, (old, old))  # versions 0..14 are two days old, 15.. are new
    crc = log / f"{3:020d}.crc"
    crc.write_text("{}")
    os.utime(crc, (old, old))
    report = table.cleanup_log()
    # Version 15 is the oldest retained one; it rebuilds from checkpoint 10, so 10..14 stay.
    assert report["earliest_version"] == 10
    names = log_names(table)
    assert versions_of(names, ".json") == list(range(10, 26)) and not crc.exists()
    assert versions_of(names, ".checkpoint.parquet") == [10, 20]
    for version in range(10, 26):
        assert ids(table.snapshot(version)) == list(range(version))


def test_stale_checkpoint_hint_limits_the_cut(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties={
        **NO_RETENTION, "delta.enableExpiredLogCleanup": "false"})
    commits(table, 0, 31)  # checkpoints at 10, 20, 30
    hint = tmp_path / "t" / "_delta_log" / "_last_checkpoint"
    hint.write_text('{"version": 20, "size": 1}')  # a writer crashed before updating it
    assert table.cleanup_log()["earliest_version"] == 20  # other readers trust the hint: keep it valid
    hint.write_text("{not json")
    assert table.cleanup_log()["earliest_version"] == 30


def test_live_tag_keeps_the_log_its_version_needs(tmp_path):
    path = str(tmp_path / "t")
    table = lakehouse.create_table(path, SCHEMA, properties=NO_RETENTION)
    commits(table, 0, 13)
    table.tag("model-a", version=13)
    commits(table, 13, 35)  # checkpoints at 20 and 30 each clean up
    names = log_names(table)
    assert versions_of(names, ".checkpoint.parquet") == [10, 20, 30]
    assert versions_of(names, ".json") == list(range(10, 36))  # contiguous from the tag's checkpoint
    assert ids(table.snapshot(tag="model-a")) == list(range(13))
    assert table.verify("model-a").ok
    dry = table.cleanup_log(dry_run=True)
    assert dry["files"] == [] and dry["earliest_version"] == 10
    assert dry["kept_by_pins"][f"{10:020d}.checkpoint.parquet"] == ["tag 'model-a' (version 13)"]
    assert dry["kept_by_pins"][f"{13:020d}.json"] == ["tag 'model-a' (version 13)"]
    assert "contiguous" in dry["kept_by_pins"][f"{14:020d}.json"][0]
    # Other Delta readers still open the latest and the tagged version.
    assert deltalake_ids(path) == list(range(35))
    assert deltalake_ids(path, 13) == list(range(13))

    table.drop_tag("model-a")
    report = table.cleanup_log()
    assert report["earliest_version"] == 30 and report["kept_by_pins"] == {}
    assert versions_of(log_names(table), ".json") == list(range(30, 36))
    with pytest.raises(VersionNotFoundError, match="has no version 13"):
        table.snapshot(13)
    assert deltalake_ids(path) == list(range(35))


def test_tag_before_the_first_checkpoint_keeps_the_whole_log(location):
    table = lakehouse.create_table(location, SCHEMA, properties=NO_RETENTION)
    commits(table, 0, 5)
    table.tag("early")
    commits(table, 5, 22)
    assert versions_of(log_names(table), ".json") == list(range(23))
    assert ids(table.snapshot(tag="early")) == list(range(5))


def test_expired_or_dropped_tags_protect_nothing(location):
    table = lakehouse.create_table(location, SCHEMA, properties=NO_RETENTION)
    commits(table, 0, 13)
    table.tag("short", version=12, retain=dt.timedelta(milliseconds=1))
    table.tag("gone", version=11)
    table.drop_tag("gone")
    time.sleep(0.01)
    commits(table, 13, 20)  # the checkpoint at 20 cleans up below it
    assert versions_of(log_names(table), ".json") == [20]
    with pytest.raises(VersionNotFoundError):
        table.snapshot(tag="short")  # still listed (expired tags stay until dropped) but unreadable


def test_cleanup_failure_warns_but_the_commit_stands(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties=NO_RETENTION)
    commits(table, 0, 9)
    tags = tmp_path / "t" / "_lakehouse" / "refs" / "tags"
    tags.mkdir(parents=True)
    (tags / f"broken@{1:020d}.json").write_text("{not json")  # cleanup cannot tell what is pinned
    with pytest.warns(LakehouseWarning, match="expired log entries were not cleaned up.*broken@"):
        metrics = table.append(pa.table({"id": [9]}, schema=SCHEMA))
    assert table.version() == 10 and metrics is not None
    assert versions_of(log_names(table), ".json") == list(range(11))  # nothing deleted blind
    assert ids(table.snapshot()) == list(range(10))


def test_plan_is_pure_and_never_cuts_without_a_checkpoint(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties={
        "delta.checkpointInterval": "1000"})
    commits(table, 0, 5)
    storage = table.location.storage
    listing = list_log(storage, table.location.root, table="t")
    files = storage.list_dir(table.location.path("_delta_log"))
    plan = plan_cleanup(listing, files, [], cutoff_ms=int(time.time() * 1000) + DAY_MS)
    assert plan.cut == 0 and plan.delete == ()


def test_a_damaged_checkpoint_is_never_the_cut(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties={
        **NO_RETENTION, "delta.enableExpiredLogCleanup": "false"})
    commits(table, 0, 23)  # checkpoints at 10 and 20
    (tmp_path / "t" / "_delta_log" / f"{20:020d}.checkpoint.parquet").write_bytes(b"torn write")
    with pytest.warns(LakehouseWarning, match="checkpoint"):  # reading the table's properties
        report = table.cleanup_log()
    assert report["earliest_version"] == 10  # cut at the readable checkpoint before it
    assert versions_of(log_names(table), ".json") == list(range(10, 24))
    with pytest.warns(LakehouseWarning, match="checkpoint"):
        assert ids(table.snapshot()) == list(range(23))  # rebuilt from checkpoint 10 and commits
