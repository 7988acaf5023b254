"""Table.verify(tag): fingerprint, files present with their sizes, rows hash (lakehouse.verify)."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse import verify as verify_module
from lakehouse.errors import TagNotFoundError

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("tags", pa.list_(pa.int32())),
                    ("score", pa.float64()), ("flag", pa.bool_())])


def rows(ids, seed: int = 0) -> pa.Table:
    ids = list(ids)
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": ids,
        "name": [None if i % 7 == 3 else f"name-{i}" for i in ids],
        "tags": [None if i % 5 == 0 else [i % 3, i % 4] for i in ids],
        "score": [None if i % 11 == 0 else float(v) for i, v in zip(ids, rng.random(len(ids)))],
        "flag": [i % 2 == 0 for i in ids],
    }, schema=SCHEMA)


@pytest.fixture(params=["local", "memory"])
def table(request, tmp_path, memory_path) -> lakehouse.Table:
    """Versions 1 and 2 append a file each; tag 'pinned' is version 2 (with a rows hash)."""
    location = str(tmp_path / "t") if request.param == "local" else memory_path
    t = lakehouse.create_table(location, SCHEMA)
    t.append(rows(range(0, 40)))
    t.append(rows(range(40, 70), seed=1))
    t.tag("pinned")
    return t


def data_path(table: lakehouse.Table, version: int = 2, index: int = 0) -> tuple[str, str]:
    """(log path, storage path) of one live file of ``version``, files in sorted order."""
    raw = sorted(table.snapshot(version).files.column("path").to_pylist())[index]
    return raw, table.location.path(raw)


def test_fresh_tag_verifies(table):
    report = table.verify("pinned")
    assert report == verify_module.VerifyReport(ok=True, tag="pinned", version=2, fingerprint_ok=True, missing=(),
                                                size_mismatch=(), rows_hash_ok=True)
    assert str(report).startswith("tag 'pinned' (version 2): ok") and "\n" not in str(report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = False  # type: ignore[misc]
    # Later writes do not disturb the pinned version.
    table.append(rows(range(70, 80)))
    table.delete("id < 10")
    assert table.verify("pinned").ok


def test_tag_records_rows_hash_of_the_version(table):
    tag = table.tags()["pinned"]
    assert tag.rows_hash == verify_module.rows_hash(table.snapshot(2))
    assert tag.rows_hash.startswith("v1:") and len(tag.rows_hash) == 3 + 64
    assert verify_module.rows_hash(table.snapshot(1)) != tag.rows_hash


def test_rows_hash_does_not_depend_on_batch_boundaries(table, monkeypatch):
    expected = table.tags()["pinned"].rows_hash
    for batch_rows in (1, 3, 17):
        monkeypatch.setattr(verify_module, "_BATCH_ROWS", batch_rows)
        assert verify_module.rows_hash(table.snapshot(2)) == expected


def test_rows_hash_sees_a_single_changed_value(tmp_path):
    t = lakehouse.create_table(str(tmp_path / "a"), SCHEMA)
    u = lakehouse.create_table(str(tmp_path / "b"), SCHEMA)
    t.append(rows(range(20)))
    changed = rows(range(20)).to_pylist()
    changed[13]["name"] = None  # a null where there was a value
    u.append(pa.Table.from_pylist(changed, schema=SCHEMA))
    assert verify_module.rows_hash(t.snapshot()) != verify_module.rows_hash(u.snapshot())


def test_deleted_data_file_is_named_missing(table):
    raw, path = data_path(table)
    table.location.storage.delete(path)
    report = table.verify("pinned")
    assert not report.ok and report.fingerprint_ok
    assert report.missing == (raw,) and report.size_mismatch == ()
    assert report.rows_hash_ok is False
    assert raw in str(report) and "missing" in str(report)


def test_rewritten_file_of_another_size_is_detected(table):
    raw, path = data_path(table)
    storage = table.location.storage
    sink = pa.BufferOutputStream()
    pq.write_table(rows(range(1000, 1003)), sink)  # different rows, different size
    storage.write(path, sink.getvalue().to_pybytes())
    report = table.verify("pinned")
    assert not report.ok
    assert report.size_mismatch == (raw,) and report.missing == ()
    assert report.rows_hash_ok is False
    assert "different size" in str(report)


def test_same_size_file_with_different_rows_is_detected(tmp_path):
    # Random 8-byte ids are incompressible, so snappy stores them verbatim: flipping one bit
    # of a middle value (not a min/max statistic) changes a row and keeps a valid file.
    values = np.random.default_rng(3).integers(1 << 40, 1 << 62, 200, dtype=np.int64)
    t = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("id", pa.int64())]))
    t.append(pa.table({"id": values}))
    t.tag("pinned")
    raw = t.snapshot().files.column("path")[0].as_py()
    path = t.location.path(raw)
    data = bytearray(t.location.storage.read(path))
    needle = int(np.sort(values)[100]).to_bytes(8, "little", signed=True)
    assert data.count(needle) == 1
    data[data.find(needle)] ^= 1
    t.location.storage.write(path, bytes(data))
    assert sorted(t.to_arrow().column("id").to_pylist()) != sorted(values.tolist())  # the rows did change
    report = t.verify("pinned")
    assert report.fingerprint_ok and report.missing == () and report.size_mismatch == ()
    assert report.rows_hash_ok is False and not report.ok
    assert "rows do not hash the same" in str(report)
    assert t.verify("pinned", rows=False).ok  # without the rows only files and sizes are checked


def test_unreadable_file_of_the_same_size_is_listed(table):
    raw, path = data_path(table)
    storage = table.location.storage
    size = len(storage.read(path))
    storage.write(path, b"\0" * size)  # same size, not Parquet any more
    report = table.verify("pinned")
    assert not report.ok and report.unreadable == (raw,) and report.rows_hash_ok is False
    assert "unreadable" in str(report)


def test_tag_without_rows_hash(table):
    tag = table.tag("fast", version=1, hash_rows=False)
    assert tag.rows_hash is None and table.tags()["fast"].rows_hash is None
    report = table.verify("fast")
    assert report.ok and report.rows_hash_ok is None
    assert "rows were not checked" in str(report)
    raw, path = data_path(table, version=1)
    table.location.storage.delete(path)
    report = table.verify("fast")
    assert not report.ok and report.missing == (raw,) and report.rows_hash_ok is None


def test_unknown_tag_raises(table):
    with pytest.raises(TagNotFoundError, match="no tag 'pined'.*did you mean 'pinned'"):
        table.verify("pined")


def test_fingerprint_mismatch_is_reported(table):
    # A later event for the tag whose fingerprint differs, as if the log had been rewritten
    # under the tag: written with the storage API exactly as refs writes events.
    storage = table.location.storage
    folder = table.location.path("_lakehouse", "refs", "tags")
    (head,) = [info for info in storage.list_dir(folder) if info.name.startswith("pinned@")]
    event = json.loads(storage.read(head.path))
    event.update(seq=2, fingerprint="0" * 64)
    storage.write_if_absent(storage.join(folder, f"pinned@{2:020d}.json"), json.dumps(event).encode())
    report = table.verify("pinned")
    assert not report.ok and not report.fingerprint_ok and report.rows_hash_ok is True
    assert "fingerprint" in str(report)


def test_partitioned_table_hashes_partition_values(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("region", pa.string())])
    t = lakehouse.create_table(str(tmp_path / "p"), schema, partition_by=["region"])
    t.append(pa.table({"id": [1, 2, 3], "region": ["eu", "us", "eu"]}, schema=schema))
    t.tag("pinned")
    assert t.verify("pinned").ok
    assert os.path.isdir(tmp_path / "p" / "region=eu")
