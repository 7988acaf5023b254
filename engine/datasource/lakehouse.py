"""Lakehouse (Delta) tables as an engine source: file skipping from the log's statistics."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from engine.datasource.base import FilterSupport, ScanStream, SourceStatistics, TableSource
from engine.logical.expr import Call, ColumnRef, Expr, InList, Literal
from engine.types import normalize
from lakehouse import Snapshot
from lakehouse import expressions as lx

_COMPARISONS = {"eq": "=", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# Column kinds whose Arrow filter semantics equal the engine's exactly (no float/decimal rounding).
_EXACT_KINDS = (pa.types.is_integer, pa.types.is_string, pa.types.is_date, pa.types.is_boolean,
                pa.types.is_timestamp)


def _literal_value(expr: Expr) -> tuple[bool, Any]:
    if isinstance(expr, Literal) and expr.value is not None:
        value = expr.value
        if isinstance(value, (int, float, str, bool, decimal.Decimal, dt.date, dt.datetime, bytes)):
            return True, value
    return False, None


def to_predicate(expr: Expr, column_of: dict[int, str]) -> lx.Predicate | None:
    """The lakehouse predicate for an engine expression, or ``None`` if it has none."""
    if isinstance(expr, Call):
        if expr.name in ("and", "or"):
            parts = [to_predicate(a, column_of) for a in expr.args]
            if any(p is None for p in parts):
                return None
            return lx.And(tuple(parts)) if expr.name == "and" else lx.Or(tuple(parts))  # type: ignore[arg-type]
        if expr.name == "not":
            inner = to_predicate(expr.args[0], column_of)
            return lx.Not(inner) if inner is not None else None
        if expr.name in _COMPARISONS:
            left, right = expr.args
            op = _COMPARISONS[expr.name]
            if isinstance(right, ColumnRef) and not isinstance(left, ColumnRef):
                left, right, op = right, left, _FLIP[op]
            ok, value = _literal_value(right)
            if isinstance(left, ColumnRef) and left.id in column_of and ok:
                return lx.Comparison(column_of[left.id], op, value)
            return None
        if expr.name in ("is_null", "is_not_null") and isinstance(expr.args[0], ColumnRef):
            ref = expr.args[0]
            if ref.id not in column_of:
                return None
            test = lx.IsNull(column_of[ref.id])
            return test if expr.name == "is_null" else lx.Not(test)
        if expr.name in ("like", "ilike") and isinstance(expr.args[0], ColumnRef):
            ok, pattern = _literal_value(expr.args[1])
            if ok and expr.args[0].id in column_of and isinstance(pattern, str):
                return lx.Like(column_of[expr.args[0].id], pattern, expr.name == "ilike")
        return None
    if isinstance(expr, InList) and isinstance(expr.arg, ColumnRef) and expr.arg.id in column_of:
        values = [_literal_value(v) for v in expr.values]
        if all(ok for ok, _ in values) and len(values) == len(expr.values):
            predicate: lx.Predicate = lx.In(column_of[expr.arg.id], tuple(v for _, v in values))
            return lx.Not(predicate) if expr.negated else predicate
    return None


def _is_exact(expr: Expr, schema: pa.Schema, column_of: dict[int, str]) -> bool:
    for node in [expr] if not isinstance(expr, Call) or expr.name not in ("and", "or", "not") else expr.args:
        if isinstance(node, Call) and node.name in ("and", "or", "not"):
            if not _is_exact(node, schema, column_of):
                return False
            continue
        refs = [a for a in getattr(node, "args", ()) if isinstance(a, ColumnRef)] + (
            [node.arg] if isinstance(node, InList) and isinstance(node.arg, ColumnRef) else [])
        for ref in refs:
            dtype = schema.field(column_of[ref.id]).type
            if not any(check(dtype) for check in _EXACT_KINDS):
                return False
            for arg in getattr(node, "args", ()):
                if isinstance(arg, Literal) and arg.type != dtype:
                    return False
    return True


class LakehouseSource(TableSource):
    """One snapshot (version) of a lakehouse table."""

    def __init__(self, name: str, snapshot: Snapshot) -> None:
        self.name = name
        self.snapshot = snapshot
        self._schema = pa.schema([pa.field(f.name, normalize(f.type), f.nullable) for f in snapshot.schema])
        self._distinct: dict[str, float | None] = {}
        self._bounds: dict[str, tuple[float, float] | None] = {}

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def statistics(self) -> SourceStatistics:
        return SourceStatistics(self.snapshot.num_records, self.snapshot.size_bytes)

    def column_bounds(self, column: str) -> tuple[float, float] | None:
        """Bounds from the log's per-file min/max (dates as day numbers)."""
        if column in self._bounds:
            return self._bounds[column]
        bounds = None
        dtype = self._schema.field(column).type
        numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype) \
            or pa.types.is_date(dtype)
        if numeric and column not in self.snapshot.partition_columns:
            from lakehouse.skipping import FileStats

            stats = FileStats(self.snapshot.files, self.snapshot.schema, self.snapshot.partition_columns).stats(column)
            low, high = stats.get("min"), stats.get("max")
            if low is not None and high is not None and len(low) and not low.null_count and not high.null_count:
                as_number = (lambda a: a.cast(pa.int32()).cast(pa.float64())) if pa.types.is_date(dtype) else (
                    lambda a: a.cast(pa.float64()))
                bounds = (pc.min(as_number(low)).as_py(), pc.max(as_number(high)).as_py())
        self._bounds[column] = bounds
        return bounds

    def distinct_estimate(self, column: str) -> float | None:
        """For integer and date columns, max - min + 1 over the files' stats bounds the distinct count."""
        if column in self._distinct:
            return self._distinct[column]
        estimate = None
        dtype = self._schema.field(column).type
        rows = self.snapshot.num_records
        if (pa.types.is_integer(dtype) or pa.types.is_date(dtype)) and column not in self.snapshot.partition_columns:
            from lakehouse.skipping import FileStats

            stats = FileStats(self.snapshot.files, self.snapshot.schema, self.snapshot.partition_columns).stats(column)
            low, high = stats.get("min"), stats.get("max")
            if low is not None and high is not None and len(low) and low.null_count == 0 and high.null_count == 0:
                lo, hi = pc.min(low).cast(pa.int64()).as_py(), pc.max(high).cast(pa.int64()).as_py()
                estimate = float(hi - lo + 1)
        if estimate is not None and rows is not None:
            estimate = min(estimate, float(rows))
        self._distinct[column] = estimate
        return estimate

    def filter_support(self, predicate: Expr, column_of: dict[int, str]) -> FilterSupport:
        if to_predicate(predicate, column_of) is None:
            return FilterSupport.UNSUPPORTED
        return FilterSupport.EXACT if _is_exact(predicate, self._schema, column_of) else FilterSupport.INEXACT

    def scan(self, columns: list[str], filters: list[Expr], column_of: dict[int, str], *,
             limit: int | None = None, batch_size: int = 1 << 17) -> ScanStream:
        predicates = [p for p in (to_predicate(f, column_of) for f in filters) if p is not None]
        predicate = None if not predicates else predicates[0] if len(predicates) == 1 else lx.And(tuple(predicates))
        scan = self.snapshot.scan(columns=columns, filter=predicate)
        metrics = scan.metrics
        stream = ScanStream(iter(()), {
            "files_total": metrics.files_total, "files_scanned": metrics.files_selected,
            "files_skipped": metrics.files_skipped, "bytes_total": metrics.bytes_total,
            "bytes_scanned": metrics.bytes_selected, "bytes_skipped": metrics.bytes_skipped,
            "version": self.snapshot.version,
        })
        stream.batches = self._batches(scan, batch_size, limit)
        return stream

    @staticmethod
    def _batches(scan: Any, batch_size: int, limit: int | None) -> Iterator[pa.RecordBatch]:
        remaining = limit
        for batch in scan.to_batches(batch_size):
            if remaining is not None:
                if remaining <= 0:
                    return
                if batch.num_rows > remaining:
                    batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            if batch.num_rows:
                yield batch
