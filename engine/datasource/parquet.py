"""Plain Parquet files or folders named in FROM (``FROM 'data/file.parquet'``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from engine.datasource.base import ScanStream, SourceStatistics, TableSource
from engine.logical.expr import Expr
from engine.types import normalize


class ParquetSource(TableSource):
    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.dataset = ds.dataset(path, format="parquet")
        self._schema = pa.schema([pa.field(f.name, normalize(f.type), f.nullable) for f in self.dataset.schema])

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def statistics(self) -> SourceStatistics:
        rows = sum(f.metadata.num_rows for f in self.dataset.get_fragments() if f.metadata is not None)
        return SourceStatistics(rows, None)

    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        scanner = self.dataset.scanner(columns=columns, batch_size=batch_size, use_threads=True)
        schema = self._schema

        def batches():  # noqa: ANN202
            remaining = limit
            for batch in scanner.to_batches():
                batch = batch.cast(pa.schema([schema.field(c) for c in columns]))
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                if batch.num_rows:
                    yield batch
                if remaining is not None and remaining <= 0:
                    return

        return ScanStream(batches(), {"files_total": len(self.dataset.files)})
