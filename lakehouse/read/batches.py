"""The streaming ML reader: one shard's units, read ahead, cut into batches of exact size.

Memory stays bounded: at most ``prefetch`` units are read ahead (by one background thread)
while the current window of ``shuffle_buffer`` units (one by default) is consumed, plus less
than one batch of leftover rows. Nothing is materialized beyond that, whatever the table's size.

Row counts: shard ``s`` yields the rows of its units that pass the filter, in the unit order
of :mod:`lakehouse.read.plan`. With ``shuffle`` the shard's units are taken in windows of
``shuffle_buffer`` consecutive units and the rows of each window are shuffled together
(:meth:`~lakehouse.read.plan.UnitPlan.row_permutation`); a batch therefore mixes rows of at
most a window's units (and of the next window where it straddles two).
With ``drop_last`` every shard yields the same number of rows, the smallest shard's rows
rounded down to a whole number of batches, so every rank of a distributed job runs the same
number of steps; without it shards are uneven and the last batch may be short. When that
rounding would leave no batch at all while rows match, it is a ``ReadOptionError``; when it
drops more than half of the rows, shard 0 warns (``LakehouseWarning``).

Resume: ``skip_rows`` drops that many leading rows of the shard. Whole windows are skipped by
their row counts (footers; with a filter, one counting pass over the filter columns) and
only the window that straddles the position is read, shuffled and sliced, so a resumed
pass continues with exactly the rows an uninterrupted one would have yielded.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from lakehouse.errors import LakehouseWarning
from lakehouse.read.plan import (
    ReadOptionError, ReadUnit, ShardSpec, UnitPlan, check_shards, decode_dictionaries,
)

__all__ = ["BatchOptions", "check_shards", "iter_shard", "shard_length"]


@dataclass(frozen=True)
class BatchOptions:
    """How one shard's rows become batches."""

    batch_size: int
    drop_last: bool = False
    prefetch: int = 2          # units read ahead of the one being consumed
    use_threads: bool = True   # let Arrow decode a unit's columns in parallel
    shuffle_buffer: int = 1    # consecutive units of a shard whose rows are shuffled together

    def check(self, table: str, spec: ShardSpec) -> None:
        if self.prefetch < 0:
            raise ReadOptionError(f"table '{table}': prefetch must be at least 0, got {self.prefetch}")
        if self.shuffle_buffer < 1:
            raise ReadOptionError(f"table '{table}': shuffle_buffer must be at least 1, got {self.shuffle_buffer}")
        if self.shuffle_buffer > 1 and not spec.shuffle:
            raise ReadOptionError(f"table '{table}': shuffle_buffer mixes rows only when shuffle=True; "
                                  "pass shuffle=True or leave shuffle_buffer at 1")


