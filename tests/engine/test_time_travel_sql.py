"""Time travel and paths in SQL: ``VERSION AS OF``, ``TIMESTAMP AS OF``, ``FROM 'path'``.

Versions and commit timestamps come from the table's own history; every answer is checked
against what that version holds (version v has rows from the first v appends).
"""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import engine
import lakehouse
from engine.errors import PlanError, UnsupportedSQLError
from lakehouse import TableNotFoundError, VersionNotFoundError

APPENDS = 3


def rows_at(version: int) -> list[int]:
    """The ids version ``version`` holds: append k (version k) adds ids 10k+1 and 10k+2."""
    return sorted(10 * k + j for k in range(1, version + 1) for j in (1, 2))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("travel")
    table = lakehouse.create_table(str(root / "events"), pa.schema([("id", pa.int64()), ("tag", pa.string())]))
    for k in range(1, APPENDS + 1):
        table.append(pa.table({"id": pa.array([10 * k + 1, 10 * k + 2], pa.int64()), "tag": [f"v{k}"] * 2}))
    pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}), str(root / "plain.parquet"))
    return str(root)


@pytest.fixture(scope="module")
def session(warehouse):
    s = engine.connect(warehouse)
    s.register("mem", pa.table({"id": [1]}))
    return s


@pytest.fixture(scope="module")
def commit_times(warehouse) -> dict[int, int]:
    """Version -> commit timestamp (ms since the epoch), from the table's history."""
    history = lakehouse.open_table(os.path.join(warehouse, "events")).history()
    times = {entry["version"]: entry["timestamp"] for entry in history}
    assert sorted(times) == list(range(APPENDS + 1))
    assert all(times[v] < times[v + 1] for v in range(APPENDS))  # strictly increasing, as the log promises
    return times


def iso(ms: int) -> str:
    """A UTC timestamp literal with milliseconds, as SQL users write it."""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def ids(session: engine.Session, sql: str) -> list[int]:
    return sorted(session.sql(sql).to_arrow().column("id").to_pylist())


@pytest.mark.parametrize("version", range(APPENDS + 1))
def test_version_as_of(session, version):
    assert ids(session, f"select id from events version as of {version}") == rows_at(version)


def test_latest_by_default_and_two_versions_in_one_query(session):
    assert ids(session, "select id from events") == rows_at(APPENDS)
    # The same table at two versions in one query: a self-join sees each side's own snapshot.
    rows = session.sql("select count(*) as n from events version as of 1 as old "
                       "join events as new on old.id = new.id").to_arrow()
    assert rows.column("n").to_pylist() == [len(rows_at(1))]
    rows = session.sql("select id from events except select id from events version as of 2").to_arrow()
    assert sorted(rows.column("id").to_pylist()) == [31, 32]


def test_filters_and_aggregates_apply_to_the_chosen_version(session):
    assert ids(session, "select * from events version as of 2 where id > 20") == [21, 22]
    rows = session.sql("select tag, count(*) as n from events version as of 2 group by tag order by tag").to_arrow()
    assert rows.to_pylist() == [{"tag": "v1", "n": 2}, {"tag": "v2", "n": 2}]


def test_timestamp_as_of_uses_commit_times(session, commit_times):
    for version in range(APPENDS + 1):
        at = commit_times[version]
        # Exactly at a commit: that version; just before the next commit: still that version.
        assert ids(session, f"select id from events timestamp as of '{iso(at)}'") == rows_at(version)
        if version < APPENDS:
            before_next = commit_times[version + 1] - 1
            assert ids(session, f"select id from events timestamp as of '{iso(before_next)}'") == rows_at(version)
    # A typed TIMESTAMP literal and an ISO form with an offset mean the same instant.
    at = commit_times[2]
    assert ids(session, f"select id from events timestamp as of timestamp '{iso(at)}'") == rows_at(2)
    offset = dt.datetime.fromtimestamp(at / 1000, tz=dt.timezone(dt.timedelta(hours=2))).isoformat(
        timespec="milliseconds")
    assert ids(session, f"select id from events timestamp as of '{offset}'") == rows_at(2)


