"""The public Table API: one version per write, metrics, inputs, deletes, time travel, history."""

from __future__ import annotations

import json
import os
import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import lakehouse
from lakehouse import SchemaError

SCHEMA = pa.schema([("id", pa.int64()), ("p", pa.string()), ("v", pa.float64())])


def rows(table: lakehouse.Table | lakehouse.Snapshot, column: str = "id") -> list:
    return sorted(table.to_arrow().column(column).to_pylist())


def batch(ids: range | list[int], p: str = "a") -> pa.Table:
    ids = list(ids)
    return pa.table({"id": pa.array(ids, pa.int64()), "p": [p] * len(ids), "v": [float(i) / 2 for i in ids]})


def commit_actions(table: lakehouse.Table, version: int) -> list[dict]:
    storage = table.location.storage
    data = storage.read(table.location.path("_delta_log", f"{version:020d}.json"))
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def paths_of(actions: list[dict], kind: str) -> set[str]:
    return {a[kind]["path"] for a in actions if kind in a}


# --- one version per write ------------------------------------------------------------


def test_each_write_creates_exactly_one_version_and_returns_metrics(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    assert table.version() == 0

    appended = table.append(batch(range(10)))
    assert table.version() == 1
    assert appended == {"version": 1, "num_added_files": 1, "num_added_rows": 10,
                        "num_added_bytes": appended["num_added_bytes"]}
    assert appended["num_added_bytes"] == os.path.getsize(
        os.path.join(table_path, paths_of(commit_actions(table, 1), "add").pop()))

    overwritten = table.overwrite(batch(range(100, 105)))
    assert table.version() == 2
    assert overwritten == {"version": 2, "num_added_files": 1, "num_added_rows": 5, "num_removed_files": 1}

    deleted = table.delete("id >= 103")
    assert table.version() == 3
    assert deleted == {"version": 3, "num_deleted_rows": 2, "num_removed_files": 1, "num_added_files": 1,
                       "num_copied_rows": 3}
    assert rows(table) == [100, 101, 102]

    nothing = table.delete("id = 999")  # matches nothing: still exactly one (empty) version
    assert table.version() == 4 and nothing["num_deleted_rows"] == 0 and nothing["num_removed_files"] == 0
    assert rows(table) == [100, 101, 102]


def test_empty_append_still_commits_one_version(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    result = table.append(SCHEMA.empty_table())
    assert result["version"] == 1 and result["num_added_files"] == 0 and table.to_arrow().num_rows == 0


def test_small_target_file_size_splits_a_large_append(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    rng = random.Random(3)
    ids = [rng.randrange(1 << 62) for _ in range(200_000)]  # random: compresses poorly
    data = pa.table({"id": pa.array(ids, pa.int64()), "p": ["x"] * len(ids), "v": [float(i) for i in range(len(ids))]})
    target = 512 * 1024
    result = table.append(data, target_file_size=target)
    assert result["num_added_files"] >= 3
    adds = [a["add"] for a in commit_actions(table, 1) if "add" in a]
    assert len(adds) == result["num_added_files"]
    assert sum(json.loads(a["stats"])["numRecords"] for a in adds) == len(ids)
    assert all(a["size"] < 4 * target for a in adds)  # each closes near the target
    assert table.snapshot().num_records == len(ids)
    assert pc.sum(table.to_arrow(columns=["v"]).column("v")).as_py() == sum(range(len(ids)))


def test_target_file_size_table_property_is_honoured(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, properties={"delta.targetFileSize": str(256 * 1024)})
    ids = list(range(0, 300_000 * 7919, 7919))
    result = table.append(pa.table({"id": pa.array(ids, pa.int64()), "p": ["x"] * len(ids),
                                    "v": [i * 1.1 for i in ids]}))
    assert result["num_added_files"] >= 2


# --- inputs ---------------------------------------------------------------------------


def test_pandas_polars_and_arrow_inputs_are_accepted(table_path):
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(pd.DataFrame({"id": [1, 2], "p": ["a", "b"], "v": [0.5, 1.0]}))
    table.append(pl.DataFrame({"id": [3], "p": ["c"], "v": [1.5]}))  # polars strings are large/view types
    first = batch([4, 5]).to_batches()[0]
    table.append(pa.RecordBatchReader.from_batches(first.schema, [first, batch([6]).to_batches()[0]]))
    table.append(batch([7]).to_batches()[0])  # a single RecordBatch
    table.append([{"id": 8, "p": "d", "v": 4.0}])  # a list of rows
    assert table.version() == 5
    assert rows(table) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert table.to_arrow().schema == SCHEMA  # stored types, whatever the input types were
    frame = table.snapshot().to_pandas()
    assert sorted(frame["id"].tolist()) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert table.scan(filter="id > 6").to_polars()["id"].sort().to_list() == [7, 8]


def test_unknown_input_type_is_a_schema_error(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    with pytest.raises(SchemaError, match="cannot write data of type int"):
        table.append(42)


@pytest.mark.parametrize("keys, count", [(["p"], 7), (["p"], 100), (["p"], 3000), (["p", "q"], 3000)])
def test_partitioned_rows_land_in_their_own_partition(tmp_path, keys, count):
    """Regression: groups were matched to sorted rows by position, but Arrow's group_by
    does not promise groups in sorted order, so rows were written under the wrong value."""
    schema = pa.schema([("p", pa.string()), ("q", pa.int32()), ("id", pa.int64())])
    table = lakehouse.create_table(str(tmp_path / "t"), schema, partition_by=keys)
    rng = random.Random(5)
    choices_p = ["/%20%f", "a b", "15:30", "\U0001f608", None, "plain", "\u00e9"]
    ps = choices_p if count == len(choices_p) else [rng.choice(choices_p) for _ in range(count)]
    data = [(p, rng.choice([1, 2, None]), i) for i, p in enumerate(ps)]
    table.append(pa.table({"p": [d[0] for d in data], "q": pa.array([d[1] for d in data], pa.int32()),
                           "id": [d[2] for d in data]}, schema=schema))
    got = {(r["p"], r["q"], r["id"]) for r in table.to_arrow().to_pylist()}
    assert got == set(data)
    # Skipping by partition value agrees with the rows, too.
    assert table.to_arrow(filter="p = 'plain'").num_rows == sum(1 for d in data if d[0] == "plain")


# --- deletes --------------------------------------------------------------------------


def test_delete_rewrites_only_files_that_may_match(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    for start in (0, 10, 20):
        table.append(batch(range(start, start + 10)))
    files_by_first_id = {json.loads(a["add"]["stats"])["minValues"]["id"]: a["add"]["path"]
                         for v in (1, 2, 3) for a in commit_actions(table, v) if "add" in a}
    result = table.delete("id = 15 or id = 16")
    actions = commit_actions(table, 4)
    assert paths_of(actions, "remove") == {files_by_first_id[10]}  # stats ruled out the other two
    assert len(paths_of(actions, "add")) == 1 and result["num_copied_rows"] == 8
    assert result["num_deleted_rows"] == 2
    assert rows(table) == [i for i in range(30) if i not in (15, 16)]
    info = actions[0]["commitInfo"]
    assert info["operation"] == "DELETE" and info["operationMetrics"]["numRemovedFiles"] == "1"


def test_partition_only_delete_removes_whole_files_without_reading_them(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, partition_by=["p"])
    table.append(pa.concat_tables([batch(range(0, 5), "a"), batch(range(5, 10), "b"), batch(range(10, 15), "c")]))
    adds = {a["add"]["partitionValues"]["p"]: a["add"]["path"] for a in commit_actions(table, 1) if "add" in a}
    # Damage the files of partition 'a': a delete that opened them would fail.
    from urllib.parse import unquote
    with open(os.path.join(table_path, unquote(adds["a"])), "wb") as handle:
        handle.write(b"not parquet any more")
    result = table.delete("p = 'a'")
    actions = commit_actions(table, 2)
    assert paths_of(actions, "remove") == {adds["a"]} and paths_of(actions, "add") == set()
    assert result["num_added_files"] == 0 and result["num_deleted_rows"] == 5
    assert rows(table) == list(range(5, 15))


def test_delete_without_filter_empties_the_table(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, partition_by=["p"])
    table.append(pa.concat_tables([batch(range(3), "a"), batch(range(3, 6), "b")]))
    table.append(batch(range(6, 9), "a"))
    result = table.delete()
    assert result["num_removed_files"] == 3 and result["num_deleted_rows"] == 9 and result["num_added_files"] == 0
    assert table.to_arrow().num_rows == 0 and table.snapshot().num_files == 0
    assert rows(table.snapshot(version=2)) == list(range(9))  # history keeps the old rows


# --- schema changes -------------------------------------------------------------------


def test_overwrite_with_schema_mode_overwrite_changes_the_schema(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(batch(range(3)))
    new = pa.table({"id": pa.array([1], pa.int64()), "label": ["one"], "when": pa.array([1], pa.int32())})
    with pytest.raises(SchemaError, match="'label'"):
        table.overwrite(new)  # without schema_mode the schema is enforced
    with pytest.raises(SchemaError, match="schema_mode must be None or 'overwrite'"):
        table.overwrite(new, schema_mode="merge")
    table.overwrite(new, schema_mode="overwrite")
    assert table.schema().names == ["id", "label", "when"]
    assert table.to_arrow().to_pylist() == [{"id": 1, "label": "one", "when": 1}]
    assert table.snapshot(version=1).schema == SCHEMA  # the old version keeps the old schema
    assert rows(table.snapshot(version=1)) == [0, 1, 2]
    metadata = [a for a in commit_actions(table, 2) if "metaData" in a]
    assert len(metadata) == 1 and metadata[0]["metaData"]["id"] == table.snapshot(version=0).table_id


def test_schema_overwrite_must_keep_partition_columns(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, partition_by=["p"])
    with pytest.raises(SchemaError, match="lacks partition column"):
        table.overwrite(pa.table({"id": [1]}), schema_mode="overwrite")
    assert table.version() == 0


# --- time travel and history ----------------------------------------------------------


def test_time_travel_by_version_and_by_timestamp(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(batch(range(3)))
    table.append(batch(range(3, 5)))
    table.delete("id = 0")
    expected = {0: [], 1: [0, 1, 2], 2: [0, 1, 2, 3, 4], 3: [1, 2, 3, 4]}
    for version, ids in expected.items():
        snapshot = table.snapshot(version=version)
        assert snapshot.version == version and rows(snapshot) == ids
    for entry in table.history():
        at = table.snapshot(timestamp=entry["timestamp"])
        assert at.version == entry["version"] and rows(at) == expected[entry["version"]]
        assert at.timestamp_ms == entry["timestamp"]
        # Just before the next commit still reads this version.
        if entry["version"] < 3:
            nxt = next(h for h in table.history() if h["version"] == entry["version"] + 1)
            assert table.snapshot(timestamp=nxt["timestamp"] - 1).version == entry["version"]


def test_history_is_newest_first_with_operations_and_metrics(table_path):
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(batch(range(4)))
    table.overwrite(batch(range(2)))
    table.delete("id = 1")
    history = table.history()
    assert [h["version"] for h in history] == [3, 2, 1, 0]
    assert [h["operation"] for h in history] == ["DELETE", "WRITE", "WRITE", "CREATE TABLE"]
    assert [h["operationParameters"].get("mode") for h in history[1:3]] == ["Overwrite", "Append"]
    assert history[2]["operationMetrics"]["numOutputRows"] == "4"
    assert history[1]["operationMetrics"]["numOutputRows"] == "2"
    assert history[0]["operationMetrics"]["numDeletedRows"] == "1"
    assert history[2]["isBlindAppend"] is True and history[1]["isBlindAppend"] is False
    assert [h["readVersion"] for h in history[:3]] == [2, 1, 0]
    times = [h["timestamp"] for h in history]
    assert times == sorted(times, reverse=True) and len(set(times)) == 4
    assert all(h["engineInfo"].startswith("lakehouse/") for h in history)
    assert [h["version"] for h in table.history(limit=2)] == [3, 2]


# --- memory:// ------------------------------------------------------------------------


def test_memory_tables_work_like_local_ones(memory_path):
    table = lakehouse.create_table(memory_path, SCHEMA, partition_by=["p"])
    with pytest.raises(lakehouse.TableAlreadyExistsError):
        lakehouse.create_table(memory_path, SCHEMA)
    table.append(pa.concat_tables([batch(range(3), "a"), batch(range(3, 6), "b")]))
    table.append(batch(range(6, 8), "a"))
    table.delete("p = 'b'")
    table.delete("id = 6")
    opened = lakehouse.open_table(memory_path)
    assert opened.version() == 4
    assert rows(opened) == [0, 1, 2, 7]
    assert rows(opened.snapshot(version=2)) == list(range(8))
    assert [h["operation"] for h in opened.history()] == ["DELETE", "DELETE", "WRITE", "WRITE", "CREATE TABLE"]
    first_append = opened.history()[-2]["timestamp"]
    assert rows(opened.snapshot(timestamp=first_append)) == list(range(6))
    opened.overwrite(pa.table({"k": ["only"], "p": ["z"]}), schema_mode="overwrite")
    assert opened.to_arrow().to_pylist() == [{"k": "only", "p": "z"}]
    with pytest.raises(lakehouse.TableNotFoundError, match="memory://"):
        lakehouse.open_table(memory_path + "-missing")


def test_all_null_columns_append_into_typed_columns(tmp_path):
    import pandas as pd

    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("id", pa.int64()), ("note", pa.string()),
                                                                   pa.field("k", pa.int64(), nullable=False)]))
    table.append(pa.table({"id": [1], "note": [None], "k": [1]}))  # note: Arrow type null
    table.append(pd.DataFrame({"id": [2], "note": [None], "k": [2]}))
    assert table.to_arrow().sort_by("id").to_pylist() == [{"id": 1, "note": None, "k": 1},
                                                            {"id": 2, "note": None, "k": 2}]
    with pytest.raises(lakehouse.SchemaError, match="'k' is not nullable"):
        table.append(pa.table({"id": [3], "note": ["x"], "k": [None]}))
    with pytest.raises(lakehouse.SchemaError, match="only nulls and has no type"):
        lakehouse.create_table(str(tmp_path / "u"), pa.schema([("x", pa.null())]))


@pytest.mark.parametrize("partition_by, expected", [(None, ()), ("p", ("p",)), (["p"], ("p",))])
def test_partition_by_spellings(tmp_path, partition_by, expected):
    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("p", pa.string()), ("v", pa.int64())]),
                                   partition_by=partition_by)
    assert table.snapshot().partition_columns == expected
    with pytest.raises(lakehouse.SchemaError, match="partition_by must be a list of column names"):
        lakehouse.create_table(str(tmp_path / "u"), pa.schema([("p", pa.string())]), partition_by=[1])


@pytest.mark.parametrize("rows", [[1, 2], {"a": 1}, [{"a": 1}, "x"]])
def test_rows_that_are_not_tables_get_one_clear_error(tmp_path, rows):
    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("a", pa.int64())]))
    with pytest.raises(lakehouse.SchemaError, match="pass a list of dicts"):
        table.append(rows)
