"""Where strings fall among a sorted set of distinct strings, without Python objects.

The ASOF join orders string values by their rank among the right side's distinct values
(sorted once). A left value ``v`` gets ``2 * below + equal``: ``below`` distinct values are
smaller than ``v``, ``equal`` is 1 when ``v`` is one of them. The kernel binary-searches on
Arrow's own buffers (offsets and UTF-8 bytes), comparing bytes the way Arrow's sort does,
and releases the GIL, so probe batches rank in parallel; the fallback goes through NumPy
object arrays (about 10x slower, and serialized by the GIL).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.kernels import HAVE_NUMBA


def _buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets of length n + 1, uint8 data) of a string or binary array."""
    large = array.cast(pa.large_binary() if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)
                       else pa.large_string())
    buffers = large.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[large.offset:large.offset + len(large) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    return offsets, data


def _ranks_numpy(sorted_distinct: pa.Array, values: pa.Array, present: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), dtype=np.int64)
    if present.any() and len(sorted_distinct):
        distinct = np.asarray(sorted_distinct.to_numpy(zero_copy_only=False), dtype=object)
        wanted = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)[present]
        below = np.searchsorted(distinct, wanted, side="left")
        equal = np.asarray(pc.is_in(values.filter(pa.array(present)), value_set=sorted_distinct)
                           .to_numpy(zero_copy_only=False), dtype=bool)
        out[present] = 2 * below + equal.astype(np.int64)
    return out


if HAVE_NUMBA:
    import numba

    @numba.njit(cache=True, nogil=True)
    def _compare(a, a_start, a_end, b, b_start, b_end):  # noqa: ANN001, ANN202
        """-1, 0 or 1 as bytes ``a[a_start:a_end]`` sort before, equal or after ``b[b_start:b_end]``."""
        length_a = a_end - a_start
        length_b = b_end - b_start
        for i in range(min(length_a, length_b)):
            x = a[a_start + i]
            y = b[b_start + i]
            if x != y:
                return -1 if x < y else 1
        if length_a == length_b:
            return 0
        return -1 if length_a < length_b else 1

    @numba.njit(cache=True, nogil=True)
    def _ranks_numba(d_offsets, d_data, v_offsets, v_data, present):  # noqa: ANN001, ANN202
        count = len(d_offsets) - 1
        out = np.zeros(len(present), dtype=np.int64)
        for i in range(len(present)):
            if not present[i]:
                continue
            start = v_offsets[i]
            end = v_offsets[i + 1]
            lo = 0
            hi = count
            while lo < hi:  # the first distinct value >= v
                mid = (lo + hi) // 2
                if _compare(d_data, d_offsets[mid], d_offsets[mid + 1], v_data, start, end) < 0:
                    lo = mid + 1
                else:
                    hi = mid
            equal = 0
            if lo < count and _compare(d_data, d_offsets[lo], d_offsets[lo + 1], v_data, start, end) == 0:
                equal = 1
            out[i] = 2 * lo + equal
        return out


def string_ranks(sorted_distinct: pa.Array, values: pa.Array) -> np.ndarray:
    """``2 * below + equal`` of each of ``values`` among ``sorted_distinct`` (0 for nulls).

    ``sorted_distinct`` holds no nulls and is sorted ascending by bytes; both are string or
    binary arrays.
    """
    present = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if not HAVE_NUMBA:
        return _ranks_numpy(sorted_distinct, values, present)
    d_offsets, d_data = _buffers(sorted_distinct)
    v_offsets, v_data = _buffers(values)
    return _ranks_numba(d_offsets, d_data, v_offsets, v_data, present)
