"""Resumable change streams (lakehouse.stream): offsets, commits, restarts, starts, owners."""

from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.errors import LakehouseError
from lakehouse.stream import CheckpointOwnedError, ChangeStream, StreamCheckpointError

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def _rows(*ids: int) -> pa.Table:
    return pa.table({"id": list(ids), "v": [f"r{i}" for i in ids]}, schema=SCHEMA)


@pytest.fixture
def table(tmp_path):
    t = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    t.append(_rows(1, 2))  # v1
    t.append(_rows(3))  # v2
    return t


def _summary(batch) -> list[tuple]:
    data = batch.to_arrow()
    return sorted(zip(data["id"].to_pylist(), data["_change_type"].to_pylist(), data["_commit_version"].to_pylist()))


def test_batches_commit_and_resume(table, tmp_path):
    ck = str(tmp_path / "ck")
    stream = ChangeStream(table, ck)
    batch = stream.poll()
    assert (batch.batch_id, batch.start_version, batch.end_version, batch.is_snapshot) == (0, 0, 2, False)
    assert _summary(batch) == [(1, "insert", 1), (2, "insert", 1), (3, "insert", 2)]
    batch.commit()
    batch.commit()  # idempotent
    assert stream.poll() is None
    table.append(_rows(4))
    table.delete("id = 1")
    restarted = ChangeStream(table, ck)
    batch = restarted.poll()
    assert (batch.batch_id, batch.start_version, batch.end_version) == (1, 3, 4)
    assert _summary(batch) == [(1, "delete", 4), (2, "delete", 4), (2, "insert", 4), (4, "insert", 3)]
    batch.commit()
    assert restarted.committed_version == 4
    assert list(ChangeStream(table, ck)) == []


def test_uncommitted_batch_is_replanned_with_the_same_range(table, tmp_path):
    ck = str(tmp_path / "ck")
    stream = ChangeStream(table, ck)
    first = stream.poll()
    assert stream.poll() is first  # redelivered until committed
    table.append(_rows(9))  # arrives after planning, before the "crash"
    again = ChangeStream(table, ck).poll()
    assert (again.batch_id, again.start_version, again.end_version) == (0, 0, 2)
    again.commit()
    resumed = ChangeStream(table, ck).poll()
    assert (resumed.batch_id, resumed.start_version, resumed.end_version) == (1, 3, 3)


def test_max_versions_per_batch(table, tmp_path):
    stream = ChangeStream(table, str(tmp_path / "ck"), max_versions_per_batch=2)
    ranges = []
    for batch in stream:
        ranges.append((batch.batch_id, batch.start_version, batch.end_version))
        batch.commit()
    assert ranges == [(0, 0, 1), (1, 2, 2)]


def test_iteration_refuses_an_uncommitted_batch(table, tmp_path):
    stream = ChangeStream(table, str(tmp_path / "ck"))
    with pytest.raises(LakehouseError, match="was not committed"):
        for _batch in stream:
            pass


def test_earliest_without_commit_zero_starts_with_a_snapshot_batch(table, tmp_path):
    for v in range(3, 13):
        table.append(_rows(10 + v))  # a checkpoint at version 10
    log = tmp_path / "t" / "_delta_log"
    for v in range(0, 10):
        (log / f"{v:020d}.json").unlink()  # commits cleaned up; only the checkpoint remains
    ck = str(tmp_path / "ck")
    stream = ChangeStream(table, ck)
    snap = stream.poll()
    assert snap.is_snapshot and (snap.batch_id, snap.start_version, snap.end_version) == (0, 12, 12)
    data = snap.to_arrow()
    assert data.num_rows == 13 and set(data["_change_type"].to_pylist()) == {"insert"}
    assert set(data["_commit_version"].to_pylist()) == {12}
    assert data.column_names == ["id", "v", "_change_type", "_commit_version", "_commit_timestamp"]
    assert snap.to_arrow(columns=["id"]).column_names[0] == "id"
    snap.commit()
    table.append(_rows(99))
    nxt = ChangeStream(table, ck).poll()
    assert (nxt.batch_id, nxt.start_version, nxt.end_version, nxt.is_snapshot) == (1, 13, 13, False)
    assert _summary(nxt) == [(99, "insert", 13)]


def test_latest_and_int_starts_are_resolved_once(table, tmp_path):
    latest = ChangeStream(table, str(tmp_path / "latest"), start="latest")
    assert latest.poll() is None
    table.append(_rows(5))  # v3
    # a restart must not re-resolve "latest" (that would skip version 3)
    batch = ChangeStream(table, str(tmp_path / "latest"), start="latest").poll()
    assert (batch.start_version, batch.end_version) == (3, 3)
    from_two = ChangeStream(table, str(tmp_path / "two"), start=2).poll()
    assert (from_two.start_version, from_two.end_version) == (2, 3)
    assert _summary(from_two) == [(3, "insert", 2), (5, "insert", 3)]
    with pytest.raises(LakehouseError, match="start must be"):
        ChangeStream(table, str(tmp_path / "bad"), start="newest")
    with pytest.raises(LakehouseError, match="max_versions_per_batch"):
        ChangeStream(table, str(tmp_path / "bad"), max_versions_per_batch=0)


