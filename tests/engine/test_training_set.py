"""``engine.training_set``: point-in-time joins of labels to feature tables, checked against DuckDB.

The oracle is DuckDB's ``ASOF LEFT JOIN ... ON l.k = r.k AND l.ts >= r.ts`` on the same Arrow
data (the feature tables' snapshots read back), with the TTL applied as ``CASE WHEN r.ts >=
l.ts - INTERVAL ...``. Feature tables never repeat (keys, time): DuckDB's choice among such
ties is unspecified (see ``tests/engine/test_asof.py``); labels do repeat times, and land on
feature times exactly.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import lakehouse
from engine import FeatureSource, training_set
from engine.errors import PlanError
from lakehouse.errors import LakehouseError

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
KEY_TYPES = {"int": (pa.int64(), lambda n: n), "str": (pa.string(), lambda n: f"user-{n}")}


def _stamp(minutes: int | None) -> dt.datetime | None:
    return None if minutes is None else BASE + dt.timedelta(minutes=minutes)


def _feature_table(rows: list[dict], schema: pa.Schema, chunks: int) -> lakehouse.Table:
    """A lakehouse table holding ``rows`` written in ``chunks`` appends (several files to skip)."""
    table = lakehouse.create_table(f"memory://training/{uuid.uuid4().hex}", schema)
    step = max(1, -(-len(rows) // chunks))
    for start in range(0, len(rows), step):
        table.append(pa.Table.from_pylist(rows[start:start + step], schema=schema))
    return table


@st.composite
def case(draw):  # noqa: ANN001, ANN201
    key_kinds = draw(st.lists(st.sampled_from(sorted(KEY_TYPES)), min_size=1, max_size=2))
    key_domain = draw(st.integers(1, 4))
    time_domain = draw(st.integers(1, 30))
    null_rate = draw(st.sampled_from([0.0, 0.1, 0.3]))

    def maybe(value):  # noqa: ANN001, ANN202
        return None if draw(st.floats(0, 1)) < null_rate else value

    def keys() -> dict:
        out = {}
        for i, kind in enumerate(key_kinds):
            n = maybe(draw(st.integers(0, key_domain - 1)))
            out[f"k{i}"] = None if n is None else KEY_TYPES[kind][1](n)
        return out

    key_fields = [(f"k{i}", KEY_TYPES[kind][0]) for i, kind in enumerate(key_kinds)]
    labels = [{**keys(), "ts": _stamp(maybe(draw(st.integers(-2, time_domain + 2)))), "label": n}
              for n in range(draw(st.integers(0, 30)))]

    def features(ts_name: str, count: int) -> list[dict]:
        rows, seen = [], set()
        for n in range(count):
            row = {**keys(), ts_name: _stamp(maybe(draw(st.integers(0, time_domain))))}
            identity = tuple(row.values())
            if identity in seen:  # no (keys, time) ties on the feature side: see the module docstring
                continue
            seen.add(identity)
            rows.append({**row, "f": n / 4, "g": f"g{n}"})
        return rows

    a = features("ts", draw(st.integers(0, 30)))
    b = features("event_time", draw(st.integers(0, 30)))
    a_schema = pa.schema(key_fields + [("ts", TS), ("f", pa.float64()), ("g", pa.string())])
    b_schema = pa.schema(key_fields + [("event_time", TS), ("f", pa.float64()), ("g", pa.string())])
    label_schema = pa.schema(key_fields + [("ts", TS), ("label", pa.int64())])
    ttls = [None, dt.timedelta(minutes=5), dt.timedelta(0), dt.timedelta(minutes=12, seconds=30)]
    return {
        "keys": [name for name, _ in key_fields],
        "labels": pa.Table.from_pylist(labels, schema=label_schema),
        "a": (a, a_schema, draw(st.integers(1, 3))),
        "b": (b, b_schema, draw(st.integers(1, 3))),
        "ttl": draw(st.sampled_from(ttls)),
        "b_ttl": draw(st.sampled_from(ttls)),
    }


def _duckdb_answer(labels: pa.Table, a: pa.Table, b: pa.Table, keys: list[str], ttl: dt.timedelta | None,
                   b_ttl: dt.timedelta | None) -> pa.Table:
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.register("l", labels.append_column("row_id", pa.array(range(labels.num_rows), pa.int64())))
    con.register("a", a)
    con.register("b", b)

    def value(alias: str, ts: str, column: str, limit: dt.timedelta | None) -> str:
        if limit is None:
            return f"{alias}.{column}"
        micros = limit // dt.timedelta(microseconds=1)
        return f"case when {alias}.{ts} >= l.ts - to_microseconds({micros}) then {alias}.{column} end"

    on_a = " and ".join([f"l.{k} = a.{k}" for k in keys] + ["l.ts >= a.ts"])
    on_b = " and ".join([f"l.{k} = b.{k}" for k in keys] + ["l.ts >= b.event_time"])
    b_limit = b_ttl if b_ttl is not None else ttl
    sql = (f"select {value('a', 'ts', 'f', ttl)} as a_f, {value('a', 'ts', 'g', ttl)} as a_g, "
           f"{value('a', 'ts', 'ts', ttl)} as a_ts, {value('b', 'event_time', 'f', b_limit)} as b_f, "
           f"{value('b', 'event_time', 'event_time', b_limit)} as b_event_time "
           f"from l asof left join a on {on_a} asof left join b on {on_b} order by l.row_id")
    answer = con.sql(sql).to_arrow_table()
    con.close()
    return answer


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=case())
def test_training_set_matches_duckdb_asof_left_join(data):
    keys, labels = data["keys"], data["labels"]
    a = _feature_table(*data["a"])
    b = _feature_table(*data["b"])
    out = training_set(labels, [FeatureSource(a, columns=["f", "g", "ts"], prefix="a_"),
                                FeatureSource(b, timestamp="event_time", columns=["f", "event_time"], prefix="b_",
                                              ttl=data["b_ttl"])],
                       on=keys if len(keys) > 1 else keys[0], timestamp="ts", ttl=data["ttl"])

    # Every label row exactly once, in order, with its own columns untouched.
    assert out.num_rows == labels.num_rows
    assert out.select(labels.column_names).equals(labels)
    assert out.column_names == labels.column_names + ["a_f", "a_g", "a_ts", "b_f", "b_event_time"]

    expected = _duckdb_answer(labels, a.to_arrow(), b.to_arrow(), keys, data["ttl"], data["b_ttl"])
    for name in expected.column_names:
        assert out.column(name).to_pylist() == expected.column(name).to_pylist(), name

    # No future leak, and nothing older than the TTL.
    b_ttl = data["b_ttl"] if data["b_ttl"] is not None else data["ttl"]
    for row in out.to_pylist():
        for column, limit in (("a_ts", data["ttl"]), ("b_event_time", b_ttl)):
            if row[column] is not None:
                assert row["ts"] is not None and row[column] <= row["ts"]
                assert limit is None or row[column] >= row["ts"] - limit
        if row["a_ts"] is None:
            assert row["a_f"] is None and row["a_g"] is None


# --- fixed cases ---------------------------------------------------------------------------------


@pytest.fixture
def purchases(tmp_path):
    """Per-user spend features at known times, one file per append."""
    table = lakehouse.create_table(str(tmp_path / "spend"), pa.schema(
        [("user_id", pa.int64()), ("ts", TS), ("spend", pa.float64())]))
    table.append(pa.table({"user_id": [1, 2], "ts": [BASE, BASE], "spend": [10.0, 20.0]}, schema=table.schema()))
    table.append(pa.table({"user_id": [1, 2], "ts": [_stamp(60), _stamp(90)], "spend": [11.0, 21.0]},
                          schema=table.schema()))
    return table


def _labels(times: list[int | None], users: list[int | None]) -> pa.Table:
    return pa.table({"user_id": pa.array(users, pa.int64()), "ts": pa.array([_stamp(m) for m in times], TS),
                     "y": list(range(len(times)))})


def test_a_pinned_snapshot_ignores_later_writes(purchases):
    pinned = purchases.snapshot()
    labels = _labels([120, 120, 30], [1, 2, 1])
    before = training_set(labels, pinned, on="user_id", timestamp="ts")
    assert before.column("spend").to_pylist() == [11.0, 21.0, 10.0]
    purchases.append(pa.table({"user_id": [1, 2, 1], "ts": [_stamp(100), _stamp(110), _stamp(20)],
                               "spend": [12.0, 22.0, 10.5]}, schema=purchases.schema()))
    assert training_set(labels, pinned, on="user_id", timestamp="ts").equals(before)
    assert training_set(labels, purchases.snapshot(version=pinned.version), on="user_id",
                        timestamp="ts").equals(before)
    # The Table itself is read at its current version.
    latest = training_set(labels, purchases, on="user_id", timestamp="ts")
    assert latest.column("spend").to_pylist() == [12.0, 22.0, 10.5]


def test_pandas_labels_give_a_pandas_frame_with_their_index(purchases):
    pd = pytest.importorskip("pandas")
    labels = pd.DataFrame({"user_id": [2, 1, 3, 1], "y": [1, 0, 1, 1],
                           "ts": pd.to_datetime(["2024-03-01 01:30", "2024-03-01 00:59:59.999999999",
                                                 "2024-03-01 05:00", "2024-03-01 01:00"], format="ISO8601")},  # naive = UTC
                          index=[10, 11, 12, 13])
    out = training_set(labels, purchases, on="user_id", timestamp="ts", ttl=dt.timedelta(hours=1))
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == [10, 11, 12, 13] and list(out.columns) == ["user_id", "y", "ts", "spend"]
    assert out["spend"].tolist()[:2] == [21.0, 10.0] and out["spend"].isna().tolist() == [False, False, True, False]
    assert out["spend"].tolist()[3] == 11.0  # a label at exactly the feature's time sees it


def test_categorical_and_large_string_keys(tmp_path):
    pd = pytest.importorskip("pandas")
    table = lakehouse.create_table(str(tmp_path / "stores"), pa.schema([("store", pa.string()), ("ts", TS),
                                                                        ("sales", pa.int64())]))
    table.append(pa.table({"store": ["a", "b"], "ts": [BASE, BASE], "sales": [1, 2]}, schema=table.schema()))
    labels = pd.DataFrame({"store": pd.Categorical(["b", "a", "c", None]), "ts": [BASE + dt.timedelta(hours=1)] * 4})
    assert training_set(labels, table, on="store", timestamp="ts")["sales"].tolist()[:2] == [2, 1]
    large = pa.table({"store": pa.array(["a", "zz"], pa.large_string()), "ts": pa.array([BASE, BASE], TS)})
    assert training_set(large, table, on="store", timestamp="ts").column("sales").to_pylist() == [1, None]


def test_polars_labels_give_a_polars_frame(purchases):
    pl = pytest.importorskip("polars")
    labels = pl.DataFrame({"user_id": [1, 2], "ts": [BASE + dt.timedelta(hours=3), BASE]})
    out = training_set(labels, str(purchases.uri), on="user_id", timestamp="ts")
    assert isinstance(out, pl.DataFrame) and out["spend"].to_list() == [11.0, 20.0]


def test_ttl_null_keys_null_times_and_unmatched_labels(purchases):
    labels = _labels([59, 61, 200, None, 30, 30], [1, 1, 1, 1, None, 7])
    out = training_set(labels, purchases, on="user_id", timestamp="ts", ttl=dt.timedelta(minutes=30))
    # 59: latest is BASE (59 min old > 30): NULL; 61: the 60-minute row; 200: expired again.
    assert out.column("spend").to_pylist() == [None, 11.0, None, None, None, None]
    assert training_set(labels, purchases, on="user_id", timestamp="ts").column("spend").to_pylist() == [
        10.0, 11.0, 11.0, None, None, None]


def test_feature_files_outside_the_labels_range_are_never_opened(purchases):
    """The labels' time and key range reach the scan: a file the log proves irrelevant is not read."""
    late = pa.table({"user_id": [1], "ts": [_stamp(10_000)], "spend": [99.0]}, schema=purchases.schema())
    purchases.append(late)
    other_users = pa.table({"user_id": [500, 501], "ts": [BASE, BASE], "spend": [1.0, 2.0]}, schema=purchases.schema())
    purchases.append(other_users)
    added = purchases.snapshot().files.column("path").to_pylist()[-2:]
    for relative in added:  # gone from disk: reading either file would fail
        os.remove(Path(purchases.uri.removeprefix("file://")) / relative)
    out = training_set(_labels([120, 30], [1, 2]), purchases, on="user_id", timestamp="ts")
    assert out.column("spend").to_pylist() == [11.0, 20.0]
    with pytest.raises(Exception):  # the missing files really would break a full read
        purchases.to_arrow()


