"""Log actions: exact JSON round trips, tolerance of the unknown, and the commits we write."""

from __future__ import annotations

import glob
import json
import os
import uuid

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import CorruptLogError
from lakehouse.log.actions import (
    AddCDCFile, AddFile, CommitInfo, DomainMetadata, Metadata, Protocol, RemoveFile, Txn, parse_action,
    parse_commit, serialize_commit,
)

DAT_LOGS = sorted(glob.glob("/work/shared/dat/*/delta/_delta_log/*.json"))


def roundtrip(obj: dict) -> dict:
    """Parse one wire action and write it back the way a commit would."""
    action = parse_action(obj)
    assert action is not None
    return json.loads(serialize_commit([action]))


@pytest.mark.skipif(not DAT_LOGS, reason="shared DAT tables not available")
def test_every_spark_written_line_round_trips_exactly():
    lines = [line for path in DAT_LOGS for line in open(path) if line.strip()]
    assert len(lines) > 20
    kinds = set()
    for line in lines:
        obj = json.loads(line)
        kinds |= set(obj)
        assert roundtrip(obj) == obj, line
    assert {"protocol", "metaData", "add", "commitInfo"} <= kinds


FULL_ACTIONS = [
    {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["timestampNtz"],
                  "writerFeatures": ["timestampNtz", "appendOnly"]}},
    {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
    {"metaData": {"id": "6a5d5b47-0a36-4b49-9b0b-dba0c2b3c9a5", "name": "events", "description": "all of them",
                  "format": {"provider": "parquet", "options": {"k": "v"}},
                  "schemaString": '{"type":"struct","fields":[]}', "partitionColumns": ["day"],
                  "configuration": {"delta.appendOnly": "true"}, "createdTime": 1700000000000}},
    {"add": {"path": "day=2024-01-01/part-0.parquet", "partitionValues": {"day": "2024-01-01", "h": None},
             "size": 123, "modificationTime": 1700000000001, "dataChange": False,
             "stats": '{"numRecords":1}', "tags": {"INSERTION_TIME": "1"},
             "deletionVector": {"storageType": "u", "pathOrInlineDv": "ab^-aqEH.-t@S}K{vb[*k^", "offset": 1,
                                "sizeInBytes": 36, "cardinality": 2},
             "baseRowId": 10, "defaultRowCommitVersion": 3}},
    {"remove": {"path": "a b.parquet", "dataChange": True, "deletionTimestamp": 1700000000002,
                "extendedFileMetadata": True, "partitionValues": {}, "size": 99, "stats": '{"numRecords":3}',
                "tags": {"x": "y"}}},
    {"remove": {"path": "old.parquet", "dataChange": False}},
    {"cdc": {"path": "_change_data/cdc-0.parquet", "partitionValues": {}, "size": 5, "dataChange": False}},
    {"txn": {"appId": "stream-1", "version": 42, "lastUpdated": 1700000000003}},
    {"domainMetadata": {"domain": "delta.clustering", "configuration": '{"c":[]}', "removed": False}},
    {"commitInfo": {"timestamp": 1, "operation": "WRITE", "anything": {"nested": [1, 2]}}},
]


@pytest.mark.parametrize("obj", FULL_ACTIONS, ids=lambda o: next(iter(o)))
def test_each_action_round_trips_with_every_field(obj):
    assert roundtrip(obj) == obj


def test_non_ascii_paths_round_trip_unescaped():
    obj = {"add": {"path": "city=K%C3%B6ln/\u00e9t\u00e9-\U0001f600.parquet", "partitionValues": {"city": "K\u00f6ln"},
                   "size": 1, "modificationTime": 2, "dataChange": True}}
    data = serialize_commit([parse_action(obj)])
    assert "\U0001f600".encode() in data  # written as UTF-8, not \\u escapes
    assert json.loads(data) == obj


def test_typed_fields_are_parsed():
    add = parse_action(FULL_ACTIONS[3])
    assert isinstance(add, AddFile)
    assert add.size == 123 and add.data_change is False and add.partition_values["h"] is None
    assert add.dv_id == "uab^-aqEH.-t@S}K{vb[*k^@1"
    assert isinstance(parse_action(FULL_ACTIONS[0]), Protocol)
    assert parse_action(FULL_ACTIONS[0]).reader_features == ("timestampNtz",)
    assert isinstance(parse_action(FULL_ACTIONS[2]), Metadata)
    assert isinstance(parse_action(FULL_ACTIONS[4]), RemoveFile)
    assert isinstance(parse_action(FULL_ACTIONS[6]), AddCDCFile)
    assert parse_action(FULL_ACTIONS[7]) == Txn("stream-1", 42, 1700000000003)
    assert isinstance(parse_action(FULL_ACTIONS[8]), DomainMetadata)
    assert parse_action(FULL_ACTIONS[9]).operation == "WRITE"


