"""ASOF join kernel: for each left row, the nearest right row of its group by an ordering value.

Inputs are plain integers: the right side is sorted by (group, value) and described by its
``values`` and the ``[starts[g], ends[g])`` range of each group; a left row has a group id
(``-1``: matches nothing) and a value. The left rows are visited in (group, value) order
(``order``), so within a group one pointer only moves forward through the right rows: a
sorted merge, with galloping steps so a small left batch against a large right side costs
O(batch * log(gap)) rather than O(right).

``inclusive``/``backward`` encode the four inequalities ``left op right``:
  ``>=``: the last right value <= v (inclusive, backward)    ``>``: the last value < v
  ``<=``: the first right value >= v (not inclusive, forward) ``<``: the first value > v
Among equal right values, backward picks the last in sorted order and forward the first.
"""

from __future__ import annotations

import numpy as np

from engine.kernels import HAVE_NUMBA

# op of ``left op right`` -> (inclusive, backward)
MODES = {"gte": (True, True), "gt": (False, True), "lte": (False, False), "lt": (True, False)}


def _asof_numpy(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, groups: np.ndarray, probe: np.ndarray,
                order: np.ndarray, inclusive: bool, backward: bool) -> np.ndarray:
    out = np.full(len(groups), -1, dtype=np.int64)
    if not len(order):
        return out
    ordered_groups = groups[order]
    bounds = np.flatnonzero(np.diff(ordered_groups)) + 1
    side = "right" if inclusive else "left"
    for a, b in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(order)]))):
        g = ordered_groups[a]
        lo, hi = starts[g], ends[g]
        rows = order[a:b]
        position = np.searchsorted(values[lo:hi], probe[rows], side=side)
        candidate = position - 1 if backward else position
        ok = (candidate >= 0) & (candidate < hi - lo)
        out[rows[ok]] = lo + candidate[ok]
    return out


if HAVE_NUMBA:
    import numba

    @numba.njit(cache=True, nogil=True)
    def _asof_numba(values, starts, ends, groups, probe, order, inclusive, backward):  # noqa: ANN001, ANN202
        out = np.full(len(groups), -1, dtype=np.int64)
        current = -1
        k = 0
        hi = 0
        lo = 0
        for p in range(len(order)):
            i = order[p]
            g = groups[i]
            if g < 0:
                continue
            if g != current:
                current = g
                lo = starts[g]
                k = lo
                hi = ends[g]
            v = probe[i]
            # Move k to the first right row in [k, hi) that does not "advance":
            # advance(x) = values[x] <= v (inclusive) or values[x] < v.
            if k < hi and (values[k] <= v if inclusive else values[k] < v):
                known = k  # advance(known) holds
                step = 1
                nxt = k + 1
                while nxt < hi and (values[nxt] <= v if inclusive else values[nxt] < v):
                    known = nxt
                    step *= 2
                    nxt = known + step
                a = known + 1
                b = nxt if nxt < hi else hi
                while a < b:
                    mid = (a + b) // 2
                    if values[mid] <= v if inclusive else values[mid] < v:
                        a = mid + 1
                    else:
                        b = mid
                k = a
            if backward:
                if k > lo:
                    out[i] = k - 1
            elif k < hi:
                out[i] = k
        return out


def asof_match(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, groups: np.ndarray, probe: np.ndarray,
               order: np.ndarray, op: str) -> np.ndarray:
    """Per left row, the position of its matching right row in the sorted right side, or -1.

    ``values``: right ordering values sorted within each group; ``starts``/``ends``: each
    group's range in them; ``groups``/``probe``: each left row's group (-1 for none) and value;
    ``order``: the left rows with a group, sorted by (group, value); ``op``: gte/gt/lte/lt.
    """
    inclusive, backward = MODES[op]
    args = (np.ascontiguousarray(values, dtype=np.int64), np.ascontiguousarray(starts, dtype=np.int64),
            np.ascontiguousarray(ends, dtype=np.int64), np.ascontiguousarray(groups, dtype=np.int64),
            np.ascontiguousarray(probe, dtype=np.int64), np.ascontiguousarray(order, dtype=np.int64))
    if HAVE_NUMBA:
        return _asof_numba(*args, inclusive, backward)
    return _asof_numpy(*args, inclusive, backward)
