"""Tables ``deltalake`` (delta-rs) writes, read by lakehouse: same rows at every version.

deltalake writes the history (appends, overwrite, deletes, a merge, its own checkpoint in
the middle); we must return at every version what deltalake returns and what an
independent in-memory model says. Filters on their tables must select the same rows, and
skip files using *their* statistics. Last, both libraries write to one table in turn
(mixed writers) and must keep reading it identically.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deltalake
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse.expressions import Comparison, bind, parse_filter, to_arrow_expression

from .helpers import (
    ALL_TYPES, PARTITION_TYPES, assert_same_rows, copy_table, deltalake_history, deltalake_rows,
    make_rows, matching, our_history, our_rows, typed_partition_rows,
)

pytestmark = pytest.mark.interop


def _merge_source(start: int, count: int) -> pa.Table:
    """Rows ``start..`` with changed values, so an update is visible, not a no-op."""
    rows = make_rows(start, count)
    rows = rows.set_column(rows.schema.get_field_index("s"), "s",
                           pc.binary_join_element_wise("merged-", pc.cast(rows.column("id"), pa.string()), ""))
    return rows.set_column(rows.schema.get_field_index("i32"), "i32",
                           pc.cast(pc.multiply(rows.column("id"), 10), pa.int32()))


def _merge_model(model: pa.Table, source: pa.Table) -> pa.Table:
    """Upsert on ``id``: source rows replace matching target rows, the rest are inserted."""
    kept = model.filter(pc.invert(pc.is_in(model.column("id"), source.column("id"))))
    return pa.concat_tables([kept, source])


@dataclass
class Written:
    """A table written by deltalake (maybe with us in turn) plus the expected rows per version."""

    path: str
    partition_by: list[str] = field(default_factory=list)
    expected: list[pa.Table] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)

    @property
    def latest(self) -> int:
        return len(self.expected) - 1


class DeltalakeWriter:
    """Applies operations with deltalake and keeps the model in step."""

    def __init__(self, written: Written) -> None:
        self.written = written

    def _record(self, operation: str, model: pa.Table) -> None:
        version = deltalake.DeltaTable(self.written.path).version()
        assert version == len(self.written.expected), "each deltalake write must create exactly one version"
        self.written.expected.append(model)
        self.written.operations.append(operation)

    def create(self, rows: pa.Table, partition_by: list[str], configuration: dict[str, str] | None = None) -> None:
        deltalake.write_deltalake(self.written.path, rows, partition_by=partition_by or None, mode="error",
                                  configuration=configuration)
        self._record("WRITE", rows)

    def append(self, rows: pa.Table) -> None:
        deltalake.write_deltalake(self.written.path, rows, mode="append")
        self._record("WRITE", pa.concat_tables([self.written.expected[-1], rows]))

    def overwrite(self, rows: pa.Table) -> None:
        deltalake.write_deltalake(self.written.path, rows, mode="overwrite")
        self._record("WRITE", rows)

    def delete(self, sql: str, expression: ds.Expression) -> None:
        deltalake.DeltaTable(self.written.path).delete(sql)
        model = self.written.expected[-1]
        self._record("DELETE", model.filter(pc.invert(matching(model, expression))))

    def checkpoint(self) -> None:
        """A checkpoint at the current version, whoever wrote it; not a new version."""
        deltalake.DeltaTable(self.written.path).create_checkpoint()

    def merge(self, source: pa.Table) -> None:
        (deltalake.DeltaTable(self.written.path)
         .merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
         .when_matched_update_all().when_not_matched_insert_all().execute())
        self._record("MERGE", _merge_model(self.written.expected[-1], source))


class LakehouseWriter:
    """Applies operations with lakehouse and keeps the model in step."""

    def __init__(self, written: Written) -> None:
        self.written = written

    def _record(self, operation: str, metrics: dict[str, Any], model: pa.Table) -> None:
        assert metrics["version"] == len(self.written.expected), "each write must create exactly one version"
        self.written.expected.append(model)
        self.written.operations.append(operation)

    def create(self, rows: pa.Table, partition_by: list[str], configuration: dict[str, str] | None = None) -> None:
        lakehouse.create_table(self.written.path, ALL_TYPES, partition_by=partition_by, properties=configuration)
        self.written.expected.append(ALL_TYPES.empty_table())
        self.written.operations.append("CREATE TABLE")
        self.append(rows)

    def append(self, rows: pa.Table) -> None:
        metrics = lakehouse.open_table(self.written.path).append(rows)
        self._record("WRITE", metrics, pa.concat_tables([self.written.expected[-1], rows]))

    def overwrite(self, rows: pa.Table) -> None:
        self._record("WRITE", lakehouse.open_table(self.written.path).overwrite(rows), rows)

    def delete(self, sql: str, expression: ds.Expression) -> None:
        metrics = lakehouse.open_table(self.written.path).delete(sql)
        model = self.written.expected[-1]
        self._record("DELETE", metrics, model.filter(pc.invert(matching(model, expression))))


def _build_deltalake_history(path: str, partition_by: list[str]) -> Written:
    written = Written(path, partition_by)
    w = DeltalakeWriter(written)
    w.create(make_rows(0, 30), partition_by)                                   # v0
    w.append(make_rows(30, 30))                                                # v1
    w.delete("i32 >= 40 and i32 < 50", (ds.field("i32") >= 40) & (ds.field("i32") < 50))  # v2, rewrites files
    w.delete("p = 'a/b'", ds.field("p") == "a/b")                              # v3, whole partition
    w.merge(_merge_source(50, 30))                                             # v4, update 50..59 + insert
    w.append(make_rows(80, 20))                                                # v5
    w.checkpoint()                                                             # checkpoint at 5
    w.overwrite(make_rows(100, 40))                                            # v6
    w.append(make_rows(140, 20))                                               # v7
    w.delete("p is null", ds.field("p").is_null())                             # v8
    w.append(make_rows(160, 16))                                               # v9
    w.delete("s = 's0102'", ds.field("s") == "s0102")                          # v10
    for start in (176, 184, 192):                                              # v11 .. v13: narrow files
        w.append(make_rows(start, 8))                                          # that stats can skip
    return written


@pytest.fixture(scope="module", params=["partitioned", "unpartitioned"])
def theirs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    path = str(tmp_path_factory.mktemp(f"theirs-{request.param}") / "table")
    return _build_deltalake_history(path, ["p"] if request.param == "partitioned" else [])


def test_every_version_reads_the_same_as_deltalake(theirs: Written) -> None:
    for version, expected in enumerate(theirs.expected):
        ours = our_rows(theirs.path, version)
        assert_same_rows(deltalake_rows(theirs.path, version), expected, context=f"deltalake vs model at v{version}")
        assert_same_rows(ours, expected, context=f"lakehouse vs model at v{version}")
    assert lakehouse.open_table(theirs.path).version() == theirs.latest


def test_schema_and_partitioning_of_their_table(theirs: Written) -> None:
    snapshot = lakehouse.open_table(theirs.path).snapshot()
    assert snapshot.schema.names == ALL_TYPES.names
    for f in ALL_TYPES:
        assert snapshot.schema.field(f.name).type == f.type, f.name
    assert list(snapshot.partition_columns) == deltalake.DeltaTable(theirs.path).metadata().partition_columns


def test_history_operations_match(theirs: Written) -> None:
    expected = [(v, op) for v, op in enumerate(theirs.operations)][::-1]
    assert deltalake_history(theirs.path) == expected
    assert our_history(theirs.path) == expected


@pytest.mark.parametrize("keep_hint", [True, False], ids=["with-last-checkpoint", "listing-only"])
def test_we_read_their_checkpoint_without_the_commits_before_it(theirs: Written, tmp_path: Path,
                                                                keep_hint: bool) -> None:
    """Versions 5+ must come from deltalake's checkpoint alone once commits 0-4 are gone."""
    copy = copy_table(theirs.path, tmp_path / "copy")
    log = Path(copy, "_delta_log")
    assert (log / "00000000000000000005.checkpoint.parquet").is_file()
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 5
    for version in range(5):
        (log / f"{version:020d}.json").unlink()
    if not keep_hint:
        (log / "_last_checkpoint").unlink()
    for version in range(5, theirs.latest + 1):
        assert_same_rows(our_rows(copy, version), theirs.expected[version],
                         context=f"lakehouse from deltalake's checkpoint at v{version}")
    with pytest.raises(lakehouse.VersionNotFoundError):
        lakehouse.open_table(copy).snapshot(version=4)


