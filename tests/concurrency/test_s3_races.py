"""Tables on a real S3-compatible server (moto, single-threaded, its own process).

The server serialises requests, so its conditional PUT is linearizable: any lost or
duplicated commit seen here is ours, not the server's.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

import lakehouse
from lakehouse.log.paths import checkpoint_name, commit_name

from .test_local_races import SCHEMA, assert_every_row_once, run_append_race

pytestmark = pytest.mark.s3


def _log_names(table: lakehouse.Table) -> list[str]:
    storage = table.location.storage
    return [info.name for info in storage.list_dir(storage.join(table.location.root, "_delta_log"))]


@pytest.mark.slow
def test_two_processes_append_on_s3_without_loss(s3):
    url = s3.url()
    table = lakehouse.create_table(url, SCHEMA, storage_options=s3.storage_options)
    writers, appends = 2, 10
    versions = run_append_race(url, writers=writers, appends=appends, storage_options=s3.storage_options)

    assert sorted(v for vs in versions.values() for v in vs) == list(range(1, 21))
    assert table.version() == 20
    assert_every_row_once(table.snapshot().to_arrow(), writers, appends)
    assert [h["version"] for h in table.history()] == list(range(20, -1, -1))
    names = _log_names(table)
    assert [n for n in names if n.endswith(".json")] == [commit_name(v) for v in range(21)]
    assert checkpoint_name(10) in names and checkpoint_name(20) in names


@pytest.mark.interop
def test_s3_table_round_trip_and_deltalake_reads_it(s3):
    import deltalake

    url = s3.url()
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("p", pa.string())])
    table = lakehouse.create_table(url, schema, partition_by=["p"], storage_options=s3.storage_options)
    table.append(pa.table({"id": [1, 2, 3], "name": ["a", "b", None], "p": ["x", "y", "x"]}, schema=schema))
    table.append(pa.table({"id": [4], "name": ["d"], "p": ["y"]}, schema=schema))
    table.delete("id = 2")

    reopened = lakehouse.open_table(url, storage_options=s3.storage_options)
    assert reopened.version() == 3
    ours = reopened.snapshot().to_arrow().sort_by("id")
    assert ours.column("id").to_pylist() == [1, 3, 4]
    assert reopened.snapshot(version=1).to_arrow().num_rows == 3
    assert [(h["version"], h["operation"]) for h in reopened.history()] == [
        (3, "DELETE"), (2, "WRITE"), (1, "WRITE"), (0, "CREATE TABLE")]

    dt = deltalake.DeltaTable(url, storage_options=s3.deltalake_options)
    assert dt.version() == 3
    # QueryBuilder, not to_pyarrow_table(): the latter aborts the process at exit in 1.6.6.
    theirs = pa.table(deltalake.QueryBuilder().register("t", dt).execute("select id, name, p from t").read_all())
    # Compare as Python values: delta-rs hands strings back as string_view.
    assert sorted(theirs.to_pylist(), key=lambda row: row["id"]) == ours.select(["id", "name", "p"]).to_pylist()


@pytest.mark.interop
def test_deltalake_commit_on_our_s3_table_is_read_back(s3):
    """The other direction on the same server: delta-rs appends, we see its version and rows."""
    import deltalake

    url = s3.url()
    table = lakehouse.create_table(url, SCHEMA, storage_options=s3.storage_options)
    table.append(pa.table({"writer": [0], "seq": [0]}, schema=SCHEMA))
    deltalake.write_deltalake(url, pa.table({"writer": [9], "seq": [1]}, schema=SCHEMA), mode="append",
                              storage_options=s3.deltalake_options)
    table.append(pa.table({"writer": [0], "seq": [2]}, schema=SCHEMA))  # we commit after them
    assert table.version() == 3
    assert sorted(table.snapshot().to_arrow().column("seq").to_pylist()) == [0, 1, 2]


# --- ambiguous outcomes: the PUT applied, its answer never arrived ----------------------------


def _lossy_options(s3, proxy) -> dict:
    # One attempt per client layer keeps the "every answer lost" case short (s3fs still
    # retries a few times on its own).
    return {**s3.storage_options, "AWS_ENDPOINT_URL": proxy.endpoint_url,
            "config_kwargs": {"retries": {"total_max_attempts": 1, "mode": "standard"}}}


@pytest.mark.parametrize("lose", ["first answer", "every answer"])
def test_a_commit_whose_answer_was_lost_lands_once_and_keeps_its_files(s3, s3_lossy, lose):
    """After the first PUT of version 1 applied, the client sees a dropped connection; its
    retries get 412 (or are dropped too). The writer must recognise its own commit by txnId:
    not commit it again at version 2, and not delete the data files it references."""
    url = s3.url()
    table = lakehouse.create_table(url, SCHEMA, storage_options=s3.storage_options)
    puts: list[str] = []

    def drop(method: str, path: str) -> bool:
        if method == "PUT" and path.endswith("/_delta_log/" + commit_name(1)):
            puts.append(path)
            return lose == "every answer" or len(puts) == 1
        return False

    proxy = s3_lossy(drop)
    lossy = lakehouse.open_table(url, storage_options=_lossy_options(s3, proxy))
    assert lossy.append(pa.table({"writer": [1], "seq": [1]}, schema=SCHEMA))["version"] == 1
    assert proxy.dropped and proxy.dropped[0].endswith("200 OK")  # it did land, unseen
    assert len(puts) >= 2  # and was retried

    assert table.version() == 1
    assert commit_name(2) not in _log_names(table)
    assert table.snapshot().to_arrow().to_pylist() == [{"writer": 1, "seq": 1}]  # its file is there
    assert [h["version"] for h in table.history()] == [1, 0]


def test_a_commit_whose_outcome_cannot_be_read_back_keeps_its_files(s3, s3_lossy):
    """The PUT of version 1 lands but its answer is lost, and so is every answer to reading the
    commit back: the writer cannot know. It must say so (CommitOutcomeUnknownError) and keep
    its data files, because the commit that did land references them."""
    url = s3.url()
    table = lakehouse.create_table(url, SCHEMA, storage_options=s3.storage_options)
    target = "/_delta_log/" + commit_name(1)

    def drop(method: str, path: str) -> bool:
        return path.split("?")[0].endswith(target) and method in ("PUT", "GET", "HEAD")

    proxy = s3_lossy(drop)
    lossy = lakehouse.open_table(url, storage_options=_lossy_options(s3, proxy))
    with pytest.raises(lakehouse.CommitOutcomeUnknownError, match="may or may not have landed"):
        lossy.append(pa.table({"writer": [7], "seq": [1]}, schema=SCHEMA))
    # It did land, and reading through a healthy connection finds its rows intact.
    assert table.version() == 1
    assert table.snapshot().to_arrow().to_pylist() == [{"writer": 7, "seq": 1}]
