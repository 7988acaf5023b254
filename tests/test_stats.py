"""Per-file statistics: which columns, string truncation, timestamp rounding, NaN, decimals."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import random

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.stats import StatsCollector, indexed_columns

UTC = dt.timezone.utc


def stats_of(data: pa.Table, configuration: dict | None = None, *, batch_rows: int | None = None) -> dict:
    collector = StatsCollector(data.schema, configuration or {})
    for batch in data.to_batches(max_chunksize=batch_rows):
        collector.update(batch)
    return json.loads(collector.to_json())


# --- which columns --------------------------------------------------------------------


def wide_table(columns: int) -> pa.Table:
    return pa.table({f"c{i:02d}": pa.array([i, i + 100], pa.int64()) for i in range(columns)})


def test_first_32_leaf_columns_only():
    stats = stats_of(wide_table(40))
    expected = [f"c{i:02d}" for i in range(32)]
    assert list(stats["minValues"]) == expected
    assert list(stats["maxValues"]) == expected
    assert list(stats["nullCount"]) == expected
    assert stats["minValues"]["c31"] == 31 and stats["maxValues"]["c31"] == 131


def test_nested_struct_leaves_count_towards_the_limit():
    # 'a' (1 leaf) + 's' (30 leaves) + 'b' + 'c': the 32 leaves end at 'b'.
    inner = pa.struct([(f"x{i:02d}", pa.int32()) for i in range(30)])
    data = pa.table({
        "a": pa.array([1], pa.int64()),
        "s": pa.array([{f"x{i:02d}": i for i in range(30)}], inner),
        "b": pa.array([2], pa.int64()),
        "c": pa.array([3], pa.int64()),
    })
    stats = stats_of(data)
    assert list(stats["minValues"]) == ["a", "s", "b"]
    assert len(stats["minValues"]["s"]) == 30 and stats["minValues"]["s"]["x29"] == 29
    assert "c" not in stats["nullCount"]


@pytest.mark.parametrize("setting, count", [("2", 2), ("0", 0), ("-1", 40), ("40", 40), ("100", 40)])
def test_data_skipping_num_indexed_cols(setting, count):
    stats = stats_of(wide_table(40), {"delta.dataSkippingNumIndexedCols": setting})
    assert len(stats["nullCount"]) == count
    assert stats["numRecords"] == 2  # always present


def test_data_skipping_stats_columns_overrides_the_count():
    data = pa.table({"a": [1], "s": pa.array([{"x": 1, "y": 2}]), "b": [3]})
    config = {"delta.dataSkippingStatsColumns": "b, s.y", "delta.dataSkippingNumIndexedCols": "1"}
    assert [path for path, _ in indexed_columns(data.schema, config)] == [("s", "y"), ("b",)]
    stats = stats_of(data, config)
    assert stats["minValues"] == {"s": {"y": 2}, "b": 3}


# --- values ---------------------------------------------------------------------------


def test_num_records_null_counts_and_min_max_across_batches():
    data = pa.table({
        "n": pa.array([5, None, -3, 8, None], pa.int32()),
        "f": pa.array([1.5, None, -0.5, 2.0, 0.0], pa.float64()),
        "s": ["m", "a", None, "z", "k"],
        "d": pa.array([dt.date(2024, 5, 1), None, dt.date(2023, 1, 2), None, None], pa.date32()),
        "flag": [True, False, None, True, True],
        "blob": [b"x", None, b"y", b"z", b"w"],
        "all_null": pa.array([None] * 5, pa.int64()),
        "st": pa.array([{"k": 1}, None, {"k": None}, {"k": 4}, {"k": 2}], pa.struct([("k", pa.int64())])),
        "l": pa.array([[1], None, [], [2, 3], None], pa.list_(pa.int64())),
    })
    stats = stats_of(data, batch_rows=2)  # three batches, merged
    assert stats["numRecords"] == 5
    assert stats["minValues"] == {"n": -3, "f": -0.5, "s": "a", "d": "2023-01-02", "st": {"k": 1}}
    assert stats["maxValues"] == {"n": 8, "f": 2.0, "s": "z", "d": "2024-05-01", "st": {"k": 4}}
    # booleans, binary and lists get null counts only; a null parent struct counts as a
    # null child; an all-null column has no bounds.
    assert stats["nullCount"] == {"n": 2, "f": 1, "s": 1, "d": 3, "flag": 1, "blob": 1, "all_null": 5,
                                  "st": {"k": 2}, "l": 2}


def test_nan_and_infinity_give_no_bounds_but_null_counts():
    data = pa.table({"f": [1.0, float("nan"), None], "g": pa.array([1.0, float("inf"), 2.0], pa.float32()),
                     "ok": [1.0, 2.0, None]})
    stats = stats_of(data, batch_rows=1)
    assert "f" not in stats["minValues"] and "f" not in stats["maxValues"]
    assert "g" not in stats["minValues"] and "g" not in stats["maxValues"]
    assert stats["minValues"]["ok"] == 1.0 and stats["maxValues"]["ok"] == 2.0
    assert stats["nullCount"] == {"f": 1, "g": 0, "ok": 1}


def test_nan_in_a_later_batch_drops_earlier_bounds():
    data = pa.table({"f": [1.0, 2.0, float("nan")]})
    stats = stats_of(data, batch_rows=2)
    assert "f" not in stats["minValues"] and "f" not in stats["maxValues"]


def test_timestamps_are_floored_and_ceiled_to_the_millisecond():
    data = pa.table({
        "ts": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
                        dt.datetime(2024, 1, 1, 0, 0, 59, 999500, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "exact": pa.array([dt.datetime(2024, 1, 1, 0, 0, 0, 5000, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        "ntz": pa.array([dt.datetime(2024, 2, 29, 23, 59, 59, 999999)], pa.timestamp("us")).take([0, 0]),
    })
    stats = stats_of(data)
    assert stats["minValues"]["ts"] == "2024-01-01T00:00:00.123Z"  # floored
    assert stats["maxValues"]["ts"] == "2024-01-01T00:01:00.000Z"  # ceiled over a minute boundary
    assert stats["minValues"]["exact"] == stats["maxValues"]["exact"] == "2024-01-01T00:00:00.005Z"
    assert stats["minValues"]["ntz"] == "2024-02-29T23:59:59.999Z"
    assert stats["maxValues"]["ntz"] == "2024-03-01T00:00:00.000Z"  # ceiled over a day boundary


def test_timestamp_bounds_bracket_every_value():
    rng = random.Random(7)
    micros = [rng.randrange(0, 4_000_000_000_000_000) for _ in range(300)]
    array = pa.array(micros, pa.timestamp("us", tz="UTC"))
    stats = stats_of(pa.table({"ts": array}))
    parse = lambda text: dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    low, high = parse(stats["minValues"]["ts"]), parse(stats["maxValues"]["ts"])
    values = array.to_pylist()
    assert low <= min(values) and high >= max(values)
    assert min(values) - low < dt.timedelta(milliseconds=1) and high - max(values) < dt.timedelta(milliseconds=1)


def test_decimals_are_numbers_that_bracket_the_exact_values():
    values = [decimal.Decimal("0.10"), decimal.Decimal("12345678.99"), decimal.Decimal("-0.30")]
    data = pa.table({"d": pa.array(values, pa.decimal128(10, 2)),
                     "big": pa.array([decimal.Decimal("12345678901234567890.123")] * 3, pa.decimal128(38, 3))})
    stats = stats_of(data)
    low, high = stats["minValues"]["d"], stats["maxValues"]["d"]
    assert isinstance(low, float) and isinstance(high, float)
    assert decimal.Decimal(low) <= min(values) and decimal.Decimal(high) >= max(values)
    assert abs(low - -0.3) < 1e-12 and abs(high - 12345678.99) < 1e-6
    exact = decimal.Decimal("12345678901234567890.123")
    assert decimal.Decimal(stats["minValues"]["big"]) <= exact <= decimal.Decimal(stats["maxValues"]["big"])


# --- strings --------------------------------------------------------------------------


def test_short_strings_are_exact():
    stats = stats_of(pa.table({"s": ["b" * 32, "a" * 10]}))
    assert stats["minValues"]["s"] == "a" * 10 and stats["maxValues"]["s"] == "b" * 32


def test_long_strings_are_truncated_to_32_chars_with_a_tie_breaker():
    prefix = "p" * 32
    stats = stats_of(pa.table({"s": [prefix + "abc", prefix + "b"]}))
    assert stats["minValues"]["s"] == prefix
    assert stats["maxValues"]["s"] == prefix + "\x7f"  # next char 'b' < U+007F
    stats = stats_of(pa.table({"s": [prefix + "\u00e9t\u00e9"]}))
    assert stats["maxValues"]["s"] == prefix + "\U0010ffff"  # next char above U+007F
    stats = stats_of(pa.table({"s": ["\U0001f600" * 40]}))
    assert stats["minValues"]["s"] == "\U0001f600" * 32  # counted in characters, never split


def test_max_with_nothing_greater_is_omitted():
    stats = stats_of(pa.table({"s": ["q" * 32 + "\U0010ffff" + "z"]}))
    assert stats["minValues"]["s"] == "q" * 32
    assert "s" not in stats["maxValues"]


def test_truncated_max_is_at_least_every_value_with_that_prefix():
    rng = random.Random(11)
    alphabet = ["a", "z", "~", "\x7f", "\x80", "\u00e9", "\u4e2d", "\U0001f600", "\U0010fffe"]
    prefix = "k" * 32
    for _ in range(200):
        tails = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 6))) for _ in range(5)]
        values = [prefix + tail for tail in tails]
        stats = stats_of(pa.table({"s": values}))
        high = stats["maxValues"].get("s")
        assert high is not None
        # Python compares code points, which is also UTF-8 byte order.
        assert all(high >= v for v in values), (high, values)
        assert high.encode() >= max(v.encode() for v in values)
        assert all(stats["minValues"]["s"] <= v for v in values)


# --- on written files -----------------------------------------------------------------


def test_every_add_carries_stats_without_partition_columns(table_path):
    table = lakehouse.create_table(table_path, pa.schema([("p", pa.string()), ("n", pa.int64()), ("s", pa.string())]),
                                   partition_by=["p"], properties={"delta.dataSkippingNumIndexedCols": "1"})
    table.append(pa.table({"p": ["a", "a", "b"], "n": [1, None, 7], "s": ["x", "y", "z"]}))
    with open(os.path.join(table_path, "_delta_log", f"{1:020d}.json")) as handle:
        adds = [json.loads(line)["add"] for line in handle if '"add"' in line]
    by_partition = {a["partitionValues"]["p"]: json.loads(a["stats"]) for a in adds}
    # One indexed column: the first *data* column 'n', never the partition column 'p'.
    assert by_partition["a"] == {"numRecords": 2, "minValues": {"n": 1}, "maxValues": {"n": 1},
                                 "nullCount": {"n": 1}}
    assert by_partition["b"] == {"numRecords": 1, "minValues": {"n": 7}, "maxValues": {"n": 7},
                                 "nullCount": {"n": 0}}
