"""Binding SQL expressions (sqlglot AST) into typed logical expressions."""

from __future__ import annotations

import decimal
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa
from sqlglot import expressions as exp

from engine.errors import PlanError, UnsupportedSQLError
from engine.functions import check_arity, exists as function_exists, lookup
from engine.functions.aggregate import aggregate, is_aggregate
from engine.logical.expr import (
    AggregateCall, Call, Case, Cast, ColumnRef, Expr, Frame, InList, Literal, SortKey, WindowCall,
)
from engine.sql.literals import interval_literal, number_literal
from engine.sql.scope import Scope
from engine.sql.subqueries import SubqueryExpr
from engine.types import common_type, parse_type, type_name

if TYPE_CHECKING:
    from engine.sql.binder import Binder

_BINARY = {
    exp.Add: "add", exp.Sub: "subtract", exp.Mul: "multiply", exp.Div: "divide", exp.IntDiv: "int_divide",
    exp.Mod: "mod", exp.EQ: "eq", exp.NEQ: "neq", exp.LT: "lt", exp.LTE: "lte", exp.GT: "gt", exp.GTE: "gte",
    exp.And: "and", exp.Or: "or", exp.DPipe: "concat_op", exp.Like: "like", exp.ILike: "ilike",
    exp.NullSafeNEQ: "is_distinct_from", exp.RegexpLike: "regexp_matches",
}
_FUNCTION_NAMES = {  # sqlglot class name (lowercase) -> our registry name where they differ
    "substring": "substring", "strposition": "strpos", "dayofweek": "dayofweek", "dayofyear": "dayofyear",
    "datetrunc": "date_trunc", "timestamptrunc": "date_trunc", "currentdate": "current_date",
    "currenttimestamp": "now", "ln": "ln", "log": "ln", "pow": "power", "stddev": "stddev_samp",
    "variance": "var_samp", "variancepop": "var_pop", "anyvalue": "any_value", "logicaland": "bool_and",
    "logicalor": "bool_or", "groupconcat": "string_agg", "countif": "count_if", "datefromparts": "make_date",
}
_WINDOW_ONLY = {"row_number", "rank", "dense_rank", "lag", "lead", "first_value", "last_value", "ntile",
                "percent_rank", "cume_dist", "nth_value"}


def _func_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    key = type(node).__name__.lower()
    if key in _FUNCTION_NAMES:
        return _FUNCTION_NAMES[key]
    try:
        return node.sql_name().lower()
    except Exception:  # noqa: BLE001 - fall back to the class name
        return key