# --- filters on their tables: stats-based skipping on deltalake's stats -------------------

# (our filter, deltalake SQL, what must let us skip files: "stats" = their min/max, "partition"
# = partition values (partitioned layout only), None = no claim)
FILTERS = [
    ("id >= 160", "id >= 160", "stats"),
    ("id < 105 or id > 185", "id < 105 or id > 185", "stats"),
    ("i32 = 120", "i32 = 120", "stats"),
    ("i16 between -10000 and -5000", "i16 between -10000 and -5000", "stats"),
    ("s < 's0110'", "s < 's0110'", "stats"),
    ("s is null", "s is null", None),
    ("d >= '1971-04-20'", "d >= DATE '1971-04-20'", "stats"),
    ("ts < '1970-01-06'", "ts < TIMESTAMP '1970-01-06T00:00:00Z'", "stats"),
    ("dec > 60", "dec > 60", "stats"),
    ("p = 'with space' or p = 'ünïcødé 😀'", "p = 'with space' or p = 'ünïcødé 😀'", "partition"),
    ("p in ('100%', '12:30:00', 'k=v')", "p in ('100%', '12:30:00', 'k=v')", "partition"),
    ("b = true and id > 160", "b = true and id > 160", "stats"),
    ("not (id > 110)", "not (id > 110)", "stats"),
]


