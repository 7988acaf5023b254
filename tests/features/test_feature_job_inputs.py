"""Feature jobs whose query joins other tables (inputs): their changes reach the sink exactly once."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import engine
import lakehouse
from engine.features import FeatureJob, FeatureJobError
from lakehouse.stream import MicroBatch

PURCHASES = pa.schema([("order_id", pa.int64()), ("user_id", pa.int64()), ("amount", pa.float64())])
DIM = pa.schema([("user_id", pa.int64()), ("tier", pa.string())])
# The dimension is read in a CTE and joined (inner: users without a tier have no features).
QUERY = """
    WITH tiers AS (SELECT user_id, upper(tier) AS tier FROM dim)
    SELECT s.user_id, t.tier, count(*) AS orders, sum(s.amount) AS spent
    FROM source s JOIN tiers t ON s.user_id = t.user_id
    GROUP BY ALL
"""


@pytest.fixture
def wh(tmp_path):
    purchases = lakehouse.create_table(str(tmp_path / "purchases"), PURCHASES)
    purchases.append(pa.table({"order_id": [1, 2, 3, 4], "user_id": [10, 10, 20, 30],
                               "amount": [1.0, 2.0, 3.0, 4.0]}, schema=PURCHASES))
    dim = lakehouse.create_table(str(tmp_path / "dim"), DIM)
    dim.append(pa.table({"user_id": [10, 20], "tier": ["gold", "silver"]}, schema=DIM))
    return tmp_path, purchases, dim


def _job(tmp_path, query: str = QUERY, **kwargs) -> FeatureJob:
    return FeatureJob("purchases", "features", warehouse=str(tmp_path), keys="user_id", query=query,
                      checkpoint=str(tmp_path / "ck"), **kwargs)


def _sink(tmp_path) -> list[dict]:
    return lakehouse.open_table(str(tmp_path / "features")).to_arrow().sort_by("user_id").to_pylist()


def _expected(tmp_path, query: str = QUERY) -> list[dict]:
    return engine.connect(str(tmp_path)).sql(query.replace("source s", "purchases s")).to_arrow() \
        .sort_by("user_id").to_pylist()


def _recorded(tmp_path) -> dict:
    history = lakehouse.open_table(str(tmp_path / "features")).history()
    last = next(h for h in history if h["operation"] == "STREAMING UPDATE")
    return json.loads(last["operationParameters"]["inputVersions"])


def test_dimension_changes_reach_the_sink(wh):
    tmp_path, purchases, dim = wh
    job = _job(tmp_path)
    job.run_once()
    assert list(job.inputs()) == ["dim"]
    assert _sink(tmp_path) == _expected(tmp_path)
    session = engine.connect(str(tmp_path))

    session.sql("UPDATE dim SET tier = 'platinum' WHERE user_id = 20")  # no source change at all
    seen: list[dict] = []
    totals = job.run_once(on_batch=seen.append)
    assert (totals["batches"], totals["refreshes"]) == (0, 1)
    assert seen[0]["refresh"] and "dim (version 1 -> 2)" in seen[0]["inputs_changed"]
    assert _sink(tmp_path) == _expected(tmp_path)
    assert [r["tier"] for r in _sink(tmp_path)] == ["GOLD", "PLATINUM"]
    assert _recorded(tmp_path)["dim"]["version"] == dim.version()

    dim.append(pa.table({"user_id": [30], "tier": ["bronze"]}, schema=DIM))  # user 30 now joins
    purchases.append(pa.table({"order_id": [5], "user_id": [10], "amount": [5.0]}, schema=PURCHASES))
    seen.clear()
    totals = job.run_once(on_batch=seen.append)
    assert (totals["batches"], totals["refreshes"]) == (1, 0)  # the batch itself recomputed every key
    assert "dim" in seen[0]["inputs_changed"] and seen[0]["keys"] == 3
    assert _sink(tmp_path) == _expected(tmp_path) and len(_sink(tmp_path)) == 3

    dim.optimize()  # a new version without data changes: nothing to recompute
    version = lakehouse.open_table(str(tmp_path / "features")).version()
    assert job.run_once()["refreshes"] == 0
    assert lakehouse.open_table(str(tmp_path / "features")).version() == version
    dim.delete("user_id = 10")
    assert _job(tmp_path).run_once()["refreshes"] == 1  # a new process finds the versions in the sink
    assert _sink(tmp_path) == _expected(tmp_path) and 10 not in [r["user_id"] for r in _sink(tmp_path)]
    assert _job(tmp_path).run_once()["refreshes"] == 0


def test_inputs_are_pinned_to_the_recorded_version(wh, monkeypatch):
    """A dimension change landing while a batch runs is not half-seen: the batch reads and
    records the version it pinned, and the next run catches up."""
    tmp_path, purchases, dim = wh
    real = FeatureJob._pin_inputs
    moved = []

    def pin_then_update(self, *args, **kwargs):
        answer = real(self, *args, **kwargs)
        if not moved:
            engine.connect(str(tmp_path)).sql("UPDATE dim SET tier = 'late' WHERE user_id = 10")
            moved.append(dim.version())
        return answer

    monkeypatch.setattr(FeatureJob, "_pin_inputs", pin_then_update)
    after: list[tuple] = []
    totals = _job(tmp_path).run_once(
        on_batch=lambda stats: after.append((stats["refresh"], [r["tier"] for r in _sink(tmp_path)],
                                             _recorded(tmp_path)["dim"]["version"])))
    assert moved == [2] and (totals["batches"], totals["refreshes"]) == (1, 1)
    assert after == [(False, ["GOLD", "SILVER"], 1),  # the batch read and recorded the version it pinned
                     (True, ["LATE", "SILVER"], 2)]  # then caught up with the update
    assert _sink(tmp_path) == _expected(tmp_path)


def test_crash_after_sink_commit_with_changed_input_replays_exactly_once(wh, monkeypatch):
    tmp_path, purchases, dim = wh
    _job(tmp_path).run_once()
    engine.connect(str(tmp_path)).sql("UPDATE dim SET tier = 'platinum' WHERE user_id = 20")
    purchases.append(pa.table({"order_id": [5], "user_id": [20], "amount": [5.0]}, schema=PURCHASES))

    def crash(self):
        raise RuntimeError("killed before the checkpoint commit")

    monkeypatch.setattr(MicroBatch, "commit", crash)
    with pytest.raises(RuntimeError):
        _job(tmp_path).run_once()
    monkeypatch.undo()
    versions = lakehouse.open_table(str(tmp_path / "features")).version()
    seen: list[dict] = []
    totals = _job(tmp_path).run_once(on_batch=seen.append)
    assert (totals["batches"], totals["refreshes"], totals["skipped"]) == (1, 0, 1)
    assert lakehouse.open_table(str(tmp_path / "features")).version() == versions  # nothing written twice
    assert _sink(tmp_path) == _expected(tmp_path)


def test_fixed_versions_are_not_followed_and_the_sink_is_not_an_input(wh):
    tmp_path, purchases, dim = wh
    pinned = QUERY.replace("FROM dim", "FROM dim VERSION AS OF 1")
    job = _job(tmp_path, query=pinned)
    job.run_once()
    assert job.inputs() == {}
    engine.connect(str(tmp_path)).sql("UPDATE dim SET tier = 'x'")
    assert job.run_once() == {"batches": 0, "refreshes": 0, "change_rows": 0, "keys": 0, "feature_rows": 0,
                              "skipped": 0, "last_version": None}

    reads_sink = ("SELECT s.user_id, count(*) AS orders FROM source s "
                  "LEFT JOIN own o ON s.user_id = o.user_id GROUP BY ALL")
    lakehouse.create_table(str(tmp_path / "own"), pa.schema([("user_id", pa.int64()), ("orders", pa.int64())]))
    with pytest.raises(FeatureJobError, match=r"feature job 'own' .*reads the job's own sink \('own'\)"):
        FeatureJob("purchases", "own", warehouse=str(tmp_path), keys="user_id", query=reads_sink,
                   checkpoint=str(tmp_path / "ck_own")).run_once()


def test_following_job_and_cli_refresh_on_input_changes(wh, capsys):
    from engine.cli.__main__ import main as cli_main

    tmp_path, purchases, dim = wh
    job = _job(tmp_path)
    polls, seen = [], []

    def stop() -> bool:  # checked before every poll
        polls.append(1)
        if len(seen) == 1 and dim.version() == 1:  # the first batch is in: change the dimension
            dim.append(pa.table({"user_id": [30], "tier": ["bronze"]}, schema=DIM))
        return len(seen) >= 2 or len(polls) > 200

    totals = job.run(follow=True, poll_interval=0.01, stop=stop, on_batch=seen.append)
    assert (totals["batches"], totals["refreshes"]) == (1, 1) and seen[1]["refresh"]
    assert _sink(tmp_path) == _expected(tmp_path) and len(_sink(tmp_path)) == 3

    job_file = tmp_path / "job.py"
    job_file.write_text(f"from engine.features import FeatureJob\njob = FeatureJob('purchases', 'features', "
                        f"keys='user_id', query={QUERY!r}, checkpoint={str(tmp_path / 'ck')!r}, "
                        f"warehouse={str(tmp_path)!r})\n")
    engine.connect(str(tmp_path)).sql("UPDATE dim SET tier = 'iron' WHERE user_id = 30")
    assert cli_main(["features", "run", str(job_file), "--once"]) == 0
    captured = capsys.readouterr()
    assert "inputs changed: dim (version 2 -> 3): recomputed every key at source version 1: 3 keys" in captured.err
    assert captured.out.startswith("0 batch(es), 1 input refresh(es)")
    assert _sink(tmp_path)[2]["tier"] == "IRON"
