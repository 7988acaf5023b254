"""A feature job SIGKILLed at random moments while its source keeps changing stays exact.

A writer thread keeps appending, updating (SQL ``UPDATE``, some moving rows to another key),
deleting and compacting the source. ``lakehouse features run job.py`` follows it in a child
process that is killed with SIGKILL at ``KILLS`` random moments and restarted each time.
Each start costs about 1.7 s of imports, so the kill mostly comes a random 0.2-1.5 s after
the child reports its first batch (every fifth comes 0.2-1.5 s after the start instead) (the writer produces a batch every ~0.1 s, and a batch takes
tens of milliseconds), so kills land before, inside and between batches, including between
the sink commit and the checkpoint commit (the next start then reports the batch skipped).
At the end the writer stops, the job runs ``--once`` to completion, and the sink must equal
the query recomputed from the source's final snapshot: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

import engine
import lakehouse

KILLS = 20
STARTUP_LIMIT = 30.0  # seconds a (re)started child may take to reach its first batch
QUERY = ("SELECT user_id, count(*) AS n, sum(amount) AS total, min(amount) AS lo, max(amount) AS hi "
         "FROM source GROUP BY user_id")
USERS = 25
SCHEMA = pa.schema([("id", pa.int64()), ("user_id", pa.int64()), ("amount", pa.int64())])
REPO = Path(__file__).resolve().parents[2]

JOB = """\
from engine.features import FeatureJob

job = FeatureJob({source!r}, {sink!r}, keys="user_id", checkpoint={checkpoint!r}, max_versions_per_batch=4,
                 query={query!r})
"""


class Writer(threading.Thread):
    """Appends, updates, deletes and compacts the source until stopped."""

    def __init__(self, warehouse: Path, seed: int) -> None:
        super().__init__(daemon=True)
        self.table = lakehouse.open_table(str(warehouse / "events"))
        self.session = engine.connect(str(warehouse))
        self.random = random.Random(seed)
        self.next_id = 1000
        self.stop = threading.Event()
        self.counts = {"append": 0, "update": 0, "move": 0, "delete": 0, "optimize": 0}
        self.error: BaseException | None = None

    def step(self) -> None:
        r = self.random
        roll = r.random()
        if roll < 0.45:
            n = r.randint(1, 8)
            ids = list(range(self.next_id, self.next_id + n))
            self.next_id += n
            self.table.append(pa.table({"id": ids, "user_id": [r.randrange(USERS) for _ in ids],
                                        "amount": [r.randint(-50, 500) for _ in ids]}, schema=SCHEMA))
            self.counts["append"] += 1
        elif roll < 0.65:
            self.session.sql(f"UPDATE events SET amount = amount + {r.randint(1, 9)} WHERE id % 13 = {r.randrange(13)}")
            self.counts["update"] += 1
        elif roll < 0.8:
            self.session.sql(f"UPDATE events SET user_id = (user_id + 1) % {USERS} WHERE id % 17 = {r.randrange(17)}")
            self.counts["move"] += 1
        elif roll < 0.97:
            if r.random() < 0.5:
                self.table.delete(f"user_id = {r.randrange(USERS)}")
            else:
                self.session.sql(f"DELETE FROM events WHERE id % 19 = {r.randrange(19)}")
            self.counts["delete"] += 1
        else:
            self.table.optimize()
            self.counts["optimize"] += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
                time.sleep(self.random.uniform(0.02, 0.12))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _cli(job: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "features", "run", str(job), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _collect(child: subprocess.Popen, lines: list[str], started: threading.Event) -> None:
    """Keep the child's batch lines; signal the first one (the job is past its imports)."""
    for raw in child.stderr:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        if line.startswith("batch "):
            started.set()


def _in_flight(checkpoint: Path, sink_path: str) -> Counter:
    """Where the kill left the job: a batch planned but not committed, and if so whether the
    sink already held it (killed between the sink commit and the checkpoint commit)."""
    planned = len(os.listdir(checkpoint / "offsets")) if (checkpoint / "offsets").exists() else 0
    committed = len(os.listdir(checkpoint / "commits")) if (checkpoint / "commits").exists() else 0
    if planned <= committed:
        return Counter()
    stream_id = json.loads((checkpoint / "metadata.json").read_text())["stream_id"]
    try:
        applied = lakehouse.open_table(sink_path).txn_version(f"lakehouse-feature-job-{stream_id}")
    except lakehouse.TableNotFoundError:
        applied = None
    return Counter(planned=1, sink_ahead=int(applied is not None and applied >= planned - 1))


def _expected(source: lakehouse.Table) -> list[dict]:
    session = engine.connect()
    session.register("source", source.to_arrow())
    return session.sql(QUERY).to_arrow().sort_by("user_id").to_pylist()


@pytest.mark.slow
def test_feature_job_survives_sigkill_while_the_source_changes(tmp_path):
    warehouse = tmp_path / "wh"
    source = lakehouse.create_table(str(warehouse / "events"), SCHEMA,
                                    properties={"delta.enableChangeDataFeed": "true"})
    source.append(pa.table({"id": list(range(200)), "user_id": [i % USERS for i in range(200)],
                           "amount": [i * 3 % 101 for i in range(200)]}, schema=SCHEMA))
    sink_path = str(warehouse / "user_features")
    job = tmp_path / "job.py"
    job.write_text(JOB.format(source=str(warehouse / "events"), sink=sink_path,
                              checkpoint=str(tmp_path / "checkpoint"), query=QUERY))
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    writer = Writer(warehouse, seed)
    writer.start()
    lines: list[str] = []
    child = None
    in_flight: Counter = Counter()
    try:
        for kill in range(KILLS):
            child = _cli(job, "--poll", "0.05")
            started = threading.Event()
            reader = threading.Thread(target=_collect, args=(child, lines, started), daemon=True)
            reader.start()
            if kill % 5 != 4:  # every fifth kill lands during start-up or the first batch
                assert started.wait(STARTUP_LIMIT), f"the job did not finish a batch in {STARTUP_LIMIT} s: {lines[-5:]}"
            time.sleep(rng.uniform(0.2, 1.5))
            assert child.poll() is None, lines[-5:]
            assert writer.error is None, f"writer failed (seed {seed}): {writer.error!r}"
            child.send_signal(signal.SIGKILL)
            child.wait()
            reader.join(timeout=10)
            in_flight += _in_flight(tmp_path / "checkpoint", sink_path)
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        writer.stop.set()
        writer.join(timeout=30)
    assert writer.error is None, f"writer failed (seed {seed}): {writer.error!r}"
    final = _cli(job, "--once")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]

    sink = lakehouse.open_table(sink_path)
    got = sink.to_arrow().sort_by("user_id").to_pylist()
    assert got == _expected(source), f"sink differs from the recomputed features (seed {seed})"
    # every batch reached the sink at most once, and the job made progress between kills
    batch_ids = [int(h["operationParameters"]["batchId"]) for h in sink.history()
                 if h["operation"] == "STREAMING UPDATE"]
    assert len(batch_ids) == len(set(batch_ids)), f"a batch was applied twice (seed {seed})"
    replays = sum("skipped (already in the sink)" in line for line in lines)
    assert min(writer.counts.values()) > 0, writer.counts
    print(f"seed {seed}: {len(batch_ids)} sink commits; kills with a batch in flight: {in_flight['planned']}, "
          f"of which after its sink commit: {in_flight['sink_ahead']}; replays skipped: {replays}; source at "
          f"version {source.version()}, writer {writer.counts}; final run: {out.decode().strip()}")
