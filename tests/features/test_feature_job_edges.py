"""Feature jobs at their edges: NaN/NULL keys, key types, concurrent sink commits, user errors."""

from __future__ import annotations

import math
import random
from collections import Counter

import pyarrow as pa
import pytest

import engine
import engine.features as features_module
import lakehouse
from engine.cli.__main__ import main as cli_main
from engine.features import FeatureJob, FeatureJobError, FeatureKeyTypeError
from lakehouse.errors import CommitConflictError, SchemaError

FLOATS = pa.schema([("id", pa.int64()), ("k", pa.float64()), ("tag", pa.string()), ("amount", pa.int64())])


def _bag(table: pa.Table) -> Counter:
    """Rows as a multiset, NaN equal to NaN (so sink and expected rows compare)."""
    def canon(v):
        return "NaN" if isinstance(v, float) and math.isnan(v) else v
    names = sorted(table.column_names)
    return Counter(tuple(canon(row[n]) for n in names) for row in table.to_pylist())


def _expected(source: lakehouse.Table, query: str) -> pa.Table:
    session = engine.connect()
    session.register("source", source.to_arrow())
    return session.sql(query).to_arrow()


@pytest.mark.parametrize("keys", [["k"], ["k", "tag"]])
def test_nan_and_null_keys_match_a_full_recompute(tmp_path, keys):
    query = f"SELECT {', '.join(keys)}, count(*) AS n, sum(amount) AS total FROM source GROUP BY ALL"
    source = lakehouse.create_table(str(tmp_path / "src"), FLOATS)
    job = FeatureJob(source, str(tmp_path / "sink"), keys=keys, query=query, checkpoint=str(tmp_path / "ck"),
                     max_versions_per_batch=2)
    session = engine.connect(str(tmp_path))
    r = random.Random(7)
    values = [float("nan"), None, 1.5, -0.5, 2.0]
    next_id = 0
    for step in range(14):
        if step % 4 == 2:  # moves rows into and out of the NaN and NULL keys
            new = r.choice(["CAST('NaN' AS DOUBLE)", "NULL", "1.5"])
            session.sql(f"UPDATE src SET k = {new} WHERE id % 4 = {r.randrange(4)}")
        elif step % 4 == 3:
            source.delete(f"id IN ({', '.join(str(r.randrange(next_id)) for _ in range(3))})")
        else:
            n = r.randint(1, 4)
            source.append(pa.table({"id": list(range(next_id, next_id + n)), "k": [r.choice(values) for _ in range(n)],
                                    "tag": [r.choice(["a", None]) for _ in range(n)],
                                    "amount": [r.randint(1, 9) for _ in range(n)]}, schema=FLOATS))
            next_id += n
        if step % 2:
            job.run_once()
            sink = lakehouse.open_table(str(tmp_path / "sink")).to_arrow()
            assert _bag(sink) == _bag(_expected(source, query)), f"step {step}"
    sink = lakehouse.open_table(str(tmp_path / "sink")).to_arrow()
    assert any(isinstance(v, float) and math.isnan(v) for v in sink["k"].to_pylist())
    assert None in sink["k"].to_pylist()


def test_key_type_mismatches_name_job_sink_column_and_types(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "p"), pa.schema([("user_id", pa.int64()), ("amount", pa.float64())]))
    source.append(pa.table({"user_id": [10, 20], "amount": [1.0, 2.0]}))
    w = str(tmp_path)
    casting = FeatureJob("p", "f", warehouse=w, keys="user_id", checkpoint=str(tmp_path / "ck1"),
                         query="SELECT CAST(user_id AS VARCHAR) AS user_id, sum(amount) AS s FROM source GROUP BY 1")
    with pytest.raises(FeatureKeyTypeError, match=r"feature job 'f' \(sink '.*f'\): the query returns key column "
                                                  r"'user_id' as string, but the source's 'user_id' is int64"):
        casting.run_once()
    lakehouse.create_table(str(tmp_path / "sink2"), pa.schema([("user_id", pa.string()), ("s", pa.float64())]))
    conflicting = FeatureJob("p", "sink2", warehouse=w, keys="user_id", checkpoint=str(tmp_path / "ck2"),
                             query="SELECT user_id, sum(amount) AS s FROM source GROUP BY 1")
    with pytest.raises(FeatureKeyTypeError, match=r"feature job 'sink2' \(sink '.*sink2'\): key column 'user_id' "
                                                  r"is string in the sink but int64 in the source") as caught:
        conflicting.run_once()
    assert isinstance(caught.value, SchemaError)
    narrower = FeatureJob("p", "f3", warehouse=w, keys="user_id", checkpoint=str(tmp_path / "ck3"),
                          query="SELECT CAST(user_id AS INTEGER) AS user_id, sum(amount) AS s FROM source GROUP BY 1")
    narrower.run_once()  # same kind of key: converted to the source's type
    assert lakehouse.open_table(str(tmp_path / "f3")).schema().field("user_id").type == pa.int64()


def _counting_job(tmp_path):
    source = lakehouse.create_table(str(tmp_path / "p"), pa.schema([("u", pa.int64()), ("amount", pa.float64())]))
    job = FeatureJob("p", "f", warehouse=str(tmp_path), keys="u", checkpoint=str(tmp_path / "ck"),
                     query="SELECT u, count(*) AS n, sum(amount) AS s FROM source GROUP BY u")
    for i in range(3):
        source.append(pa.table({"u": [i], "amount": [1.0]}))
        job.run_once()
    source.append(pa.table({"u": [0], "amount": [5.0]}))
    return source, job


