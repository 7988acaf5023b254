"""Evaluate logical expressions over Arrow record batches.

Batch columns are named by field id (``column_name(id)``), so evaluation never depends on
user-visible names. Literals evaluate to Arrow scalars, which the compute kernels
broadcast; :func:`evaluate_array` turns a scalar result into a full column when a column
is required.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import ExecutionError, UnsupportedSQLError
from engine.functions import lookup
from engine.physical import decimals, scaled
from engine.logical.expr import AggregateCall, Call, Case, Cast, ColumnRef, Expr, InList, Literal, WindowCall
from engine.types import type_name

Value = pa.Array | pa.ChunkedArray | pa.Scalar


def column_name(field_id: int) -> str:
    return f"#{field_id}"


def broadcast(value: Value, length: int) -> pa.Array | pa.ChunkedArray:
    """A column of ``length`` rows from an array (returned as is) or a scalar (repeated)."""
    if not isinstance(value, pa.Scalar):
        return value
    if not value.is_valid:
        return pa.nulls(length, value.type)
    return pc.take(pa.array([value.as_py()], value.type), pa.array(np.zeros(length, dtype=np.int32)))


def _literal(expr: Literal) -> pa.Scalar:
    if expr.value is None:
        return pa.scalar(None, expr.type)
    return pa.scalar(expr.value, expr.type)


def _float_text(value: Value) -> Value:
    """FLOAT/DOUBLE -> VARCHAR as DuckDB prints them, which is Python's ``repr`` of a double:
    shortest round-trip digits, ``1.0`` rather than Arrow's ``1``, exponents below 1e-4 and from
    1e16 (``1e-05``). A FLOAT keeps its own shortest digits (``0.1``, not ``0.10000000149...``)."""
    single = pa.types.is_float32(value.type)

    def text(v: float) -> str:
        return repr(float(str(np.float32(v)))) if single else repr(v)

    if isinstance(value, pa.Scalar):
        return pa.scalar(text(value.as_py()) if value.is_valid else None, pa.string())
    array = value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value
    encoded = array.dictionary_encode()  # format each distinct value once
    texts = pa.array([text(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return pc.take(texts, encoded.indices)


def _cast(value: Value, target: pa.DataType, safe: bool) -> Value:
    if value.type == target:
        return value
    if pa.types.is_string(target) and pa.types.is_floating(value.type):
        return _float_text(value)
    if pa.types.is_string(target) and pa.types.is_timestamp(value.type):
        # DuckDB prints only the significant fraction digits ('00:00:00.5'; none when it is zero),
        # and a TIMESTAMPTZ in the session zone, which is UTC here: '... 05:54:37+00'.
        zoned = value.type.tz is not None
        naive = value.cast(pa.timestamp(value.type.unit)) if zoned else value  # the UTC wall clock
        text = pc.replace_substring_regex(naive.cast(target), r"(\.\d*?)0+$", r"\1")
        text = pc.replace_substring_regex(text, r"\.$", "")
        return pc.binary_join_element_wise(text, "+00", "") if zoned else text
    if not isinstance(value, pa.Scalar) and pa.types.is_decimal(value.type):
        fast = decimals.rescale_free(value, target) if pa.types.is_decimal(target) else (
            decimals.to_float(value) if pa.types.is_float64(target) else None)
        if fast is not None:
            return fast
    try:
        if pa.types.is_boolean(target) and (pa.types.is_string(value.type) or pa.types.is_large_string(value.type)):
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(value))
            truth = pc.is_in(lowered, pa.array(["true", "t", "1", "yes", "y"]))
            falsity = pc.is_in(lowered, pa.array(["false", "f", "0", "no", "n"]))
            if safe and not pc.all(pc.or_(pc.or_(truth, falsity), pc.is_null(value))).as_py():
                raise pa.ArrowInvalid("not a boolean")
            return pc.if_else(truth, True, pc.if_else(falsity, False, pa.scalar(None, pa.bool_())))
        if pa.types.is_string(target) and pa.types.is_decimal(value.type):
            return value.cast(target)
        if pa.types.is_floating(target) and pa.types.is_integer(value.type):
            # Every BIGINT has a nearest DOUBLE; Arrow's safe cast refuses those beyond 2**53.
            return value.cast(target, safe=False)
        if pa.types.is_string(value.type) and (pa.types.is_integer(target) or pa.types.is_floating(target)
                                               or pa.types.is_decimal(target)):
            value = pc.utf8_trim_whitespace(value)  # DuckDB: CAST(' 42 ' AS INT) = 42
        if pa.types.is_integer(target) and (pa.types.is_floating(value.type) or pa.types.is_decimal(value.type)):
            # SQL rounds when casting to an integer (DuckDB: CAST(2.5 AS INT) = 3).
            rounded = pc.round(value if pa.types.is_floating(value.type) else value.cast(pa.float64()),
                               round_mode="half_towards_infinity")
            return rounded.cast(target)
        if pa.types.is_decimal(target) and pa.types.is_floating(value.type):
            return pc.round(value, target.scale, round_mode="half_towards_infinity").cast(target, safe=False)
        if pa.types.is_decimal(target) and pa.types.is_decimal(value.type) and target.scale < value.type.scale:
            return pc.round(value, target.scale, round_mode="half_towards_infinity").cast(target)
        if pa.types.is_decimal(target) and pa.types.is_integer(value.type):
            # Arrow refuses int -> DECIMAL(p,s) unless p-s covers the whole integer type; SQL checks
            # the values instead. Going through DECIMAL(38,0) makes Arrow check each value's fit.
            return value.cast(pa.decimal128(38, 0)).cast(target)
        if pa.types.is_date(target) and pa.types.is_timestamp(value.type):
            return pc.floor_temporal(value, unit="day").cast(target) if value.type.tz is None else \
                pc.cast(pc.local_timestamp(value), pa.timestamp("us")).cast(pa.date32())
        return value.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        if not safe:
            return _try_cast_rows(value, target)
        shown = value.as_py() if isinstance(value, pa.Scalar) else None
        what = f" the value {shown!r}" if shown is not None else ""
        raise ExecutionError(f"cannot cast{what} from {type_name(value.type)} to {type_name(target)}: "
                             f"{str(exc).splitlines()[0]}; use TRY_CAST to get NULL instead") from None


def _try_cast_rows(value: Value, target: pa.DataType) -> Value:
    if isinstance(value, pa.Scalar):
        try:
            return _cast(value, target, True)
        except ExecutionError:
            return pa.scalar(None, target)
    out = []
    for item in value.to_pylist():
        try:
            out.append(None if item is None else _cast(pa.scalar(item, value.type), target, True).as_py())
        except ExecutionError:
            out.append(None)
    return pa.array(out, target)


def _in_list(arg: Value, values: list[Value], negated: bool) -> Value:
    constants = [v for v in values if isinstance(v, pa.Scalar)]
    if len(constants) == len(values):
        has_null = any(not v.is_valid for v in constants)
        value_set = pa.array([v.as_py() for v in constants if v.is_valid], arg.type)
        if pa.types.is_floating(arg.type):
            # is_in hashes bit patterns, so -0.0 would miss 0.0; adding 0.0 turns -0.0 into 0.0.
            arg, value_set = pc.add(arg, 0.0).cast(arg.type), pc.add(value_set, 0.0).cast(arg.type)
        found = pc.is_in(arg, value_set=value_set)
    else:
        found = pa.scalar(False)
        has_null = False
        for v in values:
            found = pc.or_kleene(found, pc.equal(arg, v))
    if has_null:
        found = pc.if_else(found, True, pa.scalar(None, pa.bool_()))
    found = pc.if_else(pc.is_null(arg), pa.scalar(None, pa.bool_()), found)
    return pc.invert(found) if negated else found


def evaluate(expr: Expr, batch: pa.RecordBatch | pa.Table) -> Value:
    """The value of ``expr`` over ``batch``: an array, or a scalar when it is constant."""
    if isinstance(expr, ColumnRef):
        try:
            return batch.column(column_name(expr.id))
        except KeyError:
            raise ExecutionError(f"internal: column {expr.name}#{expr.id} is not available here") from None
    if isinstance(expr, Literal):
        return _literal(expr)
    if scaled.is_decimal_tree(expr):
        fast = scaled.evaluate(expr, batch)
        if fast is not None and not isinstance(fast.values, int):  # constants stay scalars
            return scaled.to_arrow(fast, expr.type, batch.num_rows)
    if isinstance(expr, Call):
        fn = lookup(expr.name)
        args = [evaluate(a, batch) for a in expr.args]
        if expr.name == "random":
            return fn.implementation(result=expr.type, length=batch.num_rows)
        if fn.null_propagating and any(isinstance(a, pa.Scalar) and not a.is_valid for a in args):
            # A NULL constant argument makes the result NULL. Answer here: kernels that take the
            # argument as an option (LIKE patterns, pad widths, split_part indexes) reject None.
            return pa.scalar(None, expr.type)
        try:
            return fn.implementation(*args, result=expr.type)
        except AttributeError as exc:
            if "as_py" in str(exc):
                raise UnsupportedSQLError(f"{expr.name}(): this argument must be a constant, not a column") from None
            raise
        except pa.ArrowInvalid as exc:
            message = str(exc).splitlines()[0]
            if "overflow" in message.lower():
                raise ExecutionError(f"{expr.name}: numeric overflow ({message}); cast to a wider type") from None
            raise ExecutionError(f"{expr.name}: {message}") from None
    if isinstance(expr, Cast):
        return _cast(evaluate(expr.arg, batch), expr.type, expr.safe)
    if isinstance(expr, Case):
        conditions = [pc.fill_null(evaluate(c, batch), False) for c, _ in expr.whens]
        values = [evaluate(v, batch) for _, v in expr.whens]
        default = evaluate(expr.default, batch)
        if all(isinstance(c, pa.Scalar) for c in conditions):
            for c, v in zip(conditions, values):
                if c.as_py():
                    return v
            return default
        length = batch.num_rows
        conditions = [broadcast(c, length) for c in conditions]
        if len(conditions) == 1:
            return pc.if_else(conditions[0], values[0], default)
        cond_struct = pc.make_struct(*conditions, field_names=[str(i) for i in range(len(conditions))])
        return pc.case_when(cond_struct, *[broadcast(v, length) for v in values], broadcast(default, length))
    if isinstance(expr, InList):
        return _in_list(evaluate(expr.arg, batch), [evaluate(v, batch) for v in expr.values], expr.negated)
    if isinstance(expr, (AggregateCall, WindowCall)):
        raise ExecutionError(f"internal: {type(expr).__name__} evaluated outside its operator")
    raise UnsupportedSQLError(f"cannot evaluate {type(expr).__name__}")


def evaluate_array(expr: Expr, batch: pa.RecordBatch | pa.Table) -> pa.Array | pa.ChunkedArray:
    value = evaluate(expr, batch)
    if isinstance(value, pa.Scalar):
        return broadcast(value, batch.num_rows)
    return value


# --- Arrow compute expressions (for join residuals and dataset filters) -----------------

_ARROW_BINARY = {"eq": "equal", "neq": "not_equal", "lt": "less", "lte": "less_equal", "gt": "greater",
                 "gte": "greater_equal", "and": "and_kleene", "or": "or_kleene", "add": "add", "subtract": "subtract",
                 "multiply": "multiply"}


def to_arrow_expression(expr: Expr) -> pc.Expression | None:
    """An equivalent ``pyarrow.compute.Expression``, or ``None`` if there is none."""
    if isinstance(expr, ColumnRef):
        return pc.field(column_name(expr.id))
    if isinstance(expr, Literal):
        return pc.scalar(_literal(expr))
    if isinstance(expr, Cast) and expr.safe:
        inner = to_arrow_expression(expr.arg)
        if inner is None or not (pa.types.is_integer(expr.type) or pa.types.is_floating(expr.type)
                                 or pa.types.is_decimal(expr.type)) or not (
                pa.types.is_integer(expr.arg.type) or pa.types.is_decimal(expr.arg.type)):
            return None
        return inner.cast(expr.type)
    if isinstance(expr, Call):
        args = [to_arrow_expression(a) for a in expr.args]
        if any(a is None for a in args):
            return None
        if expr.name in _ARROW_BINARY and not (expr.name in ("add", "subtract", "multiply")
                                               and not pa.types.is_floating(expr.type)):
            return pc.Expression._call(_ARROW_BINARY[expr.name], args)
        if expr.name == "not":
            return pc.Expression._call("invert", args)
        if expr.name == "is_null":
            return args[0].is_null()
        if expr.name == "is_not_null":
            return args[0].is_valid()
    return None
