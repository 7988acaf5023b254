"""Runtime join filters: a join's finished side tells a scan on its other side which keys matter.

A hash join materializes one side before it reads the other. Once that side is known, a
row on the other side whose join key is not among its keys can never produce output, so
it can be dropped as early as possible, right where it is read, before it flows through
aggregations and further joins (TPC-H Q17 aggregates 6M lineitem rows per part key only
to keep the 204 parts the outer query wants).

Placement is decided on the physical tree once it is built; the keys arrive while the
query runs. A filter only ever removes rows that the join would drop, so a filter that is
not ready, too big to be worth it or not selective simply lets every row through.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.logical.expr import ColumnRef
from engine.physical.exprs import column_name
from engine.physical.operators.aggregate import AggregateOp
from engine.physical.operators.base import Operator
from engine.physical.operators.basic import FilterOp, ProjectOp, ScanOp
from engine.physical.operators.join import JoinOp, split_condition
from engine.physical.operators.sort import SortOp

# Integer keys are looked up in a bitmap over their range when the range is at most this;
# other key sets are hashed by Arrow on every batch, so only small ones are worth it.
_MAX_BITMAP_RANGE = 1 << 26
_MAX_HASHED_KEYS = 1 << 16
# After this many rows, a filter that keeps most rows turns itself off.
_TRIAL_ROWS = 1 << 18
_USELESS_PASS_RATE = 0.8

# Joins that drop the rows of one side that find no match: (kind, side) -> True.
# Side 0 is the left input, 1 the right one; null-aware anti joins are excluded by the caller.
_DROPS_UNMATCHED = {("inner", 0), ("inner", 1), ("semi", 0), ("semi", 1), ("right", 0), ("left", 1)}


def _exact_key_type(dtype: pa.DataType) -> bool:
    """Types whose equality is plain value equality (no -0.0/NaN subtleties)."""
    return (pa.types.is_integer(dtype) or pa.types.is_date(dtype) or pa.types.is_string(dtype)
            or pa.types.is_large_string(dtype) or pa.types.is_decimal(dtype) or pa.types.is_boolean(dtype))


class KeyFilter:
    """The distinct keys of a join's materialized side, once it has been read."""

    def __init__(self, dtype: pa.DataType) -> None:
        self.dtype = dtype
        self.values: pa.Array | None = None  # hashed lookup
        self.bitmap: np.ndarray | None = None  # integer lookup: bitmap[key - low]
        self.low = 0
        self.rows_in = 0
        self.rows_out = 0
        self.enabled = True

    def publish(self, column: pa.ChunkedArray | pa.Array) -> None:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        column = column.drop_null()
        if _integer_like(self.dtype):
            keys = _as_int64(column)
            if not len(keys):
                self.bitmap, self.low = np.zeros(1, dtype=bool), 0
                return
            low, high = int(keys.min()), int(keys.max())
            if high - low < _MAX_BITMAP_RANGE:
                bitmap = np.zeros(high - low + 1, dtype=bool)
                bitmap[keys - low] = True
                self.bitmap, self.low = bitmap, low
                return
        distinct = pc.unique(column)
        if len(distinct) <= _MAX_HASHED_KEYS:
            self.values = distinct

    def apply(self, batch: pa.RecordBatch, name: str) -> pa.RecordBatch:
        if not self.enabled or (self.values is None and self.bitmap is None):
            return batch
        column = batch.column(name)
        if self.bitmap is not None:
            mask = self._bitmap_mask(column)
        else:
            # NULL keys never match, and is_in answers false for them (the value set has no NULL).
            mask = pc.is_in(column, value_set=self.values)
        kept = batch.filter(mask)
        self.rows_in += batch.num_rows
        self.rows_out += kept.num_rows
        if self.rows_in >= _TRIAL_ROWS and self.rows_out > _USELESS_PASS_RATE * self.rows_in:
            self.enabled = False
        return kept

    def _bitmap_mask(self, column: pa.Array) -> pa.Array:
        assert self.bitmap is not None
        keys = _as_int64(column.fill_null(self.low - 1) if column.null_count else column) - self.low
        inside = (keys >= 0) & (keys < len(self.bitmap))
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = self.bitmap[keys[inside]]
        return pa.array(found)


def _integer_like(dtype: pa.DataType) -> bool:
    return (pa.types.is_integer(dtype) and not pa.types.is_uint64(dtype)) or pa.types.is_date32(dtype)


def _as_int64(column: pa.Array) -> np.ndarray:
    if pa.types.is_date32(column.type):
        column = column.cast(pa.int32())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def attach_runtime_filters(root: Operator) -> None:
    """Give each suitable join's materialized side a filter on a scan of its other side."""
    for op in _walk(root):
        if not isinstance(op, JoinOp) or (op.kind == "anti" and op.null_aware):
            continue
        left_ids = {f.id for f in op.children[0].fields}
        right_ids = {f.id for f in op.children[1].fields}
        keys, _ = split_condition(op.condition, left_ids, right_ids)
        for left_key, right_key in keys:
            if not (isinstance(left_key, ColumnRef) and isinstance(right_key, ColumnRef)
                    and left_key.type == right_key.type and _exact_key_type(left_key.type)):
                continue
            # The right side is read first unless the join is a left join, whose small
            # preserved side is then read first to filter what its right side aggregates.
            if (op.kind, 0) in _DROPS_UNMATCHED:
                target = _find_scan(op.children[0], left_key.id, crossed=False)
                if target is not None:
                    key_filter = KeyFilter(left_key.type)
                    op.publish_right.append((key_filter, right_key))
                    target[0].runtime_filters.append((key_filter, target[1]))
            elif op.kind == "left":
                target = _find_scan(op.children[1], right_key.id, crossed=False)
                if target is not None:
                    key_filter = KeyFilter(right_key.type)
                    op.publish_left.append((key_filter, left_key))
                    target[0].runtime_filters.append((key_filter, target[1]))


def _walk(op: Operator):  # noqa: ANN202
    yield op
    for child in op.children:
        yield from _walk(child)


def _find_scan(op: Operator, field_id: int, crossed: bool) -> tuple[ScanOp, str] | None:
    """The scan (and its column) that ``field_id`` passes through unchanged, below at least
    one join or aggregation (a scan right under the join gains nothing: the join filters it)."""
    if isinstance(op, ScanOp):
        if crossed and any(f.id == field_id for f in op.fields):
            return op, column_name(field_id)
        return None
    if isinstance(op, (FilterOp, SortOp)):
        return _find_scan(op.children[0], field_id, crossed)
    if isinstance(op, ProjectOp):
        for expr, f in zip(op.exprs, op.fields):
            if f.id == field_id and isinstance(expr, ColumnRef):
                return _find_scan(op.children[0], expr.id, crossed)
        return None
    if isinstance(op, AggregateOp):
        # Removing every row of a group removes exactly that group.
        for group, f in zip(op.groups, op.fields):
            if f.id == field_id and isinstance(group, ColumnRef):
                return _find_scan(op.children[0], group.id, True)
        return None
    if isinstance(op, JoinOp):
        # The key value travels unchanged through either side of any join; rows it loses here
        # carry a key the outer join drops anyway, and rows that change (NULL-padded instead of
        # matched) carry a NULL key, which the outer join drops too.
        for child in op.children:
            if any(f.id == field_id for f in child.fields):
                return _find_scan(child, field_id, True)
        return None
    return None
