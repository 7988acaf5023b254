"""A small predicate language for scans, deletes and conflict checks.

Predicates compare one column with literal values, combined with and/or/not. That is what
file skipping can use and what a row filter needs. Build them directly::

    from lakehouse.expressions import And, Comparison, In, IsNull
    And((Comparison("day", ">=", "2026-01-01"), In("country", ("NL", "BE"))))

or parse SQL text with :func:`parse_filter`::

    parse_filter("day >= '2026-01-01' and country in ('NL', 'BE')")

Before use a predicate is *bound* to a schema (:func:`bind`): column names are resolved
and literals are converted to the column's type, so ``'2026-01-01'`` becomes a date.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Union

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import ColumnNotFoundError, InvalidFilterError

COMPARISON_OPS = ("=", "!=", "<", "<=", ">", ">=")
_FLIPPED = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NEGATED = {"=": "!=", "!=": "=", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


@dataclass(frozen=True)
class Comparison:
    """``column <op> value`` with op one of ``= != < <= > >=``."""

    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in COMPARISON_OPS:
            raise InvalidFilterError(f"unknown comparison operator '{self.op}'; use one of {' '.join(COMPARISON_OPS)}")
        if self.value is None:
            raise InvalidFilterError(f"comparing column '{self.column}' with NULL is never true; use IsNull / 'is null'")


@dataclass(frozen=True)
class In:
    """``column IN (values...)``."""

    column: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class IsNull:
    """``column IS NULL`` (wrap in :class:`Not` for IS NOT NULL)."""

    column: str


@dataclass(frozen=True)
class Like:
    """SQL ``LIKE`` pattern match (``%`` any run, ``_`` one character)."""

    column: str
    pattern: str
    case_insensitive: bool = False


@dataclass(frozen=True)
class And:
    children: tuple[Predicate, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    child: Predicate


@dataclass(frozen=True)
class Always:
    """A constant predicate (``true`` keeps every row, ``false`` none)."""

    value: bool


Predicate = Union[Comparison, In, IsNull, Like, And, Or, Not, Always]


def columns_of(predicate: Predicate) -> set[str]:
    """Every column name the predicate mentions."""
    if isinstance(predicate, (Comparison, In, IsNull, Like)):
        return {predicate.column}
    if isinstance(predicate, (And, Or)):
        return set().union(*(columns_of(c) for c in predicate.children))
    if isinstance(predicate, Not):
        return columns_of(predicate.child)
    return set()


# --- parsing ---------------------------------------------------------------------------


def parse_filter(text: str) -> Predicate:
    """Parse a SQL boolean expression (DuckDB syntax) into a predicate.

    Raises :class:`InvalidFilterError` naming the position of a syntax error or the
    construct that is not supported in filters.
    """
    import sqlglot
    from sqlglot import expressions as exp
    from sqlglot.errors import ParseError

    if not text or not text.strip():
        raise InvalidFilterError("the filter is empty; pass a condition such as \"id = 5\"")
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        where = f" at line {detail.get('line')}, column {detail.get('col')}" if detail else ""
        raise InvalidFilterError(f"cannot parse filter {text!r}{where}: {detail.get('description', exc)}") from None
    except RecursionError:
        raise InvalidFilterError("the filter is nested too deeply to parse; simplify it") from None
    return _convert(tree, text, exp)


def _literal(node: Any, text: str, exp: Any) -> Any:
    if isinstance(node, exp.Paren):
        return _literal(node.this, text, exp)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        raw = node.this
        try:
            return int(raw)
        except ValueError:
            return decimal.Decimal(raw) if "e" not in raw.lower() else float(raw)
    if isinstance(node, exp.Neg):
        value = _literal(node.this, text, exp)
        if isinstance(value, (int, float, decimal.Decimal)):
            return -value
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        target = node.to.this.name.lower() if hasattr(node.to.this, "name") else str(node.to.this).lower()
        value = node.this.this
        try:
            if "date" == target:
                return dt.date.fromisoformat(value)
            if target.startswith("timestamp"):
                parsed = dt.datetime.fromisoformat(value.replace(" ", "T"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise InvalidFilterError(f"filter {text!r}: {value!r} is not a valid {target}") from None
        return _literal(node.this, text, exp)
    raise InvalidFilterError(f"filter {text!r}: expected a literal value, got '{node.sql()}'")


def _column(node: Any, exp: Any) -> str | None:
    if isinstance(node, exp.Paren):
        return _column(node.this, exp)
    if isinstance(node, exp.Column):
        return ".".join(part.name for part in node.parts)
    if isinstance(node, exp.Dot):
        left = _column(node.this, exp)
        return None if left is None else f"{left}.{node.expression.name}"
    return None


def _convert(node: Any, text: str, exp: Any) -> Predicate:
    ops = {exp.EQ: "=", exp.NEQ: "!=", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
    if isinstance(node, exp.Paren):
        return _convert(node.this, text, exp)
    if isinstance(node, exp.And):
        return And((_convert(node.this, text, exp), _convert(node.expression, text, exp)))
    if isinstance(node, exp.Or):
        return Or((_convert(node.this, text, exp), _convert(node.expression, text, exp)))
    if isinstance(node, exp.Not):
        return Not(_convert(node.this, text, exp))
    if isinstance(node, exp.Boolean):
        return Always(bool(node.this))
    if type(node) in ops:
        op = ops[type(node)]
        left, right = _column(node.this, exp), _column(node.expression, exp)
        if left is not None and right is None:
            value = _literal(node.expression, text, exp)
        elif right is not None and left is None:
            left, op, value = right, _FLIPPED[op], _literal(node.this, text, exp)
        else:
            raise InvalidFilterError(
                f"filter {text!r}: '{node.sql()}' must compare one column with a literal value")
        if value is None:
            raise InvalidFilterError(f"filter {text!r}: '{node.sql()}' compares with NULL, which is never true; use IS NULL")
        return Comparison(left, op, value)
    if isinstance(node, exp.In):
        column = _column(node.this, exp)
        if column is None or node.args.get("query") is not None:
            raise InvalidFilterError(f"filter {text!r}: IN needs a column and a list of literals")
        return In(column, tuple(_literal(v, text, exp) for v in node.expressions))
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        column = _column(node.this, exp)
        if column is None:
            raise InvalidFilterError(f"filter {text!r}: IS NULL needs a column")
        return IsNull(column)
    if isinstance(node, exp.Between):
        column = _column(node.this, exp)
        if column is None:
            raise InvalidFilterError(f"filter {text!r}: BETWEEN needs a column")
        return And((Comparison(column, ">=", _literal(node.args["low"], text, exp)),
                    Comparison(column, "<=", _literal(node.args["high"], text, exp))))
    if isinstance(node, (exp.Like, exp.ILike)):
        column = _column(node.this, exp)
        pattern = _literal(node.expression, text, exp)
        if column is None or not isinstance(pattern, str):
            raise InvalidFilterError(f"filter {text!r}: LIKE needs a column and a string pattern")
        like = Like(column, pattern, isinstance(node, exp.ILike))
        # sqlglot parses ``a NOT LIKE b`` as Like(negate=True), not as Not(Like).
        return Not(like) if node.args.get("negate") else like
    raise InvalidFilterError(
        f"filter {text!r}: '{node.sql()}' is not supported in table filters; use comparisons, IN, "
        "BETWEEN, LIKE, IS [NOT] NULL combined with AND/OR/NOT")


def to_predicate(value: Predicate | str | None) -> Predicate | None:
    """Accept a predicate, a filter string, or ``None``."""
    if value is None or isinstance(value, (Comparison, In, IsNull, Like, And, Or, Not, Always)):
        return value
    if isinstance(value, str):
        return parse_filter(value)
    raise InvalidFilterError(f"a filter must be a string or a lakehouse.expressions predicate, got {type(value).__name__}")


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, bytes):
        return "'" + value.decode("utf-8", "replace").replace("'", "''") + "'"
    return str(value)


def _sql_column(name: str) -> str:
    return ".".join(part if part.isidentifier() else '"' + part.replace('"', '""') + '"' for part in name.split("."))


def to_sql(predicate: Predicate) -> str:
    """SQL text for a predicate (for commitInfo and messages); ``parse_filter`` reads it back."""
    if isinstance(predicate, Comparison):
        return f"{_sql_column(predicate.column)} {predicate.op} {_sql_literal(predicate.value)}"
    if isinstance(predicate, In):
        return f"{_sql_column(predicate.column)} IN ({', '.join(_sql_literal(v) for v in predicate.values)})"
    if isinstance(predicate, IsNull):
        return f"{_sql_column(predicate.column)} IS NULL"
    if isinstance(predicate, Like):
        keyword = "ILIKE" if predicate.case_insensitive else "LIKE"
        return f"{_sql_column(predicate.column)} {keyword} {_sql_literal(predicate.pattern)}"
    if isinstance(predicate, And):
        return " AND ".join(f"({to_sql(c)})" for c in predicate.children)
    if isinstance(predicate, Or):
        return " OR ".join(f"({to_sql(c)})" for c in predicate.children)
    if isinstance(predicate, Not):
        return f"NOT ({to_sql(predicate.child)})"
    if isinstance(predicate, Always):
        return "true" if predicate.value else "false"
    raise InvalidFilterError(f"not a predicate: {predicate!r}")


# --- binding ---------------------------------------------------------------------------


def _field_type(schema: pa.Schema, name: str) -> tuple[str, pa.DataType]:
    """Resolve ``name`` (``a`` or nested ``a.b``), case-insensitively when unambiguous."""
    parts = name.split(".")
    fields: Iterable[pa.Field] = schema
    resolved: list[str] = []
    dtype: pa.DataType | None = None
    for depth, part in enumerate(parts):
        candidates = list(fields)
        exact = [f for f in candidates if f.name == part]
        match = exact or [f for f in candidates if f.name.lower() == part.lower()]
        if len(match) != 1:
            names = [".".join(resolved + [f.name]) for f in candidates]
            close = difflib.get_close_matches(".".join(resolved + [part]), names, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; columns are {', '.join(names)}"
            raise ColumnNotFoundError(f"column '{name}' does not exist{hint}")
        resolved.append(match[0].name)
        dtype = match[0].type
        if depth < len(parts) - 1:
            if not pa.types.is_struct(dtype):
                raise ColumnNotFoundError(f"column '{'.'.join(resolved)}' is not a struct, so '{name}' does not exist")
            fields = [dtype.field(i) for i in range(dtype.num_fields)]
    assert dtype is not None
    return ".".join(resolved), dtype


def coerce_literal(value: Any, dtype: pa.DataType, *, column: str) -> Any:
    """Convert a literal to a Python value of ``dtype``'s kind, or explain why it cannot be."""
    try:
        if pa.types.is_timestamp(dtype):
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
            elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
                value = dt.datetime(value.year, value.month, value.day)
            if isinstance(value, dt.datetime):
                if dtype.tz is not None and value.tzinfo is None:
                    value = value.replace(tzinfo=dt.timezone.utc)
                if dtype.tz is None and value.tzinfo is not None:
                    value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
                return value
        elif pa.types.is_date(dtype):
            if isinstance(value, str):
                return dt.date.fromisoformat(value)
            if isinstance(value, dt.datetime):
                return value.date()
            if isinstance(value, dt.date):
                return value
        elif pa.types.is_boolean(dtype):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
        elif pa.types.is_integer(dtype):
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            if isinstance(value, (float, decimal.Decimal)):
                return value  # compared numerically; 2.5 vs an int column stays exact
            if isinstance(value, str):
                return int(value)
        elif pa.types.is_floating(dtype):
            if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        elif pa.types.is_decimal(dtype):
            if isinstance(value, (int, decimal.Decimal)) and not isinstance(value, bool):
                return decimal.Decimal(value)
            if isinstance(value, (float, str)):
                return decimal.Decimal(str(value))
        elif pa.types.is_string(dtype):
            if isinstance(value, str):
                return value
        elif pa.types.is_binary(dtype):
            if isinstance(value, bytes):
                return value
            if isinstance(value, str):
                return value.encode()
        else:
            raise InvalidFilterError(f"column '{column}' has type {dtype}, which filters cannot compare")
    except (ValueError, decimal.InvalidOperation):
        pass
    raise InvalidFilterError(f"column '{column}' has type {dtype}; the value {value!r} cannot be compared with it")


