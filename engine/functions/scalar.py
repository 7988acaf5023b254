"""Operators and general scalar functions: arithmetic, comparison, logic, nulls, math."""

from __future__ import annotations

import decimal
import math
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import PlanError
from engine.functions.registry import Value, register
from engine.physical import decimals
from engine.types import common_numeric, common_type, integer_as_decimal, is_numeric, is_string, is_temporal, type_name

# --- signatures -------------------------------------------------------------------------


def _numeric_pair(types: Sequence[pa.DataType], op: str) -> tuple[pa.DataType, pa.DataType]:
    left, right = types
    for t in (left, right):
        if not (is_numeric(t) or pa.types.is_null(t)):
            raise PlanError(f"operator {op} needs numbers, got {type_name(left)} and {type_name(right)}")
    left = right if pa.types.is_null(left) else left
    right = left if pa.types.is_null(right) else right
    return left, right


def _widen_int(dtype: pa.DataType) -> pa.DataType:
    return pa.int64() if pa.types.is_integer(dtype) else dtype


def _additive(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    left, right = types
    # Date arithmetic: date +/- integer days, date/timestamp +/- interval, date - date.
    if is_temporal(left) or is_temporal(right) or pa.types.is_interval(left) or pa.types.is_interval(right):
        if pa.types.is_date(left) and pa.types.is_integer(right):
            return [None, pa.int64()], pa.date32()
        if op == "+" and pa.types.is_integer(left) and pa.types.is_date(right):
            return [pa.int64(), None], pa.date32()
        if is_temporal(left) and pa.types.is_interval(right):
            return [None, None], pa.timestamp("us", tz=getattr(left, "tz", None)) if pa.types.is_timestamp(left) else pa.timestamp("us")
        if op == "+" and pa.types.is_interval(left) and is_temporal(right):
            return [None, None], pa.timestamp("us", tz=getattr(right, "tz", None)) if pa.types.is_timestamp(right) else pa.timestamp("us")
        if op == "-" and pa.types.is_date(left) and pa.types.is_date(right):
            return [None, None], pa.int64()
        if op == "-" and pa.types.is_timestamp(left) and pa.types.is_timestamp(right):
            return [None, None], pa.duration("us")
        if pa.types.is_interval(left) and pa.types.is_interval(right):
            return [None, None], pa.month_day_nano_interval()
        if is_string(left) and is_temporal(right) or is_temporal(left) and is_string(right):
            raise PlanError(f"operator {op}: cast the text to a date first ({type_name(left)} {op} {type_name(right)})")
        raise PlanError(f"operator {op} cannot combine {type_name(left)} and {type_name(right)}")
    left, right = _numeric_pair(types, op)
    if pa.types.is_decimal(left) or pa.types.is_decimal(right):
        if pa.types.is_floating(left) or pa.types.is_floating(right):
            return [pa.float64(), pa.float64()], pa.float64()
        left = integer_as_decimal(left) if pa.types.is_integer(left) else left
        right = integer_as_decimal(right) if pa.types.is_integer(right) else right
        scale = max(left.scale, right.scale)
        digits = max(left.precision - left.scale, right.precision - right.scale) + 1
        return [left, right], pa.decimal128(min(38, digits + scale), scale)
    result = _widen_int(common_numeric(left, right))
    return [result, result], result


def _multiplicative(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    left, right = _numeric_pair(types, op)
    if pa.types.is_decimal(left) or pa.types.is_decimal(right):
        if pa.types.is_floating(left) or pa.types.is_floating(right):
            return [pa.float64(), pa.float64()], pa.float64()
        left = integer_as_decimal(left) if pa.types.is_integer(left) else left
        right = integer_as_decimal(right) if pa.types.is_integer(right) else right
        scale = left.scale + right.scale
        precision = min(38, max(left.precision + right.precision, scale + 1))
        return [left, right], pa.decimal128(precision, scale)
    result = _widen_int(common_numeric(left, right))
    return [result, result], result


def _divide(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    _numeric_pair(types, op)
    return [pa.float64(), pa.float64()], pa.float64()  # SQL '/' is true division (DuckDB)


def _int_divide(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    left, right = _numeric_pair(types, op)
    if pa.types.is_integer(left) and pa.types.is_integer(right):
        return [pa.int64(), pa.int64()], pa.int64()
    return [pa.float64(), pa.float64()], pa.float64()


def _modulo(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    left, right = _numeric_pair(types, op)
    if pa.types.is_integer(left) and pa.types.is_integer(right):
        return [pa.int64(), pa.int64()], pa.int64()
    return [pa.float64(), pa.float64()], pa.float64()


def _comparison(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    target = common_type(types[0], types[1], context=f"operator {op}")
    if pa.types.is_null(target):
        target = pa.bool_()  # NULL = NULL: Arrow has no kernel for the null type; any type gives NULL
    return [target, target], pa.bool_()


def _boolean(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    for t in types:
        if not (pa.types.is_boolean(t) or pa.types.is_null(t)):
            raise PlanError(f"{op} needs boolean operands, got {type_name(t)}")
    return [pa.bool_()] * len(types), pa.bool_()


def _same_as_first(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    return [None] * len(types), types[0]


def _any_to_bool(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    return [None] * len(types), pa.bool_()


def _common_all(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    target = types[0]
    for t in types[1:]:
        target = common_type(target, t, context=op)
    return [target] * len(types), target


def _unary_numeric(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    if not (is_numeric(types[0]) or pa.types.is_null(types[0]) or pa.types.is_interval(types[0])):
        raise PlanError(f"{op} needs a number, got {type_name(types[0])}")
    return [None], _widen_int(types[0]) if not pa.types.is_null(types[0]) else pa.float64()


def _to_double(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    for t in types:
        if not (is_numeric(t) or pa.types.is_null(t)):
            raise PlanError(f"{op}() needs numbers, got {type_name(t)}")
    return [pa.float64()] * len(types), pa.float64()


# --- helpers ------------------------------------------------------------------------------


def _decimal_safe(fn: str, left: Value, right: Value, result: pa.DataType) -> Value:
    """Arrow refuses decimal results wider than 38 digits; go through decimal256 then back.

    The final cast is checked: a value that really needs more than 38 digits is an error,
    as in DuckDB, never a silently wrong number.
    """
    fast = decimals.arithmetic(fn, left, right, result)
    if fast is not None:
        return fast
    try:
        out = pc.call_function(fn, [left, right])
    except pa.ArrowInvalid:
        wide_left = left.cast(pa.decimal256(left.type.precision, left.type.scale))
        wide_right = right.cast(pa.decimal256(right.type.precision, right.type.scale))
        try:
            out = pc.call_function(fn, [wide_left, wide_right])
        except pa.ArrowInvalid:
            out = pc.call_function(fn, [left.cast(pa.float64()), right.cast(pa.float64())])
            return pc.round(out, result.scale, round_mode="half_towards_infinity").cast(result)
    return out if out.type == result else out.cast(result)


def _add_months(values: Value, months: int) -> Value:
    """Calendar month arithmetic, clamping the day (Jan 31 + 1 month = Feb 29 in a leap year)."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    micros = pc.fill_null(array.cast(pa.timestamp("us")).cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    stamps = micros.astype("datetime64[us]")
    days = stamps.astype("datetime64[D]")
    month_start = days.astype("datetime64[M]")
    day_of_month = (days - month_start.astype("datetime64[D]")).astype(np.int64)
    target = month_start + months
    month_length = ((target + 1).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(np.int64)
    shifted_days = target.astype("datetime64[D]") + np.minimum(day_of_month, month_length - 1)
    shifted = shifted_days.astype("datetime64[us]") + (stamps - days.astype("datetime64[us]"))
    out = pa.array(shifted.astype(np.int64), pa.int64(), mask=array.is_null().to_numpy(zero_copy_only=False))
    return out.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz=getattr(array.type, "tz", None))
                                              if pa.types.is_timestamp(array.type) else pa.timestamp("us"))


def _add_interval(values: Value, interval: pa.Scalar, sign: int, result: pa.DataType) -> Value:
    if not interval.is_valid:
        return pa.nulls(len(values), result) if not isinstance(values, pa.Scalar) else pa.scalar(None, result)
    months, days, nanos = interval.value.months, interval.value.days, interval.value.nanoseconds
    out = values
    if isinstance(out, pa.Scalar):
        return _add_interval(pa.array([out.as_py()], out.type), interval, sign, result)[0]
    if pa.types.is_date(out.type):
        out = out.cast(pa.timestamp("us"))
    if months:
        out = _add_months(out, sign * months)
    if days or nanos:
        micros = sign * (days * 86_400_000_000 + nanos // 1000)
        out = pc.add(out, pa.scalar(micros, pa.duration("us")))
    return out.cast(result)


# --- arithmetic --------------------------------------------------------------------------


@register("add", lambda t, _: _additive(t, "+"), min_args=2, max_args=2)
def add(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_interval(right.type):
        return _add_interval(left, right, 1, result)
    if pa.types.is_interval(left.type):
        return _add_interval(right, left, 1, result)
    if pa.types.is_date(result):
        date, days = (left, right) if pa.types.is_date(left.type) else (right, left)
        return pc.add(date.cast(pa.timestamp("s")), pc.multiply(days, 86400).cast(pa.duration("s"))).cast(pa.date32())
    if pa.types.is_decimal(result):
        return _decimal_safe("add", left, right, result)
    return pc.add_checked(left, right) if pa.types.is_integer(result) else pc.add(left, right)


@register("subtract", lambda t, _: _additive(t, "-"), min_args=2, max_args=2)
def subtract(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_interval(right.type):
        return _add_interval(left, right, -1, result)
    if pa.types.is_date(left.type) and pa.types.is_date(right.type):
        return pc.subtract(left.cast(pa.int32()).cast(pa.int64()), right.cast(pa.int32()).cast(pa.int64()))
    if pa.types.is_date(result):
        return pc.subtract(left.cast(pa.timestamp("s")), pc.multiply(right, 86400).cast(pa.duration("s"))).cast(pa.date32())
    if pa.types.is_decimal(result):
        return _decimal_safe("subtract", left, right, result)
    return pc.subtract_checked(left, right) if pa.types.is_integer(result) else pc.subtract(left, right)


@register("multiply", lambda t, _: _multiplicative(t, "*"), min_args=2, max_args=2)
def multiply(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_decimal(result):
        return _decimal_safe("multiply", left, right, result)
    return pc.multiply_checked(left, right) if pa.types.is_integer(result) else pc.multiply(left, right)


@register("divide", lambda t, _: _divide(t, "/"), min_args=2, max_args=2)
def divide(left: Value, right: Value, *, result: pa.DataType) -> Value:
    return pc.divide(left, right)  # float64: x/0 is +-inf, 0/0 is NaN (as DuckDB)


@register("int_divide", lambda t, _: _int_divide(t, "//"), min_args=2, max_args=2)
def int_divide(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_integer(result):
        zero = pc.equal(right, 0)
        safe = pc.if_else(zero, pa.scalar(1, right.type), right)
        quotient = pc.divide(left, safe)  # Arrow integer division truncates toward zero, like DuckDB
        return pc.if_else(zero, pa.scalar(None, result), quotient)
    # x // 0 is NULL for every numeric type, as for integers above (not floor(+-inf)).
    return pc.if_else(pc.equal(right, 0), pa.scalar(None, result), pc.floor(pc.divide(left, right)))


@register("mod", lambda t, _: _modulo(t, "%"), min_args=2, max_args=2)
def mod(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_integer(result):
        zero = pc.equal(right, 0)
        safe = pc.if_else(zero, pa.scalar(1, right.type), right)
        remainder = pc.subtract(left, pc.multiply(pc.divide(left, safe), safe))  # sign follows the dividend
        return pc.if_else(zero, pa.scalar(None, result), remainder)
    quotient = pc.trunc(pc.divide(left, right))
    return pc.subtract(left, pc.multiply(quotient, right))


@register("negate", _unary_numeric, min_args=1, max_args=1)
def negate(value: Value, *, result: pa.DataType) -> Value:
    return pc.negate_checked(value.cast(result) if value.type != result else value)


# --- comparison and logic ------------------------------------------------------------------

for _name, _op, _kernel in (("eq", "=", pc.equal), ("neq", "<>", pc.not_equal), ("lt", "<", pc.less),
                            ("lte", "<=", pc.less_equal), ("gt", ">", pc.greater), ("gte", ">=", pc.greater_equal)):
    def _make(kernel=_kernel):  # bind the loop variable
        def compare(left: Value, right: Value, *, result: pa.DataType) -> Value:
            return kernel(left, right)
        return compare

    register(_name, lambda t, _n, op=_op: _comparison(t, op), min_args=2, max_args=2)(_make())


@register("is_distinct_from", lambda t, _: _comparison(t, "IS DISTINCT FROM"), min_args=2, max_args=2,
          null_propagating=False)
def is_distinct_from(left: Value, right: Value, *, result: pa.DataType) -> Value:
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    one_null = pc.xor(pc.is_null(left), pc.is_null(right))
    return pc.or_(one_null, pc.and_(pc.invert(both_null), pc.fill_null(pc.not_equal(left, right), False)))


@register("and", lambda t, _: _boolean(t, "AND"), min_args=2, max_args=2, null_propagating=False)
def and_(left: Value, right: Value, *, result: pa.DataType) -> Value:
    return pc.and_kleene(left, right)


@register("or", lambda t, _: _boolean(t, "OR"), min_args=2, max_args=2, null_propagating=False)
def or_(left: Value, right: Value, *, result: pa.DataType) -> Value:
    return pc.or_kleene(left, right)


@register("not", lambda t, _: _boolean(t, "NOT"), min_args=1, max_args=1)
def not_(value: Value, *, result: pa.DataType) -> Value:
    return pc.invert(value)


@register("is_null", _any_to_bool, min_args=1, max_args=1, null_propagating=False)
def is_null(value: Value, *, result: pa.DataType) -> Value:
    return pc.is_null(value, nan_is_null=False)


@register("is_not_null", _any_to_bool, min_args=1, max_args=1, null_propagating=False)
def is_not_null(value: Value, *, result: pa.DataType) -> Value:
    return pc.is_valid(value)


@register("is_true", _any_to_bool, min_args=1, max_args=1, null_propagating=False)
def is_true(value: Value, *, result: pa.DataType) -> Value:
    return pc.fill_null(value, False)


@register("coalesce", _common_all, min_args=1, null_propagating=False)
def coalesce(*values: Value, result: pa.DataType) -> Value:
    return pc.coalesce(*values) if len(values) > 1 else values[0]


@register("nullif", lambda t, n: ([common_type(t[0], t[1], context="nullif")] * 2,
                                  common_type(t[0], t[1], context="nullif")), min_args=2, max_args=2,
          null_propagating=False)
def nullif(left: Value, right: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_null(result):
        return left  # NULLIF(NULL, NULL): Arrow cannot compare the null type, and the answer is NULL
    return pc.if_else(pc.fill_null(pc.equal(left, right), False), pa.scalar(None, result), left)


@register("greatest", _common_all, min_args=1, null_propagating=False)
def greatest(*values: Value, result: pa.DataType) -> Value:
    return pc.max_element_wise(*values, skip_nulls=True)


@register("least", _common_all, min_args=1, null_propagating=False)
def least(*values: Value, result: pa.DataType) -> Value:
    return pc.min_element_wise(*values, skip_nulls=True)


# --- math -----------------------------------------------------------------------------------


@register("abs", _unary_numeric, min_args=1, max_args=1)
def abs_(value: Value, *, result: pa.DataType) -> Value:
    return pc.abs_checked(value)


def _round_signature(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    if not (is_numeric(types[0]) or pa.types.is_null(types[0])):
        raise PlanError(f"{op}() needs a number, got {type_name(types[0])}")
    if pa.types.is_decimal(types[0]):  # one more integer digit: rounding can carry (9.99 -> 10.0)
        return [None] + [pa.int64()] * (len(types) - 1), pa.decimal128(min(38, types[0].precision + 1),
                                                                       types[0].scale)
    return [None] + [pa.int64()] * (len(types) - 1), types[0] if not pa.types.is_integer(types[0]) else pa.int64()


@register("round", _round_signature, min_args=1, max_args=2)
def round_(value: Value, digits: Value | None = None, *, result: pa.DataType) -> Value:
    ndigits = 0 if digits is None else digits.as_py()
    if pa.types.is_integer(value.type):
        return value.cast(result) if ndigits >= 0 else pc.round(value.cast(pa.float64()), ndigits,
                                                                 round_mode="half_towards_infinity").cast(result)
    if pa.types.is_decimal(value.type):
        # Arrow rounds a decimal only within its own precision (DECIMAL(3,2) cannot round to -1
        # digits, nor 9.99 to 10.0): round at full precision, then narrow to the result type.
        scale = value.type.scale
        value = value.cast(pa.decimal128(38, scale))
        ndigits = max(ndigits, scale - 37)
    out = pc.round(value, ndigits, round_mode="half_towards_infinity")
    if pa.types.is_floating(value.type):
        out = _exact_float_ties(value, out, ndigits)
    return out.cast(result) if out.type != result else out


def _exact_float_ties(value: Value, rounded: Value, ndigits: int) -> Value:
    """Round apparent ties of floats by their exact binary value, as DuckDB and Python do.

    ``495.45`` is stored as 495.4499999..., but ``495.45 * 10`` gives exactly 4954.5, so a
    half-away-from-zero kernel returns 495.5. A computed product can only land on ``.5``
    when the exact product is at or next to it, so only those rows (rare) are redone with
    exact decimal arithmetic; everything else keeps the vectorized answer.
    """
    if isinstance(value, pa.Scalar):
        if not value.is_valid:
            return rounded
        return pa.scalar(_round_exact(value.as_py(), ndigits), value.type)
    array = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    x = array.to_numpy(zero_copy_only=False).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.abs(x * (10.0 ** ndigits))
        ties = np.flatnonzero(np.isfinite(scaled) & (scaled - np.floor(scaled) == 0.5))
    if not len(ties):
        return rounded
    exact = (rounded.combine_chunks() if isinstance(rounded, pa.ChunkedArray) else rounded) \
        .to_numpy(zero_copy_only=False).astype(np.float64)
    for i in ties:
        exact[i] = _round_exact(float(x[i]), ndigits)
    out = pa.array(exact, type=rounded.type, mask=np.asarray(array.is_null().to_numpy(zero_copy_only=False)))
    return pa.chunked_array([out]) if isinstance(value, pa.ChunkedArray) else out


def _round_exact(number: float, ndigits: int) -> float:
    """``number`` rounded to ``ndigits`` decimals by its exact value, ties away from zero."""
    if not math.isfinite(number):
        return number
    quantum = decimal.Decimal(1).scaleb(-ndigits)
    return float(decimal.Decimal(number).quantize(quantum, rounding=decimal.ROUND_HALF_UP))


for _fname, _kernel in (("floor", pc.floor), ("ceil", pc.ceil), ("trunc", pc.trunc)):
    def _make_rounding(kernel=_kernel):
        def rounding(value: Value, *, result: pa.DataType) -> Value:
            if pa.types.is_integer(value.type):
                return value.cast(result)
            if pa.types.is_decimal(value.type):
                return kernel(value.cast(pa.float64())).cast(result)
            return kernel(value)
        return rounding

    register(_fname, _unary_numeric, min_args=1, max_args=1,
             aliases=("ceiling",) if _fname == "ceil" else ())(_make_rounding())

for _fname, _kernel in (("sqrt", pc.sqrt), ("ln", pc.ln), ("log10", pc.log10), ("log2", pc.log2),
                        ("exp", pc.exp), ("sin", pc.sin), ("cos", pc.cos), ("tan", pc.tan)):
    def _make_math(kernel=_kernel):
        def math_fn(value: Value, *, result: pa.DataType) -> Value:
            return kernel(value)
        return math_fn

    register(_fname, _to_double, min_args=1, max_args=1)(_make_math())


@register("power", _to_double, min_args=2, max_args=2, aliases=("pow",))
def power(base: Value, exponent: Value, *, result: pa.DataType) -> Value:
    return pc.power(base, exponent)


def _sign_signature(types: Sequence[pa.DataType], op: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    _unary_numeric(types, op)  # type check only: -1/0/1 need no decimal digits (DuckDB: TINYINT)
    return [None], types[0] if pa.types.is_floating(types[0]) else pa.int8()


@register("sign", _sign_signature, min_args=1, max_args=1)
def sign(value: Value, *, result: pa.DataType) -> Value:
    if pa.types.is_decimal(value.type):
        value = value.cast(pa.float64())  # exact for the sign; Arrow has no decimal sign kernel
    return pc.sign(value).cast(result)


@register("random", lambda t, _: ([], pa.float64()), min_args=0, max_args=0, null_propagating=False)
def random_(*, result: pa.DataType, length: int = 1) -> Value:
    return pa.array(np.random.default_rng().random(length))
