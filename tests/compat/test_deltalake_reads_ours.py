"""Tables lakehouse writes, read by ``deltalake`` (delta-rs): same rows at every version.

One history per layout (partitioned by a string column holding NULL and characters that
need escaping, and not partitioned) covers every type we map, appends, a delete that
rewrites files, a delete that drops whole partitions, an overwrite, and enough commits to
pass the checkpoint at version 10. At every version three readers must agree: deltalake,
lakehouse, and an independent in-memory model of what the rows should be.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse.expressions import bind, parse_filter, to_arrow_expression

from .helpers import (
    ALL_TYPES, PARTITION_TYPES, PARTITION_TIMESTAMPS, UTC, assert_same_rows, copy_table, deltalake_history,
    deltalake_rows, deltalake_table, make_rows, matching, normalize_type, our_history, our_rows, typed_partition_rows,
)

pytestmark = pytest.mark.interop

@dataclass
class History:
    """A table written by lakehouse plus the rows expected at each version."""

    path: str
    partitioned: bool
    expected: list[pa.Table] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latest(self) -> int:
        return len(self.expected) - 1


def _build_history(path: str, partitioned: bool) -> History:
    table = lakehouse.create_table(path, ALL_TYPES, partition_by=["p"] if partitioned else [])
    history = History(path, partitioned, [ALL_TYPES.empty_table()], ["CREATE TABLE"], [{}])

    def record(operation: str, metrics: dict[str, Any], model: pa.Table) -> None:
        assert metrics["version"] == len(history.expected), "each write must create exactly one version"
        history.expected.append(model)
        history.operations.append(operation)
        history.metrics.append(metrics)

    def append(start: int, count: int) -> None:
        rows = make_rows(start, count)
        record("WRITE", table.append(rows), pa.concat_tables([history.expected[-1], rows]))

    def delete(text: str, expression: ds.Expression) -> None:
        model = history.expected[-1]
        record("DELETE", table.delete(text), model.filter(pc.invert(matching(model, expression))))

    append(0, 30)                                                           # v1
    append(30, 30)                                                          # v2
    append(60, 30)                                                          # v3
    # Rows of some files only: the other rows of those files are copied (files rewritten).
    delete("i32 >= 40 and i32 < 50", (ds.field("i32") >= 40) & (ds.field("i32") < 50))    # v4
    # A predicate on the partition column: whole partitions go, nothing is rewritten.
    delete("p = 'a/b'", ds.field("p") == "a/b")                             # v5
    rows = make_rows(100, 40)
    record("WRITE", table.overwrite(rows), rows)                            # v6
    for start in range(140, 190, 10):                                       # v7 .. v11, checkpoint at 10
        append(start, 10)
    delete("p is null", ds.field("p").is_null())                            # v12
    append(190, 16)                                                         # v13
    delete("s = 's0102'", ds.field("s") == "s0102")                         # v14
    return history


@pytest.fixture(scope="module", params=["partitioned", "unpartitioned"])
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> History:
    path = str(tmp_path_factory.mktemp(f"ours-{request.param}") / "table")
    return _build_history(path, request.param == "partitioned")


def test_history_exercises_what_it_claims(history: History) -> None:
    """The scenario really rewrites files in one delete and drops whole partitions in another."""
    rewrite, partition_drop = history.metrics[4], history.metrics[5]
    assert rewrite["num_deleted_rows"] > 0 and rewrite["num_added_files"] > 0 and rewrite["num_copied_rows"] > 0
    assert partition_drop["num_deleted_rows"] > 0 and partition_drop["num_removed_files"] > 0
    if history.partitioned:
        assert partition_drop["num_added_files"] == 0
    assert history.latest >= 12
    assert Path(history.path, "_delta_log", "00000000000000000010.checkpoint.parquet").is_file()


def test_every_version_reads_the_same_in_deltalake(history: History) -> None:
    for version, expected in enumerate(history.expected):
        ours = our_rows(history.path, version)
        theirs = deltalake_rows(history.path, version)
        assert_same_rows(ours, expected, context=f"lakehouse vs model at v{version}")
        assert_same_rows(theirs, ours, context=f"deltalake vs lakehouse at v{version}")


def test_deltalake_sees_our_schema_and_partitioning(history: History) -> None:
    ours = lakehouse.open_table(history.path).snapshot()
    theirs = deltalake_table(history.path)
    assert theirs.metadata().partition_columns == list(ours.partition_columns)
    their_schema = pa.schema(theirs.schema().to_arrow())
    assert their_schema.names == ours.schema.names
    for name in ours.schema.names:
        assert normalize_type(their_schema.field(name).type) == normalize_type(ours.schema.field(name).type), name
    protocol = theirs.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (
        ours.protocol.min_reader_version, ours.protocol.min_writer_version)


def test_version_and_history_agree(history: History) -> None:
    assert deltalake_table(history.path).version() == lakehouse.open_table(history.path).version() == history.latest
    expected = [(v, op) for v, op in enumerate(history.operations)][::-1]
    assert our_history(history.path) == expected
    assert deltalake_history(history.path) == expected


def _local_paths(snapshot: lakehouse.Snapshot, files: pa.Table) -> set[str]:
    """On-disk paths of ``files`` (rows of the snapshot's file list), as deltalake reports them."""
    return {os.path.normpath(snapshot.location.data_file(p)[1]) for p in files.column("path").to_pylist()}


def test_live_files_agree_at_every_version(history: History) -> None:
    for version in range(history.latest + 1):
        theirs = {os.path.normpath(uri) for uri in deltalake_table(history.path, version).file_uris()}
        snapshot = lakehouse.open_table(history.path).snapshot(version=version)
        ours = _local_paths(snapshot, snapshot.files)
        assert theirs == ours, f"v{version}"
        assert all(Path(p).is_file() for p in ours)
    # The raw log paths too, as deltalake reports them in its add actions.
    their_adds = pa.table(deltalake_table(history.path).get_add_actions())
    ours_raw = lakehouse.open_table(history.path).snapshot().files.column("path").to_pylist()
    assert sorted(their_adds.column("path").to_pylist()) == sorted(ours_raw)


def test_deltalake_reads_our_checkpoint_without_the_commits_before_it(history: History, tmp_path: Path) -> None:
    """Delete commits 0-9 from a copy: deltalake must rebuild versions 10+ from our checkpoint."""
    copy = copy_table(history.path, tmp_path / "copy")
    log = Path(copy, "_delta_log")
    assert json.loads((log / "_last_checkpoint").read_text())["version"] == 10
    for version in range(10):
        (log / f"{version:020d}.json").unlink()
    for version in range(10, history.latest + 1):
        assert_same_rows(deltalake_rows(copy, version), history.expected[version],
                         context=f"deltalake from our checkpoint at v{version}")
    assert deltalake_table(copy).version() == history.latest


# --- deltalake prunes files with our statistics ------------------------------------------


def _stats_filters() -> list[tuple[str, str, Any]]:
    """(our filter, deltalake SQL, deltalake pruning predicate or None) on data columns.

    The exact-value filters hit values that are their file's maximum: a string longer than
    the 32-character stats prefix (a max truncated without its tie-breaker makes deltalake
    skip the file and lose the row) and a timestamp with sub-millisecond digits (stats hold
    milliseconds; deltalake 1.6.6 widens timestamp bounds itself, so here it checks reading).
    """
    # Rows 201 and 205 hold their file's max string and max timestamp in both layouts.
    long_s = make_rows(201, 1).column("s")[0].as_py()
    row = make_rows(205, 1).to_pylist()[0]
    assert len(long_s) > 32 and row["ts"].microsecond % 1000
    ts_text = row["ts"].strftime("%Y-%m-%d %H:%M:%S.%f")
    ts_sql = row["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [
        ("id >= 195", "id >= 195", None),
        ("i16 > -1000", "i16 > -1000", None),
        ("i8 >= 70", "i8 >= 70", None),
        (f"s = '{long_s}'", f"s = '{long_s}'", None),
        ("s < 's0105'", "s < 's0105'", None),
        (f"d = '{row['d'].isoformat()}'", f"d = DATE '{row['d'].isoformat()}'", None),
        (f"ts = '{ts_text}'", f"ts = TIMESTAMP '{ts_sql}'", [("ts", "=", row["ts"])]),
        # A bare 68.26 is a double in deltalake's SQL and 68.26 as decimal(10,2) compares
        # below it there (a DataFusion coercion quirk), so the literal is typed.
        ("dec >= 68.26", "dec >= CAST('68.26' AS DECIMAL(10,2))", None),
        ("st.x >= 195", "st['x'] >= 195", None),
    ]


STATS_FILTERS = _stats_filters()


@pytest.mark.parametrize(("ours", "sql", "pruning"), STATS_FILTERS, ids=[f[0][:24] for f in STATS_FILTERS])
def test_deltalake_prunes_files_with_our_stats(history: History, ours: str, sql: str, pruning: Any) -> None:
    """deltalake's rows and pruning, driven by the min/max we wrote, lose no matching row."""
    snapshot = lakehouse.open_table(history.path).snapshot()
    expression = to_arrow_expression(bind(parse_filter(ours), snapshot.schema), snapshot.schema)
    model = history.expected[-1]
    expected = model.filter(matching(model, expression))
    assert 0 < expected.num_rows < model.num_rows, "the filter should select some rows, not all or none"
    assert_same_rows(deltalake_rows(history.path, where=sql), expected, context=f"deltalake where {sql}")
    scan = snapshot.scan(filter=ours)
    assert_same_rows(scan.to_arrow(), expected, context=f"lakehouse filter {ours}")

    files = _local_paths(snapshot, snapshot.files)
    holding = {local for local in files if pc.any(matching(pq.read_table(local), expression)).as_py()}
    pruned = deltalake_table(history.path).file_uris(file_pruning_predicate=pruning or sql)
    theirs = {os.path.normpath(uri) for uri in pruned}
    ours_selected = _local_paths(snapshot, scan.selected_files)
    assert holding <= theirs, "deltalake skipped a file that holds a match: our stats are wrong"
    assert holding <= ours_selected
    assert len(theirs) < len(files), "deltalake should be able to skip files with our stats"
    assert len(ours_selected) < len(files)


# --- partition columns of other types, filtered by deltalake -----------------------------

@pytest.fixture(scope="module")
def typed_partitions(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pa.Table]:
    path = str(tmp_path_factory.mktemp("typed-partitions") / "table")
    table = lakehouse.create_table(path, PARTITION_TYPES, partition_by=["pi", "pd", "pts", "pb"])
    data = typed_partition_rows()
    table.append(data.slice(0, 12))
    table.append(data.slice(12))
    return path, data


# (our filter, the same predicate in deltalake's SQL, and for its file pruning when the
# SQL form cannot be used there: deltalake 1.6.6 types a TIMESTAMP literal as nanoseconds
# and refuses to compare it with a microsecond column, so timestamps use tuple filters)
TYPED_FILTERS = [
    ("pi = 1", "pi = 1", None),
    ("pi = -1", "pi = -1", None),
    ("pi >= 0", "pi >= 0", None),
    ("pi is null", "pi is null", None),
    ("pd = '2024-01-02'", "pd = DATE '2024-01-02'", None),
    ("pd > '2024-01-01'", "pd > DATE '2024-01-01'", None),
    ("pd is null", "pd is null", None),
    ("pts = '2024-01-02 03:04:05.123456'", "pts = TIMESTAMP '2024-01-02T03:04:05.123456Z'",
     [("pts", "=", PARTITION_TIMESTAMPS[0])]),
    ("pts < '2000-01-01'", "pts < TIMESTAMP '2000-01-01T00:00:00Z'",
     [("pts", "<", dt.datetime(2000, 1, 1, tzinfo=UTC))]),
    ("pts is null", "pts is null", None),
    ("pb = true", "pb = true", None),
    ("pb = false", "pb = false", None),
    ("pb is null", "pb is null", None),
    ("pi = 0 and pb = true", "pi = 0 and pb = true", None),
    ("pd = '2024-01-03' or pts is null", "pd = DATE '2024-01-03' or pts is null", None),
]


def test_deltalake_reads_typed_partition_values(typed_partitions: tuple[str, pa.Table]) -> None:
    path, data = typed_partitions
    assert_same_rows(deltalake_rows(path), data, context="deltalake, typed partitions")
    assert_same_rows(our_rows(path), data, context="lakehouse, typed partitions")


@pytest.mark.parametrize(("ours", "sql", "pruning"), TYPED_FILTERS, ids=[f[0] for f in TYPED_FILTERS])
def test_deltalake_filters_on_typed_partitions(typed_partitions: tuple[str, pa.Table], ours: str, sql: str,
                                              pruning: list[tuple[str, str, Any]] | None) -> None:
    path, data = typed_partitions
    predicate = to_arrow_expression(bind(parse_filter(ours), PARTITION_TYPES), PARTITION_TYPES)
    expected = ds.dataset(data).to_table(filter=predicate)
    assert 0 < expected.num_rows < data.num_rows, "the filter should select some rows, not all or none"
    assert_same_rows(deltalake_rows(path, where=sql), expected, context=f"deltalake where {sql}")
    scan = lakehouse.open_table(path).snapshot().scan(filter=ours)
    assert_same_rows(scan.to_arrow(), expected, context=f"lakehouse filter {ours}")
    assert scan.metrics.files_selected < scan.metrics.files_total, "partition values must prune files"
    # Pruning on partition columns is exact in both, so deltalake, parsing our partition
    # strings into typed values, must pick exactly the files we pick.
    theirs = {os.path.normpath(u) for u in deltalake_table(path).file_uris(file_pruning_predicate=pruning or sql)}
    assert theirs == _local_paths(scan.snapshot, scan.selected_files)