def bind(predicate: Predicate, schema: pa.Schema) -> Predicate:
    """Resolve column names against ``schema`` and convert literals to the column types."""
    if isinstance(predicate, Comparison):
        name, dtype = _field_type(schema, predicate.column)
        return Comparison(name, predicate.op, coerce_literal(predicate.value, dtype, column=name))
    if isinstance(predicate, In):
        name, dtype = _field_type(schema, predicate.column)
        # NULL stays in the list: it makes a miss unknown, so ``NOT IN (1, NULL)`` keeps no row.
        values = tuple(coerce_literal(v, dtype, column=name) if v is not None else None for v in predicate.values)
        return In(name, values)
    if isinstance(predicate, IsNull):
        return IsNull(_field_type(schema, predicate.column)[0])
    if isinstance(predicate, Like):
        name, dtype = _field_type(schema, predicate.column)
        if not pa.types.is_string(dtype):
            raise InvalidFilterError(f"LIKE needs a string column; '{name}' is {dtype}")
        return Like(name, predicate.pattern, predicate.case_insensitive)
    if isinstance(predicate, And):
        return And(tuple(bind(c, schema) for c in predicate.children))
    if isinstance(predicate, Or):
        return Or(tuple(bind(c, schema) for c in predicate.children))
    if isinstance(predicate, Not):
        return Not(bind(predicate.child, schema))
    return predicate


