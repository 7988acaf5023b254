"""Feature jobs (engine.features) in process, and the `lakehouse features run` command."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine
import lakehouse
from engine.cli.__main__ import main as cli_main
from engine.features import FeatureJob, FeatureJobError
from lakehouse.stream import MicroBatch

SCHEMA = pa.schema([("id", pa.int64()), ("user_id", pa.int64()), ("kind", pa.string()), ("amount", pa.int64())])
QUERY = ("SELECT user_id, count(*) AS n, sum(amount) AS total, min(amount) AS lo, count(DISTINCT kind) AS kinds "
         "FROM source GROUP BY user_id")


def _rows(ids, users, kinds, amounts) -> pa.Table:
    return pa.table({"id": ids, "user_id": users, "kind": kinds, "amount": amounts}, schema=SCHEMA)


def _expected(source: lakehouse.Table, query: str = QUERY, keys=("user_id",)) -> list[dict]:
    session = engine.connect()
    session.register("source", source.to_arrow())
    return session.sql(query).to_arrow().sort_by([(k, "ascending") for k in keys]).to_pylist()


def _sink(path: str, keys=("user_id",)) -> list[dict]:
    return lakehouse.open_table(path).to_arrow().sort_by([(k, "ascending") for k in keys]).to_pylist()


@pytest.fixture
def wh(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "events"), SCHEMA)
    source.append(_rows([1, 2, 3, 4], [1, 1, 2, 3], ["a", "b", "a", "a"], [10, 20, 30, 40]))
    return tmp_path, source


def _job(tmp_path, **kwargs) -> FeatureJob:
    options = {"keys": "user_id", "query": QUERY, "checkpoint": str(tmp_path / "ck"), "warehouse": str(tmp_path)}
    options.update(kwargs)
    return FeatureJob("events", "features", **options)


def test_inserts_updates_deletes_and_moved_keys(wh):
    tmp_path, source = wh
    job = _job(tmp_path)
    assert job.run_once()["batches"] == 1
    sink = str(tmp_path / "features")
    assert _sink(sink) == _expected(source)
    session = engine.connect(str(tmp_path))
    session.sql("UPDATE events SET amount = 1 WHERE id = 2")  # min changes for user 1
    session.sql("UPDATE events SET user_id = 2 WHERE id = 4")  # user 3 vanishes, user 2 grows
    source.append(_rows([5], [7], ["c"], [5]))
    source.delete("id = 1")
    source.optimize()  # no data change: no keys affected
    totals = job.run_once()
    assert totals["batches"] == 1 and totals["feature_rows"] == 3  # users 1, 2, 7
    assert _sink(sink) == _expected(source)
    assert 3 not in [r["user_id"] for r in _sink(sink)]
    assert job.run_once()["batches"] == 0


def test_crash_between_sink_commit_and_checkpoint_commit_replays_without_double_counting(wh, monkeypatch):
    tmp_path, source = wh
    _job(tmp_path).run_once()
    source.append(_rows([6, 7], [1, 9], ["z", "z"], [100, 1]))
    real_commit = MicroBatch.commit

    def crash(self):
        raise RuntimeError("killed before the checkpoint commit")

    monkeypatch.setattr(MicroBatch, "commit", crash)
    with pytest.raises(RuntimeError):
        _job(tmp_path).run_once()
    monkeypatch.setattr(MicroBatch, "commit", real_commit)
    source.append(_rows([8], [1], ["y"], [1000]))  # arrives before the restart
    seen = []
    _job(tmp_path).run_once(on_batch=seen.append)
    assert [(s["batch_id"], s["start_version"], s["end_version"], s["skipped"]) for s in seen] == [
        (1, 2, 2, True), (2, 3, 3, False)]
    assert _sink(str(tmp_path / "features")) == _expected(source)
    history = lakehouse.open_table(str(tmp_path / "features")).history()
    batch_ids = [h["operationParameters"]["batchId"] for h in history if h["operation"] == "STREAMING UPDATE"]
    assert sorted(batch_ids) == ["0", "1", "2"]


def test_python_transform_and_two_keys(wh):
    tmp_path, source = wh

    def per_user_kind(rows: pa.Table) -> pa.Table:
        grouped = rows.group_by(["user_id", "kind"]).aggregate([("amount", "sum"), ("amount", "count")])
        return grouped.rename_columns(["user_id", "kind", "total", "n"])

    job = _job(tmp_path, query=None, transform=per_user_kind, keys=["user_id", "kind"], max_versions_per_batch=1)
    job.run_once()
    source.delete("kind = 'b'")
    source.append(_rows([9, 10], [1, 1], ["b", None], [3, 4]))
    engine.connect(str(tmp_path)).sql("UPDATE events SET kind = 'q' WHERE id = 3")
    assert job.run_once()["batches"] == 3
    expected = source.to_arrow().group_by(["user_id", "kind"]).aggregate([("amount", "sum"), ("amount", "count")])
    expected = expected.rename_columns(["user_id", "kind", "total", "n"])
    order = [("user_id", "ascending"), ("kind", "ascending")]
    got = lakehouse.open_table(str(tmp_path / "features")).to_arrow().select(expected.column_names)
    assert got.sort_by(order).to_pylist() == expected.sort_by(order).to_pylist()


def test_snapshot_start_when_the_first_commit_is_gone(wh):
    tmp_path, source = wh
    for i in range(12):
        source.append(_rows([100 + i], [i % 4], ["k"], [i]))
    for v in range(10):
        (tmp_path / "events" / "_delta_log" / f"{v:020d}.json").unlink()
    seen = []
    _job(tmp_path).run_once(on_batch=seen.append)
    assert seen[0]["is_snapshot"] and seen[0]["end_version"] == 13
    assert _sink(str(tmp_path / "features")) == _expected(source)


def test_misconfigured_jobs_fail_clearly(wh):
    tmp_path, source = wh
    with pytest.raises(FeatureJobError, match="exactly one of query"):
        FeatureJob("events", "f", keys="user_id", checkpoint="x")
    with pytest.raises(FeatureJobError, match="lacks key column"):
        _job(tmp_path, query="SELECT count(*) AS n FROM source").run_once()
    with pytest.raises(FeatureJobError, match="not in the source"):
        _job(tmp_path, keys="nope", checkpoint=str(tmp_path / "ck2")).run_once()


def test_cli_runs_a_job_file_once(wh, tmp_path, capsys, monkeypatch):
    _, source = wh
    job_file = tmp_path / "job.py"
    job_file.write_text(f"from engine.features import FeatureJob\njob = FeatureJob('events', 'features', "
                        f"keys='user_id', query={QUERY!r}, checkpoint={str(tmp_path / 'ck')!r}, "
                        f"warehouse={str(tmp_path)!r})\nother = 1\n")
    assert cli_main(["features", "run", str(job_file), "--once"]) == 0
    captured = capsys.readouterr()
    assert "1 batch(es)" in captured.out and "batch 0: versions 0..1" in captured.err
    assert _sink(str(tmp_path / "features")) == _expected(source)
    assert cli_main(["features", "run", f"{job_file}:other", "--once"]) == 1
    assert "is a int, not a FeatureJob" in capsys.readouterr().err
    assert cli_main(["features", "run", str(tmp_path / "missing.py"), "--once"]) == 1
    assert capsys.readouterr().err.startswith("Error: feature job file")
    assert cli_main(["features", "run", "no_such_module_xyz:job", "--once"]) == 1
    assert "cannot import feature job module" in capsys.readouterr().err
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli_main(["features", "run", "job:job", "--once", "--quiet"]) == 0
    assert "0 batch(es)" in capsys.readouterr().out
    assert pc.sum(lakehouse.open_table(str(tmp_path / "features")).to_arrow()["n"]).as_py() == 4
