"""ASOF joins (DuckDB's ``ASOF [LEFT] JOIN``) by a sorted merge.

For each left row: among the right rows with equal keys (``=`` never matches NULL keys,
``IS NOT DISTINCT FROM`` does) that pass the condition's right-only parts, the one with the
greatest right value satisfying ``left op right`` for ``>=``/``>`` (the smallest one for
``<=``/``<``). A NULL ordering value never matches. The inner kind drops left rows without
a match, the left kind pads them with NULLs.

The right input is materialized once (within the memory budget) and indexed: its keys are
dictionary-encoded into dense group ids, its ordering values turned into order-preserving
int64 codes, and its rows sorted by (group, value). Left batches then stream through: their
keys are looked up in the right's dictionaries, their rows sorted by (group, value), and the
Numba kernel in :mod:`engine.kernels.asof` merges them against the right side. Output keeps
the left rows' order within each batch.

Among right rows with the same keys *and* the same ordering value, which one matches is
not specified (DuckDB's choice depends on its plan); this one takes the last in input
order for ``>=``/``>`` and the first for ``<=``/``<``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ExecutionError
from engine.kernels.asof import asof_match, group_sort, probe_order
from engine.kernels.string_rank import string_ranks
from engine.logical.expr import Expr, Field, Literal
from engine.logical.plan import asof_parts
from engine.physical.exprs import evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator
from engine.physical.parallel import ordered_map

_SIGN = np.int64(0x7FFFFFFFFFFFFFFF)


def _is_bytes_like(dtype: pa.DataType) -> bool:
    return (pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_binary(dtype)
            or pa.types.is_large_binary(dtype))


def _single(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array


def _true_mask(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _normalize_key(array: pa.Array) -> pa.Array:
    """Float keys: -0.0 equals 0.0 (as in DuckDB), so both hash alike."""
    if pa.types.is_floating(array.type):
        return pc.add(array, pa.scalar(0.0, array.type))
    return array


def ordering_codes(array: pa.Array) -> np.ndarray | None:
    """Order-preserving int64 codes of a numeric/temporal array (NULL slots arbitrary), or
    None for types compared another way. Floats: -0.0 = 0.0, NaN above +inf and equal to
    itself, as DuckDB orders them."""
    dtype = array.type
    if pa.types.is_floating(dtype):
        values = np.asarray(pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64) + 0.0
        values[np.isnan(values)] = np.nan  # one canonical (positive) NaN
        bits = values.view(np.int64)
        return bits ^ ((bits >> 63) & _SIGN)
    if pa.types.is_uint64(dtype):
        raw = np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.uint64)
        return (raw ^ np.uint64(1 << 63)).view(np.int64)
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype):
        return np.asarray(pc.fill_null(array, 0 if not pa.types.is_boolean(dtype) else False)
                          .to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_timestamp(dtype) or pa.types.is_duration(dtype) or pa.types.is_date64(dtype) \
            or pa.types.is_time64(dtype):
        return np.asarray(pc.fill_null(array.view(pa.int64()), 0).to_numpy(), dtype=np.int64)
    if pa.types.is_date32(dtype) or pa.types.is_time32(dtype):
        return np.asarray(pc.fill_null(array.view(pa.int32()), 0).to_numpy(), dtype=np.int64)
    return None


def _lookup_codes(array: pa.Array) -> np.ndarray | None:
    """Integer codes equal exactly when the key values are equal (integers, booleans, temporals),
    or None (floats, decimals, strings: those are looked up by Arrow's hashing)."""
    if pa.types.is_floating(array.type):
        return None  # several NaN payloads would need one code; Arrow's hashing handles them
    return ordering_codes(array)


class _CodeLookup:
    """Where int64 codes sit in a set of distinct codes, built once per join.

    ``pc.index_in`` rebuilds its hash table of the value set on every call, which for a
    right side with a million keys cost more than the whole merge when done per left batch.
    A dense code range gets a direct table, a sparse one a sorted array to binary-search.
    """

    def __init__(self, codes: np.ndarray) -> None:
        self.size = len(codes)
        self.low = int(codes.min()) if self.size else 0
        self.high = int(codes.max()) if self.size else -1
        span = self.high - self.low + 1
        self.table: np.ndarray | None = None
        if self.size and span <= 4 * self.size + 1024:
            self.table = np.full(span, -1, dtype=np.int64)
            self.table[codes - self.low] = np.arange(self.size, dtype=np.int64)
        else:
            self.order = np.argsort(codes, kind="stable")
            self.sorted = codes[self.order]

    def find(self, probe: np.ndarray) -> np.ndarray:
        """Each probe code's position in the set, or -1."""
        if not self.size:
            return np.full(len(probe), -1, dtype=np.int64)
        if self.table is not None:
            inside = (probe >= self.low) & (probe <= self.high)
            return np.where(inside, self.table[np.where(inside, probe - self.low, 0)], -1)
        at = np.minimum(np.searchsorted(self.sorted, probe), self.size - 1)
        return np.where(self.sorted[at] == probe, self.order[at], -1)


class _RightIndex:
    """The right input sorted by (group, ordering value), with what a left batch needs to probe it."""

    def __init__(self, table: pa.Table, keys: list[tuple[Expr, Expr, bool]], value_expr: Expr,
                 right_only: list[Expr], value_type: pa.DataType) -> None:
        self.table = table.combine_chunks()
        n = table.num_rows
        valid = np.ones(n, dtype=bool)
        for condition in right_only:
            valid &= _true_mask(_single(evaluate_array(condition, self.table)))
        value = _single(evaluate_array(value_expr, self.table))
        if value.type != value_type:
            value = value.cast(value_type)
        valid &= np.asarray(value.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        key_arrays = []
        for _, right_key, null_safe in keys:
            array = _normalize_key(_single(evaluate_array(right_key, self.table)))
            if not null_safe:
                valid &= np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            key_arrays.append(array)
        rows = np.flatnonzero(valid)
        everything = len(rows) == n  # the common case: no NULL keys or times, no right-only filter

        def valid_rows(array: pa.Array) -> pa.Array:
            return array if everything else array.take(pa.array(rows))

        # Dense group ids over the valid rows: one dictionary per key, then combined codes re-encoded.
        self.dictionaries: list[pa.Array] = []
        self.combined: list[pa.Array | None] = []
        self.null_safe = [null_safe for _, _, null_safe in keys]
        self.key_types = [a.type for a in key_arrays]
        # Per key, a lookup built once for probing with integer codes (None: use pc.index_in).
        self.lookups: list[_CodeLookup | None] = []
        self.combined_lookups: list[_CodeLookup | None] = []
        groups = np.zeros(len(rows), dtype=np.int64)
        group_count = 1
        for position, array in enumerate(key_arrays):
            encoded = pc.dictionary_encode(valid_rows(array), null_encoding="encode" if self.null_safe[position]
                                           else "mask")
            encoded = _single(encoded)
            codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            size = len(encoded.dictionary)
            self.dictionaries.append(encoded.dictionary)
            dictionary_codes = None if self.null_safe[position] else _lookup_codes(encoded.dictionary)
            self.lookups.append(_CodeLookup(dictionary_codes) if dictionary_codes is not None else None)
            if position == 0:
                groups, group_count = codes, size
                self.combined.append(None)
                self.combined_lookups.append(None)
                continue
            merged = _single(pc.dictionary_encode(pa.array(groups * size + codes)))
            self.combined.append(merged.dictionary)
            self.combined_lookups.append(_CodeLookup(np.asarray(merged.dictionary.to_numpy(zero_copy_only=False),
                                                                dtype=np.int64)))
            groups = np.asarray(merged.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            group_count = len(merged.dictionary)
        self.group_count = group_count if len(rows) else 0
        # Ordering values as int64 codes; other types (decimals, strings) as ranks among the
        # right's distinct values (a left value gets 2 * rank, or 2 * rank + 1 if equal).
        value = valid_rows(value)
        codes = ordering_codes(value)
        self.distinct: np.ndarray | None = None
        self.distinct_arrow: pa.Array | None = None
        if codes is None:
            unique = pc.unique(value)
            self.distinct_arrow = unique.take(pc.array_sort_indices(unique))
            # Strings are ranked on Arrow's buffers (kernels/string_rank); others via objects.
            self.distinct = None if _is_bytes_like(self.distinct_arrow.type) else \
                np.asarray(self.distinct_arrow.to_numpy(zero_copy_only=False), dtype=object)
            codes = 2 * np.asarray(pc.index_in(value, value_set=self.distinct_arrow).to_numpy(
                zero_copy_only=False), dtype=np.int64) + 1
        self.value_type = value_type
        order, self.starts, self.ends = group_sort(groups, codes, self.group_count)
        self.rows = rows[order]
        self.values = codes[order]

    def probe_groups(self, key_arrays: list[pa.Array], valid: np.ndarray) -> np.ndarray:
        """Each left row's group id in the right side (-1: no right row has its keys)."""
        n = len(valid)
        if self.group_count == 0:
            return np.full(n, -1, dtype=np.int64)
        groups = np.zeros(n, dtype=np.int64)
        for position, array in enumerate(key_arrays):
            array = _normalize_key(array)
            if array.type != self.key_types[position]:
                array = array.cast(self.key_types[position])
            lookup = self.lookups[position]
            if lookup is not None:
                codes = lookup.find(_lookup_codes(array))  # type: ignore[arg-type]
                valid &= codes >= 0
                if array.null_count:
                    valid &= np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                codes = np.maximum(codes, 0)
            else:
                found = pc.index_in(array, value_set=self.dictionaries[position],
                                    skip_nulls=not self.null_safe[position])
                valid &= np.asarray(found.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                codes = np.asarray(pc.fill_null(found, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            if position == 0:
                groups = codes
                continue
            combined = groups * len(self.dictionaries[position]) + codes
            found_at = self.combined_lookups[position].find(combined)  # type: ignore[union-attr]
            valid &= found_at >= 0
            groups = np.maximum(found_at, 0)
        return np.where(valid, groups, -1)

    def probe_values(self, value: pa.Array) -> np.ndarray:
        codes = ordering_codes(value)
        if codes is not None:
            return codes
        assert self.distinct_arrow is not None
        if _is_bytes_like(value.type) and _is_bytes_like(self.distinct_arrow.type):
            return string_ranks(self.distinct_arrow, value)  # on Arrow's buffers, without the GIL
        if self.distinct is None:  # a string right side probed with another type (e.g. string_view)
            self.distinct = np.asarray(self.distinct_arrow.to_numpy(zero_copy_only=False), dtype=object)
        objects = np.asarray(value.to_numpy(zero_copy_only=False), dtype=object)
        present = np.asarray(value.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        out = np.zeros(len(value), dtype=np.int64)
        if present.any() and len(self.distinct):
            wanted = objects[present]
            below = np.searchsorted(self.distinct, wanted, side="left")
            equal = np.asarray(pc.is_in(value.filter(pa.array(present)), value_set=self.distinct_arrow)
                               .to_numpy(zero_copy_only=False), dtype=bool)
            out[present] = 2 * below + equal.astype(np.int64)
        return out


class AsofJoinOp(Operator):
    label = "AsofJoin"

    def __init__(self, context: ExecutionContext, left: Operator, right: Operator, kind: str,
                 condition: Expr | None, fields: tuple[Field, ...]) -> None:
        super().__init__(context, fields, [left, right])
        self.kind, self.condition = kind, condition
        left_ids = {f.id for f in left.fields}
        right_ids = {f.id for f in right.fields}
        self.parts = asof_parts(condition, left_ids, right_ids)
        if self.parts.other or len(self.parts.inequalities) > 1:
            raise ExecutionError("internal: an ASOF join condition the binder should have refused")
        # A condition folded to a constant (``... AND FALSE``) has lost its inequality: no row matches.
        self.never = self.parts.inequality is None

    def execute(self) -> Iterator[pa.RecordBatch]:
        right = self.collect_input(self.children[1], "asof join right side")
        self.metrics.extra["build_rows"] = right.num_rows
        if self.never or (right.num_rows == 0 and self.kind == "asof"):
            if self.kind == "asof":
                for _ in self.children[0].run():
                    pass  # nothing can match; the input is still read (errors surface)
                return
            index = None
        else:
            op, left_value, right_value = self.parts.inequality  # type: ignore[misc]
            value_type = right_value.type
            if left_value.type != value_type:
                from engine.types import common_type

                value_type = common_type(left_value.type, value_type, context="ASOF JOIN")
            index = _RightIndex(right, self.parts.keys, right_value, self.parts.right_only, value_type)
        right_table = index.table if index is not None else right

        def probe(batch: pa.RecordBatch) -> pa.RecordBatch | None:
            matches = self._match(batch, index)
            return self._assemble(batch, right_table, matches)

        for out in ordered_map(probe, self.children[0].run()):
            if out is not None and out.num_rows:
                yield out

    def _match(self, batch: pa.RecordBatch, index: _RightIndex | None) -> np.ndarray:
        """Each left row's matching row of the right table, or -1."""
        n = batch.num_rows
        if index is None or index.group_count == 0:
            return np.full(n, -1, dtype=np.int64)
        op, left_value, _ = self.parts.inequality  # type: ignore[misc]
        valid = np.ones(n, dtype=bool)
        for condition in self.parts.left_only:
            if isinstance(condition, Literal):
                if condition.value is not True:
                    return np.full(n, -1, dtype=np.int64)
                continue
            valid &= _true_mask(_single(evaluate_array(condition, batch)))
        value = _single(evaluate_array(left_value, batch))
        if value.type != index.value_type:
            value = value.cast(index.value_type)
        valid &= np.asarray(value.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        keys = [_single(evaluate_array(left_key, batch)) for left_key, _, _ in self.parts.keys]
        for array, (_, _, null_safe) in zip(keys, self.parts.keys):
            if not null_safe:
                valid &= np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        groups = index.probe_groups(keys, valid)
        probe_values = index.probe_values(value)
        order = probe_order(groups, probe_values)
        positions = asof_match(index.values, index.starts, index.ends, groups, probe_values, order, op)
        return np.where(positions >= 0, index.rows[np.maximum(positions, 0)] if len(index.rows) else -1, -1)

    def _assemble(self, batch: pa.RecordBatch, right: pa.Table, matches: np.ndarray) -> pa.RecordBatch | None:
        if self.kind == "asof":
            keep = matches >= 0
            if not keep.any():
                return None
            if not keep.all():
                batch = batch.filter(pa.array(keep))
                matches = matches[keep]
            indices = pa.array(matches)
        else:
            indices = pa.array(matches, mask=matches < 0)
        if right.num_rows:
            right_columns = [_single(column.take(indices)) for column in right.columns]
        else:
            right_columns = [pa.nulls(len(matches), column.type) for column in right.columns]
        return pa.RecordBatch.from_arrays(list(batch.columns) + right_columns, schema=self.schema)
