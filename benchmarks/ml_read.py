"""Suite ``ml_read``: the ML reader's throughput beside plain Parquet reads of the same files.

One local scratch table (``--rows`` rows over ``--files`` appends: an id, an int label,
eight float32 features and a short string) is read three ways, each ``--repeats`` times
after one warm-up, the OS file cache warm for all:

1. lakehouse: ``Scan.to_batches(batch_size, shuffle=True, rank=r, world_size=2)`` in two
   worker processes at once (one per shard, like two DataLoader workers), a new epoch each
   repeat; the clock runs from the start signal until both shards are fully consumed, and
   includes planning (each worker reads the footers);
2. the physical reference: ``pyarrow.parquet.read_table`` of the same data files one after
   another in log order, with Arrow's threads (both cores), no shuffle;
3. deltalake: ``pyarrow.dataset.dataset(DeltaTable(p).file_uris())`` streamed with
   ``to_batches`` (deltalake 1.6.6's ``to_pyarrow_dataset``/``to_pyarrow_table`` abort the
   interpreter here, so its file list feeds a plain pyarrow dataset).

When torch is installed, ``to_torch(...)`` through a 2-worker DataLoader (dicts of tensors)
is measured too. Rates are rows and on-disk (compressed) megabytes per second.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import lakehouse
from benchmarks.harness import Check, Row, RunContext, SuiteOutput, clock, summarize

TITLE = "ML reads: shuffled, sharded to_batches beside plain pyarrow.parquet and deltalake"
DESCRIPTION = ("Throughput of Scan.to_batches(shuffle=True) in 2 worker processes (2 shards) versus a plain "
               "pyarrow.parquet read of the same files and deltalake's file list read by pyarrow.dataset.")
BAR = 0.8  # shuffled to_batches must reach this share of the plain pyarrow read's rows/s
FEATURES = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=4_000_000, help="rows in the table")
    parser.add_argument("--files", type=int, default=8, help="appends (at least one data file each)")
    parser.add_argument("--batch-size", type=int, default=8192, help="rows per batch")
    parser.add_argument("--workers", type=int, default=2, help="reader processes (shards) for lakehouse")
    parser.add_argument("--repeats", type=int, default=3, help="timed reads per reader, after one warm-up")


def _chunk(start: int, count: int, rng: np.random.Generator) -> pa.Table:
    ids = np.arange(start, start + count, dtype=np.int64)
    columns: dict[str, Any] = {"id": ids, "label": (ids % 10).astype(np.int32)}
    for k in range(FEATURES):
        columns[f"f{k}"] = rng.standard_normal(count, dtype=np.float32)
    columns["tag"] = pa.DictionaryArray.from_arrays(pa.array((ids % 50).astype(np.int32)),
                                                    pa.array([f"tag-{i}" for i in range(50)])).cast(pa.string())
    return pa.table(columns)


def _build(path: str, rows: int, files: int) -> lakehouse.Table:
    rng = np.random.default_rng(0)
    first = _chunk(0, 1, rng)
    table = lakehouse.create_table(path, first.schema)
    per = -(-rows // files)
    for start in range(0, rows, per):
        table.append(_chunk(start, min(per, rows - start), rng))
    return table


# --- the lakehouse reader, in worker processes --------------------------------------------

def _shard_worker(path: str, version: int, rank: int, world: int, batch_size: int,
                  inbox: Any, outbox: Any) -> None:
    """Wait for an epoch number, read shard ``rank`` of that epoch, report (rows, id sum)."""
    snapshot = lakehouse.open_table(path).snapshot(version=version)
    outbox.put(("ready", rank))
    while True:
        epoch = inbox.get()
        if epoch is None:
            return
        rows = total = 0
        for batch in snapshot.scan().to_batches(batch_size, shuffle=True, seed=1, epoch=epoch,
                                                rank=rank, world_size=world):
            rows += batch.num_rows
            total += int(np.asarray(batch.column("id")).sum())
        outbox.put((rank, rows, total))


def _lakehouse_reads(path: str, version: int, workers: int, batch_size: int,
                     rounds: int) -> list[tuple[float, int, int]]:
    """(seconds, rows, id sum) of each round; round 0 is the warm-up."""
    context = mp.get_context("spawn")
    outbox = context.Queue()
    inboxes = [context.Queue() for _ in range(workers)]
    procs = [context.Process(target=_shard_worker, args=(path, version, r, workers, batch_size, inboxes[r], outbox))
             for r in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        outbox.get(timeout=120)
    results = []
    try:
        for epoch in range(rounds):
            start = clock()
            for inbox in inboxes:
                inbox.put(epoch)
            parts = [outbox.get(timeout=600) for _ in procs]
            results.append((clock() - start, sum(p[1] for p in parts), sum(p[2] for p in parts)))
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for proc in procs:
            proc.join(timeout=30)
    return results


def _torch_reads(table: lakehouse.Table, version: int, workers: int, batch_size: int,
                 rounds: int) -> list[tuple[float, int, int]] | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    dataset = table.snapshot(version=version).scan().to_torch(batch_size, shuffle=True, seed=1)
    loader = dataset.loader(num_workers=workers)
    results = []
    for epoch in range(rounds):
        dataset.set_epoch(epoch)
        start = clock()
        rows = total = 0
        for batch in loader:
            rows += len(batch["id"])
            total += int(batch["id"].sum())
        results.append((clock() - start, rows, total))
    return results


# --- the references -----------------------------------------------------------------------

def _pyarrow_read(paths: list[str]) -> tuple[int, int]:
    rows = total = 0
    for path in paths:
        data = pq.read_table(path, use_threads=True)
        rows += data.num_rows
        total += int(np.asarray(data.column("id").combine_chunks()).sum())
    return rows, total


def _deltalake_read(path: str, batch_size: int) -> tuple[int, int]:
    from deltalake import DeltaTable

    dataset = ds.dataset(DeltaTable(path).file_uris(), format="parquet")
    rows = total = 0
    for batch in dataset.to_batches(batch_size=batch_size):
        rows += batch.num_rows
        total += int(np.asarray(batch.column("id")).sum())
    return rows, total


def _timed(fn: Any, rounds: int) -> list[tuple[float, int, int]]:
    results = []
    for _ in range(rounds):
        start = clock()
        rows, total = fn()
        results.append((clock() - start, rows, total))
    return results


def _same(values: Any) -> Any:
    """The one value every round observed, or the list of them when rounds disagree."""
    found = list(values)
    return found[0] if len(set(found)) == 1 else found


# --- the suite ----------------------------------------------------------------------------

def run(options: argparse.Namespace, context: RunContext) -> SuiteOutput:
    if options.rows < 1 or options.files < 1 or options.batch_size < 1 or options.workers < 1 or options.repeats < 1:
        raise SystemExit("--rows, --files, --batch-size, --workers and --repeats must be positive")
    say = context.progress
    params = {"rows": options.rows, "files": options.files, "batch_size": options.batch_size,
              "workers": options.workers, "repeats": options.repeats}
    out = SuiteOutput(parameters=params)
    path = str(context.workdir / "ml")
    say(f"building a table of {options.rows:,} rows in {options.files} appends")
    table = _build(path, options.rows, options.files)
    snapshot = table.snapshot()
    plan = snapshot.scan().unit_plan
    files = snapshot.files
    paths = [snapshot.location.data_file(p)[1] for p in files.column("path").to_pylist()]
    disk = int(sum(os.path.getsize(p) for p in paths))
    out.info.update({"data_files": len(paths), "row_groups": len(plan.units), "bytes_on_disk": disk})
    rounds = options.repeats + 1
    expected_sum = options.rows * (options.rows - 1) // 2

    say(f"lakehouse: shuffled to_batches in {options.workers} processes, {rounds} rounds")
    runs = {"lakehouse": _lakehouse_reads(path, snapshot.version, options.workers, options.batch_size, rounds)}
    say(f"pyarrow.parquet.read_table of the {len(paths)} files, {rounds} rounds")
    runs["pyarrow"] = _timed(lambda: _pyarrow_read(paths), rounds)
    say(f"deltalake file_uris + pyarrow.dataset, {rounds} rounds")
    runs["deltalake"] = _timed(lambda: _deltalake_read(path, options.batch_size), rounds)
    say(f"to_torch through a {options.workers}-worker DataLoader, {rounds} rounds")
    torch_runs = _torch_reads(table, snapshot.version, options.workers, options.batch_size, rounds)
    if torch_runs is not None:
        runs["torch"] = torch_runs

    seconds = {name: [r[0] for r in results[1:]] for name, results in runs.items()}
    out.series.update({f"seconds/{name}": [round(s, 6) for s in values] for name, values in seconds.items()})
    median = {name: summarize(values, "median") for name, values in seconds.items()}
    mrows = {name: options.rows / s / 1e6 for name, s in median.items()}
    mbytes = {name: disk / s / 1e6 for name, s in median.items()}
    setup = f"{options.rows:,} rows, {len(paths)} files, {len(plan.units)} row groups, {disk / 1e6:,.0f} MB"
    lakehouse_setup = f"{options.workers} processes, shuffle, batch {options.batch_size:,}"
    for peer, label in (("pyarrow", "pyarrow.parquet"), ("deltalake", "deltalake (file_uris + pyarrow.dataset)")):
        out.rows += [
            Row("read time, shuffled to_batches", f"{lakehouse_setup}; {setup}", "median", "s",
                median["lakehouse"], label, median[peer]),
            Row("rows/s (higher is better)", lakehouse_setup, "median", "Mrows/s", mrows["lakehouse"], label,
                mrows[peer]),
            Row("MB/s on disk (higher is better)", lakehouse_setup, "median", "MB/s", mbytes["lakehouse"], label,
                mbytes[peer]),
        ]
    if "torch" in median:
        out.rows.append(Row("rows/s (higher is better)", f"to_torch, DataLoader {options.workers} workers, shuffle",
                            "median", "Mrows/s", mrows["torch"], "pyarrow.parquet", mrows["pyarrow"]))

    share = mrows["lakehouse"] / mrows["pyarrow"]
    out.info.update({"median_seconds": median, "mrows_per_s": mrows, "mb_per_s": mbytes, "share_of_pyarrow": share})
    out.checks += [
        Check("rows read per round", options.rows,
              {name: _same(r[1] for r in results) for name, results in runs.items()}),
        Check("sum(id) per round (every row exactly once)", expected_sum,
              {name: _same(r[2] for r in results) for name, results in runs.items()}),
        Check(f"shuffled to_batches reaches {BAR:.0%} of plain pyarrow.parquet rows/s", True,
              {f"lakehouse ({share:.0%})": share >= BAR}),
    ]
    out.notes += [
        "For time rows ratio = lakehouse / peer (below 1.00 is faster); for rows/s and MB/s rows it is "
        "lakehouse / peer throughput, so above 1.00 is faster.",
        f"lakehouse: {options.workers} spawned processes, each `snapshot.scan().to_batches({options.batch_size}, "
        "shuffle=True, seed=1, epoch=e, rank=r, world_size=n)`; a new epoch (new unit and row order) per round; "
        "the timed section includes reading the footers (planning) but not opening the snapshot.",
        "pyarrow.parquet: `pq.read_table(file)` per data file in log order, one process with Arrow's thread "
        "pool, no shuffle: the physical reference.",
        "deltalake: `pyarrow.dataset.dataset(DeltaTable(p).file_uris()).to_batches()` in one process; "
        "deltalake 1.6.6's `to_pyarrow_dataset`/`to_pyarrow_table` abort the interpreter here, so they are not used.",
        "to_torch: `scan.to_torch(batch_size, shuffle=True).loader(num_workers=n)`, batches converted to "
        "tensors (the string column to lists).",
        f"MB/s counts the {disk / 1e6:,.0f} MB of Parquet on disk (compressed), the same bytes for every reader. "
        "The OS file cache is warm: one untimed round each first.",
    ]
    return out
