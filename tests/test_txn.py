"""Exactly-once writes: ``txn=(app_id, batch_version)`` records Delta's txn action."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pytest
from deltalake import DeltaTable

import lakehouse
from lakehouse.errors import LakehouseError
from lakehouse.rewrite import rewrite

SCHEMA = pa.schema([("id", pa.int64())])


def test_replayed_batches_are_skipped(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    assert table.txn_version("job") is None
    first = table.append(pa.table({"id": [1]}), txn=("job", 0))
    assert first["version"] == 1 and table.txn_version("job") == 0
    again = table.append(pa.table({"id": [1]}), txn=("job", 0))  # a replay after a crash
    assert again["skipped"] is True and again["version"] == 1
    table.append(pa.table({"id": [2]}), txn=("job", 1))
    table.append(pa.table({"id": [3]}), txn=("other", 0))  # app ids are independent
    assert table.delete("id = 3", txn=("job", 1))["skipped"] is True
    table.delete("id = 3", txn=("job", 2))
    assert table.overwrite(pa.table({"id": [9]}), txn=("job", 2))["skipped"] is True
    assert sorted(table.to_arrow().column("id").to_pylist()) == [1, 2]
    assert table.txn_version("job") == 2 and table.txn_version("other") == 0
    # the txn action is in the log as the protocol spells it, and deltalake sees it
    commit = (tmp_path / "t" / "_delta_log" / f"{table.version():020d}.json").read_text().splitlines()
    txn = [json.loads(line)["txn"] for line in commit if '"txn"' in line][0]
    assert txn["appId"] == "job" and txn["version"] == 2 and "lastUpdated" in txn
    assert DeltaTable(str(tmp_path / "t")).transaction_version("job") == 2


def test_txn_survives_checkpoints(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA, properties={"delta.checkpointInterval": "3"})
    for batch in range(7):
        table.append(pa.table({"id": [batch]}), txn=("job", batch))
    assert (tmp_path / "t" / "_delta_log" / "_last_checkpoint").exists()
    assert lakehouse.open_table(str(tmp_path / "t")).txn_version("job") == 6
    assert table.append(pa.table({"id": [3]}), txn=("job", 3))["skipped"] is True


def test_concurrent_replays_apply_once(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    results = []
    barrier = threading.Barrier(6)

    def replay() -> None:
        barrier.wait()
        results.append(lakehouse.open_table(str(tmp_path / "t")).append(pa.table({"id": [7]}), txn=("job", 5)))

    threads = [threading.Thread(target=replay) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for r in results if not r.get("skipped")) == 1
    assert table.to_arrow().column("id").to_pylist() == [7]
    assert list((tmp_path / "t").glob("*.parquet")).__len__() == 1  # the losers' files were removed


def test_rewrite_with_txn_and_bad_txn_values(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    table.append(pa.table({"id": [1, 2]}))
    snapshot = table.snapshot()
    path = snapshot.files.column("path")[0].as_py()
    rewrite(snapshot, removed_paths=[path], data=pa.table({"id": [2]}), operation="DELETE", txn=("job", 1))
    assert rewrite(table.snapshot(), removed_paths=[], data=pa.table({"id": [5]}), operation="WRITE",
                   txn=("job", 1))["skipped"] is True
    assert table.to_arrow().column("id").to_pylist() == [2]
    for bad in (("", 1), ("job", -1), ("job", "1"), "job"):
        with pytest.raises(LakehouseError, match="txn must be"):
            table.append(pa.table({"id": [1]}), txn=bad)  # type: ignore[arg-type]
