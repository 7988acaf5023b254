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

:func:`group_sort` produces that (group, value) order for both sides: a counting sort by the
dense group ids, then a stable sort of each group's values, O(n + groups) plus the small
per-group sorts, where ``np.lexsort`` over 10M rows takes seconds.
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
    def _sort_segment(order, values, a, b):  # noqa: ANN001, ANN202
        """Stably sort ``order[a:b]`` (row numbers) by ``values`` of those rows, in place."""
        if b - a <= 32:  # typical groups are small: an insertion sort, no allocation
            for p in range(a + 1, b):
                row = order[p]
                v = values[row]
                q = p - 1
                while q >= a and values[order[q]] > v:
                    order[q + 1] = order[q]
                    q -= 1
                order[q + 1] = row
        else:
            segment = order[a:b].copy()
            positions = np.argsort(values[segment], kind="mergesort")
            for p in range(b - a):
                order[a + p] = segment[positions[p]]

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


def _group_sort_numpy(groups: np.ndarray, values: np.ndarray,
                      group_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.flatnonzero(groups >= 0)
    order = rows[np.lexsort((values[rows], groups[rows]))]
    ordered = groups[order]
    ids = np.arange(group_count, dtype=np.int64)
    return (order, np.searchsorted(ordered, ids, side="left").astype(np.int64),
            np.searchsorted(ordered, ids, side="right").astype(np.int64))


if HAVE_NUMBA:
    @numba.njit(cache=True, nogil=True)
    def _group_sort_numba(groups, values, group_count):  # noqa: ANN001, ANN202
        counts = np.zeros(group_count + 1, dtype=np.int64)
        for i in range(len(groups)):
            if groups[i] >= 0:
                counts[groups[i] + 1] += 1
        for g in range(group_count):
            counts[g + 1] += counts[g]
        starts = counts[:group_count].copy()
        ends = counts[1:].copy()
        order = np.empty(counts[group_count], dtype=np.int64)
        fill = starts.copy()
        for i in range(len(groups)):  # rows of a group keep their input order: the sort is stable
            g = groups[i]
            if g >= 0:
                order[fill[g]] = i
                fill[g] += 1
        for g in range(group_count):
            _sort_segment(order, values, starts[g], ends[g])
        return order, starts, ends

    @numba.njit(cache=True, nogil=True)
    def _sort_segments(order, groups, values):  # noqa: ANN001, ANN202
        """Sort each run of equal groups in ``order`` by value (stable)."""
        n = len(order)
        a = 0
        while a < n:
            g = groups[order[a]]
            b = a + 1
            while b < n and groups[order[b]] == g:
                b += 1
            _sort_segment(order, values, a, b)
            a = b
        return order

    @numba.njit(cache=True, nogil=True)
    def _probe_order_numba(groups, values):  # noqa: ANN001, ANN202
        count = 0
        for i in range(len(groups)):
            if groups[i] >= 0:
                count += 1
        rows = np.empty(count, dtype=np.int64)
        keys = np.empty(count, dtype=np.int64)
        k = 0
        for i in range(len(groups)):
            if groups[i] >= 0:
                rows[k] = i
                keys[k] = groups[i]
                k += 1
        return _sort_segments(rows[np.argsort(keys)], groups, values)


def probe_order(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The left rows with a group (``groups >= 0``) in (group, value) order, for :func:`asof_match`.

    Unlike :func:`group_sort` its cost does not grow with the number of groups (a left batch
    of 100k rows probing a million groups), and rows tied on (group, value) may come in any
    order: each gets the same match wherever it sits.
    """
    groups = np.ascontiguousarray(groups, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.int64)
    if HAVE_NUMBA:
        return _probe_order_numba(groups, values)
    rows = np.flatnonzero(groups >= 0)
    return rows[np.lexsort((values[rows], groups[rows]))]


def group_sort(groups: np.ndarray, values: np.ndarray, group_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows with a group (``groups >= 0``) sorted by (group, value), stable, and each group's
    ``[starts[g], ends[g])`` range in that order: ``np.lexsort((values, groups))`` restricted to
    those rows, with the group boundaries."""
    groups = np.ascontiguousarray(groups, dtype=np.int64)
    values = np.ascontiguousarray(values, dtype=np.int64)
    if HAVE_NUMBA:
        return _group_sort_numba(groups, values, int(group_count))
    return _group_sort_numpy(groups, values, int(group_count))


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
