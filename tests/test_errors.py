"""Bad input gets one clear error: a LakehouseError subclass whose message names the thing.

Every case asserts the exception *class* and the important parts of the *message* (the
table, file, line, column or version involved, and what to do), never a raw
KeyError/JSONDecodeError/ArrowInvalid leaking out of the internals.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse import (
    ColumnNotFoundError, ConstraintViolationError, CorruptLogError, InvalidFilterError, LakehouseError, SchemaError, TableAlreadyExistsError,
    TableNotFoundError, UnsafePathError, UnsupportedFeatureError, VersionNotFoundError,
)

SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string())])


def commit_path(root: str, version: int) -> str:
    return os.path.join(root, "_delta_log", f"{version:020d}.json")


def write_commit(root: str, version: int, actions: list[dict]) -> None:
    """Hand-write a commit file, as another (or a malicious) writer would."""
    with open(commit_path(root, version), "w") as handle:
        for action in actions:
            handle.write(json.dumps(action) + "\n")


def parquet_files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, files in os.walk(root) for f in files if f.endswith(".parquet"))


@pytest.fixture
def three_versions(table_path):
    """A table with versions 0 (create), 1 and 2 (appends)."""
    table = lakehouse.create_table(table_path, SCHEMA)
    table.append(pa.table({"id": [1, 2], "name": ["a", "b"]}, schema=SCHEMA))
    table.append(pa.table({"id": [3], "name": ["c"]}, schema=SCHEMA))
    return table


# --- finding tables -------------------------------------------------------------------


def test_open_missing_table_names_the_path(tmp_path):
    target = tmp_path / "no_table_here"
    with pytest.raises(TableNotFoundError) as info:
        lakehouse.open_table(str(target))
    message = str(info.value)
    assert str(target) in message
    assert "create_table" in message  # says what to do


def test_open_folder_without_commits_is_not_a_table(tmp_path):
    # A plain folder, and a _delta_log holding only a leftover temp file (delta-rs#2890):
    # neither is a table.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "data.parquet").write_bytes(b"x")
    log = tmp_path / "leftover" / "_delta_log"
    log.mkdir(parents=True)
    (log / ".00000000000000000000.json.abc.tmp").write_text('{"protocol":{}}')
    for folder in ("plain", "leftover"):
        with pytest.raises(TableNotFoundError, match=folder):
            lakehouse.open_table(str(tmp_path / folder))


def test_create_twice_is_refused_unless_exist_ok(table_path):
    lakehouse.create_table(table_path, SCHEMA)
    with pytest.raises(TableAlreadyExistsError) as info:
        lakehouse.create_table(table_path, pa.schema([("other", pa.int32())]))
    assert table_path in str(info.value) and "open_table" in str(info.value)
    # The existing table is untouched, and exist_ok hands it back.
    again = lakehouse.create_table(table_path, pa.schema([("other", pa.int32())]), exist_ok=True)
    assert again.version() == 0
    assert again.schema().names == ["id", "name"]


# --- versions and timestamps ----------------------------------------------------------


def test_version_out_of_range_says_which_versions_exist(three_versions):
    with pytest.raises(VersionNotFoundError) as info:
        three_versions.snapshot(version=99)
    message = str(info.value)
    assert "99" in message and "0 to 2" in message and "'table'" in message


def test_negative_and_non_integer_versions(three_versions):
    with pytest.raises(VersionNotFoundError, match=r"no version -1: versions 0 to 2"):
        three_versions.snapshot(version=-1)
    with pytest.raises(VersionNotFoundError, match="must be an integer"):
        three_versions.snapshot(version="1")  # type: ignore[arg-type]
    with pytest.raises(LakehouseError, match="either version= or timestamp="):
        three_versions.snapshot(version=1, timestamp="2020-01-01")


def test_timestamp_before_first_commit_names_the_earliest_commit(three_versions):
    first_ms = three_versions.history()[-1]["timestamp"]
    first_iso = dt.datetime.fromtimestamp(first_ms / 1000, tz=dt.timezone.utc).isoformat(timespec="milliseconds")
    with pytest.raises(VersionNotFoundError) as info:
        three_versions.snapshot(timestamp=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    message = str(info.value)
    assert "earliest available commit is version 0" in message
    assert first_iso in message


def test_timestamp_in_the_future_is_refused(three_versions):
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)
    with pytest.raises(VersionNotFoundError) as info:
        three_versions.snapshot(timestamp=future)
    assert "in the future" in str(info.value) and "version 2" in str(info.value)


def test_unparsable_timestamp_string(three_versions):
    with pytest.raises(VersionNotFoundError) as info:
        three_versions.snapshot(timestamp="last tuesday")
    assert "'last tuesday'" in str(info.value) and "ISO" in str(info.value)


# --- data that does not fit the schema ------------------------------------------------


def test_append_wrong_type_names_column_expected_and_got(three_versions):
    with pytest.raises(SchemaError) as info:
        three_versions.append(pa.table({"id": ["x"], "name": ["a"]}))
    message = str(info.value)
    assert "column 'id'" in message and "expects long" in message and "got string" in message
    assert three_versions.version() == 2


def test_append_extra_column_hints_at_case_insensitive_match(three_versions):
    with pytest.raises(SchemaError) as info:
        three_versions.append(pa.table({"id": [1], "NAME": ["a"]}))
    assert "'NAME' (did you mean 'name'?)" in str(info.value)
    with pytest.raises(SchemaError) as info:
        three_versions.append(pa.table({"id": [1], "name": ["a"], "colour": ["red"]}))
    assert "'colour'" in str(info.value) and "table columns are id, name" in str(info.value)


def test_append_missing_non_nullable_column(three_versions):
    with pytest.raises(SchemaError, match=r"lacks non-nullable column 'id' \(long\)"):
        three_versions.append(pa.table({"name": ["a"]}))
    # A missing *nullable* column is fine: it reads back as nulls.
    three_versions.append(pa.table({"id": pa.array([9], pa.int64())}))
    assert three_versions.to_arrow(filter="id = 9").column("name").to_pylist() == [None]


def test_append_nulls_in_non_nullable_column(three_versions):
    with pytest.raises(SchemaError, match=r"column 'id' is not nullable but the data holds 1 null"):
        three_versions.append(pa.table({"id": pa.array([1, None], pa.int64()), "name": ["a", "b"]}))
    assert three_versions.version() == 2


def test_all_null_column_gets_a_clear_error(table_path, three_versions):
    # At create time the column has no type at all.
    with pytest.raises(SchemaError) as info:
        lakehouse.create_table(table_path + "_nulls", pa.schema([("id", pa.int64()), ("empty", pa.null())]))
    assert "column 'empty'" in str(info.value) and "only nulls" in str(info.value)
    # On append the table knows the type: untyped nulls fit a nullable column.
    before = three_versions.snapshot().to_arrow().num_rows
    three_versions.append(pa.table({"id": pa.array([1], pa.int64()), "name": pa.nulls(1)}))
    assert three_versions.snapshot().to_arrow().num_rows == before + 1


def test_uint64_is_refused_with_a_cast_hint(table_path, three_versions):
    with pytest.raises(SchemaError) as info:
        lakehouse.create_table(table_path + "_u", pa.schema([("big", pa.uint64())]))
    assert "column 'big'" in str(info.value) and "decimal(20,0)" in str(info.value)
    with pytest.raises(SchemaError) as info:
        three_versions.append(pa.table({"id": pa.array([1], pa.uint64()), "name": ["a"]}))
    assert "table 'table': column 'id'" in str(info.value) and "uint64" in str(info.value)


def test_bad_second_batch_leaves_no_files_and_no_version(three_versions, table_path):
    before = parquet_files(table_path)
    good = pa.record_batch({"id": pa.array([10], pa.int64()), "name": ["ok"]})
    bad = pa.record_batch({"id": pa.array([None], pa.int64()), "name": ["bad"]})
    reader = pa.RecordBatchReader.from_batches(good.schema, [good, bad])
    with pytest.raises(SchemaError):
        three_versions.append(reader)
    assert three_versions.version() == 2
    assert parquet_files(table_path) == before  # the file written for the good batch was removed


# --- protocol and features ------------------------------------------------------------


def test_unknown_reader_features_are_named(three_versions, table_path):
    write_commit(table_path, 3, [
        {"commitInfo": {"operation": "UPGRADE PROTOCOL"}},
        {"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                      "readerFeatures": ["deletionVectors", "somethingNew"],
                      "writerFeatures": ["deletionVectors", "somethingNew"]}},
    ])
    table = lakehouse.open_table(table_path)
    with pytest.raises(UnsupportedFeatureError) as info:
        table.to_arrow()
    message = str(info.value)
    assert "somethingNew" in message and "table 'table'" in message
    assert "supported:" in message  # tells the user what does work
    with pytest.raises(UnsupportedFeatureError, match="somethingNew"):
        table.append(pa.table({"id": [5], "name": ["e"]}, schema=SCHEMA))
    # Older versions, from before the upgrade, stay readable.
    assert table.snapshot(version=2).to_arrow().num_rows == 3


def test_reader_version_4_is_refused(three_versions, table_path):
    write_commit(table_path, 3, [{"protocol": {"minReaderVersion": 4, "minWriterVersion": 7}}])
    with pytest.raises(UnsupportedFeatureError, match=r"reader version 4; lakehouse reads up to version 3"):
        lakehouse.open_table(table_path).snapshot()


def test_unknown_writer_feature_blocks_writes_but_not_reads(three_versions, table_path):
    write_commit(table_path, 3, [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 7,
                                               "writerFeatures": ["rowTracking", "appendOnly"]}}])
    table = lakehouse.open_table(table_path)
    assert sorted(table.to_arrow().column("id").to_pylist()) == [1, 2, 3]
    before = parquet_files(table_path)
    for write in (lambda: table.append(pa.table({"id": [5], "name": ["e"]}, schema=SCHEMA)),
                  lambda: table.delete("id = 1"),
                  lambda: table.overwrite(pa.table({"id": [5], "name": ["e"]}, schema=SCHEMA))):
        with pytest.raises(UnsupportedFeatureError) as info:
            write()
        assert "rowTracking" in str(info.value) and "appendOnly" not in str(info.value)
    assert table.version() == 3
    assert parquet_files(table_path) == before  # refused before any data file was written


def test_legacy_writer_version_above_4_is_refused_for_writes(three_versions, table_path):
    write_commit(table_path, 3, [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 6}}])
    table = lakehouse.open_table(table_path)
    assert table.to_arrow().num_rows == 3
    with pytest.raises(UnsupportedFeatureError, match="writer version 6"):
        table.append(pa.table({"id": [5], "name": ["e"]}, schema=SCHEMA))


# --- CHECK constraints and properties -------------------------------------------------


def test_check_constraints_are_enforced_on_python_writes(table_path):
    table = lakehouse.create_table(table_path, SCHEMA, properties={"delta.constraints.positive_id": "id > 0"})
    # CHECK constraints need writer version 3 at least, or other engines would ignore them.
    assert table.snapshot().protocol.min_writer_version >= 3
    table.append(pa.table({"id": [1], "name": ["a"]}, schema=SCHEMA))
    bad = pa.table({"id": [2, -7], "name": ["b", "x"]}, schema=SCHEMA)
    for write in (lambda: table.append(bad), lambda: table.overwrite(bad)):
        with pytest.raises(ConstraintViolationError) as info:
            write()
        message = str(info.value)
        assert "positive_id" in message and "table 'table'" in message and "id=-7" in message
    assert table.version() == 1
    assert table.to_arrow().column("id").to_pylist() == [1]
    assert not [p for p in os.listdir(table_path) if p.endswith(".parquet")][1:]  # no stray files


def test_constraint_added_by_another_engine_is_enforced(three_versions, table_path):
    metadata = json.loads(open(commit_path(table_path, 0)).read().splitlines()[2])["metaData"]
    metadata["configuration"] = {"delta.constraints.name_not_empty": "name <> ''"}
    write_commit(table_path, 3, [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 3}},
                                 {"metaData": metadata}])
    with pytest.raises(ConstraintViolationError, match="name_not_empty"):
        three_versions.append(pa.table({"id": [4], "name": [""]}, schema=SCHEMA))
    three_versions.append(pa.table({"id": [4], "name": ["d"]}, schema=SCHEMA))
    assert three_versions.version() == 4


def test_constraint_the_python_writer_cannot_evaluate_refuses_writes(three_versions, table_path):
    metadata = json.loads(open(commit_path(table_path, 0)).read().splitlines()[2])["metaData"]
    metadata["configuration"] = {"delta.constraints.short_name": "length(name) < 10"}
    write_commit(table_path, 3, [{"protocol": {"minReaderVersion": 1, "minWriterVersion": 3}},
                                 {"metaData": metadata}])
    with pytest.raises(UnsupportedFeatureError, match="short_name.*write through SQL"):
        three_versions.append(pa.table({"id": [4], "name": ["d"]}, schema=SCHEMA))
    assert three_versions.version() == 3


@pytest.mark.parametrize("key, value, expected", [
    ("delta.checkpointInterval", "abc", "must be a whole number, got 'abc'"),
    ("delta.checkpointInterval", "0", "must be positive"),
    ("delta.isolationLevel", "Chaos", "got 'Chaos'"),
    ("delta.logRetentionDuration", "thirty days", "must look like 'interval 7 days'"),
])
def test_invalid_properties_fail_at_create(table_path, key, value, expected):
    with pytest.raises(LakehouseError) as info:
        lakehouse.create_table(table_path, SCHEMA, properties={key: value})
    assert f"'{key}'" in str(info.value) and expected in str(info.value)
    with pytest.raises(TableNotFoundError):  # nothing was created
        lakehouse.open_table(table_path)


# --- a damaged log --------------------------------------------------------------------


def test_gap_at_the_start_of_the_log_names_missing_commits(three_versions, table_path):
    three_versions.append(pa.table({"id": [4], "name": ["d"]}, schema=SCHEMA))
    for version in (0, 1, 2):
        os.remove(commit_path(table_path, version))
    table = lakehouse.open_table(table_path)  # listing alone still finds commit 3
    with pytest.raises(CorruptLogError) as info:
        table.snapshot()
    message = str(info.value)
    assert "commits 0 to 2 are missing" in message and "no checkpoint" in message


def test_gap_in_the_middle_names_the_commit(three_versions, table_path):
    three_versions.append(pa.table({"id": [4], "name": ["d"]}, schema=SCHEMA))
    os.remove(commit_path(table_path, 2))
    table = lakehouse.open_table(table_path)
    with pytest.raises(CorruptLogError, match=r"commit 2 is missing"):
        table.snapshot()
    # Versions before the gap are intact and readable.
    assert table.snapshot(version=1).to_arrow().num_rows == 2


def test_truncated_commit_names_file_and_line(three_versions, table_path):
    data = open(commit_path(table_path, 2), "rb").read()
    with open(commit_path(table_path, 2), "wb") as handle:
        handle.write(data[: len(data) - 30])  # cut the add line in the middle
    with pytest.raises(CorruptLogError) as info:
        three_versions.snapshot()
    message = str(info.value)
    assert "00000000000000000002.json" in message and "line 2" in message and "truncated" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no JSON traceback chained
    assert three_versions.snapshot(version=1).to_arrow().num_rows == 2


def test_garbage_line_names_file_and_line(three_versions, table_path):
    with open(commit_path(table_path, 1), "a") as handle:
        handle.write("this is not json\n")
    with pytest.raises(CorruptLogError, match=r"00000000000000000001\.json': line 3 is not valid JSON"):
        three_versions.snapshot()


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    (b'{"add": {"path": "x.parquet"}}\n', "missing its required field 'size'"),
    (b"[1, 2]\n", "must be a JSON object"),
    (b'{"add": "not an object"}\n', "'add' action must be a JSON object"),
    (b'{"add": {"path": "x.parquet", "size": "big", "partitionValues": {}}}\n', "'add.size' must be an integer"),
    (b'{"commitInfo": {}}\n\xff\xfe\n', "not valid UTF-8"),
])
def test_damaged_commit_contents(three_versions, table_path, content, expected):
    with open(commit_path(table_path, 3), "wb") as handle:
        handle.write(content)
    with pytest.raises(CorruptLogError) as info:
        lakehouse.open_table(table_path).snapshot()
    assert expected in str(info.value)
    assert "00000000000000000003.json" in str(info.value)


# --- paths in the log are untrusted ---------------------------------------------------


@pytest.fixture
def outside_file(tmp_path):
    """A readable Parquet file in a folder next to the table (a neighbouring table)."""
    folder = tmp_path / "table-evil"  # shares the table root's prefix, like delta-rs#4637
    folder.mkdir()
    path = folder / "secret.parquet"
    pq.write_table(pa.table({"id": pa.array([666], pa.int64()), "name": ["stolen"]}), path)
    return path


def crafted_add(path: str, size: int) -> dict:
    return {"add": {"path": path, "partitionValues": {}, "size": size, "modificationTime": 0, "dataChange": True}}


UNSAFE_PATHS = [
    "../table-evil/secret.parquet",
    "%2e%2e/table-evil/secret.parquet",
    "%2E%2E%2Ftable-evil%2Fsecret.parquet",
    "%252e%252e/table-evil/secret.parquet",
    "%25252e%25252e/table-evil/secret.parquet",
    "sub/../../table-evil/secret.parquet",
    "{abs}",  # a leading slash: the absolute local path of the outside file
    "..\\table-evil\\secret.parquet",
    "part\x00.parquet",
    "part%00.parquet",
    "file://{abs}",
    "file:///etc/passwd",
    "file://{root}/../table-evil/secret.parquet",
]


@pytest.mark.parametrize("raw", UNSAFE_PATHS)
def test_unsafe_add_paths_are_refused(table_path, outside_file, raw):
    table = lakehouse.create_table(table_path, SCHEMA)
    path = raw.format(abs=str(outside_file), root=table_path)
    write_commit(table_path, 1, [crafted_add(path, outside_file.stat().st_size)])
    with pytest.raises(UnsafePathError) as info:
        table.to_arrow()
    assert "table 'table'" in str(info.value)
    with pytest.raises(UnsafePathError):
        table.delete("id = 666")  # a delete that must read the file is refused too


def test_outside_file_would_be_read_if_inside(table_path, outside_file):
    """Control for the tests above: the same add pointing inside the root returns rows,
    so the refusals are the path policy at work, not an unreadable file."""
    table = lakehouse.create_table(table_path, SCHEMA)
    shutil.copy(outside_file, os.path.join(table_path, "inside.parquet"))
    write_commit(table_path, 1, [crafted_add("inside.parquet", outside_file.stat().st_size)])
    assert table.to_arrow().column("name").to_pylist() == ["stolen"]
    write_commit(table_path, 2, [crafted_add("%2e%2e/table-evil/secret.parquet", outside_file.stat().st_size)])
    with pytest.raises(UnsafePathError):
        table.to_arrow()  # the escaping file is refused, not merged into the result


def test_absolute_uri_needs_an_allowed_root(table_path, outside_file):
    lakehouse.create_table(table_path, SCHEMA)
    url = "file://" + str(outside_file)
    write_commit(table_path, 1, [crafted_add(url, outside_file.stat().st_size)])
    with pytest.raises(UnsafePathError) as info:
        lakehouse.open_table(table_path).to_arrow()
    assert "allowed_roots" in str(info.value)  # says how to trust the location
    trusted = lakehouse.open_table(table_path, allowed_roots=["file://" + str(outside_file.parent)])
    assert trusted.to_arrow().column("id").to_pylist() == [666]
    # Trusting the table's own root does not trust its prefix-sharing neighbour.
    neighbour = lakehouse.open_table(table_path, allowed_roots=["file://" + table_path])
    with pytest.raises(UnsafePathError):
        neighbour.to_arrow()


# --- filters and columns --------------------------------------------------------------


def test_filter_on_unknown_column_suggests_a_name(three_versions):
    with pytest.raises(ColumnNotFoundError, match=r"column 'idd' does not exist; did you mean 'id'\?"):
        three_versions.delete("idd = 4")
    with pytest.raises(ColumnNotFoundError, match=r"did you mean 'name'\?"):
        three_versions.scan(filter="nmae = 'a'").to_arrow()
    with pytest.raises(ColumnNotFoundError, match=r"table 'table' has no column 'nme'; did you mean 'name'\?"):
        three_versions.scan(columns=["nme"])
    with pytest.raises(ColumnNotFoundError, match="columns are id, name"):
        three_versions.delete("zzzzzz = 1")  # nothing close: lists the columns
    assert three_versions.version() == 2


@pytest.mark.parametrize("text, column", [("id = = 4", 6), ("id = 4 and", 10), ("id in (1, 2", 11)])
def test_filter_syntax_error_gives_the_position(three_versions, text, column):
    with pytest.raises(InvalidFilterError) as info:
        three_versions.delete(text)
    message = str(info.value)
    assert repr(text) in message and f"line 1, column {column}" in message


@pytest.mark.parametrize("text, expected", [
    ("id + 1 = 4", "must compare one column with a literal"),
    ("id = 'four'", "cannot be compared"),
    ("name = NULL", "IS NULL"),
    ("", "the filter is empty"),
])
def test_unsupported_filters_are_explained(three_versions, text, expected):
    with pytest.raises(InvalidFilterError, match=expected):
        three_versions.scan(filter=text).to_arrow()


def test_a_missing_data_file_is_one_clear_error(tmp_path):
    """A file deleted behind the log's back (manual cleanup, a foreign vacuum) is named as such."""
    import lakehouse

    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": [1, 2, 3]}))
    for path in (tmp_path / "t").glob("*.parquet"):
        path.unlink()
    with pytest.raises(lakehouse.DataFileError, match="version 1: a data file could not be read"):
        table.snapshot().to_arrow()
    with pytest.raises(lakehouse.DataFileError):
        list(table.snapshot().scan().to_batches())