def test_unknown_actions_are_skipped_and_unknown_fields_tolerated():
    lines = [
        {"commitInfo": {"operation": "WRITE"}},
        {"checkpointMetadata": {"version": 3}},
        {"sidecar": {"path": "x.parquet", "sizeInBytes": 1}},
        {"someFutureAction": {"whatever": True}},
        {"add": {"path": "p.parquet", "partitionValues": {}, "size": 7, "modificationTime": 0, "dataChange": True,
                 "clusteringProvider": "liquid", "brandNewField": {"x": 1}}},
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2, "futureKnob": 3}},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode()
    actions = parse_commit(data, "test commit")
    assert [type(a).__name__ for a in actions] == ["CommitInfo", "AddFile", "Protocol"]
    assert actions[1].path == "p.parquet" and actions[1].size == 7


def test_stats_as_object_and_numeric_strings_are_tolerated():
    # Some writers emit stats as a JSON object, or numbers as strings; both read fine.
    add = parse_action({"add": {"path": "p", "partitionValues": {"n": 5}, "size": "12", "modificationTime": "3",
                                "dataChange": True, "stats": {"numRecords": 4}}})
    assert add.size == 12 and add.modification_time == 3
    assert json.loads(add.stats) == {"numRecords": 4}
    assert add.partition_values == {"n": "5"}  # values are strings on the wire


@pytest.mark.parametrize("obj, field", [
    ({"protocol": {"minWriterVersion": 2}}, "minReaderVersion"),
    ({"protocol": {"minReaderVersion": 1}}, "minWriterVersion"),
    ({"metaData": {"schemaString": "{}"}}, "id"),
    ({"metaData": {"id": "x"}}, "schemaString"),
    ({"add": {"size": 1, "partitionValues": {}}}, "path"),
    ({"add": {"path": "p", "partitionValues": {}}}, "size"),
    ({"remove": {"dataChange": True}}, "path"),
    ({"txn": {"version": 1}}, "appId"),
    ({"txn": {"appId": "a"}}, "version"),
    ({"domainMetadata": {"configuration": ""}}, "domain"),
    ({"cdc": {"size": 1}}, "path"),
])
def test_missing_required_field_is_corrupt_log(obj, field):
    data = (json.dumps({"commitInfo": {}}) + "\n" + json.dumps(obj) + "\n").encode()
    with pytest.raises(CorruptLogError) as info:
        parse_commit(data, "commit '00000000000000000007.json'")
    message = str(info.value)
    assert f"required field '{field}'" in message
    assert "00000000000000000007.json' line 2" in message  # names the file and the line


@pytest.mark.parametrize("obj, expected", [
    ({"add": {"path": 5, "size": 1, "partitionValues": {}}}, "'add.path' must be a string"),
    ({"add": {"path": "p", "size": [1], "partitionValues": {}}}, "'add.size' must be an integer"),
    ({"add": {"path": "p", "size": 1, "partitionValues": ["a"]}}, "'add.partitionValues' must be an object"),
    ({"protocol": {"minReaderVersion": "one", "minWriterVersion": 2}}, "must be an integer"),
    ({"txn": {"appId": "a", "version": None}}, "'txn.version' must be an integer"),
])
def test_wrongly_typed_fields_are_corrupt_log(obj, expected):
    with pytest.raises(CorruptLogError, match=expected.replace("[", r"\[").replace(".", r"\.")):
        parse_commit(json.dumps(obj).encode(), "c")


def test_serialize_puts_commit_info_first_one_line_per_action():
    add = parse_action(FULL_ACTIONS[3])
    info = CommitInfo({"operation": "WRITE"})
    data = serialize_commit([add, Protocol(1, 2), info])
    lines = data.decode().splitlines()
    assert data.endswith(b"\n") and len(lines) == 3
    assert [next(iter(json.loads(line))) for line in lines] == ["commitInfo", "add", "protocol"]
    assert parse_commit(data, "x") == [info, add, Protocol(1, 2)]


def test_add_remove_keeps_what_cdf_and_conflicts_need():
    add = parse_action(FULL_ACTIONS[3])
    remove = add.remove(1700000009999)
    wire = remove.to_json()
    assert wire["extendedFileMetadata"] is True
    assert wire["partitionValues"] == {"day": "2024-01-01", "h": None}
    assert wire["size"] == 123 and wire["deletionTimestamp"] == 1700000009999 and wire["dataChange"] is True
    assert remove.dv_id == add.dv_id  # the same logical file key


