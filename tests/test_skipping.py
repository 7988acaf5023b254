"""File skipping is effective (few files chosen) and safe (matches are never lost).

The main table has 100 files, each holding a consecutive range of 100 ids, so the log's
min/max stats tell exactly which file may hold an id. Files the log rules out are never
opened: deleting them from disk does not disturb a point query.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import shutil
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.expressions import bind, parse_filter
from lakehouse.log.filelist import FILES_SCHEMA
from lakehouse.skipping import may_match

FILES = 100
ROWS_PER_FILE = 100


@pytest.fixture(scope="module")
def hundred_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table of 100 files; file k holds ids 100k .. 100k+99, in region 'r{k % 4}'."""
    path = tmp_path_factory.mktemp("skipping") / "ids"
    table = lakehouse.create_table(str(path), [("id", pa.int64()), ("region", pa.string()), ("v", pa.float64())],
                                   partition_by=["region"])
    for k in range(FILES):
        ids = list(range(k * ROWS_PER_FILE, (k + 1) * ROWS_PER_FILE))
        table.append(pa.table({"id": pa.array(ids, pa.int64()), "region": [f"r{k % 4}"] * ROWS_PER_FILE,
                               "v": [i / 2 for i in ids]}))
    return path


def _scan(path: Path, sql: str) -> lakehouse.Scan:
    return lakehouse.open_table(str(path)).snapshot().scan(filter=sql)


def test_table_has_one_hundred_files(hundred_files: Path) -> None:
    snapshot = lakehouse.open_table(str(hundred_files)).snapshot()
    assert snapshot.num_files == FILES
    assert snapshot.num_records == FILES * ROWS_PER_FILE


def test_point_filter_selects_exactly_one_file(hundred_files: Path) -> None:
    scan = _scan(hundred_files, "id = 4242")
    assert scan.metrics.files_total == 100
    assert scan.metrics.files_selected == 1
    assert scan.metrics.files_skipped == 99
    assert scan.metrics.bytes_selected < scan.metrics.bytes_total
    assert scan.to_arrow().to_pylist() == [{"id": 4242, "region": "r2", "v": 2121.0}]


