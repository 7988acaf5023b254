"""Pins end to end: a tagged version survives writes, OPTIMIZE, vacuum and log cleanup.

The issue's acceptance test: a tagged version survives 50 random writes, an OPTIMIZE and
``vacuum(retain 0 hours)`` (plus log cleanup with zero retention) and reads back
bit-identical; dropping the tag then lets vacuum reclaim exactly its files.
"""

from __future__ import annotations

import hashlib
import random

import pyarrow as pa
import pytest

import engine
import lakehouse
from lakehouse.errors import DataFileError, TagNotFoundError, VersionNotFoundError

SCHEMA = pa.schema([("id", pa.int64()), ("score", pa.float64()), ("label", pa.string())])
NO_LOG_RETENTION = {"delta.logRetentionDuration": "interval 0 seconds"}


class Rows:
    """Seeded random rows with ids that never repeat."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = 0

    def __call__(self, count: int) -> pa.Table:
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        return pa.table({"id": ids, "score": [self.rng.random() for _ in ids],
                         "label": [self.rng.choice(["cat", "dog", None, "bird"]) for _ in ids]}, schema=SCHEMA)


def arrow_digest(table: pa.Table) -> str:
    """sha256 of the Arrow IPC bytes of the rows in id order: equal only for bit-identical data."""
    ordered = table.sort_by("id").combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, ordered.schema) as writer:
        writer.write_table(ordered)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def stored_data_files(table: lakehouse.Table) -> set[str]:
    """Data and change-data files on storage, relative to the root (the log and refs excluded)."""
    root = table.location.root.rstrip("/")
    out = set()
    for info in table.location.storage.walk(root):
        relative = info.path[len(root) + 1:]
        if relative.endswith(".parquet") and not relative.startswith(("_delta_log/", "_lakehouse/")):
            out.add(relative)
    return out


def live_files(snapshot) -> set[str]:
    return set(snapshot.files.column("path").to_pylist())


def random_write(table: lakehouse.Table, rows: Rows, rng: random.Random) -> None:
    op = rng.choices(["append", "overwrite", "delete"], weights=[6, 1, 3])[0]
    if op == "append":
        table.append(rows(rng.randint(1, 30)))
    elif op == "overwrite":
        table.overwrite(rows(rng.randint(5, 40)))
    else:
        low = rng.randrange(0, max(1, rows.next_id))
        table.delete(f"id >= {low} and id < {low + rng.randint(1, 15)}")


def test_tagged_version_survives_50_writes_optimize_vacuum_and_log_cleanup(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties=NO_LOG_RETENTION)
    rows, rng = Rows(seed=2026), random.Random(11)
    for _ in range(12):  # past the first checkpoint, so log cleanup has something to do
        table.append(rows(rng.randint(1, 30)))
    tag = table.tag("golden", note="training set of run 42")
    pinned = table.snapshot(tag="golden")
    expected, expected_digest = pinned.to_arrow(), arrow_digest(pinned.to_arrow())
    pinned_files = live_files(pinned)

    for _ in range(50):
        random_write(table, rows, rng)
    assert table.optimize()["committed"]
    vacuumed = table.vacuum(0, enforce_retention=False)
    cleaned = table.cleanup_log()
    assert vacuumed["num_files"] > 0 and cleaned["earliest_version"] > 0  # both really deleted things
    assert table.snapshot().version >= tag.version + 51

    again = table.snapshot(tag="golden")
    assert again.version == tag.version and again.fingerprint() == tag.fingerprint
    assert arrow_digest(again.to_arrow()) == expected_digest
    assert again.to_arrow().sort_by("id").equals(expected.sort_by("id"))
    assert table.verify("golden").ok
    assert pinned_files <= stored_data_files(table)

    # Exactly the tagged files the latest version does not use are held back for the tag.
    latest = table.snapshot()
    only_tagged = pinned_files - live_files(latest)
    assert only_tagged  # the writes and OPTIMIZE replaced them
    dry = table.vacuum(0, enforce_retention=False, dry_run=True)
    assert dry["files"] == [] and set(dry["kept_by_pins"]) == only_tagged
    assert all(reasons == [f"tag 'golden' (version {tag.version})"] for reasons in dry["kept_by_pins"].values())

    table.drop_tag("golden")
    before = stored_data_files(table)
    report = table.vacuum(0, enforce_retention=False)
    assert set(report["files"]) == only_tagged and report["kept_by_pins"] == {}
    assert before - stored_data_files(table) == only_tagged  # on storage, exactly those went
    assert live_files(latest) <= stored_data_files(table)
    assert arrow_digest(table.snapshot().to_arrow()) == arrow_digest(latest.to_arrow())

    with pytest.raises(TagNotFoundError, match="no tag 'golden'"):
        table.snapshot(tag="golden")
    with pytest.raises(DataFileError, match=f"version {tag.version}.*vacuumed"):
        table.snapshot(tag.version).to_arrow()  # its log entries are still there, its files are not
    table.cleanup_log()
    with pytest.raises(VersionNotFoundError, match=f"has no version {tag.version}"):
        table.snapshot(tag.version)


@pytest.mark.parametrize("change_data_feed", [True, False])
def test_tag_keeps_the_change_data_of_its_commit(tmp_path, change_data_feed):
    session = engine.connect(str(tmp_path / "wh"))
    properties = " TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')" if change_data_feed else ""
    session.sql(f"CREATE TABLE t (id BIGINT){properties}")
    session.sql("INSERT INTO t SELECT * FROM range(20)")  # version 1
    session.sql("DELETE FROM t WHERE id < 5")  # version 2: with the change data feed, a cdc file
    table = lakehouse.open_table(str(tmp_path / "wh" / "t"))
    expected = table.changes(2, 2).read_all()
    deleted = expected.filter(pa.compute.equal(expected.column("_change_type"), "delete")).column("id")
    # With cdc files they are the answer (the 5 deleted rows); without, the removed file's rows are.
    assert sorted(deleted.to_pylist()) == (list(range(5)) if change_data_feed else list(range(20)))
    table.tag("after-delete", version=2)
    table.overwrite(pa.table({"id": [100]}, schema=pa.schema([("id", pa.int64())])))
    change_files = {p for p in stored_data_files(table) if p.startswith("_change_data/")}
    assert bool(change_files) == change_data_feed

    report = table.vacuum(0, enforce_retention=False)
    # Without cdc files the tag keeps version 1's file too: the feed reads its rows as deletes.
    assert report["num_files"] == (1 if change_data_feed else 0)
    kept = report["kept_by_pins"]
    assert change_files <= set(kept)
    assert all(kept[p] == ["tag 'after-delete' (version 2, change data)"] for p in change_files)
    order = [("_change_type", "ascending"), ("id", "ascending")]
    assert table.changes(2, 2).read_all().sort_by(order).equals(expected.sort_by(order))

    table.drop_tag("after-delete")
    assert table.vacuum(0, enforce_retention=False)["num_files"] > 0
    with pytest.raises(DataFileError):
        table.changes(2, 2).read_all()


def test_sql_vacuum_dry_run_says_what_goes_and_what_tags_keep(tmp_path):
    session = engine.connect(str(tmp_path / "wh"))
    session.sql("CREATE TABLE t (id BIGINT)")
    session.sql("INSERT INTO t VALUES (1), (2)")  # v1
    session.sql("ALTER TABLE t CREATE TAG kept VERSION AS OF 1")
    session.sql("INSERT INTO t VALUES (3)")  # v2
    session.sql("DELETE FROM t WHERE id = 3")  # v3: v2's file goes, no tag needs it
    session.sql("DELETE FROM t WHERE id = 1")  # v4: v1's file goes, tag 'kept' needs it
    session.sql("SET retention_check = false")
    result = session.sql("VACUUM t RETAIN 0 HOURS DRY RUN").to_arrow()
    assert result.column_names == ["path", "action", "reason"]
    listed = result.to_pylist()
    assert sorted(r["action"] for r in listed) == ["delete", "keep"]
    keep = next(r for r in listed if r["action"] == "keep")
    delete = next(r for r in listed if r["action"] == "delete")
    assert keep["reason"] == "tag 'kept' (version 1)"
    assert delete["reason"] == "removed from the table more than 0 hours ago"
    assert (tmp_path / "wh" / "t" / delete["path"]).exists()  # a dry run deletes nothing
    session.sql("VACUUM t RETAIN 0 HOURS")
    assert not (tmp_path / "wh" / "t" / delete["path"]).exists()
    assert (tmp_path / "wh" / "t" / keep["path"]).exists()
    assert session.sql("SELECT count(*) AS n FROM t VERSION AS OF 'kept'").to_arrow().to_pylist() == [{"n": 2}]
