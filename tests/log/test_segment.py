"""Choosing the files that rebuild a version: checkpoints, gaps, hints, commit timestamps."""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import CorruptLogError, LakehouseWarning, TableNotFoundError, VersionNotFoundError
from lakehouse.log.paths import LAST_CHECKPOINT, checkpoint_name, commit_name
from lakehouse.log.segment import list_log, segment_for
from lakehouse.storage.local import LocalStorage


def multipart_name(version: int, part: int, parts: int) -> str:
    return f"{version:020d}.checkpoint.{part:010d}.{parts:010d}.parquet"


@pytest.fixture
def log(tmp_path):
    """An empty ``_delta_log``; tests fill it with (empty) named files: listing reads no contents."""
    folder = tmp_path / "_delta_log"
    folder.mkdir()

    def touch(*names: str) -> None:
        for name in names:
            (folder / name).write_bytes(b"")

    touch.folder = folder  # type: ignore[attr-defined]
    touch.root = str(tmp_path)  # type: ignore[attr-defined]
    return touch


def listing_of(log):
    return list_log(LocalStorage(), log.root, table="t")


def test_newest_checkpoint_at_or_before_the_version_is_chosen(log):
    log(*(commit_name(v) for v in range(13)), checkpoint_name(5), checkpoint_name(10))
    listing = listing_of(log)
    assert listing.latest_version == 12 and listing.earliest_version == 0
    latest = segment_for(listing, None, table="t")
    assert latest.version == 12 and latest.checkpoint_version == 10
    assert [v for v, _ in latest.commits] == [11, 12]
    assert latest.checkpoint_files[0].name == checkpoint_name(10)
    middle = segment_for(listing, 7, table="t")
    assert middle.checkpoint_version == 5 and [v for v, _ in middle.commits] == [6, 7]
    exact = segment_for(listing, 10, table="t")
    assert exact.checkpoint_version == 10 and exact.commits == ()
    early = segment_for(listing, 4, table="t")
    assert early.checkpoint_version is None and [v for v, _ in early.commits] == [0, 1, 2, 3, 4]


def test_incomplete_multipart_checkpoint_is_ignored(log):
    log(*(commit_name(v) for v in range(13)), checkpoint_name(5),
        multipart_name(8, 1, 3), multipart_name(8, 2, 3), multipart_name(8, 3, 3),  # complete
        multipart_name(12, 1, 3), multipart_name(12, 3, 3))  # part 2 missing
    listing = listing_of(log)
    assert sorted(listing.checkpoints) == [5, 8]
    segment = segment_for(listing, None, table="t")
    assert segment.checkpoint_version == 8
    assert [f.name for f in segment.checkpoint_files] == [multipart_name(8, p, 3) for p in (1, 2, 3)]
    assert [v for v, _ in segment.commits] == [9, 10, 11, 12]


def test_unreadable_checkpoints_can_be_skipped(log):
    log(*(commit_name(v) for v in range(13)), checkpoint_name(5), checkpoint_name(10))
    listing = listing_of(log)
    assert segment_for(listing, 12, table="t", skip_checkpoints=frozenset({10})).checkpoint_version == 5
    fallback = segment_for(listing, 12, table="t", skip_checkpoints=frozenset({5, 10}))
    assert fallback.checkpoint_version is None and len(fallback.commits) == 13


def test_files_that_are_not_log_files_are_ignored(log):
    log(commit_name(0), commit_name(1), "00000000000000000001.crc", ".00000000000000000002.json.x.tmp",
        "00000000000000000002.json.partial", LAST_CHECKPOINT,
        "00000000000000000001.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json")
    listing = listing_of(log)
    assert sorted(listing.commits) == [0, 1] and listing.checkpoints == {}


def test_gap_after_the_checkpoint_is_corrupt(log):
    log(*(commit_name(v) for v in range(13) if v != 11), checkpoint_name(10))
    listing = listing_of(log)
    with pytest.raises(CorruptLogError, match=r"commit 11 is missing"):
        segment_for(listing, 12, table="t")
    assert segment_for(listing, 10, table="t").checkpoint_version == 10  # before the gap: fine


def test_commits_cleaned_up_below_a_checkpoint_are_fine(log):
    log(*(commit_name(v) for v in range(5, 13)), checkpoint_name(5), checkpoint_name(10))
    listing = listing_of(log)
    assert listing.earliest_version == 5
    assert segment_for(listing, 7, table="t").checkpoint_version == 5
    with pytest.raises(VersionNotFoundError, match=r"no version 3: versions 5 to 12"):
        segment_for(listing, 3, table="t")
    # If the only checkpoint that could rebuild version 7 is unreadable, say so.
    with pytest.raises(VersionNotFoundError, match="checkpoint is unreadable"):
        segment_for(listing, 7, table="t", skip_checkpoints=frozenset({5}))


def test_missing_first_commits_without_checkpoint_are_corrupt(log):
    log(*(commit_name(v) for v in range(3, 6)))
    with pytest.raises(CorruptLogError, match=r"commits 0 to 2 are missing.*no checkpoint"):
        segment_for(listing_of(log), None, table="t")


