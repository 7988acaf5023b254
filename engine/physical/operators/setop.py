"""UNION / INTERSECT / EXCEPT with SQL set semantics (NULLs compare equal)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.logical.expr import Field
from engine.physical.operators.base import ExecutionContext, Operator, table_batches


class SetOpOp(Operator):
    label = "SetOp"

    def __init__(self, context: ExecutionContext, left: Operator, right: Operator, kind: str, all_: bool,
                 fields: tuple[Field, ...]) -> None:
        super().__init__(context, fields, [left, right])
        self.kind, self.all = kind, all_

    def execute(self) -> Iterator[pa.RecordBatch]:
        names = self.schema.names
        if self.kind == "union" and self.all:
            for child in self.children:
                for batch in child.run():
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
            return
        left = self.collect_input(self.children[0], f"{self.kind} input").rename_columns(names)
        right = self.collect_input(self.children[1], f"{self.kind} input").rename_columns(names)
        if self.kind == "union":
            combined = pa.concat_tables([left, right])
            yield from table_batches(combined.group_by(names, use_threads=False).aggregate([]), self.context.batch_size)
            return
        # Count each distinct row on both sides; grouping treats NULLs as equal, as set operations must.
        tagged = pa.concat_tables([
            left.append_column("__l", pa.array(np.ones(left.num_rows, np.int64))).append_column(
                "__r", pa.array(np.zeros(left.num_rows, np.int64))),
            right.append_column("__l", pa.array(np.zeros(right.num_rows, np.int64))).append_column(
                "__r", pa.array(np.ones(right.num_rows, np.int64))),
        ])
        counts = tagged.group_by(names, use_threads=False).aggregate([("__l", "sum"), ("__r", "sum")])
        lc, rc = counts.column("__l_sum"), counts.column("__r_sum")
        if self.kind == "intersect":
            times = pc.min_element_wise(lc, rc) if self.all else pc.if_else(
                pc.and_(pc.greater(lc, 0), pc.greater(rc, 0)), 1, 0)
        else:
            times = pc.max_element_wise(pc.subtract(lc, rc), 0) if self.all else pc.if_else(
                pc.and_(pc.greater(lc, 0), pc.equal(rc, 0)), 1, 0)
        repeat = np.asarray(times.to_numpy() if hasattr(times, "to_numpy") else times, dtype=np.int64)
        indices = np.repeat(np.arange(counts.num_rows), repeat)
        yield from table_batches(counts.select(names).take(pa.array(indices)), self.context.batch_size)
