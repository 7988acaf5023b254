"""The streaming ML reader: one shard's units, read ahead, cut into batches of exact size.

Memory stays bounded: at most ``prefetch`` units are read ahead (by one background thread)
while the current one is consumed, plus less than one batch of leftover rows. Nothing is
materialized beyond that, whatever the table's size.

Row counts: shard ``s`` yields the rows of its units that pass the filter, in the unit order
of :mod:`lakehouse.read.plan`, rows inside each unit shuffled when ``shuffle`` is on.
With ``drop_last`` every shard yields the same number of rows, the smallest shard's rows
rounded down to a whole number of batches, so every rank of a distributed job runs the same
number of steps; without it shards are uneven and the last batch may be short.

Resume: ``skip_rows`` drops that many leading rows of the shard. Whole units are skipped by
their row counts (footers; with a filter, one counting pass over the filter columns) and
only the unit that straddles the position is read and sliced.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from lakehouse.read.plan import ReadOptionError, ReadUnit, ShardSpec, UnitPlan, decode_dictionaries


@dataclass(frozen=True)
class BatchOptions:
    """How one shard's rows become batches."""

    batch_size: int
    drop_last: bool = False
    prefetch: int = 2          # units read ahead of the one being consumed
    use_threads: bool = True   # let Arrow decode a unit's columns in parallel


def shard_length(plan: UnitPlan, spec: ShardSpec, options: BatchOptions) -> int:
    """Rows shard ``spec.shard`` yields in ``spec``'s epoch (exact; may read filter columns)."""
    rows = plan.shard_rows(spec)
    if options.drop_last:
        return (min(rows) // options.batch_size) * options.batch_size
    return rows[spec.shard]


def iter_shard(plan: UnitPlan, spec: ShardSpec, options: BatchOptions, *,
               skip_rows: int = 0) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``options.batch_size`` rows (the last may be shorter unless
    ``drop_last``) of shard ``spec.shard``, after dropping ``skip_rows`` leading rows."""
    if options.prefetch < 0:
        raise ReadOptionError(f"table '{plan.table}': prefetch must be >= 0, got {options.prefetch}")
    if skip_rows < 0:
        raise ReadOptionError(f"table '{plan.table}': cannot skip {skip_rows} rows; pass a count >= 0")
    units = plan.shard(spec)
    limit = shard_length(plan, spec, options) if options.drop_last else None
    first_offset = 0
    if skip_rows:
        counts = plan.counts()
        left = skip_rows
        start = 0
        while start < len(units) and counts[units[start].index] <= left:
            left -= int(counts[units[start].index])
            start += 1
        units, first_offset = units[start:], left
    remaining = None if limit is None else max(0, limit - skip_rows)
    if remaining == 0:
        return
    tables = _unit_tables(plan, spec, units, first_offset, options)
    try:
        yield from _cut(tables, options.batch_size, remaining, plan.output_schema, drop_last=options.drop_last)
    finally:
        tables.close()  # stop the read-ahead thread now, not when the generator is collected


def _unit_tables(plan: UnitPlan, spec: ShardSpec, units: list[ReadUnit], first_offset: int,
                 options: BatchOptions) -> Iterator[pa.Table]:
    """Each unit's rows (shuffled when asked), read ``options.prefetch`` units ahead."""
    def read(unit: ReadUnit) -> pa.Table:
        return plan.read(unit, use_threads=options.use_threads, dictionaries=True)

    if options.prefetch == 0:
        for i, unit in enumerate(units):
            yield _arranged(plan, spec, unit, read(unit), first_offset if i == 0 else 0)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakehouse-read-ahead")
    pending: deque[tuple[ReadUnit, Future[pa.Table]]] = deque()
    ahead = iter(units)

    def submit() -> None:
        unit = next(ahead, None)
        if unit is not None:
            pending.append((unit, pool.submit(read, unit)))

    try:
        for _ in range(options.prefetch):  # then one more per unit taken: ``prefetch`` stay ahead
            submit()
        first = True
        while pending:
            unit, future = pending.popleft()
            table = future.result()
            submit()
            yield _arranged(plan, spec, unit, table, first_offset if first else 0)
            first = False
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _arranged(plan: UnitPlan, spec: ShardSpec, unit: ReadUnit, table: pa.Table, offset: int) -> pa.Table:
    if offset:
        permutation = plan.row_permutation(unit, spec, table.num_rows)
        table = (table.take(permutation[offset:]) if permutation is not None else table.slice(offset))
    else:
        permutation = plan.row_permutation(unit, spec, table.num_rows)
        if permutation is not None:
            table = table.take(permutation)
    return decode_dictionaries(table)


def _cut(tables: Iterator[pa.Table], batch_size: int, remaining: int | None, schema: pa.Schema, *,
         drop_last: bool) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of tables into batches of ``batch_size`` rows, at most ``remaining``."""
    pending: list[pa.RecordBatch] = []
    held = 0

    def take(n: int) -> pa.RecordBatch:
        nonlocal held
        parts: list[pa.RecordBatch] = []
        need = n
        while need:
            head = pending[0]
            if head.num_rows <= need:
                parts.append(pending.pop(0))
                need -= head.num_rows
            else:
                parts.append(head.slice(0, need))
                pending[0] = head.slice(need)
                need = 0
        held -= n
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)

    for table in tables:
        for batch in table.to_batches():
            if not batch.num_rows:
                continue
            if batch.schema != schema:
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            pending.append(batch)
            held += batch.num_rows
            while held >= batch_size and (remaining is None or remaining > 0):
                size = batch_size if remaining is None else min(batch_size, remaining)
                yield take(size)
                if remaining is not None:
                    remaining -= size
            if remaining is not None and remaining <= 0:
                return
    if held and not drop_last:
        size = held if remaining is None else min(held, remaining)
        if size:
            yield take(size)
