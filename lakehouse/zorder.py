"""Z-order (Morton) sort keys for OPTIMIZE ... ZORDER BY.

Each column is turned into its dense rank, the ranks are stretched over the same number of
bits, and the bits of all columns are interleaved into one unsigned 64-bit key. Sorting
rows by that key keeps rows that are close on *every* column close in the output, so each
output file covers a narrow min/max range on each of the columns and skipping works for
conditions on any of them (a plain sort helps only the first sort column).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# All interleaved bits must fit one uint64 key.
_KEY_BITS = 64
_MAX_BITS_PER_COLUMN = 21


def _scaled_ranks(column: pa.ChunkedArray | pa.Array, bits: int) -> np.ndarray:
    """Dense rank of each value (nulls last), stretched to ``[0, 2**bits - 1]``.

    Ranks rather than raw values: they work for any orderable type (strings, dates,
    decimals) and are insensitive to skew, so every column gets an equal share of the key.
    """
    ranks = pc.rank(column, sort_keys="ascending", tiebreaker="dense")  # nulls rank last by default
    values = np.asarray(ranks.to_numpy(zero_copy_only=False), dtype=np.uint64) - np.uint64(1)
    distinct = int(values.max()) + 1 if len(values) else 1
    top = (1 << bits) - 1
    if distinct <= 1:
        return np.zeros(len(values), dtype=np.uint64)
    # rank * top fits easily in 64 bits: ranks < 2**32 rows, top < 2**21.
    return (values * np.uint64(top)) // np.uint64(distinct - 1)


def interleave(columns: list[np.ndarray], bits: int) -> np.ndarray:
    """Morton key: bit ``b`` of column ``c`` lands at ``b * len(columns) + (len(columns) - 1 - c)``.

    The first column owns the most significant bit of each group, so it breaks ties first.
    """
    width = len(columns)
    key = np.zeros(len(columns[0]) if columns else 0, dtype=np.uint64)
    for bit in range(bits):
        for index, values in enumerate(columns):
            position = np.uint64(bit * width + (width - 1 - index))
            key |= ((values >> np.uint64(bit)) & np.uint64(1)) << position
    return key


def zorder_indices(table: pa.Table, columns: list[str]) -> np.ndarray:
    """Row order (indices into ``table``) that sorts it along a Z-order curve over ``columns``."""
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    bits = min(_MAX_BITS_PER_COLUMN, _KEY_BITS // max(1, len(columns)))
    scaled = [_scaled_ranks(table.column(name), bits) for name in columns]
    return np.argsort(interleave(scaled, bits), kind="stable")


def zorder_sort(table: pa.Table, columns: list[str]) -> pa.Table:
    """``table`` reordered along the Z-order curve of ``columns``."""
    return table.take(pa.array(zorder_indices(table, columns)))
