"""Fast exact paths for decimals with at most 18 digits, computed as scaled int64.

Arrow's decimal128 kernels are general (128-bit) and slow; DuckDB stores DECIMAL(15,2)
as int64 for the same reason. A decimal128 value is a 16-byte little-endian two's
complement integer, so for values that fit in 63 bits its low 8 bytes *are* the scaled
integer. Every fast path checks that inputs and results stay in range and otherwise
returns ``None`` so the caller falls back to Arrow: results are always exact.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_LIMIT = 2**62  # headroom below 2**63 so one addition of two in-range values cannot overflow


def _unscaled(array: pa.Array) -> np.ndarray | None:
    """The scaled integers of a decimal128 array, or None when some value needs more than 62 bits."""
    if not pa.types.is_decimal128(array.type):
        return None
    words = np.frombuffer(array.buffers()[1], dtype=np.int64, count=2 * (array.offset + len(array)))
    words = words[2 * array.offset:]
    low, high = words[0::2], words[1::2]
    if array.type.precision <= 18:
        return low  # at most 18 digits: always below 10**18 < 2**62
    # Fits in int64 exactly when the high word is the sign extension of the low word.
    if not np.array_equal(high, low >> 63):
        return None
    if len(low) and (low.max(initial=0) >= _LIMIT or low.min(initial=0) <= -_LIMIT):
        return None
    return low


def _from_unscaled(values: np.ndarray, dtype: pa.DataType, validity: pa.Buffer | None, offset_nulls: int) -> pa.Array:
    words = np.empty((len(values), 2), dtype=np.int64)
    words[:, 0] = values
    np.right_shift(values, 63, out=words[:, 1])
    return pa.Array.from_buffers(dtype, len(values), [validity, pa.py_buffer(words)], offset_nulls)


def _validity(left: pa.Array, right: pa.Array | None) -> tuple[pa.Buffer | None, int]:
    if right is None or right.null_count == 0:
        if left.null_count == 0:
            return None, 0
        return pc.is_valid(left).buffers()[1], -1
    mask = pc.and_(left.is_valid(), right.is_valid())
    return mask.buffers()[1], -1


def _null_mask(array: pa.Array) -> np.ndarray | None:
    return None if array.null_count == 0 else np.asarray(array.is_null().to_numpy(zero_copy_only=False))


def _arrays(value: pa.Array | pa.ChunkedArray | pa.Scalar) -> pa.Array | None:
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    return value if isinstance(value, pa.Array) else None


def _scalar_unscaled(value: pa.Scalar) -> int | None:
    if not value.is_valid or not pa.types.is_decimal(value.type):
        return None
    unscaled = int(value.as_py().scaleb(value.type.scale))
    return unscaled if abs(unscaled) < _LIMIT else None


def arithmetic(op: str, left, right, result: pa.DataType):  # noqa: ANN001, ANN201
    """``left <op> right`` for decimals (op in add/subtract/multiply), or None to fall back."""
    if not (pa.types.is_decimal128(result) and result.precision <= 38):
        return None
    chunked = [v for v in (left, right) if isinstance(v, pa.ChunkedArray)]
    if chunked:
        # Work chunk by chunk (no copy into one array) when the chunkings line up.
        lengths = [len(c) for c in chunked[0].chunks]
        if all([len(c) for c in v.chunks] == lengths for v in chunked):
            parts = []
            for i in range(len(lengths)):
                a = left.chunk(i) if isinstance(left, pa.ChunkedArray) else left
                b = right.chunk(i) if isinstance(right, pa.ChunkedArray) else right
                part = arithmetic(op, a, b, result)
                if part is None:
                    return None
                parts.append(part)
            return pa.chunked_array(parts, result)
    operands = []
    for value in (left, right):
        if isinstance(value, pa.Scalar):
            unscaled = _scalar_unscaled(value)
            if unscaled is None:
                return None
            operands.append((None, unscaled, value.type.scale))
        else:
            array = _arrays(value)
            if array is None or not pa.types.is_decimal128(array.type):
                return None
            unscaled = _unscaled(array)
            if unscaled is None:
                return None
            operands.append((array, unscaled, array.type.scale))
    (la, lv, ls), (ra, rv, rs) = operands
    if la is None and ra is None:
        return None
    with np.errstate(over="raise"):
        try:
            if op == "multiply":
                if result.scale != ls + rs:
                    return None
                lmax = np.abs(lv).max(initial=0) if isinstance(lv, np.ndarray) else abs(lv)
                rmax = np.abs(rv).max(initial=0) if isinstance(rv, np.ndarray) else abs(rv)
                if int(lmax) * int(rmax) >= _LIMIT:
                    return None
                out = np.asarray(lv * rv, dtype=np.int64)
            else:
                if result.scale < max(ls, rs):
                    return None
                lv = lv * 10 ** (result.scale - ls)
                rv = rv * 10 ** (result.scale - rs)
                lmax = np.abs(lv).max(initial=0) if isinstance(lv, np.ndarray) else abs(lv)
                rmax = np.abs(rv).max(initial=0) if isinstance(rv, np.ndarray) else abs(rv)
                if int(lmax) >= _LIMIT or int(rmax) >= _LIMIT:
                    return None
                out = np.asarray(lv + rv if op == "add" else lv - rv, dtype=np.int64)
        except FloatingPointError:
            return None
    length = len(la) if la is not None else len(ra)
    if out.shape == ():
        out = np.full(length, int(out), dtype=np.int64)
    validity, _ = _validity(la if la is not None else ra, ra if la is not None else None)
    return _from_unscaled(out, result, validity, -1 if validity is not None else 0)


def to_float(value: pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """Exact-as-float conversion of a decimal array (unscaled / 10**scale), or None."""
    array = _arrays(value)
    if array is None:
        return None
    unscaled = _unscaled(array)
    if unscaled is None:
        return None
    floats = unscaled / (10.0 ** array.type.scale)
    mask = _null_mask(array)
    return pa.array(floats, pa.float64(), mask=mask)


def rescale_free(value: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray | None:
    """Widening a decimal's precision at the same scale changes no bits: relabel the type."""
    if pa.types.is_decimal128(value.type) and pa.types.is_decimal128(target) \
            and value.type.scale == target.scale and target.precision >= value.type.precision:
        if isinstance(value, pa.ChunkedArray):
            return pa.chunked_array([chunk.view(target) for chunk in value.chunks], target)
        return value.view(target)
    return None


def exact_int64_sum_input(value: pa.Array | pa.ChunkedArray) -> pa.Array | None:
    """The scaled int64 values of a decimal column when summing them cannot overflow int64.

    Summing int64 is much faster than summing decimal128; the bound (largest magnitude times
    row count below 2**62) guarantees the int64 sum is exact.
    """
    array = _arrays(value)
    if array is None or not pa.types.is_decimal128(array.type):
        return None
    unscaled = _unscaled(array)
    if unscaled is None:
        return None
    largest = int(np.abs(unscaled).max(initial=0))
    if largest * max(len(unscaled), 1) >= _LIMIT:
        return None
    mask = _null_mask(array)
    return pa.array(np.ascontiguousarray(unscaled), pa.int64(), mask=mask)


def from_int64(values: pa.Array | pa.ChunkedArray, dtype: pa.DataType) -> pa.Array:
    """Scaled int64 values back to a decimal128 of ``dtype`` (exact)."""
    array = _arrays(values)
    assert array is not None
    numbers = np.asarray(pc.fill_null(array, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    validity = None if array.null_count == 0 else pc.is_valid(array).buffers()[1]
    return _from_unscaled(numbers, dtype, validity, -1 if validity is not None else 0)