@pytest.mark.parametrize(("ours", "sql", "skip"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_on_their_table(theirs: Written, ours: str, sql: str, skip: str | None) -> None:
    schema = lakehouse.open_table(theirs.path).schema()
    expression = to_arrow_expression(bind(parse_filter(ours), schema), schema)
    model = theirs.expected[-1]
    expected = model.filter(matching(model, expression))
    assert 0 < expected.num_rows < model.num_rows, "the filter should select some rows, not all or none"
    assert_same_rows(deltalake_rows(theirs.path, where=sql), expected, context=f"deltalake where {sql}")
    scan = lakehouse.open_table(theirs.path).snapshot().scan(filter=ours)
    assert_same_rows(scan.to_arrow(), expected, context=f"lakehouse filter {ours}")
    assert scan.count() == expected.num_rows
    if skip == "stats" or (skip == "partition" and theirs.partition_by):
        assert scan.metrics.files_selected < scan.metrics.files_total, f"the log's {skip} should let us skip files"


def _has_view_types(snapshot: lakehouse.Snapshot) -> bool:
    for path in snapshot.files.column("path").to_pylist():
        fs, location = snapshot.location.data_file(path)
        with fs.open_input_file(location) as handle:
            if "_view" in str(pq.read_schema(handle)):
                return True
    return False


def test_filter_at_an_older_version(theirs: Written) -> None:
    """Time travel plus filter at v4, right after deltalake's MERGE.

    The MERGE writes Parquet files whose embedded Arrow schema says string_view and
    binary_view; pyarrow's row-group pruning used to fail on them with "Function 'equal'
    has no kernel matching input types (string, string_view)".
    """
    snapshot = lakehouse.open_table(theirs.path).snapshot(version=4)
    assert _has_view_types(snapshot), "deltalake's MERGE no longer writes view types; this case lost its point"
    model = theirs.expected[4]
    for ours, sql in [("p is null", "p is null"), ("s >= 'merged-'", "s >= 'merged-'"), ("s = 's0012'", "s = 's0012'"),
                      (Comparison("bin", "=", b"\x1e\x00\xff"), "bin = x'1e00ff'"),
                      ("st.y in ('y33', 'y55')", "st['y'] in ('y33', 'y55')")]:
        predicate = parse_filter(ours) if isinstance(ours, str) else ours
        expression = to_arrow_expression(bind(predicate, snapshot.schema), snapshot.schema)
        expected = model.filter(matching(model, expression))
        assert expected.num_rows > 0, ours
        assert_same_rows(our_rows(theirs.path, 4, filter=ours), expected, context=f"v4 {ours}")
        assert_same_rows(deltalake_rows(theirs.path, 4, where=sql), expected, context=f"deltalake v4 {sql}")


TYPED_PARTITION_FILTERS = [
    "pi = 1", "pi is null", "pd = '2024-01-02'", "pd is null", "pts = '2024-01-02 03:04:05.123456'",
    "pts < '2000-01-01'", "pts is null", "pb = false", "pb is null", "pi = 0 and pb = true",
]


@pytest.fixture(scope="module")
def their_typed_partitions(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("their-typed-partitions") / "table")
    data = typed_partition_rows()
    deltalake.write_deltalake(path, data.slice(0, 12), partition_by=["pi", "pd", "pts", "pb"])
    deltalake.write_deltalake(path, data.slice(12), mode="append")
    return path


def test_we_read_their_typed_partition_values(their_typed_partitions: str) -> None:
    """deltalake's strings for int, date, timestamp and boolean partitions (and NULL) parse back."""
    snapshot = lakehouse.open_table(their_typed_partitions).snapshot()
    assert snapshot.schema == PARTITION_TYPES
    stored = {v for row in snapshot.files.column("partitionValues").to_pylist() for k, v in row if k == "pts"}
    # delta-rs writes the space form holding UTC, with microseconds.
    assert stored == {None, "2024-01-02 03:04:05.123456", "1999-12-31 23:59:59.000000"}
    assert_same_rows(snapshot.to_arrow(), typed_partition_rows(), context="lakehouse, their typed partitions")


@pytest.mark.parametrize("text", TYPED_PARTITION_FILTERS)
def test_filters_on_their_typed_partitions(their_typed_partitions: str, text: str) -> None:
    data = typed_partition_rows()
    expected = data.filter(matching(data, to_arrow_expression(bind(parse_filter(text), PARTITION_TYPES),
                                                               PARTITION_TYPES)))
    assert 0 < expected.num_rows < data.num_rows
    scan = lakehouse.open_table(their_typed_partitions).snapshot().scan(filter=text)
    assert_same_rows(scan.to_arrow(), expected, context=f"lakehouse filter {text}")
    assert scan.metrics.files_selected < scan.metrics.files_total, "partition values must prune files"


# --- mixed writers -------------------------------------------------------------------------


def _mixed_history(path: str, creator: str) -> Written:
    """Both libraries write in turn.

    With ``delta.checkpointInterval=4`` we checkpoint at versions divisible by 4 that we
    commit, deltalake after its commits whose version + 1 is; one explicit deltalake
    checkpoint makes sure each side's checkpoints are read by the other in both orders.
    """
    written = Written(path, ["p"])
    ours, theirs = LakehouseWriter(written), DeltalakeWriter(written)
    first, second = (ours, theirs) if creator == "lakehouse" else (theirs, ours)
    first.create(make_rows(0, 20), ["p"], {"delta.checkpointInterval": "4"})
    second.append(make_rows(20, 20))
    first.append(make_rows(40, 20))
    theirs.delete("i32 < 10", ds.field("i32") < 10)
    ours.delete("i32 >= 50 and i32 < 55", (ds.field("i32") >= 50) & (ds.field("i32") < 55))
    theirs.merge(_merge_source(30, 20))
    theirs.checkpoint()
    ours.append(make_rows(60, 10))
    ours.delete("p = 'k=v'", ds.field("p") == "k=v")
    theirs.append(make_rows(70, 10))
    theirs.delete("p is null", ds.field("p").is_null())
    ours.overwrite(make_rows(100, 16))
    theirs.append(make_rows(116, 8))
    ours.append(make_rows(124, 8))
    return written


@pytest.fixture(scope="module", params=["lakehouse", "deltalake"], ids=["we-create", "they-create"])
def mixed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    path = str(tmp_path_factory.mktemp(f"mixed-{request.param}") / "table")
    return _mixed_history(path, request.param)


def test_mixed_writers_read_identically_at_every_version(mixed: Written) -> None:
    for version, expected in enumerate(mixed.expected):
        assert_same_rows(deltalake_rows(mixed.path, version), expected, context=f"deltalake vs model at v{version}")
        assert_same_rows(our_rows(mixed.path, version), expected, context=f"lakehouse vs model at v{version}")
    assert lakehouse.open_table(mixed.path).version() == deltalake.DeltaTable(mixed.path).version() == mixed.latest


def test_mixed_writers_history_and_checkpoints(mixed: Written) -> None:
    expected = [(v, op) for v, op in enumerate(mixed.operations)][::-1]
    assert our_history(mixed.path) == expected
    assert deltalake_history(mixed.path) == expected
    engines = {str(h.get("engineInfo") or h.get("clientVersion")).split("/")[0].split(":")[0]
               for h in lakehouse.open_table(mixed.path).history()}
    assert {"lakehouse", "delta-rs"} <= engines, engines
    checkpoints = sorted(p.name for p in Path(mixed.path, "_delta_log").glob("*.checkpoint.parquet"))
    assert len(checkpoints) >= 2, checkpoints


# --- INT96 timestamps (Spark's default Parquet encoding) ---------------------------------

_INT96_IN_RANGE = [dt.datetime(2024, 1, 2, 3, 4, 5, 123456), None, dt.datetime(1960, 1, 1)]
# Outside 1677-2262 a nanosecond decode overflows; Spark tables do hold such sentinels.
_INT96_OUT_OF_RANGE = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(1500, 6, 1, 12)]


def _write_int96(path: Path, values: list[dt.datetime | None], tz: str | None) -> pa.Table:
    table = pa.table({"id": pa.array(range(len(values)), pa.int64()),
                      "ts": pa.array(values, pa.timestamp("us")).cast(pa.timestamp("us", tz=tz))})
    # No stored Arrow schema, as Spark writes: the column is a bare INT96.
    pq.write_table(table, path, use_deprecated_int96_timestamps=True, store_schema=False)
    assert str(pq.ParquetFile(path).schema.column(1).physical_type) == "INT96"
    return table


def test_int96_timestamp_ntz_from_deltalake_convert(tmp_path: Path) -> None:
    """deltalake's CONVERT of Spark-style INT96 files makes a timestamp_ntz table (reader 3)."""
    folder = tmp_path / "converted"
    folder.mkdir()
    expected = _write_int96(folder / "part-00000.parquet", _INT96_IN_RANGE, None)
    deltalake.convert_to_deltalake(str(folder))
    snapshot = lakehouse.open_table(str(folder)).snapshot()
    assert snapshot.protocol.min_reader_version == 3
    assert snapshot.schema.field("ts").type == pa.timestamp("us")
    assert_same_rows(snapshot.to_arrow(), expected, context="lakehouse, INT96 ntz")
    assert_same_rows(deltalake_rows(str(folder)), expected, context="deltalake, INT96 ntz")
    assert_same_rows(our_rows(str(folder), filter="ts > '2000-01-01'"), expected.slice(0, 1),
                     context="lakehouse, INT96 ntz filter")


@pytest.mark.parametrize("values", [_INT96_IN_RANGE, _INT96_OUT_OF_RANGE], ids=["in-ns-range", "outside-ns-range"])
def test_int96_timestamp_column_of_a_spark_style_table(tmp_path: Path, values: list[dt.datetime | None]) -> None:
    """A Delta ``timestamp`` column whose data file stores INT96, committed as Spark does.

    deltalake 1.6.6 decodes INT96 through nanoseconds and silently wraps values outside
    1677-2262 (0001-01-01 comes back as 1754-08-30), so out of that range the expected rows
    are the written values, not deltalake's answer.
    """
    path = tmp_path / "spark_style"
    lakehouse.create_table(str(path), pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC"))]))
    name = "part-00000-int96-c000.snappy.parquet"
    expected = _write_int96(path / name, values, "UTC")
    add = {"path": name, "partitionValues": {}, "size": (path / name).stat().st_size,
           "modificationTime": 1_700_000_000_000, "dataChange": True}
    info = {"timestamp": 1_700_000_000_000, "operation": "WRITE",
            "operationParameters": {"mode": "Append", "partitionBy": "[]"}, "engineInfo": "Apache-Spark/3.5.0"}
    (path / "_delta_log" / "00000000000000000001.json").write_text(
        json.dumps({"commitInfo": info}) + "\n" + json.dumps({"add": add}) + "\n")
    assert_same_rows(our_rows(str(path)), expected, context="lakehouse, INT96 timestamp")
    assert_same_rows(our_rows(str(path), filter="ts >= '1000-01-01'"),
                     expected.filter(pc.fill_null(pc.greater_equal(
                         expected.column("ts"), pa.scalar(dt.datetime(1000, 1, 1), pa.timestamp("us", "UTC"))), False)),
                     context="lakehouse, INT96 timestamp filter")
    if values is _INT96_IN_RANGE:
        assert_same_rows(deltalake_rows(str(path)), expected, context="deltalake, INT96 timestamp")
