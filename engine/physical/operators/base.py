"""The physical operator protocol: a tree of batch streams with per-operator metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from engine.errors import QueryCancelledError, ResourcesExhaustedError
from engine.logical.expr import Field
from engine.physical.exprs import column_name


@dataclass
class ExecutionContext:
    """Shared by the operators of one query run."""

    memory_limit: int
    batch_size: int = 1 << 17
    cancelled: bool = False

    def check_memory(self, what: str, nbytes: int) -> None:
        """Refuse a materialization larger than the budget, before it can exhaust the machine."""
        if nbytes > self.memory_limit:
            raise ResourcesExhaustedError(
                f"{what} needs {nbytes / 2**20:,.0f} MiB, over the memory limit of "
                f"{self.memory_limit / 2**20:,.0f} MiB; add filters, or raise config.memory_limit")

    def check_cancelled(self) -> None:
        if self.cancelled:
            raise QueryCancelledError("query cancelled")


@dataclass
class Metrics:
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)


class Operator:
    """A physical operator. ``run()`` yields its output batches and records metrics."""

    label = "Operator"

    def __init__(self, context: ExecutionContext, fields: tuple[Field, ...], children: list[Operator]) -> None:
        self.context = context
        self.fields = fields
        self.children = children
        self.metrics = Metrics()

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(column_name(f.id), f.type) for f in self.fields])

    def run(self) -> Iterator[pa.RecordBatch]:
        started = time.perf_counter()
        iterator = self.execute()
        while True:
            self.context.check_cancelled()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            finally:
                self.metrics.seconds += time.perf_counter() - started
            self.metrics.rows += batch.num_rows
            self.metrics.batches += 1
            yield batch
            started = time.perf_counter()

    def execute(self) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def collect_input(self, child: Operator, what: str) -> pa.Table:
        """Materialize a child's output, checking the memory budget as it grows."""
        batches = []
        total = 0
        for batch in child.run():
            total += batch.nbytes
            self.context.check_memory(what, total)
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=child.schema)

    def conform(self, table: pa.Table) -> pa.Table:
        """Name and type the output columns exactly as ``fields`` say."""
        schema = self.schema
        if table.schema.names != schema.names:
            table = table.rename_columns(schema.names)
        if table.schema != schema:
            table = table.cast(schema)
        return table


def table_batches(table: pa.Table, batch_size: int) -> Iterator[pa.RecordBatch]:
    for batch in table.to_batches(max_chunksize=batch_size):
        if batch.num_rows:
            yield batch