class ExprBinder:
    """Binds expressions in one scope. Aggregates and windows are allowed only where SQL allows them."""

    def __init__(self, binder: Binder, scope: Scope, *, allow_aggregates: bool = False,
                 allow_windows: bool = False, aliases: dict[str, Expr] | None = None) -> None:
        self.binder = binder
        self.scope = scope
        self.allow_aggregates = allow_aggregates
        self.allow_windows = allow_windows
        self.aliases = aliases or {}
        self.outer_refs: list[ColumnRef] = []  # correlated references to enclosing queries

    # --- entry ----------------------------------------------------------------------------

    def bind(self, node: exp.Expression) -> Expr:
        if isinstance(node, (exp.And, exp.Or)):
            return self._bind_chain(node)
        method: Callable[[Any], Expr] | None = getattr(self, f"_bind_{type(node).__name__.lower()}", None)
        if method is not None:
            return method(node)
        op = _BINARY.get(type(node))
        if op is not None:
            bound = self.call(op, [self.bind(node.this), self.bind(node.expression)])
            # sqlglot folds NOT into some operators (``a NOT LIKE b`` is Like(negate=True)).
            return self.call("not", [bound]) if node.args.get("negate") else bound
        if isinstance(node, exp.Window):
            return self._bind_window(node)
        if isinstance(node, exp.AggFunc) or (isinstance(node, exp.Func) and is_aggregate(_func_name(node))):
            return self._bind_aggregate(node)
        if isinstance(node, exp.Func):
            return self._bind_function(node)
        raise UnsupportedSQLError(f"'{node.sql(dialect='duckdb')[:80]}' ({type(node).__name__}) is not supported")

    def _bind_chain(self, node: exp.Expression) -> Expr:
        """AND/OR chains, flattened without recursion and rebuilt balanced.

        ``a OR b OR c ...`` parses as a left-deep tree as deep as the list is long (5,000 terms
        would overflow every recursive pass after this one); a balanced tree has depth log2(n).
        """
        kind = type(node)
        operands: list[exp.Expression] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if type(current) is kind:
                stack.append(current.expression)
                stack.append(current.this)
            else:
                operands.append(current)
        name = "and" if kind is exp.And else "or"
        bound = [self.coerce(self.bind(operand), pa.bool_()) for operand in operands]
        while len(bound) > 1:
            paired = [self.call(name, [bound[i], bound[i + 1]]) for i in range(0, len(bound) - 1, 2)]
            if len(bound) % 2:
                paired.append(bound[-1])
            bound = paired
        return bound[0]

    # --- typing helpers -----------------------------------------------------------------

    def call(self, name: str, args: list[Expr]) -> Expr:
        fn = lookup(name)
        check_arity(fn, len(args))
        targets, result = fn.signature([a.type for a in args], fn.name)
        cast_args = tuple(self.coerce(a, t) for a, t in zip(args, targets))
        return Call(fn.name, cast_args, result)

    @staticmethod
    def coerce(expr: Expr, target: pa.DataType | None) -> Expr:
        if target is None or expr.type == target:
            return expr
        if pa.types.is_null(expr.type):
            return Literal(None, target)
        return Cast(expr, target)

    # --- leaves -------------------------------------------------------------------------

    def _bind_column(self, node: exp.Column) -> Expr:
        if isinstance(node.this, exp.Star):
            raise PlanError("'*' is only allowed in the SELECT list or in count(*)")
        table = node.table or None
        name = node.name
        if table is None and name in self.aliases:
            return self.aliases[name]
        try:
            found, depth = self.scope.resolve(table, name)
        except PlanError:
            if table is None and name.lower() in {k.lower() for k in self.aliases}:
                return next(v for k, v in self.aliases.items() if k.lower() == name.lower())
            raise
        ref = found.ref()
        if depth > 1:
            raise UnsupportedSQLError(f"column '{name}' refers to a query two or more levels out; "
                                      "correlation across more than one level is not supported")
        if depth == 1:
            self.outer_refs.append(ref)
        return ref

    def _bind_literal(self, node: exp.Literal) -> Expr:
        if node.is_string:
            return Literal(node.this, pa.string())
        return number_literal(node.this)

    def _bind_boolean(self, node: exp.Boolean) -> Expr:
        return Literal(bool(node.this), pa.bool_())

    def _bind_null(self, node: exp.Null) -> Expr:
        return Literal(None, pa.null())

    def _bind_paren(self, node: exp.Paren) -> Expr:
        return self.bind(node.this)

    def _bind_neg(self, node: exp.Neg) -> Expr:
        inner = self.bind(node.this)
        if isinstance(inner, Literal) and isinstance(inner.value, (int, float, decimal.Decimal)):
            return Literal(-inner.value, inner.type)
        return self.call("negate", [inner])

    def _bind_not(self, node: exp.Not) -> Expr:
        inner = node.this
        if isinstance(inner, exp.Is) and isinstance(inner.expression, exp.Null):
            return self.call("is_not_null", [self.bind(inner.this)])
        bound = self.bind(inner)
        if isinstance(bound, InList):
            return InList(bound.arg, bound.values, not bound.negated)
        return self.call("not", [bound])

    def _bind_is(self, node: exp.Is) -> Expr:
        if isinstance(node.expression, exp.Null):
            return self.call("is_null", [self.bind(node.this)])
        if isinstance(node.expression, exp.Boolean):
            value = self.bind(node.this)
            test = self.call("is_true", [value]) if node.expression.this else self.call(
                "is_true", [self.call("not", [value])])
            return test
        raise UnsupportedSQLError(f"'{node.sql()}' is not supported; use IS NULL / IS NOT NULL")

    def _bind_nullsafeeq(self, node: exp.NullSafeEQ) -> Expr:
        return self.call("not", [self.call("is_distinct_from", [self.bind(node.this), self.bind(node.expression)])])

    def _bind_escape(self, node: exp.Escape) -> Expr:
        like, escape = node.this, node.expression
        pattern = like.expression if isinstance(like, (exp.Like, exp.ILike)) else None
        if not (isinstance(pattern, exp.Literal) and pattern.is_string and isinstance(escape, exp.Literal)
                and escape.is_string):
            raise UnsupportedSQLError("LIKE ... ESCAPE needs a constant pattern and escape character")
        if len(escape.this) > 1:
            raise PlanError(f"the ESCAPE of LIKE must be one character, got '{escape.this}'")
        # The LIKE kernel escapes with backslash; rewrite the pattern into that form so the
        # user's escape character means "next character is literal" and backslash is plain text.
        out, chars, i = [], pattern.this, 0
        while i < len(chars):
            ch = chars[i]
            if escape.this and ch == escape.this:
                if i + 1 == len(chars):
                    raise PlanError(f"LIKE pattern '{chars}' ends with its escape character '{ch}'")
                i += 1
                ch = chars[i]
                out.append("\\" + ch if ch in "%_\\" else ch)
            else:
                out.append("\\\\" if ch == "\\" else ch)
            i += 1
        bound = self.call("ilike" if isinstance(like, exp.ILike) else "like",
                          [self.bind(like.this), Literal("".join(out), pa.string())])
        return self.call("not", [bound]) if like.args.get("negate") else bound

    def _bind_between(self, node: exp.Between) -> Expr:
        value = self.bind(node.this)
        low, high = self.bind(node.args["low"]), self.bind(node.args["high"])
        return self.call("and", [self.call("gte", [value, low]), self.call("lte", [value, high])])

    def _bind_in(self, node: exp.In) -> Expr:
        value = self.bind(node.this)
        query = node.args.get("query")
        if query is not None:
            return self.binder.bind_subquery_expr("in", query.this if isinstance(query, exp.Subquery) else query,
                                                  self, arg=value)
        if node.args.get("unnest") or node.args.get("field"):
            raise UnsupportedSQLError(f"'{node.sql()}' is not supported")
        values = [self.bind(v) for v in node.expressions]
        target = value.type
        for v in values:
            target = common_type(target, v.type, context="IN list")
        return InList(self.coerce(value, target), tuple(self.coerce(v, target) for v in values))

    def _bind_exists(self, node: exp.Exists) -> Expr:
        query = node.this
        return self.binder.bind_subquery_expr("exists", query.this if isinstance(query, exp.Subquery) else query, self)

    def _bind_subquery(self, node: exp.Subquery) -> Expr:
        return self.binder.bind_subquery_expr("scalar", node.this, self)

    def _bind_select(self, node: exp.Select) -> Expr:
        return self.binder.bind_subquery_expr("scalar", node, self)

    def _bind_case(self, node: exp.Case) -> Expr:
        subject = self.bind(node.this) if node.this is not None else None
        whens = []
        for branch in node.args.get("ifs") or []:
            condition = self.bind(branch.this)
            if subject is not None:
                condition = self.call("eq", [subject, condition])
            whens.append((condition, self.bind(branch.args["true"])))
        default = self.bind(node.args["default"]) if node.args.get("default") is not None else Literal(None, pa.null())
        result = default.type
        for _, value in whens:
            result = common_type(result, value.type, context="CASE")
        if pa.types.is_null(result):
            result = pa.string()
        whens = [(self.coerce(c, pa.bool_()), self.coerce(v, result)) for c, v in whens]
        return Case(tuple(whens), self.coerce(default, result), result)

    def _bind_if(self, node: exp.If) -> Expr:
        condition = self.bind(node.this)
        true, false = self.bind(node.args["true"]), self.bind(node.args.get("false") or exp.Null())
        result = common_type(true.type, false.type, context="IF")
        return Case(((condition, self.coerce(true, result)),), self.coerce(false, result), result)

    def _bind_cast(self, node: exp.Cast, safe: bool = True) -> Expr:
        target = parse_type(node.to.sql(dialect="duckdb"))
        value = self.bind(node.this)
        if isinstance(value, Literal) and value.type == target:
            return value
        return Cast(value, target, safe)

    def _bind_trycast(self, node: exp.TryCast) -> Expr:
        return self._bind_cast(node, safe=False)

    def _bind_extract(self, node: exp.Extract) -> Expr:
        part = node.this.name if isinstance(node.this, (exp.Var, exp.Identifier, exp.Column)) else node.this.sql()
        return self.call("date_part", [Literal(part.lower(), pa.string()), self.bind(node.expression)])

    def _bind_interval(self, node: exp.Interval) -> Expr:
        unit = node.args.get("unit")
        amount = node.this
        text = amount.this if isinstance(amount, exp.Literal) else amount.sql()
        return interval_literal(str(text), unit.name if unit is not None else None)

    def _bind_currentdate(self, node: exp.Expression) -> Expr:
        return self.call("current_date", [])

    def _bind_currenttimestamp(self, node: exp.Expression) -> Expr:
        return self.call("now", [])

    def _bind_coalesce(self, node: exp.Coalesce) -> Expr:
        return self.call("coalesce", [self.bind(node.this), *[self.bind(e) for e in node.expressions]])

    def _bind_concat(self, node: exp.Concat) -> Expr:
        return self.call("concat", [self.bind(e) for e in node.expressions])

    def _bind_substring(self, node: exp.Substring) -> Expr:
        args = [self.bind(node.this), self.bind(node.args["start"]) if node.args.get("start") else Literal(1, pa.int64())]
        if node.args.get("length") is not None:
            args.append(self.bind(node.args["length"]))
        return self.call("substring", args)

    def _bind_trim(self, node: exp.Trim) -> Expr:
        position = (node.args.get("position") or "BOTH").upper()
        name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "trim")
        args = [self.bind(node.this)]
        if node.args.get("expression") is not None:
            args.append(self.bind(node.args["expression"]))
        return self.call(name, args)

    def _bind_ignorenulls(self, node: exp.IgnoreNulls) -> Expr:
        # sqlglot reads DuckDB's any_value(x) as IgnoreNulls(AnyValue(x)); ours skips NULLs already.
        if isinstance(node.this, exp.AnyValue):
            return self.bind(node.this)
        raise UnsupportedSQLError("IGNORE NULLS is not supported")

    def _bind_log(self, node: exp.Log) -> Expr:
        # DuckDB: log(x) is the base-10 logarithm; log(b, x) (sqlglot: this=b, expression=x) is base b.
        if node.expression is None:
            return self.call("log10", [self.bind(node.this)])
        base, value = self.bind(node.this), self.bind(node.expression)
        if isinstance(base, Literal) and base.value in (2, 10):  # log10()/log2() arrive as log(10|2, x)
            return self.call("log10" if base.value == 10 else "log2", [value])
        return self.call("divide", [self.call("ln", [value]), self.call("ln", [base])])

    def _bind_pad(self, node: exp.Pad) -> Expr:
        # sqlglot parses both LPAD and RPAD into one Pad node; is_left tells them apart.
        if node.args.get("fill_pattern") is None:
            raise UnsupportedSQLError("lpad/rpad need a fill string: lpad(text, width, fill)")
        args = [self.bind(node.this), self.bind(node.expression), self.bind(node.args["fill_pattern"])]
        return self.call("lpad" if node.args.get("is_left") else "rpad", args)

    def _bind_datetrunc(self, node: exp.Expression) -> Expr:
        unit = node.args.get("unit")
        unit_text = unit.name if isinstance(unit, (exp.Var, exp.Identifier)) else (
            unit.this if isinstance(unit, exp.Literal) else unit.sql())
        return self.call("date_trunc", [Literal(str(unit_text).lower(), pa.string()), self.bind(node.this)])

    _bind_timestamptrunc = _bind_datetrunc

    def _bind_function(self, node: exp.Func) -> Expr:
        name = _func_name(node)
        if name in _WINDOW_ONLY:
            raise PlanError(f"window function {name}() needs an OVER clause")
        if not function_exists(name):
            lookup(name)  # raises with suggestions
        if isinstance(node, exp.Anonymous):
            args = [self.bind(a) for a in node.expressions]
        else:
            args = []
            for key in node.arg_types:
                value = node.args.get(key)
                if value is None:
                    continue
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, exp.Expression):
                        args.append(Literal(item.name.lower(), pa.string()) if isinstance(item, exp.Var) else self.bind(item))
        return self.call(name, args)

    # --- aggregates and windows ------------------------------------------------------------

    def _aggregate_call(self, name: str, node: exp.Expression, filter_: exp.Expression | None = None, *,
                        over_window: bool = False) -> AggregateCall:
        """``over_window``: the aggregate of a window (``sum(sum(x)) OVER ()``), whose argument may be
        a grouped aggregate where the query aggregates, since windows run after grouping."""
        distinct = False
        target = node.this if not isinstance(node, exp.Anonymous) else (node.expressions[0] if node.expressions else None)
        if isinstance(target, exp.Distinct):
            distinct = True
            if len(target.expressions) != 1:
                raise UnsupportedSQLError(f"{name}(DISTINCT ...) with several arguments is not supported")
            target = target.expressions[0]
        inner = ExprBinder(self.binder, self.scope, allow_aggregates=over_window and self.allow_aggregates,
                           aliases=self.aliases)
        args: list[Expr] = []
        if name == "count" and (target is None or isinstance(target, exp.Star)):
            func = aggregate("count_star")
        else:
            func = aggregate("count" if name == "count_if" else name)
            if target is not None:
                args.append(inner.bind(target))
            if name == "count_if":
                args = [Case(((args[0], Literal(1, pa.int32())),), Literal(None, pa.int32()), pa.int32())]
            for extra in ("separator", "expression"):
                if node.args.get(extra) is not None and name == "string_agg":
                    args.append(inner.bind(node.args[extra]))
        if filter_ is not None:
            condition = inner.bind(filter_)
            if func.name == "count_star":
                func = aggregate("count")
                args = [Literal(1, pa.int32())]
            args[0] = Case(((condition, args[0]),), Literal(None, args[0].type), args[0].type)
        self.outer_refs += inner.outer_refs
        for arg in args:
            from engine.logical.expr import walk

            if any(isinstance(n, WindowCall if over_window else (AggregateCall, WindowCall)) for n in walk(arg)):
                raise PlanError(f"aggregate {name}() cannot contain another aggregate or window function")
        if args:
            cast_to = func.input_type(args[0].type)
            args[0] = self.coerce(args[0], cast_to)
        return AggregateCall(func.name, tuple(args), func.result_type([a.type for a in args]), distinct)

    def _bind_aggregate(self, node: exp.Expression) -> Expr:
        if not self.allow_aggregates:
            raise PlanError(f"aggregate '{node.sql(dialect='duckdb')[:60]}' is not allowed here "
                            "(aggregates belong in SELECT, HAVING or ORDER BY)")
        return self._aggregate_call(_func_name(node), node)

    def _bind_filter(self, node: exp.Filter) -> Expr:
        if not self.allow_aggregates:
            raise PlanError("FILTER (WHERE ...) is only allowed on aggregates in SELECT, HAVING or ORDER BY")
        where = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
        return self._aggregate_call(_func_name(node.this), node.this, where)

    def _bind_window(self, node: exp.Window) -> Expr:
        if not self.allow_windows:
            raise PlanError("window functions are only allowed in SELECT and ORDER BY")
        func_node = node.this
        name = _func_name(func_node)
        named = node.args.get("alias")
        if named is not None and not node.args.get("partition_by") and not node.args.get("order"):
            raise UnsupportedSQLError("named windows (WINDOW w AS ...) are not supported; write OVER (...) inline")
        inner = ExprBinder(self.binder, self.scope, allow_aggregates=self.allow_aggregates, aliases=self.aliases)
        partition = tuple(inner.bind(p) for p in node.args.get("partition_by") or [])
        order = tuple(self.sort_key(o, inner) for o in (node.args["order"].expressions if node.args.get("order") else []))
        frame = _frame(node.args.get("spec"))
        if name in _WINDOW_ONLY:
            args = []
            for key in ("this", "offset", "default", "expression"):
                value = func_node.args.get(key) if not isinstance(func_node, exp.Anonymous) else None
                if isinstance(value, exp.Expression):
                    args.append(inner.bind(value))
            if isinstance(func_node, exp.Anonymous):
                args = [inner.bind(a) for a in func_node.expressions]
            result = _window_type(name, args)
            call = WindowCall(name, tuple(args), partition, order, frame, result)
        else:
            agg = inner._aggregate_call(name, func_node, over_window=True)
            call = WindowCall(agg.func, agg.args, partition, order, frame, agg.type)
            if agg.distinct:
                raise UnsupportedSQLError("DISTINCT aggregates over a window are not supported")
        self.outer_refs += inner.outer_refs
        return call

    def sort_key(self, node: exp.Ordered, binder: ExprBinder | None = None) -> SortKey:
        expr = (binder or self).bind(node.this)
        descending = bool(node.args.get("desc"))
        nulls_first = node.args.get("nulls_first")
        return SortKey(expr, not descending, bool(nulls_first))


