"""Named tags (lakehouse.refs) and the files they protect from vacuum (lakehouse.retention)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import refs, retention
from lakehouse.errors import LakehouseError, TagNotFoundError, VersionNotFoundError

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


@pytest.fixture(params=["local", "memory"])
def table(request, tmp_path, memory_path):
    """A table with versions 0 (empty), 1 and 2 (one appended file each)."""
    location = str(tmp_path / "t") if request.param == "local" else memory_path
    t = lakehouse.create_table(location, SCHEMA)
    t.append(pa.table({"id": [1, 2], "name": ["a", "b"]}))
    t.append(pa.table({"id": [3], "name": ["c"]}))
    return t


def _run_threads(count: int, target) -> list[object]:
    """Run ``target(i)`` in ``count`` threads released together; return results or errors."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_create_list_get_drop(table):
    assert refs.list_tags(table) == {}
    tag = refs.create_tag(table, "run-42.best_model", note="auc 0.93")
    assert tag.version == 2 and tag.note == "auc 0.93" and tag.retain_until_ms is None and not tag.expired
    assert tag.fingerprint == refs.fingerprint(table.snapshot(2))
    assert refs.list_tags(table) == {"run-42.best_model": tag}
    assert refs.get_tag(table, "run-42.best_model") == tag
    refs.drop_tag(table, "run-42.best_model")
    assert refs.list_tags(table) == {}
    with pytest.raises(TagNotFoundError):
        refs.get_tag(table, "run-42.best_model")


def test_tag_at_explicit_version_pins_that_version(table):
    tag = refs.create_tag(table, "v1", version=1)
    table.append(pa.table({"id": [9], "name": ["z"]}))
    assert tag.version == 1
    pinned = table.snapshot(refs.get_tag(table, "v1").version)
    assert sorted(pinned.to_arrow().column("id").to_pylist()) == [1, 2]
    assert refs.fingerprint(pinned) == tag.fingerprint


def test_missing_version_is_refused_and_nothing_written(table):
    with pytest.raises(VersionNotFoundError, match="no version 7"):
        refs.create_tag(table, "future", version=7)
    with pytest.raises(VersionNotFoundError, match="integer"):
        refs.create_tag(table, "float", version=1.0)
    assert refs.list_tags(table) == {}


@pytest.mark.parametrize("name", ["", "has space", "a/b", "../up", ".hidden", "-dash", "x" * 129, "é", None, 7])
def test_invalid_names_are_refused(table, name):
    with pytest.raises(refs.InvalidTagError, match="invalid tag name") as info:
        refs.create_tag(table, name)
    assert isinstance(info.value, LakehouseError)
    assert table.name in str(info.value)


def test_longest_valid_name(table):
    name = "a" + "b.-_9" * 25 + "xx"
    assert len(name) == 128
    assert refs.create_tag(table, name).name == name


def test_duplicate_name_is_refused_until_dropped(table):
    refs.create_tag(table, "prod", version=1)
    with pytest.raises(refs.TagExistsError, match="already has a tag 'prod' \\(version 1\\)"):
        refs.create_tag(table, "prod")
    refs.drop_tag(table, "prod")
    assert refs.create_tag(table, "prod").version == 2  # the name is reusable after a drop
    assert refs.get_tag(table, "prod").version == 2


def test_drop_unknown_lists_existing_tags(table):
    refs.create_tag(table, "alpha")
    refs.create_tag(table, "beta")
    with pytest.raises(TagNotFoundError) as info:
        refs.drop_tag(table, "gamma")
    message = str(info.value)
    assert table.name in message and "'alpha'" in message and "'beta'" in message
    with pytest.raises(TagNotFoundError, match="has no tags"):
        refs.drop_tag(lakehouse.create_table(table.uri + "-other", SCHEMA), "x")


def test_get_unknown_suggests_nearest(table):
    refs.create_tag(table, "release-1")
    with pytest.raises(TagNotFoundError, match="did you mean 'release-1'"):
        refs.get_tag(table, "release1")


def test_retain_validation(table):
    with pytest.raises(refs.InvalidTagError, match="negative"):
        refs.create_tag(table, "neg", retain=-1)
    with pytest.raises(refs.InvalidTagError, match="timedelta"):
        refs.create_tag(table, "text", retain="2h")
    tag = refs.create_tag(table, "hours", retain=1.5)
    assert tag.retain_until_ms - tag.created_ms == 5_400_000


