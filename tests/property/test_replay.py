"""Replay through a checkpoint must equal replay of the JSON commits alone.

For random histories (appends, overwrites, deletes, a schema change) over many column
types and small checkpoint intervals, every version is rebuilt twice: once the normal way
(newest checkpoint at or before it + later commits) and once from the JSON commits only
(a listing with the checkpoints left out). Both must give the same protocol, metadata,
live files with identical stats, tombstones and rows. Then the commits the newest
checkpoint covers are deleted (as log cleanup would) and the table must still open from
the checkpoint alone. Fixed tests cover corrupt checkpoints and a corrupt hint.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lakehouse
from lakehouse import LakehouseError, LakehouseWarning
from lakehouse.log.paths import checkpoint_name, commit_name
from lakehouse.log.replay import TableState, replay
from lakehouse.log.segment import LogListing, list_log, segment_for
from lakehouse.snapshot import Snapshot

UTC = dt.timezone.utc
BASE_FIELDS = [
    ("id", pa.int64()), ("p", pa.string()), ("d", pa.date32()), ("ts", pa.timestamp("us", tz="UTC")),
    ("dec", pa.decimal128(10, 2)), ("f", pa.float64()), ("s", pa.string()), ("b", pa.bool_()),
]
EXTRA_FIELD = ("extra", pa.int32())
LONG = "é" * 30 + "long-string-shared-prefix"

DELETE_FILTERS = [
    "id < 5", "id >= 7 and id < 12", "p = 'a'", "p is null", "f is null", "f > 0", "s like 'a%'",
    "ts > TIMESTAMP '2015-06-01 12:00:00.000001'", "dec >= 0", "d = '2020-01-01'", "b = true", "not (id in (1, 2, 3))",
]

values = {
    "id": st.integers(-5, 20),
    "p": st.sampled_from([None, "a", "b", "c d"]),
    "d": st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)) | st.just(dt.date(2020, 1, 1)) | st.none(),
    "ts": st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 1, 1), timezones=st.just(UTC)) | st.none(),
    "dec": st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False, allow_infinity=False) | st.none(),
    "f": st.floats(allow_nan=True, allow_infinity=True) | st.none(),
    "s": st.text("abé中\x7f", max_size=6) | st.sampled_from([LONG, LONG + "z", LONG[:31]]) | st.none(),
    "b": st.booleans() | st.none(),
    "extra": st.integers(-100, 100) | st.none(),
}


def _schema(with_extra: bool) -> pa.Schema:
    return pa.schema(BASE_FIELDS + ([EXTRA_FIELD] if with_extra else []))


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    with_extra = False
    ops = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["append", "append", "append", "overwrite", "delete", "delete", "evolve"]))
        if kind == "delete":
            ops.append(("delete", draw(st.sampled_from(DELETE_FILTERS))))
            continue
        if kind == "evolve":  # overwrite with a new schema (a metaData action mid-history)
            with_extra = not with_extra
        names = _schema(with_extra).names
        rows = draw(st.lists(st.fixed_dictionaries({n: values[n] for n in names}), max_size=8))
        ops.append((kind, rows, with_extra, draw(st.sampled_from([None, 1]))))
    return {
        "ops": ops,
        "partitioned": draw(st.booleans()),
        "interval": draw(st.sampled_from(["1", "2", "3", "5"])),
    }


def _run(table: lakehouse.Table, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        if op[0] == "delete":
            table.delete(op[1])
            continue
        kind, rows, with_extra, target = op
        data = pa.Table.from_pylist(rows, schema=_schema(with_extra))
        if kind == "append":
            table.append(data, target_file_size=target)
        elif kind == "overwrite":
            table.overwrite(data, target_file_size=target)
        else:
            table.overwrite(data, schema_mode="overwrite", target_file_size=target)


def _files(state: TableState) -> list[dict[str, Any]]:
    rows = state.files.to_pylist()
    for row in rows:
        row["partitionValues"] = dict(row["partitionValues"] or [])
        row["tags"] = dict(row["tags"]) if row["tags"] else None
    return sorted(rows, key=lambda r: r["path"])


def _tombstones(state: TableState) -> set[tuple[Any, ...]]:
    # Checkpoints drop the stats of removes (protocol §3), so those are not compared.
    return {(t.path, t.data_change, t.deletion_timestamp, t.size,
             tuple(sorted((t.partition_values or {}).items()))) for t in state.tombstones}


def _row_bag(table: lakehouse.Table, state: TableState) -> Counter:
    rows = Snapshot(table.location, state.version, 0, state).to_arrow().to_pylist()
    # NaN != NaN, so compare a printable form of each row.
    return Counter(repr(sorted(r.items())) for r in rows)


def _assert_same_state(table: lakehouse.Table, a: TableState, b: TableState) -> None:
    assert a.version == b.version
    assert a.protocol == b.protocol
    assert a.metadata == b.metadata
    assert _files(a) == _files(b)
    assert _tombstones(a) == _tombstones(b)
    assert a.txns == b.txns
    assert a.domains == b.domains
    assert _row_bag(table, a) == _row_bag(table, b)


def check_replay_equivalence(folder: str, history: dict[str, Any]) -> None:
    interval = int(history["interval"])
    table = lakehouse.create_table(
        f"{folder}/t", _schema(False), partition_by=["p"] if history["partitioned"] else [],
        properties={"delta.checkpointInterval": history["interval"]})
    _run(table, history["ops"])
    storage, root, name = table.location.storage, table.location.root, table.name
    listing = list_log(storage, root, table=name)
    latest = listing.latest_version
    assert latest == len(history["ops"])
    # A checkpoint was written at every multiple of the interval.
    assert sorted(listing.checkpoints) == [v for v in range(1, latest + 1) if v % interval == 0]
    json_only = LogListing(listing.commits, {})

    json_states = {}
    for version in range(latest + 1):
        segment = segment_for(listing, version, table=name)
        expected_checkpoint = version - version % interval if version >= interval else None
        assert segment.checkpoint_version == expected_checkpoint
        through_checkpoint = replay(storage, listing, version, table=name)
        json_states[version] = from_json = replay(storage, json_only, version, table=name)
        _assert_same_state(table, through_checkpoint, from_json)
        if segment.commits:  # the target's commitInfo comes from its own JSON
            assert through_checkpoint.commit_info == from_json.commit_info

    if not listing.checkpoints:
        return
    newest = max(listing.checkpoints)
    hint = json.loads(storage.read(storage.join(root, "_delta_log", "_last_checkpoint")))
    assert hint["version"] == newest
    assert hint["numOfAddFiles"] == json_states[newest].files.num_rows

    # Log cleanup: without the commits the newest checkpoint covers, the checkpoint alone
    # must rebuild every version from it on, and older versions must be refused.
    for version in range(newest + 1):
        os.remove(Path(folder, "t", "_delta_log", commit_name(version)))
    for version in listing.checkpoints:
        if version != newest:
            os.remove(Path(folder, "t", "_delta_log", checkpoint_name(version)))
    for version in range(newest, latest + 1):
        snapshot = table.snapshot(version=version)
        _assert_same_state(table, snapshot.state, json_states[version])
    if newest > 0:
        with pytest.raises(lakehouse.VersionNotFoundError):
            table.snapshot(version=newest - 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=histories())
def test_checkpoint_replay_equals_json_replay(history: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_replay_equivalence(folder, history)


# --- corrupt checkpoints and hints --------------------------------------------------------


def _table_with_checkpoints(path: Path, appends: int, interval: int) -> tuple[lakehouse.Table, list[int]]:
    table = lakehouse.create_table(str(path), [("id", pa.int64()), ("s", pa.string())],
                                   properties={"delta.checkpointInterval": str(interval)})
    for i in range(appends):
        table.append(pa.table({"id": pa.array([2 * i, 2 * i + 1], pa.int64()), "s": [f"r{i}", None]}))
    return table, list(range(2 * appends))


def _ids(snapshot: Snapshot) -> list[int]:
    return sorted(snapshot.to_arrow().column("id").to_pylist())


def _log(path: Path, name: str) -> Path:
    return path / "_delta_log" / name


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "t"
    table, ids = _table_with_checkpoints(path, appends=4, interval=3)
    checkpoint = _log(path, checkpoint_name(3))
    data = checkpoint.read_bytes()
    checkpoint.write_bytes({"truncate": data[: len(data) // 2], "empty": b"",
                            "garbage": b"\x00not parquet at all" * (len(data) // 19 + 1)}[damage])

    with pytest.warns(LakehouseWarning, match="checkpoint"):
        snapshot = lakehouse.open_table(str(path)).snapshot()
    assert snapshot.version == 4
    assert _ids(snapshot) == ids
    with pytest.warns(LakehouseWarning, match="checkpoint"):
        at_three = table.snapshot(version=3)
    assert _ids(at_three) == ids[:6]
    # Versions before the damaged checkpoint never touch it: no warning at all.
    assert _ids(table.snapshot(version=2)) == ids[:4]


def test_corrupt_newest_checkpoint_falls_back_to_the_older_one(tmp_path: Path) -> None:
    path = tmp_path / "t"
    table, ids = _table_with_checkpoints(path, appends=5, interval=2)
    checkpoint = _log(path, checkpoint_name(4))
    checkpoint.write_bytes(checkpoint.read_bytes()[:40])
    # Without the JSON commits before checkpoint 2, only checkpoint 2 can rebuild version 5.
    for version in range(2):
        _log(path, commit_name(version)).unlink()
    with pytest.warns(LakehouseWarning, match=checkpoint_name(4)):
        snapshot = table.snapshot()
    assert snapshot.version == 5
    assert _ids(snapshot) == ids


def test_corrupt_checkpoint_without_older_commits_is_an_error_not_wrong_data(tmp_path: Path) -> None:
    path = tmp_path / "t"
    table, _ = _table_with_checkpoints(path, appends=4, interval=3)
    _log(path, checkpoint_name(3)).write_bytes(b"PAR1")
    for version in range(3):
        _log(path, commit_name(version)).unlink()
    with pytest.warns(LakehouseWarning, match="checkpoint"), pytest.raises(LakehouseError, match="version 4"):
        table.snapshot()


def test_writes_continue_past_a_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "t"
    table, ids = _table_with_checkpoints(path, appends=4, interval=3)
    _log(path, checkpoint_name(3)).write_bytes(b"")
    with pytest.warns(LakehouseWarning, match="checkpoint"):
        table.append(pa.table({"id": pa.array([100], pa.int64()), "s": ["new"]}))
        table.append(pa.table({"id": pa.array([101], pa.int64()), "s": ["new"]}))  # version 6: a new checkpoint
    assert _log(path, checkpoint_name(6)).exists()
    snapshot = table.snapshot()  # rebuilt from the fresh checkpoint: no warning
    assert snapshot.version == 6
    assert _ids(snapshot) == ids + [100, 101]


@pytest.mark.parametrize("hint", [b"", b"{not json", b'{"version": 99, "size": 1}', b'{"version": 0, "size": 3}'])
def test_last_checkpoint_hint_is_not_trusted(tmp_path: Path, hint: bytes) -> None:
    path = tmp_path / "t"
    table, ids = _table_with_checkpoints(path, appends=4, interval=3)
    _log(path, "_last_checkpoint").write_bytes(hint)
    snapshot = lakehouse.open_table(str(path)).snapshot()
    assert snapshot.version == 4
    assert _ids(snapshot) == ids


def test_copied_table_without_checkpoints_matches(tmp_path: Path) -> None:
    """Deleting every checkpoint file (a pure-JSON copy) changes nothing readers can see."""
    path = tmp_path / "t"
    table, ids = _table_with_checkpoints(path, appends=7, interval=2)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    for checkpoint in (copy / "_delta_log").glob("*.checkpoint.parquet"):
        checkpoint.unlink()
    (copy / "_delta_log" / "_last_checkpoint").unlink()
    plain = lakehouse.open_table(str(copy))
    for version in range(8):
        a, b = table.snapshot(version=version), plain.snapshot(version=version)
        assert _files(a.state) == _files(b.state)
        assert _ids(a) == _ids(b) == ids[: 2 * version]
