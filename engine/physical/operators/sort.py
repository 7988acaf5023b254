"""Sorting: full sort, and top-N that keeps only the rows it can still return."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from engine.logical.expr import SortKey
from engine.physical.exprs import evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator, table_batches


def _sort_indices(table: pa.Table, keys: tuple[SortKey, ...]) -> pa.Array:
    columns, sort_keys = [], []
    for i, key in enumerate(keys):
        name = f"__s{i}"
        values = evaluate_array(key.expr, table)
        if pa.types.is_null(values.type):
            continue
        columns.append(values)
        sort_keys.append((name, "ascending" if key.ascending else "descending",
                          "at_start" if key.nulls_first else "at_end"))
    if not sort_keys:
        return pa.array(range(table.num_rows), pa.int64())
    keyed = pa.table(columns, names=[k[0] for k in sort_keys])
    return pc.sort_indices(keyed, sort_keys=sort_keys)


class SortOp(Operator):
    label = "Sort"

    def __init__(self, context: ExecutionContext, child: Operator, keys: tuple[SortKey, ...]) -> None:
        super().__init__(context, child.fields, [child])
        self.keys = keys

    def execute(self) -> Iterator[pa.RecordBatch]:
        table = self.collect_input(self.children[0], "sort")
        if table.num_rows:
            table = table.take(_sort_indices(table, self.keys))
        yield from table_batches(table, self.context.batch_size)


class TopNOp(Operator):
    """Keeps at most ``offset + count`` rows at any time: sorts each batch with the best so far."""

    label = "TopN"

    def __init__(self, context: ExecutionContext, child: Operator, keys: tuple[SortKey, ...], count: int,
                 offset: int) -> None:
        super().__init__(context, child.fields, [child])
        self.keys, self.count, self.offset = keys, count, offset

    def execute(self) -> Iterator[pa.RecordBatch]:
        keep = self.count + self.offset
        best: pa.Table | None = None
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in self.children[0].run():
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= max(keep * 4, 1 << 16):
                best = self._reduce(best, pending, keep)
                pending, pending_rows = [], 0
        if pending or best is None:
            best = self._reduce(best, pending, keep)
        result = best.slice(self.offset, self.count) if best is not None else None
        if result is not None and result.num_rows:
            yield from table_batches(result, self.context.batch_size)

    def _reduce(self, best: pa.Table | None, pending: list[pa.RecordBatch], keep: int) -> pa.Table:
        parts = ([best] if best is not None else []) + ([pa.Table.from_batches(pending, schema=self.schema)]
                                                        if pending else [])
        table = pa.concat_tables(parts) if parts else self.schema.empty_table()
        if not table.num_rows:
            return table
        return table.take(_sort_indices(table, self.keys)[:keep])
