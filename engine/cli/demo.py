"""``lakehouse demo``: build a small versioned table and walk through what it can do."""

from __future__ import annotations

import datetime as dt
import decimal
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
        "amount": pa.array([decimal.Decimal(i * 731 % 10000) / 100 for i in range(count)], pa.decimal128(10, 2)),
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


def _sql(session: "engine.Session", echo: Callable[[str], None], sql: str) -> pa.Table:
    echo(f"lakehouse> {sql};")
    result = session.sql(sql).to_arrow()
    echo(box(result) + "\n")
    return result


def run_demo(warehouse: str, echo: Callable[[str], None] = print) -> lakehouse.Table:
    """Build ``<warehouse>/events`` with several versions and walk through a query, time travel,
    a zero-copy clone, history and file skipping, printing each step."""
    import engine

    path = os.path.join(warehouse, "events")
    _prepare(path)
    _prepare(os.path.join(warehouse, "events_dev"))
    os.makedirs(warehouse, exist_ok=True)

    echo(f"Creating the table 'events' in {os.path.abspath(warehouse)} (partitioned by day)\n")
    schema = _events(dt.date(2026, 11, 1), 0, 1).schema
    table = lakehouse.create_table(path, schema, partition_by=["day"],
                                   properties={DEMO_MARKER: "true"}, description="lakehouse demo events")
    for offset in range(3):
        day = dt.date(2026, 11, 1) + dt.timedelta(days=offset)
        table.append(_events(day, offset * 1000, 1000), target_file_size=4 * 1024)
    table.delete("id between 2100 and 2110")
    latest = table.snapshot()
    echo(f"Version {latest.version}: {latest.num_files} files, {latest.size_bytes:,} bytes, "
         f"{latest.scan().count():,} rows\n")

    session = engine.connect(warehouse)
    echo("1. A query")
    _sql(session, echo, "SELECT country, count(*) AS events, round(sum(amount), 2) AS amount "
                        "FROM events GROUP BY country ORDER BY country")
    echo("2. Time travel: the table as it was at version 1 (only 2026-11-01 was loaded)")
    _sql(session, echo, "SELECT min(day) AS first_day, max(day) AS last_day, count(*) AS events "
                        "FROM events VERSION AS OF 1")
    echo("3. A zero-copy clone: its log points at the source's files; no data file is copied")
    _sql(session, echo, "CREATE TABLE events_dev SHALLOW CLONE events")
    _sql(session, echo, "DELETE FROM events_dev WHERE country = 'NL'")
    _sql(session, echo, "SELECT (SELECT count(*) FROM events) AS events_rows, "
                        "(SELECT count(*) FROM events_dev) AS events_dev_rows")
    echo("4. History (newest first)")
    echo("lakehouse> DESCRIBE HISTORY events;")
    history = session.sql("DESCRIBE HISTORY events").to_arrow()
    echo(box(history.select(["version", "timestamp", "operation", "operationMetrics"])) + "\n")
    echo("5. File skipping: the log's partition values and min/max statistics rule files out")
    plan = session.sql("EXPLAIN ANALYZE SELECT * FROM events WHERE day = DATE '2026-11-02' "
                       "AND id BETWEEN 1100 AND 1105").to_arrow().column(0)[0].as_py()
    echo("lakehouse> EXPLAIN ANALYZE SELECT * FROM events WHERE day = DATE '2026-11-02' AND id BETWEEN 1100 AND 1105;")
    echo(plan + "\n")
    echo("The tables are plain Delta Lake: open them with deltalake, Spark, DuckDB or Polars too.")
    echo(f"Next: lakehouse shell {warehouse}")
    return table