def test_timestamp_before_the_first_commit_names_the_range(session, commit_times):
    with pytest.raises(VersionNotFoundError) as info:
        session.sql("select * from events timestamp as of '2000-01-01'")
    message = str(info.value)
    assert "'events'" in message and "2000-01-01" in message
    assert "earliest available commit is version 0" in message and f"version {APPENDS}" in message


def test_timestamp_in_the_future(session):
    with pytest.raises(VersionNotFoundError, match=f"in the future; the latest commit is version {APPENDS}"):
        session.sql("select * from events timestamp as of '2999-01-01'")


def test_missing_version_names_the_range(session):
    with pytest.raises(VersionNotFoundError) as info:
        session.sql("select * from events version as of 99")
    message = str(info.value)
    assert "'events'" in message and "no version 99" in message and f"versions 0 to {APPENDS}" in message


def test_negative_version_is_refused(session):
    with pytest.raises((VersionNotFoundError, PlanError)) as info:
        session.sql("select * from events version as of -1")
    assert "-1" in str(info.value)


def test_unreadable_timestamp_says_the_form(session):
    with pytest.raises(VersionNotFoundError, match="ISO form"):
        session.sql("select * from events timestamp as of 'yesterday'")


def test_unknown_tag_is_named(session):
    from lakehouse.errors import TagNotFoundError

    with pytest.raises(TagNotFoundError, match="table 'events' has no tag 'release'; the table has no tags"):
        session.sql("select * from events version as of 'release'")


def test_time_travel_on_an_in_memory_table_is_refused(session):
    with pytest.raises(PlanError, match="'mem' is an in-memory table"):
        session.sql("select * from mem version as of 1")


def test_other_time_travel_syntax_is_not_silently_ignored(session):
    try:
        got = ids(session, "select id from events at (version => 1)")
    except UnsupportedSQLError:
        return
    assert got == rows_at(1)


# --- paths in FROM ------------------------------------------------------------------------------------


def test_quoted_table_path(session, warehouse):
    path = os.path.join(warehouse, "events")
    assert os.path.isabs(path)
    assert ids(session, f"select id from '{path}'") == rows_at(APPENDS)
    assert ids(session, f"select id from '{path}' version as of 1") == rows_at(1)
    # A path works without any warehouse, and can be aliased.
    bare = engine.connect(None)
    assert ids(bare, f"select e.id from '{path}' as e where e.tag = 'v2'") == [21, 22]


def test_parquet_path(session, warehouse):
    path = os.path.join(warehouse, "plain.parquet")
    rows = session.sql(f"select y, x * 10 as x10 from '{path}' where x >= 2 order by x").to_arrow()
    assert rows.to_pylist() == [{"y": "b", "x10": 20}, {"y": "c", "x10": 30}]


def test_missing_paths_are_table_not_found(session, warehouse):
    with pytest.raises(TableNotFoundError, match="no table at path '.*nope'"):
        session.sql(f"select * from '{os.path.join(warehouse, 'nope')}'")
    with pytest.raises(TableNotFoundError, match="no Parquet file at path '.*nope.parquet'"):
        session.sql(f"select * from '{os.path.join(warehouse, 'nope.parquet')}'")


def test_a_file_that_is_not_parquet_is_a_clear_error(session, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(PlanError, match="cannot read '.*data.csv' as a Parquet file"):
        session.sql(f"select * from '{path}'")


def test_registered_snapshot_stays_pinned_and_skips_files(tmp_path):
    import lakehouse

    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("id", pa.int64())]))
    for start in (0, 100, 200):
        table.append(pa.table({"id": pa.array(range(start, start + 100), pa.int64())}))
    pinned = table.snapshot()  # version 3: three files
    table.append(pa.table({"id": pa.array([1000], pa.int64())}))
    session = engine.connect()
    session.register("pinned", pinned)
    session.register("latest", table)
    assert session.sql("select count(*) as n from pinned").to_arrow().to_pylist() == [{"n": 300}]
    assert session.sql("select count(*) as n from latest").to_arrow().to_pylist() == [{"n": 301}]
    text = session.sql("select id from pinned where id = 150").explain(analyze=True)
    assert "files=1/3" in text, text
