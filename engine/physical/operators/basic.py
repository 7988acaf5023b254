"""Streaming operators: scan, filter, project, limit, values."""

from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa

from engine.logical.expr import Expr, Field
from engine.physical.exprs import column_name, evaluate, evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator
from engine.physical.parallel import ordered_map


class ScanOp(Operator):
    label = "Scan"

    def __init__(self, context: ExecutionContext, fields: tuple[Field, ...], source: Any, columns: tuple[str, ...],
                 filters: tuple[Expr, ...], column_of: dict[int, str], limit: int | None) -> None:
        super().__init__(context, fields, [])
        self.source, self.columns, self.filters, self.column_of, self.limit = source, columns, filters, column_of, limit
        # (KeyFilter, column) pairs fed by joins above at run time (see runtime_filters.py).
        self.runtime_filters: list[tuple[Any, str]] = []

    def execute(self) -> Iterator[pa.RecordBatch]:
        stream = self.source.scan(list(self.columns), list(self.filters), self.column_of, limit=self.limit,
                                  batch_size=self.context.batch_size)
        names = [column_name(f.id) for f in self.fields]
        schema = self.schema
        # Sources know files/bytes when the scan is planned; record them before reading so a
        # LIMIT that stops early still reports them.
        self.metrics.extra.update(getattr(stream, "metrics", {}) or {})
        for batch in stream:
            if batch.num_columns != len(names):
                batch = batch.select(list(self.columns))
            batch = pa.RecordBatch.from_arrays(batch.columns, names=names)
            if batch.schema != schema:
                batch = batch.cast(schema)
            for key_filter, column in self.runtime_filters:
                batch = key_filter.apply(batch, column)
            if batch.num_rows or not self.runtime_filters:
                yield batch
        self.metrics.extra.update(getattr(stream, "metrics", {}) or {})
        if self.runtime_filters:
            self.metrics.extra["runtime_filtered"] = sum(f.rows_in - f.rows_out for f, _ in self.runtime_filters)


class FilterOp(Operator):
    label = "Filter"

    def __init__(self, context: ExecutionContext, child: Operator, predicate: Expr) -> None:
        super().__init__(context, child.fields, [child])
        self.predicate = predicate

    def _apply(self, batch: pa.RecordBatch) -> pa.RecordBatch | None:
        mask = evaluate(self.predicate, batch)
        if isinstance(mask, pa.Scalar):
            return batch if mask.as_py() else None
        filtered = batch.filter(mask, null_selection_behavior="drop")
        return filtered if filtered.num_rows else None

    def execute(self) -> Iterator[pa.RecordBatch]:
        for filtered in ordered_map(self._apply, self.children[0].run()):
            if filtered is not None:
                yield filtered


class ProjectOp(Operator):
    label = "Project"

    def __init__(self, context: ExecutionContext, child: Operator, exprs: tuple[Expr, ...],
                 fields: tuple[Field, ...]) -> None:
        super().__init__(context, fields, [child])
        self.exprs = exprs

    def _apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.exprs:
            return batch.select([])  # no columns, but the row count still matters (count(*), EXISTS)
        arrays = []
        for expr, f in zip(self.exprs, self.fields):
            value = evaluate_array(expr, batch)
            if isinstance(value, pa.ChunkedArray):
                value = value.combine_chunks()
            if value.type != f.type:
                value = value.cast(f.type)
            arrays.append(value)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def execute(self) -> Iterator[pa.RecordBatch]:
        yield from ordered_map(self._apply, self.children[0].run())


class LimitOp(Operator):
    label = "Limit"

    def __init__(self, context: ExecutionContext, child: Operator, count: int | None, offset: int) -> None:
        super().__init__(context, child.fields, [child])
        self.count, self.offset = count, offset

    def execute(self) -> Iterator[pa.RecordBatch]:
        skip, remaining = self.offset, self.count
        if remaining == 0:
            return
        for batch in self.children[0].run():
            if skip:
                if batch.num_rows <= skip:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
            if remaining is not None:
                if batch.num_rows >= remaining:
                    yield batch.slice(0, remaining)
                    return
                remaining -= batch.num_rows
            yield batch


class ValuesOp(Operator):
    label = "Values"

    def __init__(self, context: ExecutionContext, fields: tuple[Field, ...], rows: tuple[tuple[Expr, ...], ...]) -> None:
        super().__init__(context, fields, [])
        self.rows = rows

    def execute(self) -> Iterator[pa.RecordBatch]:
        empty = pa.RecordBatch.from_pydict({"_": [None]})
        if not self.fields:
            yield empty.select([])  # one row, no columns: SELECT without FROM
            return
        columns = []
        for i, f in enumerate(self.fields):
            values = [evaluate(row[i], empty) for row in self.rows]
            columns.append(pa.array([v.as_py() for v in values], f.type))
        yield pa.RecordBatch.from_arrays(columns, schema=self.schema)

