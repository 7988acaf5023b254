"""Point-in-time joins at scale, part of suite ``changes``: ASOF LEFT JOIN and ``training_set``.

Data: ``labels`` (user_id, ts, label) and ``features`` (user_id, ts, f1 DOUBLE, f2 BIGINT),
``--asof-rows`` rows each over ``--asof-keys`` users, timestamps uniform over one year at
microsecond resolution, written in random order as lakehouse tables (128 MiB target files).

Measures, each in a fresh subprocess of its own (so its peak RSS is its own), one after the
other, one untimed warm-up then ``--asof-repeats`` timed runs (median reported):

- **SQL**: ``SELECT count(*), count(f.f1), sum(f.f1), sum(f.f2) FROM labels l ASOF LEFT JOIN
  features f ON l.user_id = f.user_id AND l.ts >= f.ts``: ours through
  ``engine.connect(warehouse).sql`` on the lakehouse tables, DuckDB on ``read_parquet`` over
  the same tables' live Parquet files (the file lists of the snapshots).
- **training set**: the labels already in memory as an Arrow table (read untimed), joined to
  the features table into a full Arrow table of 10M rows: ours ``engine.training_set(labels,
  features_snapshot, on="user_id", timestamp="ts")`` (keeps the labels' order), DuckDB
  ``SELECT l.*, f.f1, f.f2 FROM labels l ASOF LEFT JOIN read_parquet(...) f ...`` fetched
  as Arrow (no ORDER BY: DuckDB does not promise the labels' order).

Checks: both sides agree on row count, matched count and the sums.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from benchmarks.harness import Check, Row, SuiteOutput, percentile

SPAN_US = 365 * 24 * 3600 * 10**6
START_US = 1_704_067_200 * 10**6  # 2024-01-01 UTC
TS = pa.timestamp("us", tz="UTC")
AGGREGATE = ("SELECT count(*) AS n, count(f.f1) AS matched, sum(f.f1) AS f1_sum, sum(f.f2) AS f2_sum "
             "FROM {labels} l ASOF LEFT JOIN {features} f ON l.user_id = f.user_id AND l.ts >= f.ts")
DUCK_TRAINING = ("SELECT l.*, f.f1, f.f2 FROM labels l ASOF LEFT JOIN {features} f "
                 "ON l.user_id = f.user_id AND l.ts >= f.ts")
PEER = "DuckDB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--asof-rows", type=int, default=10_000_000,
                        help="rows of the ASOF labels table and of its features table (0: skip the ASOF part)")
    parser.add_argument("--asof-keys", type=int, default=1_000_000, help="distinct user ids of the ASOF tables")
    parser.add_argument("--asof-repeats", type=int, default=3, help="timed runs per ASOF measure (after a warm-up)")


# --- data --------------------------------------------------------------------------------------

def _write(path: str, columns: Callable[[np.random.Generator, int], dict[str, pa.Array]], rows: int,
           seed: int) -> None:
    """A lakehouse table of ``rows`` generated rows, appended in one commit, 1M-row chunks."""
    import lakehouse

    rng = np.random.default_rng(seed)
    first = pa.table(columns(rng, min(rows, 1_000_000)))
    table = lakehouse.create_table(path, first.schema)

    def chunks():  # noqa: ANN202
        yield from first.to_batches()
        done = first.num_rows
        while done < rows:
            n = min(1_000_000, rows - done)
            yield from pa.table(columns(rng, n)).to_batches()
            done += n

    table.append(pa.RecordBatchReader.from_batches(first.schema, chunks()))


def make_tables(root: Path, rows: int, keys: int) -> dict[str, str]:
    def labels(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
        return {"user_id": pa.array(rng.integers(0, keys, n)),
                "ts": pa.array(START_US + rng.integers(0, SPAN_US, n)).view(TS),
                "label": pa.array(rng.integers(0, 2, n))}

    def features(rng: np.random.Generator, n: int) -> dict[str, pa.Array]:
        return {"user_id": pa.array(rng.integers(0, keys, n)),
                "ts": pa.array(START_US + rng.integers(0, SPAN_US, n)).view(TS),
                "f1": pa.array(rng.random(n)), "f2": pa.array(rng.integers(0, 1000, n))}

    paths = {"labels": str(root / "labels"), "features": str(root / "features")}
    _write(paths["labels"], labels, rows, 1)
    _write(paths["features"], features, rows, 2)
    return paths


# --- workers (each in its own process) -------------------------------------------------------

def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _duckdb() -> Any:
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # it draws on stderr, over the runner's progress
    return con


def _parquet_list(path: str) -> str:
    import lakehouse

    snapshot = lakehouse.open_table(path).snapshot()
    files = [str(Path(path) / p) for p in snapshot.files.column("path").to_pylist()]
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"


def _fingerprint(n: Any, matched: Any, f1_sum: Any, f2_sum: Any) -> dict[str, Any]:
    return {"rows": int(n), "matched": int(matched), "f1_sum": float(f1_sum), "f2_sum": int(f2_sum)}


def _same_answer(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> bool:
    """Counts and the integer sum exactly; the float sum up to summation order."""
    if not ours or not theirs:
        return False
    exact = all(ours[k] == theirs[k] for k in ("rows", "matched", "f2_sum"))
    return exact and abs(ours["f1_sum"] - theirs["f1_sum"]) <= 1e-9 * max(1.0, abs(theirs["f1_sum"]))


def _run_measure(kind: str, root: str, repeats: int) -> tuple[list[float], dict[str, Any]]:
    import pyarrow.compute as pc

    paths = {"labels": f"{root}/labels", "features": f"{root}/features"}
    if kind == "ours_sql":
        import engine

        session = engine.connect(root)

        def once() -> dict[str, Any]:
            row = session.sql(AGGREGATE.format(labels="labels", features="features")).to_arrow().to_pylist()[0]
            return _fingerprint(**row)
    elif kind == "duck_sql":
        con = _duckdb()
        sql = AGGREGATE.format(labels=_parquet_list(paths["labels"]), features=_parquet_list(paths["features"]))

        def once() -> dict[str, Any]:
            return _fingerprint(*con.sql(sql).fetchall()[0])
    else:
        import lakehouse

        labels = lakehouse.open_table(paths["labels"]).to_arrow()  # in memory, untimed: the user's DataFrame
        if kind == "ours_training":
            import engine

            features = lakehouse.open_table(paths["features"]).snapshot()

            def build() -> pa.Table:
                return engine.training_set(labels, features, on="user_id", timestamp="ts")
        else:
            con = _duckdb()
            con.register("labels", labels)
            sql = DUCK_TRAINING.format(features=_parquet_list(paths["features"]))

            def build() -> pa.Table:
                return con.sql(sql).to_arrow_table()

        def once() -> dict[str, Any]:
            table = build()
            return _fingerprint(table.num_rows, table.num_rows - table.column("f1").null_count,
                                pc.sum(table.column("f1")).as_py() or 0, pc.sum(table.column("f2")).as_py() or 0)
    answer = once()  # warm-up: Numba compilation, file cache, DuckDB's metadata cache
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = once()
        seconds.append(time.perf_counter() - started)
    return seconds, answer


def _worker(kind: str, root: str, repeats: int, queue: Any) -> None:
    try:
        seconds, answer = _run_measure(kind, root, repeats)
        queue.put({"seconds": seconds, "answer": answer, "peak_rss_bytes": _peak_rss_bytes()})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the check
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure(kind: str, root: Path, repeats: int) -> dict[str, Any]:
    """Run one measure in a fresh process; its times, answer fingerprint and peak RSS."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(kind, str(root), repeats, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