def test_skipped_files_are_never_opened(hundred_files: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(hundred_files, copy)
    scan = _scan(copy, "id = 4242")
    keep = unquote(scan.selected_files.column("path")[0].as_py())
    removed = 0
    for path in lakehouse.open_table(str(copy)).snapshot().files.column("path").to_pylist():
        if unquote(path) != keep:
            (copy / unquote(path)).unlink()
            removed += 1
    assert removed == 99

    assert _scan(copy, "id = 4242").to_arrow().column("id").to_pylist() == [4242]
    assert _scan(copy, "id in (4200, 4299, 20000)").to_arrow().column("id").to_pylist() == [4200, 4299]
    # The files really are gone: a query that needs them fails, with one clear error.
    with pytest.raises(lakehouse.DataFileError):
        _scan(copy, "id = 4300").to_arrow()


@pytest.mark.parametrize(("sql", "files", "rows"), [
    ("id >= 4200 and id < 4500", 3, 300),
    ("id < 100", 1, 100),
    ("id <= 100", 2, 101),
    ("id > 9899", 1, 100),
    ("id >= 9899", 2, 101),
    ("id between 1000 and 2999", 20, 2000),
    ("id between 1050 and 1149", 2, 100),
    ("100 > id", 1, 100),
    ("id > 20000", 0, 0),
    ("id < -1", 0, 0),
    ("id in (5, 5005, 9999)", 3, 3),
    ("id in (5, 6, 7)", 1, 3),
    ("not (id < 5000)", 50, 5000),
    ("id < 150 or id >= 9950", 3, 200),
    ("id != 4242", 100, 9999),
    ("id is null", 0, 0),
    ("id is not null", 100, 10000),
    ("v >= 4999.5", 1, 1),
    ("id = 4242.5", 1, 0),  # a fraction against an int column: exact, not rounded
    ("id < 99.5", 1, 100),
])
def test_range_filters_select_the_right_files(hundred_files: Path, sql: str, files: int, rows: int) -> None:
    scan = _scan(hundred_files, sql)
    assert scan.metrics.files_selected == files, sql
    assert scan.to_arrow().num_rows == rows, sql


def test_partition_filter_reads_only_its_partition(hundred_files: Path) -> None:
    scan = _scan(hundred_files, "region = 'r1'")
    selected = scan.selected_files
    assert selected.num_rows == 25
    assert {dict(pv)["region"] for pv in selected.column("partitionValues").to_pylist()} == {"r1"}
    result = scan.to_arrow()
    assert result.num_rows == 2500
    assert set(result.column("region").to_pylist()) == {"r1"}

    both = _scan(hundred_files, "region in ('r0', 'r3') and id < 1000")
    assert both.metrics.files_selected == 5  # files 0, 3, 4, 7, 8
    assert both.to_arrow().num_rows == 500
    assert _scan(hundred_files, "region = 'nowhere'").metrics.files_selected == 0
    assert _scan(hundred_files, "region is null").metrics.files_selected == 0
    assert _scan(hundred_files, "not (region = 'r2')").metrics.files_selected == 75


def test_long_strings_with_truncated_stats_are_found(tmp_path: Path) -> None:
    prefix = "customer-reference-shared-prefix"  # exactly the 32 characters stats keep
    assert len(prefix) == 32
    table = lakehouse.create_table(str(tmp_path / "t"), [("s", pa.string()), ("n", pa.int64())])
    groups = [
        [prefix + "alpha", prefix + "beta"],
        [prefix + "gamma", prefix + "\x7fdelta"],     # the first tie-breaker itself follows the prefix
        [prefix + "é-omega", prefix + "\U0010ffff"],  # no max can be written for this file
        ["a-short-one", "zzz"],
    ]
    for n, group in enumerate(groups):
        table.append(pa.table({"s": group, "n": pa.array([n] * len(group), pa.int64())}))
    stats = [json.loads(s) for s in table.snapshot().files.column("stats").to_pylist()]
    assert all(len(st["minValues"]["s"]) <= 32 for st in stats)
    assert stats[0]["maxValues"]["s"] == prefix[:32] + "\x7f"
    assert stats[1]["maxValues"]["s"] == prefix[:32] + "\U0010ffff"
    assert "s" not in stats[2]["maxValues"]

    for value in [v for group in groups for v in group]:
        for sql in (f"s = '{value}'", f"s >= '{value}' and s <= '{value}'", f"s in ('{value}', 'x')"):
            assert table.to_arrow(filter=sql).column("s").to_pylist() == [value], sql
    assert sorted(table.to_arrow(filter=f"s like '{prefix}g%'").column("s").to_pylist()) == [prefix + "gamma"]
    # The file without a max (its value ends in U+10FFFF) must be kept for a ">=" on that value.
    assert table.to_arrow(filter=f"s >= '{prefix}\U0010ffff' and s < 'd'").column("s").to_pylist() == \
        [prefix + "\U0010ffff"]
    greater = sorted(table.to_arrow(filter=f"s > '{prefix}z'").column("s").to_pylist())
    assert greater == sorted([prefix + "\x7fdelta", prefix + "é-omega", prefix + "\U0010ffff", "zzz"])
    # Skipping still works on truncated bounds: 'zzz' rules out the files whose max is the
    # prefix plus a tie-breaker, but not the one without a max.
    assert table.scan(filter="s = 'zzz'").metrics.files_selected == 2
    assert table.scan(filter="s = 'a-short-one'").metrics.files_selected == 1
    assert table.scan(filter="s < 'b'").metrics.files_selected == 1


def test_timestamps_at_microsecond_precision_near_a_file_boundary(tmp_path: Path) -> None:
    base = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    us = dt.timedelta(microseconds=1)
    first = [base, base + 999 * us]            # stats: min 12:00:00.000, max ceiled to .001
    second = [base + 1000 * us, base + 1001 * us, base + 2500 * us]  # min .001, max .003
    table = lakehouse.create_table(str(tmp_path / "t"), [("ts", pa.timestamp("us", tz="UTC")), ("n", pa.int64())])
    table.append(pa.table({"ts": first, "n": pa.array([1, 1], pa.int64())}))
    table.append(pa.table({"ts": second, "n": pa.array([2, 2, 2], pa.int64())}))

    def rows(sql: str) -> list[dt.datetime]:
        return sorted(table.to_arrow(filter=sql).column("ts").to_pylist())

    assert rows("ts = TIMESTAMP '2026-03-01 12:00:00.000999'") == [base + 999 * us]
    assert rows("ts = '2026-03-01T12:00:00.000999Z'") == [base + 999 * us]
    assert rows("ts = '2026-03-01 12:00:00.001000+00:00'") == [base + 1000 * us]
    assert rows("ts > TIMESTAMP '2026-03-01 12:00:00.000998'") == [base + 999 * us, *second]
    assert rows("ts >= TIMESTAMP '2026-03-01 12:00:00.001001'") == second[1:]
    assert rows("ts < TIMESTAMP '2026-03-01 12:00:00.001001'") == [*first, base + 1000 * us]
    assert rows("ts between '2026-03-01 12:00:00.000999' and '2026-03-01 12:00:00.001000'") == \
        [base + 999 * us, base + 1000 * us]
    assert rows("ts > TIMESTAMP '2026-03-01 12:00:00.0025'") == []
    assert rows("ts = TIMESTAMP '2026-03-01 14:00:00.000999+02:00'") == [base + 999 * us]
    # And it still skips: a time inside the second file's range rules out the first file.
    assert table.scan(filter="ts = TIMESTAMP '2026-03-01 12:00:00.0025'").metrics.files_selected == 1
    assert rows("ts = TIMESTAMP '2026-03-01 12:00:00.0025'") == [base + 2500 * us]
    assert table.scan(filter="ts < TIMESTAMP '2026-03-01 12:00:00'").metrics.files_selected == 0


def test_decimal_literals_more_precise_than_the_stats(tmp_path: Path) -> None:
    """Decimal bounds are JSON doubles; a literal rounding onto a bound must not skip the file."""
    table = lakehouse.create_table(str(tmp_path / "t"), [("d", pa.decimal128(10, 2))])
    table.append(pa.table({"d": pa.array([decimal.Decimal("0.30")] * 2, pa.decimal128(10, 2))}))
    table.append(pa.table({"d": pa.array([decimal.Decimal("0.10")], pa.decimal128(10, 2))}))
    table.append(pa.table({"d": pa.array([decimal.Decimal("0.50")] * 2, pa.decimal128(10, 2))}))
    assert table.to_arrow(filter="d < 0.30000000000000001").num_rows == 3
    assert table.to_arrow(filter="d != 0.30000000000000001").num_rows == 5
    assert table.to_arrow(filter="d > 0.099999999999999999").num_rows == 5
    assert table.to_arrow(filter="d = 0.3").num_rows == 2
    # Exact literals still skip: 0.5 is a double, so the all-0.50 file cannot hold d != 0.5.
    assert table.scan(filter="d > 0.2").metrics.files_selected == 2
    assert table.scan(filter="d != 0.5").metrics.files_selected == 2
    assert table.scan(filter="d < 0.2").metrics.files_selected == 1


def test_integer_literals_beyond_int64_and_fractions(tmp_path: Path) -> None:
    table = lakehouse.create_table(str(tmp_path / "t"), [("i", pa.int64())])
    table.append(pa.table({"i": pa.array([-2**63, 5], pa.int64())}))
    table.append(pa.table({"i": pa.array([2**63 - 1], pa.int64())}))

    def ids(sql: str) -> list[int]:
        return sorted(table.to_arrow(filter=sql).column("i").to_pylist())

    assert ids("i > -9223372036854775809") == [-2**63, 5, 2**63 - 1]
    assert ids("i < 99999999999999999999999") == [-2**63, 5, 2**63 - 1]
    assert ids("i = 9223372036854775808") == []
    assert ids("i in (-9223372036854775809, 5, 2.5)") == [5]
    assert ids("i > 2.5") == [5, 2**63 - 1]
    assert ids("i < 1e-3") == [-2**63]
    assert ids("i >= 9223372036854775806.5") == [2**63 - 1]
    assert ids("not (i not between -9223372036854775809 and -9223372036854775808)") == [-2**63]


def test_columns_without_stats_are_never_skipped(tmp_path: Path) -> None:
    table = lakehouse.create_table(str(tmp_path / "t"), [("a", pa.int64()), ("b", pa.int64())],
                                   properties={"delta.dataSkippingNumIndexedCols": "1"})
    for k in range(3):
        table.append(pa.table({"a": pa.array([k], pa.int64()), "b": pa.array([10 * k], pa.int64())}))
    assert table.scan(filter="a = 1").metrics.files_selected == 1
    scan = table.scan(filter="b = 10")
    assert scan.metrics.files_selected == 3  # no stats for b: every file may match
    assert scan.to_arrow().column("a").to_pylist() == [1]


def test_float_columns_with_nan_keep_their_files(tmp_path: Path) -> None:
    table = lakehouse.create_table(str(tmp_path / "t"), [("f", pa.float64())])
    table.append(pa.table({"f": [1.0, math.nan]}))
    table.append(pa.table({"f": [-0.0, 2.0]}))
    table.append(pa.table({"f": [None, None]}, schema=pa.schema([("f", pa.float64())])))
    stats = [json.loads(s) for s in table.snapshot().files.column("stats").to_pylist()]
    assert "f" not in stats[0]["minValues"]  # NaN: no min/max
    assert table.scan(filter="f > 5").metrics.files_selected == 1  # only the NaN file
    assert len(table.to_arrow(filter="f > 5")) == 1                # NaN sorts above numbers
    assert table.to_arrow(filter="f in (0.0)").column("f").to_pylist() == [-0.0]
    assert table.scan(filter="f = 0").metrics.files_selected == 2
    assert table.scan(filter="f is null").metrics.files_selected == 1


# --- may_match on hand-written stats (other writers' dialects) ---------------------------


def _files(stats: list[str | None]) -> pa.Table:
    return pa.Table.from_pylist([{"path": f"f{i}.parquet", "partitionValues": [], "size": 1, "stats": s}
                                 for i, s in enumerate(stats)], schema=FILES_SCHEMA)


def test_may_match_with_foreign_and_missing_stats() -> None:
    schema = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("s", pa.string()), ("n", pa.int32())])
    files = _files([
        # Spark renders timestamps in the session zone: 14:00+02:00 is 12:00Z.
        '{"numRecords":1,"minValues":{"ts":"2026-01-01T14:00:00.000+02:00","n":1},'
        '"maxValues":{"ts":"2026-01-01T14:00:00.000+02:00","n":1},"nullCount":{"ts":0,"n":0}}',
        None,                                                       # no stats at all
        '{"numRecords":2}',                                         # counts only
        '{"numRecords":2,"minValues":{"s":"m"},"maxValues":{},"nullCount":{"s":0}}',  # max omitted
        '{"numRecords":2,"nullCount":{"ts":2,"s":2,"n":2}}',        # all null
        "not json at all",
    ])

    def verdict(sql: str) -> list[bool]:
        return may_match(files, bind(parse_filter(sql), schema), schema, ()).to_pylist()

    assert verdict("ts = TIMESTAMP '2026-01-01 12:00:00'") == [True, True, True, True, False, True]
    assert verdict("ts > TIMESTAMP '2026-01-01 12:00:01'") == [False, True, True, True, False, True]
    assert verdict("s > 'z'") == [True, True, True, True, False, True]
    assert verdict("s < 'a'") == [True, True, True, False, False, True]
    assert verdict("n in (2, 3)") == [False, True, True, True, False, True]
    assert verdict("n is null") == [False, True, True, True, True, True]
