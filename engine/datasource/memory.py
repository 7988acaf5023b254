"""Arrow tables registered in a session (``session.register(name, table)``)."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa

from engine.datasource.base import ScanStream, SourceStatistics, TableSource
from engine.logical.expr import Expr
from engine.types import normalize


class MemorySource(TableSource):
    def __init__(self, name: str, table: pa.Table) -> None:
        self.name = name
        schema = pa.schema([pa.field(f.name, normalize(f.type), f.nullable) for f in table.schema])
        self.table = table.cast(schema) if schema != table.schema else table

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(self.table.num_rows, self.table.nbytes)

    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        table = self.table.select(columns)
        if limit is not None:
            table = table.slice(0, limit)
        return ScanStream(self._batches(table, batch_size), {"rows_total": self.table.num_rows})

    @staticmethod
    def _batches(table: pa.Table, batch_size: int) -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=batch_size)