def test_out_of_range_versions(log):
    log(commit_name(0), commit_name(1))
    listing = listing_of(log)
    for version in (2, -1):
        with pytest.raises(VersionNotFoundError, match=r"versions 0 to 1"):
            segment_for(listing, version, table="t")


def test_empty_log_is_not_a_table(log):
    log(LAST_CHECKPOINT, "README")
    with pytest.raises(TableNotFoundError):
        listing_of(log)


# --- commit timestamps ----------------------------------------------------------------


def test_commit_timestamps_are_made_strictly_increasing(log):
    log(*(commit_name(v) for v in range(5)))
    for version, ms in enumerate([5_000, 5_000, 4_000, 9_000, 9_000]):
        path = log.folder / commit_name(version)
        os.utime(path, ns=(ms * 1_000_000, ms * 1_000_000))
    assert listing_of(log).commit_timestamps() == {0: 5_000, 1: 5_001, 2: 5_002, 3: 9_000, 4: 9_001}


def test_time_travel_uses_the_monotonic_timestamps(table_path):
    table = lakehouse.create_table(table_path, pa.schema([("id", pa.int64())]))
    for i in range(3):
        table.append(pa.table({"id": [i]}))
    # Copying a table can give every commit the same mtime (delta#192): versions must
    # still be told apart by timestamp.
    same = 1_700_000_000_000
    for version in range(4):
        path = os.path.join(table_path, "_delta_log", commit_name(version))
        os.utime(path, ns=(same * 1_000_000, same * 1_000_000))
    history = table.history()
    assert [h["timestamp"] for h in history] == [same + 3, same + 2, same + 1, same]
    at = lambda ms: dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)  # noqa: E731
    assert table.snapshot(timestamp=at(same + 2)).version == 2
    assert table.snapshot(timestamp=same + 1).version == 1
    assert table.snapshot(timestamp=same + 1000).version == 3


# --- _last_checkpoint is only a hint --------------------------------------------------


@pytest.fixture
def checkpointed(table_path):
    """Checkpoints at versions 2 and 4 (interval 2), commits 0..5."""
    table = lakehouse.create_table(table_path, pa.schema([("id", pa.int64())]),
                                   properties={"delta.checkpointInterval": "2"})
    for i in range(5):
        table.append(pa.table({"id": [i]}))
    log_dir = os.path.join(table_path, "_delta_log")
    assert os.path.exists(os.path.join(log_dir, checkpoint_name(4)))
    assert json.load(open(os.path.join(log_dir, LAST_CHECKPOINT)))["version"] == 4
    return table, log_dir


@pytest.mark.parametrize("hint", [
    b"", b"garbage{", b'{"version": 2, "size": 3}', b'{"version": 99, "size": 1}', b'{"version": "x"}',
], ids=["empty", "garbage", "stale", "dangling", "wrong-type"])
def test_bad_last_checkpoint_hint_does_not_matter(checkpointed, hint):
    table, log_dir = checkpointed
    with open(os.path.join(log_dir, LAST_CHECKPOINT), "wb") as handle:
        handle.write(hint)
    listing = list_log(table.location.storage, table.location.root, table="table")
    assert segment_for(listing, None, table="table").checkpoint_version == 4
    assert sorted(table.to_arrow().column("id").to_pylist()) == [0, 1, 2, 3, 4]
    assert table.snapshot(version=3).to_arrow().num_rows == 3


def test_missing_last_checkpoint_and_junk_parts_do_not_matter(checkpointed):
    table, log_dir = checkpointed
    os.remove(os.path.join(log_dir, LAST_CHECKPOINT))
    # A half-written multi-part checkpoint newer than the real one: if it were used the
    # read would fail, because its one part is not Parquet.
    with open(os.path.join(log_dir, multipart_name(5, 1, 2)), "wb") as handle:
        handle.write(b"not parquet")
    assert sorted(table.to_arrow().column("id").to_pylist()) == [0, 1, 2, 3, 4]


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(checkpointed):
    table, log_dir = checkpointed
    with open(os.path.join(log_dir, checkpoint_name(4)), "wb") as handle:
        handle.write(b"PAR1 torn")
    with pytest.warns(LakehouseWarning, match=r"checkpoint '00000000000000000004.checkpoint.parquet'"):
        rows = table.to_arrow()
    assert sorted(rows.column("id").to_pylist()) == [0, 1, 2, 3, 4]


def test_checkpoint_alone_rebuilds_after_commit_cleanup(checkpointed):
    table, log_dir = checkpointed
    # What Delta's log cleanup leaves: everything below the checkpoint at 4 is gone.
    for version in range(4):
        os.remove(os.path.join(log_dir, commit_name(version)))
    os.remove(os.path.join(log_dir, checkpoint_name(2)))
    assert sorted(table.to_arrow().column("id").to_pylist()) == [0, 1, 2, 3, 4]
    assert table.snapshot(version=4).to_arrow().num_rows == 4
    with pytest.raises(VersionNotFoundError, match="versions 4 to 5"):
        table.snapshot(version=3)
    # Even the checkpointed version's own commit may go: the checkpoint stands in for it.
    os.remove(os.path.join(log_dir, commit_name(4)))
    snapshot = table.snapshot(version=4)
    assert snapshot.to_arrow().num_rows == 4 and snapshot.timestamp_ms > 0
    assert [h["version"] for h in table.history()] == [5]
