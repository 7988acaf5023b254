"""Table functions in FROM: ``range``/``generate_series`` and ``table_changes``.

``range(start, stop[, step])`` excludes ``stop`` and ``generate_series`` includes it, as in
DuckDB; both stream int64 batches, so ``range(1e9)`` never materializes. ``table_changes
('t', start[, end])`` reads a lakehouse table's change data feed.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from engine.datasource.base import ScanStream, SourceStatistics, TableSource
from engine.errors import PlanError
from engine.logical.expr import Expr
from engine.types import normalize


class RangeSource(TableSource):
    """The integers ``start, start+step, ...`` up to ``stop`` (inclusive when ``inclusive``)."""

    def __init__(self, name: str, column: str, start: int, stop: int, step: int, *, inclusive: bool) -> None:
        if step == 0:
            raise PlanError(f"{name}(): the step cannot be 0")
        self.name, self.column = name, column
        self.start, self.step = start, step
        if inclusive:
            stop = stop + (1 if step > 0 else -1)
        span = (stop - start + step - (1 if step > 0 else -1)) // step
        self.count = max(0, span)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(self.column, pa.int64(), nullable=False)])

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(self.count, self.count * 8)

    def column_bounds(self, column: str) -> tuple[float, float] | None:
        if not self.count:
            return None
        last = self.start + (self.count - 1) * self.step
        return float(min(self.start, last)), float(max(self.start, last))

    def distinct_estimate(self, column: str) -> float | None:
        return float(self.count)

    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        total = self.count if limit is None else min(self.count, limit)
        return ScanStream(self._batches(columns, total, batch_size), {"rows_total": self.count})

    def _batches(self, columns: list[str], total: int, batch_size: int) -> Iterator[pa.RecordBatch]:
        for offset in range(0, total, batch_size):
            n = min(batch_size, total - offset)
            values = self.start + (np.arange(offset, offset + n, dtype=np.int64) * self.step)
            batch = pa.RecordBatch.from_arrays([pa.array(values, pa.int64())], schema=self.schema)
            # A scan asking for no columns (count(*)) still needs the row count.
            yield batch.select(columns) if columns else batch.select([])


class ChangesSource(TableSource):
    """A lakehouse table's change data feed (``table_changes('t', start[, end])``)."""

    def __init__(self, name: str, table: Any, start: int, end: int | None) -> None:
        self.name = name
        self.table, self.start, self.end = table, start, end
        reader = table.changes(start, end)  # validates the range now, so errors surface at plan time
        self._schema = pa.schema([pa.field(f.name, normalize(f.type), f.nullable) for f in reader.schema])
        self._reader: pa.RecordBatchReader | None = reader

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(None, None)

    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        reader, self._reader = self._reader, None
        if reader is None:
            reader = self.table.changes(self.start, self.end)
        return ScanStream(self._batches(reader, columns, limit), {})

    def _batches(self, reader: pa.RecordBatchReader, columns: list[str], limit: int | None
                 ) -> Iterator[pa.RecordBatch]:
        left = limit
        for batch in reader:
            if left is not None:
                if left <= 0:
                    return
                batch = batch.slice(0, left)
                left -= batch.num_rows
            arrays = [batch.column(c).cast(self._schema.field(c).type) for c in columns]
            yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema([self._schema.field(c) for c in columns]))