# --- row evaluation --------------------------------------------------------------------


def _field(name: str) -> pc.Expression:
    return pc.field(*name.split("."))


def _operand(name: str, dtype: pa.DataType) -> pc.Expression:
    """The column as compared by a filter.

    String and binary columns are wrapped in a cast to their own type. Parquet files whose
    embedded Arrow schema says ``string_view``/``binary_view`` (delta-rs 1.6 MERGE, polars
    >= 1.38) make pyarrow's row-group statistics pruning compare ``string`` with
    ``string_view`` and fail with "no kernel matching input types" (apache/arrow#49368).
    Behind the cast pyarrow skips only that row-group pruning; the log's file skipping and
    the row filter are unchanged, and the cast is free on ``string`` data.
    """
    if pa.types.is_string(dtype) or pa.types.is_binary(dtype):
        return _field(name).cast(dtype)
    return _field(name)


def int_comparable(value: int | float | decimal.Decimal) -> pa.Scalar:
    """A scalar that compares with every int64 exactly as the number ``value`` does.

    A double cannot hold every int64 (pyarrow refuses to cast values beyond 2**53 to one),
    and an int64 cannot hold 2.5 or 2**70. So the number becomes a small decimal: clamped
    just outside the int64 range, and a fraction replaced by ``floor + 0.5``, which sits on
    the same side of every integer (``i < 2.7`` iff ``i < 2.5``; neither ever equals ``i``).
    """
    if isinstance(value, float) and value != value:
        return pa.scalar(value)  # NaN
    # A float literal means the digits it was written with (``1e-3`` is 0.001).
    number = decimal.Decimal(repr(value) if isinstance(value, float) else value)
    number = min(max(number, decimal.Decimal(-2**63 - 1)), decimal.Decimal(2**63))
    whole = number.to_integral_value(rounding=decimal.ROUND_FLOOR)
    return pa.scalar(whole if whole == number else whole + decimal.Decimal("0.5"))


