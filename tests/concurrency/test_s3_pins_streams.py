"""Tags, change streams, exactly-once writes and ML reads on a real S3-compatible server.

Every one of these relies on put-if-absent files (tag events, stream offsets and commits,
Delta commits), which S3 gives through a conditional PUT: racing threads must see exactly
one winner (tested on local files; moto is not linearizable under many threads) and a
restarted consumer must resume from what the bucket says.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.errors import DataFileError, TagExistsError

pytestmark = pytest.mark.s3

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def _rows(*ids: int) -> pa.Table:
    return pa.table({"id": list(ids), "v": [f"r{i}" for i in ids]}, schema=SCHEMA)


def test_tags_on_s3_are_put_if_absent(s3):
    # Racing taggers are tested on local files (tests/test_tags.py): moto's conditional PUT is
    # not linearizable under many threads (reliability notes). Here: the wire path itself.
    table = lakehouse.create_table(s3.url(), SCHEMA, storage_options=s3.storage_options)
    table.append(_rows(1, 2))
    table.append(_rows(3))
    first = table.tag("release", version=1)
    with pytest.raises(TagExistsError, match="already has a tag 'release'"):
        table.tag("release", version=2)
    reopened = lakehouse.open_table(table.uri, storage_options=s3.storage_options)
    assert reopened.tags()["release"] == first
    assert reopened.verify("release").ok
    reopened.drop_tag("release")
    assert reopened.tag("release", version=2).version == 2  # a new event after the drop


def test_tagged_version_survives_vacuum_on_s3(s3):
    table = lakehouse.create_table(s3.url(), SCHEMA, storage_options=s3.storage_options)
    table.append(_rows(1, 2))
    pinned = table.snapshot().to_arrow()
    table.tag("train", version=1)
    table.overwrite(_rows(9))
    report = table.vacuum(0, enforce_retention=False)
    assert report["num_files"] == 0 and report["kept_by_pins"]
    assert table.snapshot(tag="train").to_arrow().equals(pinned)
    table.drop_tag("train")
    assert table.vacuum(0, enforce_retention=False)["num_files"] == 1
    with pytest.raises(DataFileError):
        table.snapshot(1).to_arrow()


def test_stream_checkpoint_on_s3_resumes_and_sink_is_exactly_once(s3):
    source = lakehouse.create_table(s3.url(), SCHEMA, storage_options=s3.storage_options)
    sink = lakehouse.create_table(s3.url(), SCHEMA, storage_options=s3.storage_options)
    checkpoint = f"s3://{s3.bucket}/checkpoints/{uuid.uuid4().hex}"
    source.append(_rows(1, 2))
    stream = source.stream(checkpoint, storage_options=s3.storage_options)
    batch = stream.poll()
    rows = batch.to_arrow(columns=["id", "v"]).select(["id", "v"])
    sink.append(rows, txn=("copy", batch.batch_id))
    # a crash here (sink written, batch not committed) replays the batch: the txn skips it
    replay = source.stream(checkpoint, storage_options=s3.storage_options).poll()
    assert replay.batch_id == batch.batch_id
    assert sink.append(replay.to_arrow(columns=["id", "v"]).select(["id", "v"]), txn=("copy", replay.batch_id)).get("skipped")
    replay.commit()
    source.append(_rows(3))
    resumed = source.stream(checkpoint, storage_options=s3.storage_options).poll()
    assert (resumed.batch_id, resumed.start_version, resumed.end_version) == (1, 2, 2)
    sink.append(resumed.to_arrow(columns=["id", "v"]).select(["id", "v"]), txn=("copy", resumed.batch_id))
    resumed.commit()
    assert sorted(sink.to_arrow().column("id").to_pylist()) == [1, 2, 3]
    assert sink.txn_version("copy") == 1


def test_sharded_shuffled_reads_on_s3_are_disjoint_and_complete(s3):
    table = lakehouse.create_table(s3.url(), SCHEMA, storage_options=s3.storage_options)
    for start in range(0, 60, 10):
        table.append(_rows(*range(start, start + 10)))
    scan = table.snapshot().scan(columns=["id"])
    seen: list[int] = []
    for rank in range(3):
        for batch in scan.to_batches(4, shuffle=True, seed=5, rank=rank, world_size=3):
            seen += batch.column("id").to_pylist()
    assert sorted(seen) == list(range(60))
