"""Decimal arithmetic trees evaluated as scaled int64, materialized once at the end.

``sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))`` evaluated operator by operator
turns int64 words into decimal128 arrays and back at every step; those conversions cost
more than the arithmetic. Here a whole tree of ``+ - *`` and widening casts over decimal
columns and constants runs on numpy int64 in one go.

Exactness comes from bounds, never from hope: each leaf column contributes its largest
magnitude, each operator the bound of its result (``|a*b| <= A*B``, ``|a+b| <= A+B``), and
the tree is refused (``None``, the caller takes the general path) as soon as a bound
reaches 2**62 or the declared precision of a node. Only then is anything computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa

from engine.logical.expr import Call, Cast, ColumnRef, Expr, Literal

_LIMIT = 2**62
_ARITHMETIC = ("add", "subtract", "multiply")


@dataclass(frozen=True)
class Scaled:
    """Unscaled integers (an array, or one int for a constant) at ``scale``.

    ``bound`` is an upper bound of every magnitude; ``nulls`` marks NULL rows (whose
    values are 0) or is None when no row is NULL.
    """

    values: np.ndarray | int
    scale: int
    bound: int
    nulls: np.ndarray | None


def is_decimal_tree(expr: Expr) -> bool:
    """Whether ``expr`` is arithmetic or a cast over decimals, worth evaluating here."""
    if isinstance(expr, Call):
        return expr.name in _ARITHMETIC and pa.types.is_decimal128(expr.type)
    if isinstance(expr, Cast):
        # A cast of a bare column is cheap already (a relabel, or one division).
        return (pa.types.is_decimal128(expr.arg.type) and not isinstance(expr.arg, ColumnRef)
                and (pa.types.is_decimal128(expr.type) or pa.types.is_float64(expr.type)))
    return False


def evaluate(expr: Expr, table: pa.Table | pa.RecordBatch, memo: dict | None = None) -> Scaled | None:
    """``expr`` over ``table`` as scaled int64, or None when it does not provably fit.

    ``memo`` (a dict the caller keeps for one table) converts each column only once when
    several expressions read it.
    """
    memo = {} if memo is None else memo
    if isinstance(expr, ColumnRef):
        if expr.id not in memo:
            memo[expr.id] = _column(table.column(f"#{expr.id}"))
        return memo[expr.id]
    if isinstance(expr, Literal):
        return _literal(expr)
    if isinstance(expr, Cast):
        return _cast(expr, table, memo)
    if isinstance(expr, Call) and expr.name in _ARITHMETIC and pa.types.is_decimal128(expr.type):
        left, right = (evaluate(arg, table, memo) for arg in expr.args)
        if left is None or right is None:
            return None
        return _arithmetic(expr.name, left, right, expr.type)
    return None


def to_arrow(value: Scaled, dtype: pa.DataType, length: int) -> pa.Array:
    """The decimal128 (or float64) array a scaled value stands for."""
    values = value.values if isinstance(value.values, np.ndarray) else np.full(length, value.values, np.int64)
    if pa.types.is_floating(dtype):
        return pa.array(values / (10.0 ** value.scale), pa.float64(), mask=value.nulls)
    words = np.empty((len(values), 2), dtype=np.int64)
    words[:, 0] = values
    np.right_shift(values, 63, out=words[:, 1])
    validity = None if value.nulls is None else pa.array(~value.nulls).buffers()[1]
    return pa.Array.from_buffers(dtype, len(values), [validity, pa.py_buffer(words)],
                                 -1 if validity is not None else 0)


def to_int64(value: Scaled, length: int) -> pa.Array:
    """The unscaled integers as an int64 array (NULL where the value is NULL)."""
    values = value.values if isinstance(value.values, np.ndarray) else np.full(length, value.values, np.int64)
    return pa.array(values, pa.int64(), mask=value.nulls)


# --- leaves ------------------------------------------------------------------------------


def _column(column: pa.ChunkedArray | pa.Array) -> Scaled | None:
    dtype = column.type
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if pa.types.is_decimal128(dtype):
        parts = [_low_words(chunk) for chunk in chunks]
        if any(part is None for part in parts):
            return None
        scale = dtype.scale
    elif pa.types.is_integer(dtype) and not pa.types.is_uint64(dtype):
        parts = [np.asarray(chunk.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64) for chunk in chunks]
        scale = 0
    else:
        return None
    values = np.array(parts[0], dtype=np.int64) if len(parts) == 1 else (
        np.concatenate(parts) if parts else np.empty(0, np.int64))
    nulls = None
    if column.null_count:
        nulls = np.concatenate([np.asarray(chunk.is_null().to_numpy(zero_copy_only=False), dtype=bool)
                                for chunk in chunks])
        values[nulls] = 0  # the words under a NULL slot are unspecified
    bound = int(max(values.max(initial=0), -values.min(initial=0))) if len(values) else 0
    if bound >= _LIMIT:
        return None
    return Scaled(values, scale, bound, nulls)


def _low_words(chunk: pa.Array) -> np.ndarray | None:
    """The low 64-bit words of a decimal128 chunk (a strided view), or None when some value needs more."""
    words = np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=2 * (chunk.offset + len(chunk)))
    words = words[2 * chunk.offset:]
    low, high = words[0::2], words[1::2]
    if chunk.type.precision > 18 and not np.array_equal(high, low >> 63):
        return None
    return low


def _literal(expr: Literal) -> Scaled | None:
    value = expr.value
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        unscaled, scale = value, 0
    elif isinstance(value, Decimal) and pa.types.is_decimal(expr.type):
        scale = expr.type.scale
        unscaled = int(value.scaleb(scale))
        if Decimal(unscaled).scaleb(-scale) != value:
            return None
    else:
        return None
    if pa.types.is_decimal(expr.type) and expr.type.scale != scale:
        if expr.type.scale < scale:
            return None
        unscaled, scale = unscaled * 10 ** (expr.type.scale - scale), expr.type.scale
    if abs(unscaled) >= _LIMIT:
        return None
    return Scaled(unscaled, scale, abs(unscaled), None)


# --- inner nodes -------------------------------------------------------------------------


def _cast(expr: Cast, table: pa.Table | pa.RecordBatch, memo: dict) -> Scaled | None:
    source = expr.arg.type
    if not (pa.types.is_decimal128(source) or pa.types.is_integer(source)):
        return None
    inner = evaluate(expr.arg, table, memo)
    if inner is None:
        return None
    target = expr.type
    if pa.types.is_float64(target):
        return inner  # the caller divides by 10**scale when it materializes
    if not pa.types.is_decimal128(target) or target.scale < inner.scale:
        return None  # narrowing rounds: the general path knows how
    return _fit(_rescale(inner, target.scale), target)


def _arithmetic(op: str, left: Scaled, right: Scaled, result: pa.DataType) -> Scaled | None:
    if op == "multiply":
        if left.scale + right.scale != result.scale or left.bound * right.bound >= _LIMIT:
            return None
        values = left.values * right.values
        return _fit(Scaled(values, result.scale, left.bound * right.bound, _either(left.nulls, right.nulls)), result)
    if result.scale < max(left.scale, right.scale):
        return None
    left, right = _rescale(left, result.scale), _rescale(right, result.scale)
    if left is None or right is None or left.bound + right.bound >= _LIMIT:
        return None
    values = left.values + right.values if op == "add" else left.values - right.values
    return _fit(Scaled(values, result.scale, left.bound + right.bound, _either(left.nulls, right.nulls)), result)


def _rescale(value: Scaled | None, scale: int) -> Scaled | None:
    if value is None or value.scale == scale:
        return value
    factor = 10 ** (scale - value.scale)
    if value.bound * factor >= _LIMIT:
        return None
    return Scaled(value.values * factor, scale, value.bound * factor, value.nulls)


def _fit(value: Scaled | None, dtype: pa.DataType) -> Scaled | None:
    """``value`` when its bound fits ``dtype``'s precision (else the general path decides)."""
    if value is None or value.bound >= 10 ** dtype.precision:
        return None
    return value


def _either(left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray | None:
    if left is None:
        return right
    if right is None:
        return left
    return left | right