def _scalar(value: Any, dtype: pa.DataType | None) -> pa.Scalar:
    if dtype is not None and pa.types.is_integer(dtype) and isinstance(value, (float, decimal.Decimal)):
        return int_comparable(value)
    if dtype is not None:
        try:
            return pa.scalar(value, dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return int_comparable(value)  # beyond int64
    return pa.scalar(value)


def to_arrow_expression(predicate: Predicate, schema: pa.Schema,
                        dictionary_columns: frozenset[str] = frozenset()) -> pc.Expression:
    """A ``pyarrow.compute.Expression`` with SQL semantics for a *bound* predicate.

    A filter keeps rows where the expression is true; null (unknown) drops the row, as in SQL.
    ``dictionary_columns`` are read dictionary-encoded: compared as they are, not cast.
    """
    def dtype_of(name: str) -> pa.DataType:
        return _field_type(schema, name)[1]

    def operand(name: str, dtype: pa.DataType) -> pc.Expression:
        return _field(name) if name in dictionary_columns else _operand(name, dtype)

    def recurse(child: Predicate) -> pc.Expression:
        return to_arrow_expression(child, schema, dictionary_columns)

    if isinstance(predicate, Comparison):
        dtype = dtype_of(predicate.column)
        left, right = operand(predicate.column, dtype), _scalar(predicate.value, dtype)
        result = {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
                  ">": left > right, ">=": left >= right}[predicate.op]
        if pa.types.is_floating(dtype) and predicate.op in (">", ">=") and predicate.value == predicate.value:
            # SQL (Spark, DuckDB) sorts NaN above every number; Arrow says NaN > x is false.
            result = result | pc.is_nan(left)
        return result
    if isinstance(predicate, In):
        dtype = dtype_of(predicate.column)
        subject = operand(predicate.column, dtype)
        present = [_scalar(v, dtype) for v in predicate.values if v is not None]
        # is_in hashes values: a literal the column type cannot hold (2.5 for an int, 0.001
        # for decimal(10,2), an int beyond int64) cannot go in its value set, and for floats
        # -0.0 would miss 0.0 (pyarrow even prunes row groups with stats [-0.0, 0.0]). Those
        # are compared with '=' instead, which is numeric, like SQL.
        hashed = [v.as_py() for v in present if v.type == dtype and not pa.types.is_floating(dtype)]
        found = subject.isin(pa.array(hashed, dtype)) if hashed else pc.scalar(False)
        for value in present:
            if value.type != dtype or pa.types.is_floating(dtype):
                found = found | (subject == value)
        # Arrow's is_in answers false for a null input and ignores NULL in the list; SQL says
        # unknown for both, which matters under NOT (``x NOT IN (...)`` must drop null x).
        unknown = pc.scalar(pa.scalar(None, pa.bool_()))
        if len(present) < len(predicate.values):
            found = found | unknown
        return pc.if_else(subject.is_null(), unknown, found)
    if isinstance(predicate, IsNull):
        return _field(predicate.column).is_null()
    if isinstance(predicate, Like):
        return pc.Expression._call("match_like", [operand(predicate.column, dtype_of(predicate.column))],
                                   pc.MatchSubstringOptions(predicate.pattern, ignore_case=predicate.case_insensitive))
    if isinstance(predicate, And):
        result = recurse(predicate.children[0])
        for child in predicate.children[1:]:
            result = result & recurse(child)
        return result
    if isinstance(predicate, Or):
        result = recurse(predicate.children[0])
        for child in predicate.children[1:]:
            result = result | recurse(child)
        return result
    if isinstance(predicate, Not):
        return ~recurse(predicate.child)
    if isinstance(predicate, Always):
        return pc.scalar(predicate.value)
    raise InvalidFilterError(f"not a predicate: {predicate!r}")


def negation_normal_form(predicate: Predicate) -> Predicate:
    """Push ``Not`` down to the leaves (De Morgan), flipping comparisons where exact.

    SQL's three-valued logic makes ``NOT (x < 5)`` equal to ``x >= 5``: both are unknown
    when ``x`` is null. ``Not`` remains only above ``IsNull``, ``In`` and ``Like``.
    """
    if isinstance(predicate, Not):
        inner = predicate.child
        if isinstance(inner, Not):
            return negation_normal_form(inner.child)
        if isinstance(inner, And):
            return Or(tuple(negation_normal_form(Not(c)) for c in inner.children))
        if isinstance(inner, Or):
            return And(tuple(negation_normal_form(Not(c)) for c in inner.children))
        if isinstance(inner, Comparison):
            return Comparison(inner.column, _NEGATED[inner.op], inner.value)
        if isinstance(inner, Always):
            return Always(not inner.value)
        return predicate
    if isinstance(predicate, And):
        return And(tuple(negation_normal_form(c) for c in predicate.children))
    if isinstance(predicate, Or):
        return Or(tuple(negation_normal_form(c) for c in predicate.children))
    return predicate
