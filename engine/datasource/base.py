"""What the engine needs from a table: schema, statistics, and a scan with pushdown.

Filter pushdown is negotiated per predicate: a source answers ``EXACT`` (it returns only
matching rows, the engine drops its own filter), ``INEXACT`` (it uses the predicate to skip
data but may return extra rows, the engine keeps its filter) or ``UNSUPPORTED``.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa

from engine.logical.expr import Expr


class FilterSupport(enum.Enum):
    EXACT = "exact"
    INEXACT = "inexact"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class SourceStatistics:
    num_rows: int | None = None
    total_bytes: int | None = None


@dataclass
class ScanStream:
    """The batches of one scan, and facts about it filled in as it runs (files, bytes...)."""

    batches: Iterator[pa.RecordBatch]
    metrics: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.batches


class TableSource(abc.ABC):
    name: str

    @property
    @abc.abstractmethod
    def schema(self) -> pa.Schema:
        """Columns in the engine's types."""

    def statistics(self) -> SourceStatistics:
        return SourceStatistics()

    def distinct_estimate(self, column: str) -> float | None:
        """An upper bound on the column's distinct values, when the source knows one."""
        return None

    def column_bounds(self, column: str) -> tuple[float, float] | None:
        """(min, max) of a numeric or date column as numbers, when the source knows them."""
        return None

    def filter_support(self, predicate: Expr, column_of: dict[int, str]) -> FilterSupport:
        return FilterSupport.UNSUPPORTED

    @abc.abstractmethod
    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        """Batches holding ``columns`` (in that order), honouring the accepted ``filters``."""