def _window_type(name: str, args: list[Expr]) -> pa.DataType:
    if name in ("row_number", "rank", "dense_rank", "ntile"):
        return pa.int64()
    if name in ("percent_rank", "cume_dist"):
        return pa.float64()
    if not args:
        raise PlanError(f"window function {name}() needs an argument")
    if name in ("lag", "lead") and len(args) >= 3:
        return common_type(args[0].type, args[2].type, context=name)
    return args[0].type


def _bound(value: Any, side: Any) -> tuple[int | None, bool]:
    """(offset, unbounded) for one frame bound."""
    text = str(value).upper() if value is not None else "CURRENT ROW"
    if text == "UNBOUNDED":
        return None, True
    if text == "CURRENT ROW":
        return 0, False
    try:
        amount = int(value.this) if isinstance(value, exp.Literal) else int(str(value))
    except ValueError:  # 10.5, INTERVAL '7' DAY, a column...: frames hold integer offsets only
        raise UnsupportedSQLError(f"window frame offset '{value.sql(dialect='duckdb')}' is not supported; "
                                  "use a non-negative integer constant") from None
    return (-amount if str(side).lower() == "preceding" else amount), False


def _frame(spec: exp.WindowSpec | None) -> Frame | None:
    if spec is None:
        return None
    kind = str(spec.args.get("kind") or "range").lower()
    start, start_unbounded = _bound(spec.args.get("start"), spec.args.get("start_side"))
    end, end_unbounded = _bound(spec.args.get("end"), spec.args.get("end_side"))
    if kind == "groups":
        raise UnsupportedSQLError("GROUPS window frames are not supported; use ROWS or RANGE")
    return Frame(kind, start, end, start_unbounded, end_unbounded)


def describe_type(expr: Expr) -> str:
    return type_name(expr.type)