def test_storage_holds_only_event_files(table):
    refs.create_tag(table, "a")
    refs.drop_tag(table, "a")
    refs.create_tag(table, "a", version=0)
    storage = table.location.storage
    files = sorted(info.name for info in storage.walk(table.location.path("_lakehouse", "refs", "tags")))
    assert files == [f"a@{seq:020d}.json" for seq in (1, 2, 3)]
    ops = [json.loads(storage.read(table.location.path("_lakehouse", "refs", "tags", f)))["op"] for f in files]
    assert ops == ["create", "drop", "create"]


def test_concurrent_creates_of_one_name_have_one_winner(table):
    results = _run_threads(8, lambda i: refs.create_tag(table, "race", note=f"thread {i}"))
    winners = [r for r in results if isinstance(r, refs.Tag)]
    losers = [r for r in results if not isinstance(r, refs.Tag)]
    assert len(winners) == 1
    assert all(isinstance(e, refs.TagExistsError) and "already has a tag 'race'" in str(e) for e in losers)
    assert refs.list_tags(table) == {"race": winners[0]}


def test_concurrent_creates_of_different_names_all_land(table):
    results = _run_threads(20, lambda i: refs.create_tag(table, f"tag-{i:02d}", version=i % 3))
    assert all(isinstance(r, refs.Tag) for r in results), results
    tags = refs.list_tags(table)
    assert sorted(tags) == [f"tag-{i:02d}" for i in range(20)]
    assert all(tags[f"tag-{i:02d}"].version == i % 3 for i in range(20))


def test_concurrent_drops_have_one_winner(table):
    refs.create_tag(table, "doomed")
    results = _run_threads(8, lambda i: refs.drop_tag(table, "doomed"))
    assert results.count(None) == 1
    assert all(isinstance(r, TagNotFoundError) for r in results if r is not None)
    assert refs.list_tags(table) == {}


def _live_paths(table, version: int) -> set[str]:
    snapshot = table.snapshot(version)
    return {table.location.path(p) for p in snapshot.files.column("path").to_pylist()}


def test_tag_protects_its_files_after_overwrite(table):
    refs.create_tag(table, "v1", version=1)
    before = _live_paths(table, 1)
    table.overwrite(pa.table({"id": [100], "name": ["new"]}))
    protected = retention.protected_files(table)
    assert set(protected) == before  # the latest files need no tag: the retention window covers them
    assert all(reasons == ["tag 'v1' (version 1)"] for reasons in protected.values())
    storage = table.location.storage
    walked = {info.path for info in storage.walk(table.location.root)}
    assert before <= walked  # keys are exactly what vacuum's walk of the root yields
    refs.drop_tag(table, "v1")
    assert retention.protected_files(table) == {}


def test_two_tags_on_one_file_give_two_reasons(table):
    refs.create_tag(table, "one", version=1)
    refs.create_tag(table, "two", version=2)
    protected = retention.protected_files(table)
    shared = _live_paths(table, 1)
    assert all(protected[p] == ["tag 'one' (version 1)", "tag 'two' (version 2)"] for p in shared)
    assert len(protected) == 2


def test_expired_tag_is_listed_but_protects_nothing(table):
    tag = refs.create_tag(table, "short", version=1, retain=dt.timedelta(milliseconds=1))
    time.sleep(0.01)
    listed = refs.list_tags(table)["short"]
    assert listed == tag and listed.expired
    assert retention.protected_files(table) == {}
    # Before its deadline the same tag does protect its files.
    assert set(retention.protected_files(table, now_ms=tag.created_ms)) == _live_paths(table, 1)


def test_tag_on_cleaned_up_version_protects_nothing(table):
    refs.create_tag(table, "old", version=1)
    storage = table.location.storage
    from lakehouse.log.checkpoint import write_checkpoint  # noqa: PLC0415 - only this test needs it

    # Simulate log cleanup: a checkpoint at 2, commits 0 and 1 gone, so version 1 is unreadable.
    latest = table.snapshot(2)
    write_checkpoint(storage, table.location.root, 2, protocol=latest.protocol, metadata=latest.metadata,
                     files=latest.files, tombstones=[], txns={}, domains={})
    for version in (0, 1):
        storage.delete(table.location.path("_delta_log", f"{version:020d}.json"))
    with pytest.raises(VersionNotFoundError):
        table.snapshot(1)
    assert retention.protected_files(table) == {}


def test_fingerprint_is_stable_and_distinguishes_versions(table):
    assert refs.fingerprint(table.snapshot(1)) == refs.fingerprint(table.snapshot(1))
    assert len({refs.fingerprint(table.snapshot(v)) for v in (0, 1, 2)}) == 3
