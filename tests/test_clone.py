"""Zero-copy shallow clones (lakehouse.clone) and what they keep alive (lakehouse.retention)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from urllib.parse import unquote

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import clone as clones
from lakehouse import retention
from lakehouse.errors import LakehouseError, TableAlreadyExistsError, TableNotFoundError
from lakehouse.location import TableLocation

SCHEMA = pa.schema([("id", pa.int64()), ("part", pa.string())])


def _open(location: str) -> lakehouse.Table:
    """Open a clone the way the (not yet wired) opener will: roots from its record."""
    loc = TableLocation.of(location)
    return lakehouse.Table(dataclasses.replace(loc, allowed_roots=clones.clone_source_roots(loc)))


def _ids(table_or_snapshot) -> list[int]:
    return sorted(table_or_snapshot.to_arrow().column("id").to_pylist())


@pytest.fixture(params=["local", "memory"])
def base(request, tmp_path, memory_path):
    """(source table, a free location for the clone): source versions 1..3 add one file each."""
    if request.param == "local":
        source_loc, clone_loc = str(tmp_path / "source"), str(tmp_path / "copy")
    else:
        source_loc, clone_loc = memory_path + "/source", memory_path + "/copy"
    source = lakehouse.create_table(source_loc, SCHEMA, partition_by=["part"], properties={"delta.appendOnly": "false"})
    source.append(pa.table({"id": [1, 2], "part": ["a", "b"]}))
    source.append(pa.table({"id": [3], "part": ["a b"]}))
    source.append(pa.table({"id": [4, 5], "part": ["c", "c"]}))
    return source, clone_loc


def test_clone_copies_no_data_file_and_reads_the_same_rows(base):
    source, location = base
    clone = clones.shallow_clone(source, location)
    storage = clone.location.storage
    walked = [info.path for info in storage.walk(clone.location.root)]
    assert not [p for p in walked if p.endswith(".parquet")], walked
    assert _ids(_open(location)) == _ids(source) == [1, 2, 3, 4, 5]
    assert _ids(clone) == [1, 2, 3, 4, 5]  # the returned handle already trusts the source


def test_clone_of_older_version(base):
    source, location = base
    clones.shallow_clone(source, location, version=2)
    assert _ids(_open(location)) == _ids(source.snapshot(2)) == [1, 2, 3]


def test_clone_commit_shape(base):
    source, location = base
    clone = clones.shallow_clone(source, location, version=3)
    snapshot = clone.snapshot()
    src = source.snapshot(3)
    assert snapshot.version == 0
    assert snapshot.table_id != src.table_id
    assert snapshot.metadata.schema_string == src.metadata.schema_string
    assert snapshot.partition_columns == ("part",) and dict(snapshot.properties) == {"delta.appendOnly": "false"}
    assert snapshot.protocol == src.protocol
    entry = clone.history()[0]
    assert entry["operation"] == "CLONE"
    assert entry["operationParameters"] == {"source": source.uri, "sourceVersion": "3", "isShallow": "true"}
    by_size = {a.path.rsplit("/", 1)[-1]: a for a in src.add_files()}
    for add in snapshot.add_files():
        original = by_size[add.path.rsplit("/", 1)[-1]]
        assert add.path.startswith(source.uri + "/") and add.data_change
        assert (add.size, dict(add.partition_values), add.stats, add.modification_time) == (
            original.size, dict(original.partition_values), original.stats, original.modification_time)


def test_records_on_both_sides(base):
    source, location = base
    clone = clones.shallow_clone(source, location)
    assert clones.registered_clones(source) == [clone.uri]
    assert clones.clone_source_roots(clone.location) == (source.uri,)
    record = json.loads(clone.location.storage.read(clone.location.path("_lakehouse", "clone-source.json")))
    assert record["source"] == source.uri and record["sourceVersion"] == 3
    assert clones.clone_source_roots(source.location) == ()  # a plain table is no clone


def test_clone_and_source_diverge_independently(base):
    source, location = base
    clones.shallow_clone(source, location)
    clone = _open(location)
    clone.append(pa.table({"id": [10], "part": ["z"]}))
    clone.delete("id = 1")
    assert _ids(clone) == [2, 3, 4, 5, 10]
    assert _ids(source) == [1, 2, 3, 4, 5]
    source.delete("part = 'c'")
    source.append(pa.table({"id": [20], "part": ["a"]}))
    assert _ids(source) == [1, 2, 3, 20]
    assert _ids(clone) == [2, 3, 4, 5, 10]
    new_files = [a.path for a in clone.snapshot().add_files() if "://" not in a.path]
    assert new_files and all(clone.location.storage.exists(clone.location.path(p)) for p in new_files)


def test_clone_string_source_and_clone_of_clone(base):
    source, location = base
    clones.shallow_clone(source.uri, location)
    second = location + "-again"
    clones.shallow_clone(location, second)  # the source string is itself a clone: its roots carry over
    assert _ids(_open(second)) == [1, 2, 3, 4, 5]
    second_url = _open(second).uri
    assert second_url in clones.registered_clones(source)  # the original files' owner knows too
    assert second_url in clones.registered_clones(_open(location))


def test_clone_of_missing_table_is_clear(tmp_path):
    with pytest.raises(TableNotFoundError, match="cannot clone .*no delta table there"):
        clones.shallow_clone(str(tmp_path / "nothing"), str(tmp_path / "copy"))
    assert not (tmp_path / "copy").exists()


def test_clone_onto_existing_table_is_refused(base):
    source, location = base
    lakehouse.create_table(location, SCHEMA)
    with pytest.raises(TableAlreadyExistsError, match="a table already exists there"):
        clones.shallow_clone(source, location)
    with pytest.raises(TableAlreadyExistsError):
        clones.shallow_clone(source, source.uri)
    assert clones.registered_clones(source) == []  # refused before registering anything


def test_clone_inside_source_folder_is_refused(base):
    source, _location = base
    with pytest.raises(LakehouseError, match="outside the source table's folder"):
        clones.shallow_clone(source, source.uri + "/nested")


def test_concurrent_clones_onto_one_location_have_one_winner(tmp_path):
    sources = []
    for i in range(4):
        table = lakehouse.create_table(str(tmp_path / f"src{i}"), SCHEMA)
        table.append(pa.table({"id": [i], "part": ["x"]}))
        sources.append(table)
    target = str(tmp_path / "copy")
    barrier = threading.Barrier(4)
    results: list[object] = [None] * 4

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = clones.shallow_clone(sources[i], target)
        except LakehouseError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, r in enumerate(results) if isinstance(r, lakehouse.Table)]
    assert len(winners) == 1
    assert all(isinstance(r, TableAlreadyExistsError) for r in results if not isinstance(r, lakehouse.Table))
    # Whatever order the records were written in, the clone's record names the winner's source.
    assert clones.clone_source_roots(TableLocation.of(target)) == (sources[winners[0]].uri,)
    assert _ids(_open(target)) == [winners[0]]


def test_source_protects_clone_files_after_overwriting_everything(base):
    source, location = base
    cloned_files = {source.location.path(unquote(p)) for p in source.snapshot().files.column("path").to_pylist()}
    clone = clones.shallow_clone(source, location)
    source.overwrite(pa.table({"id": [99], "part": ["n"]}))
    protected = retention.protected_files(source)
    assert set(protected) == cloned_files
    assert all(reasons == [f"clone '{clone.uri}'"] for reasons in protected.values())
    walked = {info.path for info in source.location.storage.walk(source.location.root)}
    assert cloned_files <= walked  # keys are what vacuum's walk of the source yields
    # Files the clone wrote itself are in the clone's folder: never the source's business.
    _open(location).append(pa.table({"id": [7], "part": ["own"]}))
    assert set(retention.protected_files(source)) == cloned_files


def test_dropped_clone_protects_nothing(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "source"), SCHEMA)
    source.append(pa.table({"id": [1], "part": ["a"]}))
    clones.shallow_clone(source, str(tmp_path / "copy"))
    source.overwrite(pa.table({"id": [2], "part": ["a"]}))
    assert len(retention.protected_files(source)) == 1
    shutil.rmtree(tmp_path / "copy")
    assert clones.registered_clones(source) == [f"file://{tmp_path / 'copy'}"]  # still reported
    assert retention.protected_files(source) == {}


def test_clone_checkpoint_still_protects_after_log_cleanup(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "source"), SCHEMA)
    source.append(pa.table({"id": [1, 2], "part": ["a", "b"]}))
    wanted = {source.location.path(p) for p in source.snapshot().files.column("path").to_pylist()}
    clones.shallow_clone(source, str(tmp_path / "copy"))
    clone = _open(str(tmp_path / "copy"))
    for i in range(10):  # version 10 writes a checkpoint holding the absolute adds
        clone.append(pa.table({"id": [100 + i], "part": ["own"]}))
    log = tmp_path / "copy" / "_delta_log"
    assert (log / f"{10:020d}.checkpoint.parquet").exists()
    for version in range(10):
        (log / f"{version:020d}.json").unlink()
    assert set(retention.protected_files(source)) == wanted
    assert _ids(clone)[:2] == [1, 2]


def test_deltalake_reads_a_local_clone(tmp_path):
    """delta-rs accepts our absolute ``file://`` adds, including escaped partition values."""
    from deltalake import DeltaTable, QueryBuilder

    source = lakehouse.create_table(str(tmp_path / "source"), SCHEMA, partition_by=["part"])
    source.append(pa.table({"id": [1, 2, 3], "part": ["a b", "c=d", "e%f"]}))
    clones.shallow_clone(source, str(tmp_path / "copy"))
    query = QueryBuilder().register("t", DeltaTable(str(tmp_path / "copy")))
    result = pa.table(query.execute("select id, part from t order by id").read_all())
    assert result.column("id").to_pylist() == [1, 2, 3]
    assert [str(v) for v in result.column("part").to_pylist()] == ["a b", "c=d", "e%f"]


def test_we_read_a_local_clone_with_escaped_partition_values(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "source"), SCHEMA, partition_by=["part"])
    source.append(pa.table({"id": [1, 2], "part": ["c=d", "e%f"]}))
    clones.shallow_clone(source, str(tmp_path / "copy"))
    assert _ids(_open(str(tmp_path / "copy"))) == [1, 2]


def test_memory_clone_with_escaped_partition_values(memory_path):
    source = lakehouse.create_table(memory_path + "/source", SCHEMA, partition_by=["part"])
    source.append(pa.table({"id": [1, 2], "part": ["c=d", "e%f"]}))
    clones.shallow_clone(source, memory_path + "/copy")
    assert _ids(_open(memory_path + "/copy")) == [1, 2]
