"""Every Numba kernel agrees with its NumPy fallback (the fallback is the specification)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import HAVE_NUMBA
from engine.kernels.window import _frame_extreme_numpy, frame_extreme


def test_numba_is_available_so_the_fast_path_is_what_runs():
    assert HAVE_NUMBA


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)), min_size=0, max_size=60),
       width=st.integers(0, 8), lag=st.integers(0, 8), is_max=st.booleans())
def test_frame_extreme_matches_the_numpy_fallback(values, width, lag, is_max):
    n = len(values)
    numbers = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
    valid = np.array([v is not None for v in values], dtype=bool)
    pos = np.arange(n, dtype=np.int64)
    starts = np.clip(pos - lag, 0, n)
    ends = np.clip(pos - lag + width + 1, 0, n)
    ends = np.maximum(ends, starts)
    fast = frame_extreme(numbers, valid, starts, ends, is_max)
    slow = _frame_extreme_numpy(numbers, valid, starts, ends, is_max)
    assert np.array_equal(fast[1], slow[1])
    assert np.array_equal(fast[0][fast[1]], slow[0][slow[1]])