# --- commits this library writes ------------------------------------------------------


def read_lines(root: str, version: int) -> list[dict]:
    with open(os.path.join(root, "_delta_log", f"{version:020d}.json")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_commit_info_is_first_in_every_commit_we_write(table_path):
    schema = pa.schema([("id", pa.int64()), ("p", pa.string())])
    table = lakehouse.create_table(table_path, schema, partition_by=["p"])
    table.append(pa.table({"id": [1, 2], "p": ["a", "b"]}))
    table.overwrite(pa.table({"id": [3, 4], "p": ["a", "b"]}))
    table.delete("id = 3")
    table.delete("p = 'b'")
    expected_ops = ["CREATE TABLE", "WRITE", "WRITE", "DELETE", "DELETE"]
    txn_ids = set()
    for version, operation in enumerate(expected_ops):
        lines = read_lines(table_path, version)
        assert list(lines[0]) == ["commitInfo"], f"commit {version} does not start with commitInfo"
        assert sum("commitInfo" in line for line in lines) == 1
        info = lines[0]["commitInfo"]
        assert info["operation"] == operation
        assert isinstance(info["timestamp"], int) and info["timestamp"] > 1_600_000_000_000
        assert isinstance(info["operationParameters"], dict)
        assert all(isinstance(v, str) for v in info["operationParameters"].values())
        assert isinstance(info["operationMetrics"], dict)
        assert all(isinstance(v, str) for v in info["operationMetrics"].values()), info["operationMetrics"]
        assert info["isolationLevel"] == "Serializable"
        assert info["isBlindAppend"] is (version == 1)
        assert info["engineInfo"] == f"lakehouse/{lakehouse.__version__}"
        uuid.UUID(info["txnId"])
        txn_ids.add(info["txnId"])
        if version == 0:
            assert "readVersion" not in info
        else:
            assert info["readVersion"] == version - 1
    assert len(txn_ids) == len(expected_ops)  # unique per commit

    append = read_lines(table_path, 1)[0]["commitInfo"]
    assert append["operationParameters"] == {"mode": "Append", "partitionBy": '["p"]'}
    assert append["operationMetrics"] == {"numFiles": "2", "numOutputRows": "2",
                                          "numOutputBytes": append["operationMetrics"]["numOutputBytes"]}
    assert int(append["operationMetrics"]["numOutputBytes"]) > 0
    assert read_lines(table_path, 2)[0]["commitInfo"]["operationParameters"]["mode"] == "Overwrite"
    delete = read_lines(table_path, 3)[0]["commitInfo"]
    assert delete["operationMetrics"]["numDeletedRows"] == "1"
    assert delete["operationMetrics"]["numRemovedFiles"] == "1"
    assert "3" in delete["operationParameters"]["predicate"]


def test_version_zero_holds_protocol_and_metadata(table_path):
    lakehouse.create_table(table_path, pa.schema([("id", pa.int64())]), properties={"delta.appendOnly": "true"},
                           description="d")
    lines = read_lines(table_path, 0)
    assert [next(iter(line)) for line in lines] == ["commitInfo", "protocol", "metaData"]
    assert lines[1]["protocol"] == {"minReaderVersion": 1, "minWriterVersion": 2}
    meta = lines[2]["metaData"]
    assert meta["format"] == {"provider": "parquet", "options": {}}
    assert meta["configuration"] == {"delta.appendOnly": "true"}
    assert meta["partitionColumns"] == [] and meta["description"] == "d"
    uuid.UUID(meta["id"])
    assert json.loads(meta["schemaString"])["fields"][0] == {"name": "id", "type": "long", "nullable": True,
                                                             "metadata": {}}


def test_written_removes_carry_extended_metadata(table_path):
    table = lakehouse.create_table(table_path, pa.schema([("id", pa.int64()), ("p", pa.string())]),
                                   partition_by=["p"])
    table.append(pa.table({"id": [1], "p": ["x"]}))
    table.delete()
    removes = [line["remove"] for line in read_lines(table_path, 2) if "remove" in line]
    assert len(removes) == 1
    remove = removes[0]
    assert remove["extendedFileMetadata"] is True and remove["partitionValues"] == {"p": "x"}
    assert remove["size"] > 0 and remove["dataChange"] is True and remove["deletionTimestamp"] > 0