def test_date_event_times_and_quoted_column_names(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "daily"), pa.schema(
        [("Store", pa.string()), ("day", pa.date32()), ('Sales "7d"', pa.int64())]))
    day = dt.date(2024, 1, 10)
    table.append(pa.table({"Store": ["a", "a", "b"], "day": [day, day + dt.timedelta(days=3), day],
                           'Sales "7d"': [5, 7, 9]}, schema=table.schema()))
    labels = pa.table({"Store": ["a", "a", "b", "b"],
                       "day": [day + dt.timedelta(days=2), day + dt.timedelta(days=4), day, day + dt.timedelta(days=9)]})
    out = training_set(labels, table, on="Store", timestamp="day", ttl=dt.timedelta(days=5))
    assert out.column('Sales "7d"').to_pylist() == [5, 7, 9, None]


def test_nanosecond_label_times_compare_at_microseconds(purchases):
    labels = pa.table({"user_id": [1, 1], "ts": pa.array([
        3_600 * 10**9 - 1 + int(BASE.timestamp()) * 10**9, 3_600 * 10**9 + int(BASE.timestamp()) * 10**9],
        pa.timestamp("ns", tz="UTC"))})
    assert training_set(labels, purchases, on="user_id", timestamp="ts").column("spend").to_pylist() == [10.0, 11.0]


