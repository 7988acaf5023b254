"""Window functions: sort once per window specification, compute per partition with NumPy."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ExecutionError, UnsupportedSQLError
from engine.kernels.window import frame_extreme
from engine.logical.expr import Field, Frame, SortKey, WindowCall
from engine.physical.exprs import evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator, table_batches


def _changes(columns: list[pa.Array]) -> np.ndarray:
    """True at row i when any column differs from row i-1 (NULL equals NULL); row 0 is True."""
    n = len(columns[0]) if columns else 0
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
    for column in columns:
        if n < 2:
            break
        a, b = column.slice(1), column.slice(0, n - 1)
        differ = pc.fill_null(pc.not_equal(a, b), False)
        null_mismatch = pc.xor(pc.is_null(a), pc.is_null(b))
        change[1:] |= np.asarray(pc.or_(differ, null_mismatch).to_numpy(zero_copy_only=False), dtype=bool)
    return change


def _group_bounds(change: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the start and end (exclusive) of its group, given group-start flags."""
    n = len(change)
    starts_idx = np.flatnonzero(change)
    ends_idx = np.append(starts_idx[1:], n)
    group = np.cumsum(change) - 1
    return starts_idx[group], ends_idx[group]


class WindowOp(Operator):
    label = "Window"

    def __init__(self, context: ExecutionContext, child: Operator, calls: tuple[WindowCall, ...],
                 fields: tuple[Field, ...]) -> None:
        super().__init__(context, fields, [child])
        self.calls = calls

    def execute(self) -> Iterator[pa.RecordBatch]:
        table = self.collect_input(self.children[0], "window input")
        for call in self.calls:
            table = table.append_column(f"__w{table.num_columns}", self._compute(call, table))
        yield from table_batches(self.conform(table), self.context.batch_size)

    def _compute(self, call: WindowCall, table: pa.Table) -> pa.Array:
        n = table.num_rows
        if n == 0:
            return pa.nulls(0, call.type)
        keys = [SortKey(p) for p in call.partition_by] + list(call.order_by)
        if keys:
            from engine.physical.operators.sort import _sort_indices

            order = _sort_indices(table, tuple(keys)).to_numpy()
        else:
            order = np.arange(n)
        sorted_table = table.take(pa.array(order))
        partitions = [evaluate_array(p, sorted_table) for p in call.partition_by]
        partitions = [p.combine_chunks() if isinstance(p, pa.ChunkedArray) else p for p in partitions]
        part_change = _changes(partitions) if partitions else np.eye(1, n, dtype=bool)[0]
        order_values = [evaluate_array(k.expr, sorted_table) for k in call.order_by]
        order_values = [o.combine_chunks() if isinstance(o, pa.ChunkedArray) else o for o in order_values]
        peer_change = part_change | (_changes(order_values) if order_values else np.zeros(n, dtype=bool))
        part_start, part_end = _group_bounds(part_change)
        peer_start, peer_end = _group_bounds(peer_change)
        position = np.arange(n)
        result = self._function(call, sorted_table, position, part_start, part_end, peer_start, peer_end,
                                order_values)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        return result.take(pa.array(inverse))

    def _function(self, call: WindowCall, table: pa.Table, pos: np.ndarray, part_start: np.ndarray,
                  part_end: np.ndarray, peer_start: np.ndarray, peer_end: np.ndarray,
                  order_values: list[pa.Array]) -> pa.Array:
        name = call.func
        if name == "row_number":
            return pa.array(pos - part_start + 1, pa.int64())
        if name == "rank":
            return pa.array(peer_start - part_start + 1, pa.int64())
        if name == "dense_rank":
            starts = (pos == peer_start).astype(np.int64)
            cumulative = np.cumsum(starts)
            return pa.array(cumulative - cumulative[part_start] + 1, pa.int64())
        if name == "percent_rank":
            size = part_end - part_start
            rank = peer_start - part_start
            return pa.array(np.where(size > 1, rank / np.maximum(size - 1, 1), 0.0), pa.float64())
        if name == "cume_dist":
            return pa.array((peer_end - part_start) / (part_end - part_start), pa.float64())
        if name == "ntile":
            buckets = int(call.args[0].value) if call.args else 1  # type: ignore[attr-defined]
            size = part_end - part_start
            index = pos - part_start
            base, extra = size // buckets, size % buckets
            large = extra * (base + 1)
            bucket = np.where(index < large, index // np.maximum(base + 1, 1),
                              extra + (index - large) // np.maximum(base, 1))
            return pa.array(bucket + 1, pa.int64())
        values = evaluate_array(call.args[0], table) if call.args else None
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if name in ("lag", "lead"):
            offset = int(call.args[1].value) if len(call.args) > 1 else 1  # type: ignore[attr-defined]
            target = pos - offset if name == "lag" else pos + offset
            inside = (target >= part_start) & (target < part_end)
            taken = values.take(pa.array(np.where(inside, target, 0)))
            default = evaluate_array(call.args[2], table) if len(call.args) > 2 else pa.nulls(len(pos), call.type)
            return pc.if_else(pa.array(inside), taken.cast(call.type), default.cast(call.type))
        start, end = self._frame(call.frame, bool(call.order_by), pos, part_start, part_end, peer_start, peer_end,
                                 order_values, call.order_by[0].ascending if call.order_by else True)
        if name in ("first_value", "last_value", "nth_value"):
            if name == "nth_value":
                k = int(call.args[1].value) - 1  # type: ignore[attr-defined]
                index = start + k
                ok = index < end
            else:
                index = start if name == "first_value" else end - 1
                ok = end > start
            taken = values.take(pa.array(np.where(ok, index, 0)))
            return pc.if_else(pa.array(ok), taken, pa.scalar(None, values.type))
        return self._frame_aggregate(call, values, start, end)

    @staticmethod
    def _frame(frame: Frame | None, ordered: bool, pos: np.ndarray, part_start: np.ndarray, part_end: np.ndarray,
               peer_start: np.ndarray, peer_end: np.ndarray, order_values: list[pa.Array], ascending: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        if frame is None:
            # SQL default: the whole partition without ORDER BY; up to the current row's peers with it.
            return (part_start, peer_end) if ordered else (part_start, part_end)
        if frame.kind == "rows":
            start = part_start if frame.start_unbounded else np.clip(pos + frame.start, part_start, part_end)
            end = part_end if frame.end_unbounded else np.clip(pos + frame.end + 1, part_start, part_end)
            return start, np.maximum(end, start)
        # RANGE
        if (frame.start_unbounded or frame.start == 0) and (frame.end_unbounded or frame.end == 0):
            start = part_start if frame.start_unbounded else peer_start
            end = part_end if frame.end_unbounded else peer_end
            return start, end
        if len(order_values) != 1:
            raise UnsupportedSQLError("RANGE frames with offsets need exactly one ORDER BY column")
        keys = order_values[0]
        if not (pa.types.is_integer(keys.type) or pa.types.is_floating(keys.type) or pa.types.is_decimal(keys.type)):
            raise UnsupportedSQLError("RANGE frames with offsets need a numeric ORDER BY column")
        numbers = np.asarray(pc.fill_null(keys.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))
        if not ascending:
            numbers = -numbers  # descending keys: "n preceding" means larger values; search ascending
        start = np.empty(len(pos), dtype=np.int64)
        end = np.empty(len(pos), dtype=np.int64)
        for lo, hi in set(zip(part_start.tolist(), part_end.tolist())):
            segment = numbers[lo:hi]
            valid = ~np.isnan(segment)
            # NULL keys sort together at one end of the partition; offsets are searched among the rest.
            first_valid = int(np.argmax(valid)) if valid.any() else len(segment)
            count_valid = int(valid.sum())
            values = segment[first_valid:first_valid + count_valid]
            base = lo + first_valid
            for i in range(lo, hi):
                v = numbers[i]
                if np.isnan(v):  # a NULL key's frame is its NULL peers
                    start[i] = lo if frame.start_unbounded else peer_start[i]
                    end[i] = hi if frame.end_unbounded else peer_end[i]
                    continue
                start[i] = lo if frame.start_unbounded else base + np.searchsorted(values, v + frame.start, "left")
                end[i] = hi if frame.end_unbounded else base + np.searchsorted(values, v + frame.end, "right")
        return start, np.maximum(end, start)

    @staticmethod
    def _frame_aggregate(call: WindowCall, values: pa.Array | None, start: np.ndarray, end: np.ndarray) -> pa.Array:
        name = call.func
        if name == "count_star":
            return pa.array(end - start, pa.int64())
        if values is None:
            raise ExecutionError(f"window aggregate {name}() needs an argument")
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        prefix_count = np.concatenate([[0], np.cumsum(valid)])
        counts = prefix_count[end] - prefix_count[start]
        if name == "count":
            return pa.array(counts, pa.int64())
        numeric = pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type)
        numbers = np.asarray(pc.fill_null(values.cast(pa.float64()), 0).to_numpy(zero_copy_only=False), dtype=np.float64) \
            if numeric and name in ("sum", "avg") or pa.types.is_floating(values.type) else None
        if name in ("sum", "avg"):
            prefix = np.concatenate([[0.0], np.cumsum(numbers)])
            sums = prefix[end] - prefix[start]
            result = sums if name == "sum" else sums / np.maximum(counts, 1)
            out = pa.array(result, pa.float64(), mask=counts == 0)
            return out.cast(call.type) if not pa.types.is_decimal(call.type) else pc.round(
                out, call.type.scale).cast(call.type)
        if name in ("min", "max"):
            if pa.types.is_floating(values.type):
                extreme, found = frame_extreme(numbers, valid, start, end, name == "max")
                return pa.array(extreme, pa.float64(), mask=~found).cast(call.type)
            # Any other orderable type (ints beyond 2**53, decimals, dates, text): work on dense
            # ranks, which order exactly like the values, then map the winning rank back.
            ranks = pc.rank(values, sort_keys="ascending", tiebreaker="dense")  # NULLs rank last
            rank_numbers = np.asarray(ranks.to_numpy(zero_copy_only=False), dtype=np.float64)
            extreme, found = frame_extreme(rank_numbers, valid, start, end, name == "max")
            row_of_rank = np.zeros(int(rank_numbers.max(initial=0)) + 1, dtype=np.int64)
            row_of_rank[rank_numbers.astype(np.int64)] = np.arange(len(rank_numbers))
            picked = values.take(pa.array(row_of_rank[np.where(found, extreme, 0).astype(np.int64)]))
            return pc.if_else(pa.array(found), picked, pa.scalar(None, values.type)).cast(call.type)
        raise UnsupportedSQLError(f"{name}() is not supported as a window function")
