"""Suite ``changes``: change streams through a feature job, and point-in-time joins.

1. **Throughput**: change rows per second through ``engine.features.FeatureJob`` (SQL
   aggregate per user): first ``--rows`` inserted rows in ``--commits`` appends, processed
   as one batch; then ``--commits`` SQL UPDATE/DELETE statements (change data feed on)
   processed as one batch. Time = ``job.run_once()``, which reads the changes, recomputes
   the affected users from the source snapshot and rewrites their sink rows in one commit.
2. **Freshness** at ``--rates`` source commits per second: a writer *process* appends
   ``--commit-rows`` rows per commit on a fixed schedule for ``--duration`` seconds while
   the job follows the source in this process (``--poll`` seconds between empty polls).
   Freshness of source version *v* = commit time of the sink commit whose batch holds *v*
   minus the commit time of *v* (both are commit-file times on the same disk).

3. **Point-in-time joins** (``benchmarks.asof``): SQL ``ASOF LEFT JOIN`` of ``--asof-rows``
   labels x ``--asof-rows`` feature rows and ``engine.training_set`` on the same tables,
   beside DuckDB's ASOF JOIN on the same Parquet files; ``--asof-rows 0`` skips it.

Parts 1 and 2 have no peer library (empty peer column); every sink is checked against the
query recomputed from the final source snapshot (untimed). Part 3's answers are checked
against DuckDB's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

import engine
import lakehouse
from benchmarks import asof
from benchmarks.harness import Check, Row, RunContext, SuiteOutput, percentile
from engine.features import FeatureJob

TITLE = "Change streams and point-in-time joins: feature-job throughput, freshness, ASOF JOIN"
DESCRIPTION = ("Change rows per second through a feature job, seconds from a source commit to the sink "
               "holding it at several commit rates, and ASOF LEFT JOIN / training_set beside DuckDB.")
PEER = "—"
SCHEMA = pa.schema([("id", pa.int64()), ("user_id", pa.int64()), ("amount", pa.int64())])
QUERY = ("SELECT user_id, count(*) AS n, sum(amount) AS total, max(amount) AS largest "
         "FROM source GROUP BY user_id")
CDF = {"delta.enableChangeDataFeed": "true"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200_000, help="rows inserted for the throughput measure")
    parser.add_argument("--commits", type=int, default=10, help="commits of each throughput phase")
    parser.add_argument("--users", type=int, default=5_000, help="distinct keys")
    parser.add_argument("--rates", type=str, default="1,10,100", help="source commits per second (comma list)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds the writer runs per rate")
    parser.add_argument("--commit-rows", type=int, default=10, help="rows per commit in the freshness runs")
    parser.add_argument("--poll", type=float, default=0.05, help="job poll interval when idle (seconds)")
    asof.add_arguments(parser)


def _batch(first_id: int, count: int, users: int) -> pa.Table:
    ids = list(range(first_id, first_id + count))
    return pa.table({"id": ids, "user_id": [(i * 7919) % users for i in ids],
                     "amount": [(i * 31) % 1000 for i in ids]}, schema=SCHEMA)


def _job(root: Path, name: str, **kwargs: Any) -> FeatureJob:
    return FeatureJob(str(root / name), str(root / f"{name}_features"), keys="user_id", query=QUERY,
                      checkpoint=str(root / f"{name}_checkpoint"), **kwargs)


def _sink_matches(root: Path, name: str) -> bool:
    session = engine.connect()
    session.register("source", lakehouse.open_table(str(root / name)).to_arrow())
    expected = session.sql(QUERY).to_arrow().sort_by("user_id").to_pylist()
    got = lakehouse.open_table(str(root / f"{name}_features")).to_arrow()
    return got.select(["user_id", "n", "total", "largest"]).sort_by("user_id").to_pylist() == expected


def _write_at_rate(path: str, rate: float, duration: float, rows: int, users: int, first_id: int) -> None:
    """Writer process: one append of ``rows`` rows every ``1/rate`` s for ``duration`` s.

    When appends take longer than ``1/rate`` it commits back to back; it still stops after
    ``duration`` seconds, so the achieved rate shows what one writer reached.
    """
    table = lakehouse.open_table(path)
    start = time.time()
    n = 0
    while True:
        due = start + n / rate
        if due - start >= duration or time.time() - start >= duration:
            return
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        table.append(_batch(first_id + n * rows, rows, users))
        n += 1


def _throughput(root: Path, options: argparse.Namespace, out: SuiteOutput, say: Any) -> None:
    source = lakehouse.create_table(str(root / "bulk"), SCHEMA, properties=CDF)
    per_commit = max(1, options.rows // options.commits)
    for c in range(options.commits):
        source.append(_batch(c * per_commit, per_commit, options.users))
    job = _job(root, "bulk")
    started = time.perf_counter()
    totals = job.run_once()
    seconds = time.perf_counter() - started
    out.rows.append(Row(f"inserts: {totals['change_rows']:,} change rows, 1 batch", f"{options.users:,} keys",
                        "rate", "rows/s", totals["change_rows"] / seconds, PEER, None))
    out.series["throughput_insert_s"] = [seconds]
    say(f"      inserts: {totals['change_rows']:,} rows in {seconds:.2f} s")
    session = engine.connect(str(root))
    for c in range(options.commits):
        if c % 2 == 0:
            session.sql(f"UPDATE bulk SET amount = amount + 1 WHERE id % 50 = {c}")
        else:
            session.sql(f"DELETE FROM bulk WHERE id % 97 = {c}")
    started = time.perf_counter()
    totals = job.run_once()
    seconds = time.perf_counter() - started
    out.rows.append(Row(f"updates+deletes: {totals['change_rows']:,} change rows ({totals['keys']:,} keys), 1 batch",
                        f"{options.commits} statements", "rate", "rows/s", totals["change_rows"] / seconds, PEER, None))
    out.series["throughput_update_s"] = [seconds]
    say(f"      updates/deletes: {totals['change_rows']:,} rows in {seconds:.2f} s")
    out.checks.append(Check("throughput sink == features recomputed from the source", True,
                            {"bulk": _sink_matches(root, "bulk")}))


def _freshness(root: Path, rate: float, options: argparse.Namespace, out: SuiteOutput, say: Any) -> None:
    name = f"rate_{str(rate).replace('.', '_')}"
    source = lakehouse.create_table(str(root / name), SCHEMA, properties=CDF)
    source.append(_batch(0, options.commit_rows, options.users))
    job = _job(root, name)
    job.run_once()  # creates the sink and warms the job
    first = source.version() + 1
    stop = threading.Event()
    follower = threading.Thread(target=job.run, kwargs={"follow": True, "poll_interval": options.poll,
                                                        "stop": stop.is_set}, daemon=True)
    follower.start()
    writer = mp.get_context("spawn").Process(target=_write_at_rate, args=(
        str(root / name), rate, options.duration, options.commit_rows, options.users, 1_000_000))
    writer.start()
    writer.join()
    last = source.version()
    deadline = time.time() + 60
    while job.stream.committed_version < last and time.time() < deadline:
        time.sleep(0.05)
    stop.set()
    follower.join(timeout=30)
    source_times = {h["version"]: h["timestamp"] for h in source.history()}
    sink_batches = []
    for entry in lakehouse.open_table(str(root / f"{name}_features")).history():
        if entry.get("operation") == "STREAMING UPDATE":
            low, high = map(int, str(entry["operationParameters"]["sourceVersions"]).split(".."))
            sink_batches.append((low, high, entry["timestamp"]))
    lags = []
    for v in range(first, last + 1):
        holder = next((t for lo, hi, t in sink_batches if lo <= v <= hi), None)
        if holder is not None:
            lags.append((holder - source_times[v]) / 1000)
    commits = last - first + 1
    span = (source_times[last] - source_times[first]) / 1000
    achieved = (commits - 1) / span if commits > 1 and span > 0 else 0.0
    setup = f"{rate:g} commits/s target, {achieved:.0f} achieved, {commits} commits"
    out.series[f"freshness_{name}_s"] = lags
    batches = [b for b in sink_batches if b[1] >= first]
    if lags:
        for stat in ("median", "p95"):
            out.rows.append(Row(f"freshness at {rate:g} commits/s", setup, stat, "ms",
                                percentile(lags, 50 if stat == "median" else 95) * 1000, PEER, None))
    say(f"      {rate:g}/s: {commits} commits ({achieved:.0f}/s achieved), {len(batches)} sink batches, "
        f"median {percentile(lags, 50) * 1000 if lags else float('nan'):.0f} ms, "
        f"p95 {percentile(lags, 95) * 1000 if lags else float('nan'):.0f} ms")
    out.info[f"freshness_{name}"] = {"commits": commits, "achieved_rate": round(achieved, 2),
                                     "sink_batches": len(batches), "versions_with_lag": len(lags)}
    out.checks.append(Check(f"{rate:g}/s: every source commit reached the sink", commits, {name: len(lags)}))
    out.checks.append(Check(f"{rate:g}/s: sink == features recomputed from the source", True,
                            {name: _sink_matches(root, name)}))


def run(options: argparse.Namespace, context: RunContext) -> SuiteOutput:
    rates = [float(r) for r in options.rates.split(",") if r.strip()]
    if options.rows < 1 or options.commits < 1 or options.users < 1 or not rates or min(rates) <= 0:
        raise SystemExit("--rows, --commits, --users and every rate must be positive")
    if options.asof_rows < 0 or options.asof_keys < 1 or options.asof_repeats < 1:
        raise SystemExit("--asof-rows must be >= 0, --asof-keys and --asof-repeats positive")
    say = context.progress
    out = SuiteOutput(parameters={"rows": options.rows, "commits": options.commits, "users": options.users,
                                  "rates": options.rates, "duration": options.duration,
                                  "commit_rows": options.commit_rows, "poll": options.poll,
                                  "asof_rows": options.asof_rows, "asof_keys": options.asof_keys,
                                  "asof_repeats": options.asof_repeats})
    say("[1/3] throughput: inserts, then updates and deletes, through one feature job")
    _throughput(context.workdir, options, out, say)
    say(f"[2/3] freshness at {', '.join(f'{r:g}' for r in rates)} commits/s for {options.duration:g} s each")
    for rate in rates:
        _freshness(context.workdir, rate, options, out, say)
    out.notes += [
        "Feature job rows (throughput, freshness) have no peer: their peer and ratio columns are empty.",
        f"Job: `FeatureJob(keys='user_id', query=\"{QUERY}\")`; each batch recomputes the affected users from the "
        "source snapshot at the batch's last version and replaces their sink rows in one commit.",
        "Throughput: `job.run_once()` wall time over all change rows of the batch (reading changes, recomputing "
        "the affected keys, rewriting the sink). The source has the change data feed on.",
        f"Freshness: a separate writer process appends on a fixed schedule; the job follows in the benchmark "
        f"process with all available versions per batch and a {options.poll:g} s poll when idle. Freshness = sink "
        "commit time of the batch holding a version minus that version's commit time (commit-file times).",
        "The rates are targets; 'achieved' is what one writer process reached on this machine.",
    ]
    if options.asof_rows:
        say(f"[3/3] point-in-time joins: {options.asof_rows:,} labels x {options.asof_rows:,} feature rows")
        asof.run_asof(context.workdir / "asof", options, out, say)
    else:
        say("[3/3] point-in-time joins: skipped (--asof-rows 0)")
    return out