def test_warehouse_names_resolve_through_the_session(purchases, tmp_path):
    session = engine.connect(str(tmp_path))
    out = training_set(_labels([120], [2]), "spend", on="user_id", timestamp="ts", session=session)
    assert out.column("spend").to_pylist() == [21.0]
    assert "spend" in session.catalog.table_names() and len(session.catalog._registered) == 0  # noqa: SLF001


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "words"), [
    (lambda t, l: training_set(l, t, on="customer", timestamp="ts"), ["labels", "'customer'"]),
    (lambda t, l: training_set(l, t, on="user_id", timestamp="when"), ["labels", "timestamp", "'when'"]),
    (lambda t, l: training_set(l.rename_columns(["user_id", "at", "y"]), t, on="user_id", timestamp="at"),
     ["'spend@v2'", "no timestamp column 'at'", "FeatureSource(table, timestamp="]),
    (lambda t, l: training_set(l, FeatureSource(t, columns=["spent"]), on="user_id", timestamp="ts"),
     ["'spend@v2'", "'spent'"]),
    (lambda t, l: training_set(l, t, on="user_id", timestamp="ts", ttl=3600), ["ttl", "timedelta", "int"]),
    (lambda t, l: training_set(l, FeatureSource(t, ttl="1h"), on="user_id", timestamp="ts"), ["ttl", "str"]),
    (lambda t, l: training_set(l, t, on="user_id", timestamp="ts", ttl=dt.timedelta(days=-1)), ["ttl", "non-negative"]),
    (lambda t, l: training_set(l, t, on="user_id", timestamp="ts", ttl=dt.timedelta.max), ["ttl", "ttl=None"]),
    (lambda t, l: training_set(l, [t, t], on="user_id", timestamp="ts"), ["'spend'", "collides", "prefix="]),
    (lambda t, l: training_set(l.append_column("spend", pa.array([1.0] * 3)), t, on="user_id", timestamp="ts"),
     ["'spend'", "the labels", "prefix="]),
    (lambda t, l: training_set(l.set_column(1, "ts", pa.array([dt.date(2024, 3, 1)] * 3)), t, on="user_id",
                               timestamp="ts"), ["'ts'", "DATE", "TIMESTAMP WITH TIME ZONE", "cast"]),
    (lambda t, l: training_set(l.set_column(0, "user_id", pa.array(["1", "2", "3"])), t, on="user_id",
                               timestamp="ts"), ["'user_id'", "VARCHAR", "BIGINT"]),
    (lambda t, l: training_set(l, 42, on="user_id", timestamp="ts"), ["feature source", "int"]),
    (lambda t, l: training_set(l, [], on="user_id", timestamp="ts"), ["features"]),
    (lambda t, l: training_set({"user_id"}, t, on="user_id", timestamp="ts"), ["labels", "set"]),
])
def test_bad_inputs_name_the_problem(purchases, call, words):
    with pytest.raises(PlanError) as info:
        call(purchases, _labels([1, 2, 3], [1, 2, 3]))
    assert isinstance(info.value, LakehouseError)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_no_keys_and_times_at_the_ends_of_the_calendar(purchases):
    """``on=[]`` joins on time alone; label bounds past year 9999 or a TTL before year 1 prune nothing."""
    far = pa.table({"ts": pa.array([_stamp(70), dt.datetime(9999, 12, 31, tzinfo=UTC),
                                    dt.datetime(1, 1, 1, tzinfo=UTC)], TS)})
    by_time = FeatureSource(purchases.snapshot(), columns=["spend", "user_id"], prefix="p_")
    out = training_set(far, by_time, on=[], timestamp="ts", ttl=dt.timedelta(days=365 * 100))
    assert out.column("p_spend").to_pylist() == [11.0, None, None]  # the 60-minute row; then expired; none
    assert training_set(far, by_time, on=[], timestamp="ts").column("p_spend").to_pylist() == [11.0, 21.0, None]


def test_integer_event_times_refuse_a_ttl(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "ticks"), pa.schema(
        [("k", pa.int64()), ("t", pa.int64()), ("v", pa.int64())]))
    table.append(pa.table({"k": [1, 1], "t": [10, 20], "v": [1, 2]}))
    labels = pa.table({"k": [1, 1, 1], "t": pa.array([9, 15, 25], pa.int32())})
    assert training_set(labels, table, on="k", timestamp="t").column("v").to_pylist() == [None, 1, 2]
    with pytest.raises(PlanError, match="ttl needs timestamp or date"):
        training_set(labels, table, on="k", timestamp="t", ttl=dt.timedelta(seconds=1))
