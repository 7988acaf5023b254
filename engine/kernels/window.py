"""Window-frame kernels: min/max of a value over an arbitrary frame per row."""

from __future__ import annotations

import numpy as np

from engine.kernels import HAVE_NUMBA


def _frame_extreme_numpy(values: np.ndarray, valid: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                         is_max: bool) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(len(starts), dtype=np.float64)
    found = np.zeros(len(starts), dtype=np.bool_)
    for i in range(len(starts)):
        window = values[starts[i]:ends[i]][valid[starts[i]:ends[i]]]
        if len(window):
            out[i] = window.max() if is_max else window.min()
            found[i] = True
    return out, found


if HAVE_NUMBA:
    import numba

    @numba.njit(cache=True, nogil=True)
    def _frame_extreme_numba(values, valid, starts, ends, is_max):  # noqa: ANN001, ANN202
        n = len(values)
        fill = -np.inf if is_max else np.inf
        levels = 1
        while (1 << levels) <= max(n, 1):
            levels += 1
        table = np.empty((levels, max(n, 1)), dtype=np.float64)
        for i in range(n):
            table[0, i] = values[i] if valid[i] else fill
        for level in range(1, levels):
            span = 1 << (level - 1)
            for i in range(n - (1 << level) + 1):
                a, b = table[level - 1, i], table[level - 1, i + span]
                table[level, i] = (a if a > b else b) if is_max else (a if a < b else b)
        prefix_valid = np.zeros(n + 1, dtype=np.int64)
        for i in range(n):
            prefix_valid[i + 1] = prefix_valid[i] + (1 if valid[i] else 0)
        out = np.zeros(len(starts), dtype=np.float64)
        found = np.zeros(len(starts), dtype=np.bool_)
        for i in range(len(starts)):
            lo, hi = starts[i], ends[i]
            if hi <= lo or prefix_valid[hi] - prefix_valid[lo] == 0:
                continue
            level = 0
            while (1 << (level + 1)) <= hi - lo:
                level += 1
            a, b = table[level, lo], table[level, hi - (1 << level)]
            out[i] = (a if a > b else b) if is_max else (a if a < b else b)
            found[i] = True
        return out, found


def frame_extreme(values: np.ndarray, valid: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  is_max: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per row, min or max of ``values[starts[i]:ends[i]]`` over valid entries, and whether any existed."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    valid = np.ascontiguousarray(valid, dtype=np.bool_)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    ends = np.ascontiguousarray(ends, dtype=np.int64)
    if HAVE_NUMBA:
        return _frame_extreme_numba(values, valid, starts, ends, is_max)
    return _frame_extreme_numpy(values, valid, starts, ends, is_max)