# --- the part of the suite -------------------------------------------------------------------

def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f} GiB"


def run_asof(root: Path, options: argparse.Namespace, out: SuiteOutput, say: Callable[[str], None]) -> None:
    rows, keys, repeats = options.asof_rows, options.asof_keys, options.asof_repeats
    started = time.perf_counter()
    make_tables(root, rows, keys)
    say(f"      wrote {rows:,} labels and {rows:,} feature rows over {keys:,} users "
        f"in {time.perf_counter() - started:.0f} s")
    setup = f"{rows / 1e6:g}M labels x {rows / 1e6:g}M features, {keys / 1e6:g}M keys"
    results = {}
    for kind in ("ours_sql", "duck_sql", "ours_training", "duck_training"):
        result = measure(kind, root, repeats)
        results[kind] = result
        if "error" in result:
            say(f"      {kind}: FAILED: {result['error']}")
            continue
        out.series[f"asof_{kind}_s"] = result["seconds"]
        say(f"      {kind}: median {percentile(result['seconds'], 50):.2f} s, "
            f"peak RSS {_gib(result['peak_rss_bytes'])}, {result['answer']}")
    for measure_name, ours, peer in (("ASOF LEFT JOIN (SQL, aggregated)", "ours_sql", "duck_sql"),
                                     ("training_set -> Arrow table", "ours_training", "duck_training")):
        mine, theirs = results[ours], results[peer]
        out.rows.append(Row.from_samples(measure_name, setup, "median", lakehouse=mine.get("seconds"), peer=PEER,
                                         peer_samples=theirs.get("seconds"), unit="s"))
        out.info[f"asof_{ours}_peak_rss_gib"] = round((mine.get("peak_rss_bytes") or 0) / 2**30, 3)
        out.info[f"asof_{peer}_peak_rss_gib"] = round((theirs.get("peak_rss_bytes") or 0) / 2**30, 3)
        out.rows.append(Row(f"{measure_name}: peak RSS", setup, "max", "GiB",
                            (mine.get("peak_rss_bytes") or 0) / 2**30 or None, PEER,
                            (theirs.get("peak_rss_bytes") or 0) / 2**30 or None))
        out.info[f"asof_{ours}_answer"] = mine.get("answer", mine.get("error"))
        out.info[f"asof_{peer}_answer"] = theirs.get("answer", theirs.get("error"))
        out.checks.append(Check(f"{measure_name}: rows, matches and sums equal DuckDB's", True,
                                {"lakehouse": _same_answer(mine.get("answer"), theirs.get("answer"))}))
    out.notes += [
        f"ASOF data: labels (user_id, ts, label) and features (user_id, ts, f1 DOUBLE, f2 BIGINT), {rows:,} rows "
        f"each, {keys:,} users, timestamps uniform over one year (microseconds), written in random order as "
        "lakehouse tables. Each measure runs in a fresh process (peak RSS is that process's, data loading "
        f"included): one warm-up, then the median of {repeats} runs.",
        f"ASOF SQL: `{AGGREGATE.format(labels='labels', features='features')}`: ours on the lakehouse tables, "
        "DuckDB on `read_parquet([...])` over the same tables' live Parquet files.",
        "training_set: labels already in memory as an Arrow table (read untimed); ours "
        "`engine.training_set(labels, features_snapshot, on='user_id', timestamp='ts')` returns every label "
        f"in order with f1, f2; DuckDB `{DUCK_TRAINING.format(features='read_parquet([...])')}` fetched as Arrow "
        "(no ORDER BY, so its rows are not in the labels' order).",
        "Both engines use both cores (DuckDB with its default thread count). The 1-minute load average is in the "
        "machine line: this machine is shared, so compare ratios from one run.",
    ]