def test_concurrent_sink_commit_makes_the_batch_retry(tmp_path, monkeypatch):
    source, job = _counting_job(tmp_path)
    real = features_module.rewrite
    raced = []

    def optimize_first(snapshot, **kwargs):
        if not raced:
            raced.append(lakehouse.open_table(str(tmp_path / "f")).optimize()["version"])  # lands before our commit
        return real(snapshot, **kwargs)

    monkeypatch.setattr(features_module, "rewrite", optimize_first)
    assert job.run_once()["batches"] == 1
    sink = lakehouse.open_table(str(tmp_path / "f"))
    assert raced[0] is not None and [h["operation"] for h in sink.history(2)] == ["STREAMING UPDATE", "OPTIMIZE"]
    got = sink.to_arrow().sort_by("u").to_pylist()
    assert got == _expected(source, "SELECT u, count(*) AS n, sum(amount) AS s FROM source GROUP BY u") \
        .sort_by("u").to_pylist()


def test_a_sink_that_keeps_conflicting_gives_up_clearly(tmp_path, monkeypatch):
    source, job = _counting_job(tmp_path)
    real = features_module.rewrite

    def always_race(snapshot, **kwargs):
        lakehouse.open_table(str(tmp_path / "f")).append(pa.table({"u": [99], "n": [1], "s": [1.0]}))
        return real(snapshot, **kwargs)

    monkeypatch.setattr(features_module, "rewrite", always_race)
    monkeypatch.setattr(features_module, "MAX_COMMIT_ATTEMPTS", 3)
    with pytest.raises(FeatureJobError, match=r"feature job 'f' \(sink .*\): batch 3 \(source versions 4..4\): the "
                                              r"sink commit conflicted with concurrent commits 3 times") as caught:
        job.run_once()
    assert isinstance(caught.value.__cause__, CommitConflictError)
    monkeypatch.setattr(features_module, "rewrite", real)
    seen = []
    job.run_once(on_batch=seen.append)  # the batch was not committed: it runs again
    assert [(s["batch_id"], s["skipped"]) for s in seen] == [(3, False)]


def test_user_errors_name_the_job_sink_and_batch(tmp_path, capsys):
    source = lakehouse.create_table(str(tmp_path / "p"), pa.schema([("u", pa.int64()), ("amount", pa.float64())]))
    source.append(pa.table({"u": [1], "amount": [1.0]}))
    source.append(pa.table({"u": [2], "amount": [2.0]}))

    def bad(rows):
        raise ValueError("bug in my transform")

    job = FeatureJob("p", "f", warehouse=str(tmp_path), keys="u", checkpoint=str(tmp_path / "ck"), transform=bad)
    with pytest.raises(FeatureJobError, match=r"^feature job 'f' \(sink '.*f'\): the transform failed on batch 0 "
                                              r"\(source versions 0..2\): ValueError: bug in my transform$") as caught:
        job.run_once()
    assert isinstance(caught.value.__cause__, ValueError)
    query_job = FeatureJob("p", "g", warehouse=str(tmp_path), keys="u", checkpoint=str(tmp_path / "ck2"),
                           query="SELECT u, sum(amount) / (count(*) - 1) AS x, nope FROM source GROUP BY u")
    with pytest.raises(FeatureJobError, match=r"feature job 'g' .*: the query failed on batch 0 \(source versions "
                                              r"0..2\): PlanError: column 'nope'"):
        query_job.run_once()

    job_file = tmp_path / "job.py"
    job_file.write_text("from engine.features import FeatureJob\n"
                        "def bad(rows):\n    raise ValueError('bug in my transform')\n"
                        f"job = FeatureJob('p', 'f', warehouse={str(tmp_path)!r}, keys='u', "
                        f"checkpoint={str(tmp_path / 'ck3')!r}, transform=bad)\n")
    assert cli_main(["features", "run", str(job_file), "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: feature job 'f'") and "ValueError: bug in my transform" in err[0]
    assert "--debug" in err[0]
    assert cli_main(["features", "run", str(job_file), "--once", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "raise ValueError('bug in my transform')" in err


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"keys": None}, r"keys= must name the key column\(s\).*got None"),
    ({"keys": ["u", 3]}, r"keys= must name the key column\(s\)"),
    ({"keys": ["u", "u"]}, "names a column twice"),
    ({"checkpoint": None}, "checkpoint= must be a folder or URL"),
    ({"query": 42}, "query= must be SQL text"),
    ({"query": None, "transform": "not callable"}, "transform= must be a function"),
    ({"start": "yesterday"}, "start= must be 'earliest', 'latest' or a version"),
    ({"max_versions_per_batch": 0}, "max_versions_per_batch= must be a positive integer"),
    ({"sink": None}, "sink must be a lakehouse.Table or a table name"),
])
def test_bad_constructor_arguments_fail_clearly(tmp_path, kwargs, message):
    options = {"source": "p", "sink": "f", "keys": "u", "query": "SELECT u FROM source",
               "checkpoint": str(tmp_path / "ck")}
    options.update(kwargs)
    source, sink = options.pop("source"), options.pop("sink")
    with pytest.raises(FeatureJobError, match=message):
        FeatureJob(source, sink, **options)
