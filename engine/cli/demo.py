"""``lakehouse demo``: build a small versioned table and walk through what it can do."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from typing import Callable

import pyarrow as pa

import lakehouse
from engine.cli.render import box
from lakehouse.errors import TableNotFoundError

DEMO_MARKER = "lakehouse.demo"


def _events(day: dt.date, start_id: int, count: int) -> pa.Table:
    countries = ["NL", "BE", "DE", "FR"]
    base = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    return pa.table({
        "id": pa.array(range(start_id, start_id + count), pa.int64()),
        "day": pa.array([day] * count, pa.date32()),
        "country": [countries[i % len(countries)] for i in range(count)],
        "amount": pa.array([round((i * 7.31) % 100, 2) for i in range(count)], pa.float64()),
        "at": pa.array([base + dt.timedelta(seconds=37 * i) for i in range(count)], pa.timestamp("us", tz="UTC")),
    })


def _prepare(path: str) -> None:
    """Remove a previous demo table at ``path``; refuse to touch anything else."""
    if not os.path.exists(path):
        return
    try:
        previous = lakehouse.open_table(path).snapshot()
    except TableNotFoundError:
        previous = None
    if previous is None or previous.properties.get(DEMO_MARKER) != "true":
        raise lakehouse.TableAlreadyExistsError(
            f"'{path}' already exists and was not made by 'lakehouse demo'; pass another --warehouse")
    shutil.rmtree(path)


def run_demo(warehouse: str, echo: Callable[[str], None] = print) -> lakehouse.Table:
    """Build ``<warehouse>/events`` with several versions and print a guided tour."""
    path = os.path.join(warehouse, "events")
    _prepare(path)
    os.makedirs(warehouse, exist_ok=True)

    echo(f"Creating the table 'events' in {os.path.abspath(warehouse)} (partitioned by day)\n")
    schema = _events(dt.date(2026, 11, 1), 0, 1).schema
    table = lakehouse.create_table(path, schema, partition_by=["day"],
                                   properties={DEMO_MARKER: "true"}, description="lakehouse demo events")
    for offset in range(3):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=offset)
        table.append(_events(day, offset * 1000, 1000), target_file_size=4 * 1024)
    table.delete("country = 'FR' and amount > 90")

    echo("History (newest first):")
    history = pa.Table.from_pylist([
        {"version": h["version"], "operation": h["operation"],
         "metrics": ", ".join(f"{k}={v}" for k, v in (h.get("operationMetrics") or {}).items()
                              if k in ("numOutputRows", "numDeletedRows", "numFiles", "numRemovedFiles"))}
        for h in table.history()])
    echo(box(history))

    latest = table.snapshot()
    echo(f"\nLatest version {latest.version}: {latest.num_files} files, {latest.size_bytes:,} bytes, "
         f"{latest.scan().count():,} rows")
    old = table.snapshot(version=1)
    echo(f"Time travel: version 1 had {old.scan().count():,} rows (only 2026-11-01)\n")

    query = "day = '2026-11-02' and id between 1100 and 1105"
    scan = latest.scan(columns=["id", "day", "country", "amount"], filter=query)
    result = scan.to_arrow().sort_by("id")
    metrics = scan.metrics
    echo(f"Scan with filter: {query}")
    echo(box(result))
    echo(f"files scanned: {metrics.files_selected} of {metrics.files_total} "
         f"({metrics.files_skipped} skipped using partition values and min/max stats)\n")
    echo("The table is plain Delta Lake: open it with deltalake, Spark, DuckDB or Polars too.")
    return table