def test_two_consumers_on_one_checkpoint_conflict(table, tmp_path):
    ck = str(tmp_path / "ck")
    a, b = ChangeStream(table, ck), ChangeStream(table, ck)
    a.poll().commit()
    table.append(_rows(7))
    with pytest.raises(CheckpointOwnedError, match="another consumer already planned batch 0"):
        b.poll()  # b still believes batch 0 is next
    a_batch = a.poll()
    c = ChangeStream(table, ck)  # resumes a's planned batch 1
    c.poll().commit()
    with pytest.raises(CheckpointOwnedError, match="owns this checkpoint"):
        a_batch.commit()
    table.append(_rows(8))
    d, e = ChangeStream(table, ck), ChangeStream(table, ck)
    d.poll()
    with pytest.raises(CheckpointOwnedError, match="another consumer already planned batch 2"):
        e.poll()


def test_checkpoint_of_another_table_is_refused(table, tmp_path):
    ck = str(tmp_path / "ck")
    ChangeStream(table, ck).poll().commit()
    other = lakehouse.create_table(str(tmp_path / "other"), SCHEMA)
    with pytest.raises(StreamCheckpointError, match="belongs to table"):
        ChangeStream(other, ck)
    (tmp_path / "ck" / "metadata.json").write_text("{not json")
    with pytest.raises(StreamCheckpointError, match="not valid json"):
        ChangeStream(table, ck)


def test_memory_checkpoint_url(table):
    ck = f"memory://streams/{uuid.uuid4().hex}"
    stream = ChangeStream(table, ck)
    stream.poll().commit()
    table.append(_rows(6))
    batch = ChangeStream(table, ck).poll()
    assert (batch.batch_id, batch.start_version) == (1, 3)
    offset = json.loads(stream.storage.read(stream.storage.join(stream._root, "offsets", f"{1:020d}.json")))
    assert offset["table_id"] == table.snapshot().table_id and offset["end_version"] == 3


def test_follow_stops_and_update_rows_carry_both_images(tmp_path):
    t = lakehouse.create_table(str(tmp_path / "cdf"), SCHEMA, properties={"delta.enableChangeDataFeed": "true"})
    t.append(_rows(1))
    import engine

    engine.connect(str(tmp_path)).sql("UPDATE cdf SET v = 'x' WHERE id = 1")
    stream = ChangeStream(t, str(tmp_path / "ck"))
    seen = []
    for batch in stream.follow(poll_interval=0.01, stop=lambda: bool(seen)):
        seen.append(batch)
        batch.commit()
    kinds = sorted(seen[0].to_arrow()["_change_type"].to_pylist())
    assert kinds == ["insert", "update_postimage", "update_preimage"]


def test_table_stream_is_the_public_entry_point(table):
    # Table.stream is what users call; a memory:// checkpoint keeps progress across instances.
    ck = f"memory://streams/{uuid.uuid4().hex}"
    first = table.stream(ck, max_versions_per_batch=1)
    assert isinstance(first, ChangeStream)
    batch = first.poll()
    assert (batch.start_version, batch.end_version) == (0, 0)
    batch.commit()
    resumed = table.stream(ck, max_versions_per_batch=1).poll()
    assert (resumed.start_version, resumed.end_version) == (1, 1)
    assert _summary(resumed) == [(1, "insert", 1), (2, "insert", 1)]
    with pytest.raises(LakehouseError, match="max_versions_per_batch"):
        table.stream(ck, max_versions_per_batch=0)


def test_a_stream_behind_log_cleanup_names_the_checkpoint_the_gap_and_the_ways_out(table, tmp_path):
    import time

    from lakehouse.errors import StreamBehindCleanupError

    ck, pending_ck = str(tmp_path / "ck"), str(tmp_path / "pending")
    stream = ChangeStream(table, ck)
    stream.poll().commit()  # versions 0..2
    table.append(_rows(10))  # v3
    pending = ChangeStream(table, pending_ck, start=3).poll()  # planned, never committed: 3..3
    for i in range(11, 33):
        table.append(_rows(i))  # v4..v25, with checkpoints at 10 and 20
    table.cleanup_log(now_ms=int(time.time() * 1000) + 40 * 86400 * 1000)  # as if 40 days passed
    oldest = min(int(p.name[:20]) for p in (tmp_path / "t" / "_delta_log").glob("*.json"))
    assert oldest > 3
    for attempt in (lambda: ChangeStream(table, ck).poll(), lambda: pending.to_arrow(),
                    lambda: ChangeStream(table, pending_ck).poll().to_arrow()):
        with pytest.raises(StreamBehindCleanupError) as caught:
            attempt()
        error = caught.value
        assert isinstance(error, StreamCheckpointError) and error.earliest_available == oldest
        assert error.missing == (3, oldest - 1) and error.checkpoint.endswith(("/ck", "/pending"))
        message = str(error)
        assert f"versions 3..{oldest - 1}" in message and error.checkpoint in message
        assert 'start="latest"' in message and f"start={oldest}" in message
        assert "delta.logRetentionDuration" in message and "read changes from" not in message
    fresh = ChangeStream(table, str(tmp_path / "fresh"), start=oldest).poll()
    assert fresh.start_version == oldest and fresh.to_arrow().num_rows