def shard_length(plan: UnitPlan, spec: ShardSpec, options: BatchOptions) -> int:
    """Rows shard ``spec.shard`` yields in ``spec``'s epoch (exact; may read filter columns)."""
    rows = plan.shard_rows(spec)
    if options.drop_last:
        return (min(rows) // options.batch_size) * options.batch_size
    return rows[spec.shard]


def _drop_last_limit(plan: UnitPlan, spec: ShardSpec, options: BatchOptions) -> int:
    """Rows every shard yields with ``drop_last``; refuses a limit of zero while rows match,
    and warns (from shard 0) when more than half of the rows would be dropped."""
    rows = plan.shard_rows(spec)
    total = sum(rows)
    limit = (min(rows) // options.batch_size) * options.batch_size
    if total and not limit:
        raise ReadOptionError(
            f"table '{plan.table}': with drop_last=True every shard would yield no batch: the smallest of "
            f"{spec.num_shards} shards has {min(rows)} rows, fewer than batch_size {options.batch_size} "
            f"({total} rows match in all); use a smaller batch_size, fewer shards (ranks x workers), or "
            "drop_last=False")
    dropped = total - limit * spec.num_shards
    if spec.shard == 0 and dropped * 2 > total:
        warnings.warn(
            f"table '{plan.table}': drop_last=True drops {dropped} of {total} rows each epoch: every one of "
            f"{spec.num_shards} shards is cut to the smallest shard's {min(rows)} rows, rounded down to whole "
            f"batches of {options.batch_size} ({limit} rows); shards are uneven because they own whole row "
            "groups; use fewer shards, more files or smaller row groups, or drop_last=False",
            LakehouseWarning, stacklevel=3)
    return limit


def iter_shard(plan: UnitPlan, spec: ShardSpec, options: BatchOptions, *,
               skip_rows: int = 0, empty_shards_ok: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of exactly ``options.batch_size`` rows (the last may be shorter unless
    ``drop_last``) of shard ``spec.shard``, after dropping ``skip_rows`` leading rows.

    ``empty_shards_ok`` allows more shards than units (DataLoader workers of a single
    process: an idle worker costs nothing, unlike a distributed rank with no rows)."""
    options.check(plan.table, spec)
    if skip_rows < 0:
        raise ReadOptionError(f"table '{plan.table}': cannot skip {skip_rows} rows; pass a count >= 0")
    if not empty_shards_ok:
        check_shards(plan, spec.num_shards, made_of=f"{spec.num_shards} readers")
    windows = plan.windows(spec, options.shuffle_buffer)
    limit = _drop_last_limit(plan, spec, options) if options.drop_last else None
    first_offset = 0
    if skip_rows:
        counts = plan.counts()
        left = skip_rows
        start = 0
        while start < len(windows):
            rows = int(sum(counts[u.index] for u in windows[start]))
            if rows > left:
                break
            left -= rows
            start += 1
        windows, first_offset = windows[start:], left
    remaining = None if limit is None else max(0, limit - skip_rows)
    if remaining == 0:
        return
    tables = _window_tables(plan, spec, windows, first_offset, options)
    try:
        yield from _cut(tables, options.batch_size, remaining, plan.output_schema, drop_last=options.drop_last)
    finally:
        tables.close()  # stop the read-ahead thread now, not when the generator is collected


def _window_tables(plan: UnitPlan, spec: ShardSpec, windows: list[list[ReadUnit]], first_offset: int,
                   options: BatchOptions) -> Iterator[pa.Table]:
    """Each window's rows (shuffled together when asked), the first one from ``first_offset``."""
    tables = _unit_tables(plan, [unit for window in windows for unit in window], options)
    try:
        for i, window in enumerate(windows):
            parts = [next(tables) for _ in window]
            yield _arranged(plan, spec, window, parts, first_offset if i == 0 else 0)
    finally:
        tables.close()


def _unit_tables(plan: UnitPlan, units: list[ReadUnit], options: BatchOptions) -> Iterator[pa.Table]:
    """Each unit's rows as stored (filtered, not shuffled), read ``options.prefetch`` units ahead."""
    def read(unit: ReadUnit) -> pa.Table:
        return plan.read(unit, use_threads=options.use_threads, dictionaries=True)

    if options.prefetch == 0:
        for unit in units:
            yield read(unit)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakehouse-read-ahead")
    pending: deque[Future[pa.Table]] = deque()
    ahead = iter(units)

    def submit() -> None:
        unit = next(ahead, None)
        if unit is not None:
            pending.append(pool.submit(read, unit))

    try:
        for _ in range(options.prefetch):  # then one more per unit taken: ``prefetch`` stay ahead
            submit()
        while pending:
            table = pending.popleft().result()
            submit()
            yield table
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _arranged(plan: UnitPlan, spec: ShardSpec, window: list[ReadUnit], parts: list[pa.Table],
              offset: int) -> pa.Table:
    """The window's rows in the epoch's order, from ``offset``, dictionaries decoded."""
    if not parts[0].num_columns:  # columns=[]: only the row count matters (take/concat would lose it)
        rows = sum(part.num_rows for part in parts) - offset
        return pa.table({"rows": pa.nulls(rows)}).select([])
    if len(parts) == 1:
        table = parts[0]
    else:  # each file has its own dictionaries: decode before putting units together
        table = pa.concat_tables([decode_dictionaries(part) for part in parts])
    permutation = plan.row_permutation(window, spec, table.num_rows)
    if permutation is not None:
        table = table.take(permutation[offset:] if offset else permutation)
    elif offset:
        table = table.slice(offset)
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
