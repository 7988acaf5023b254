"""The binder: sqlglot AST -> typed logical plan.

Resolves every name against the catalog and the query's scopes, types every expression,
and shapes the query into plan nodes in SQL's logical order: FROM/JOIN, WHERE, GROUP BY
(aggregates), HAVING, window functions, SELECT, DISTINCT, ORDER BY, LIMIT. Subqueries in
expressions are bound with the enclosing scope as their outer scope; correlated
conditions are pulled out of their WHERE clause so they can become join conditions
(see ``engine.sql.subqueries``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
from sqlglot import expressions as exp

from engine.errors import PlanError, UnsupportedSQLError
from engine.logical.expr import (
    AggregateCall, Call, ColumnRef, Expr, Field, Literal, SortKey, WindowCall, column_ids, conjunction, conjuncts,
    transform, walk,
)
from engine.logical.plan import (
    Aggregate, Join, Limit, Plan, Project, Scan, SetOp, Sort, Values, Window, asof_parts,
)
from engine.sql.expressions import ExprBinder
from engine.sql.scope import IdGenerator, Relation, Scope
from engine.sql.table_functions import table_function
from engine.sql.subqueries import SubqueryExpr, has_subquery, plan_expression, plan_filter
from engine.types import common_type


class Catalog(Protocol):
    def resolve(self, name: str, *, version: tuple[str, Any] | None = None) -> Any: ...


@dataclass
class Correlation:
    """What a correlated subquery needs from its enclosing query."""

    conditions: list[Expr] = field(default_factory=list)
    empty_value: Expr | None = None


def _display_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return node.name
    if isinstance(node, exp.Alias):
        return node.alias
    return node.sql(dialect="duckdb", normalize_functions="lower")


def _constant_int(node: exp.Expression | None, what: str) -> int | None:
    if node is None:
        return None
    value = node.expression if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    if isinstance(value, exp.Null):
        return None
    raise PlanError(f"{what} must be a non-negative integer constant, got '{value.sql()}'")


class Binder:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.ids = IdGenerator()
        self._ctes: dict[str, Any] = {}  # CTEs visible where binding currently is

    def new_field(self, name: str, dtype: pa.DataType, nullable: bool = True) -> Field:
        return self.ids.field(name, dtype, nullable)

    # --- queries --------------------------------------------------------------------------

    def bind(self, node: exp.Expression) -> Plan:
        return self.bind_query(node, None, {})

    def bind_query(self, node: exp.Expression, outer: Scope | None, ctes: dict[str, Any],
                   correlation: Correlation | None = None) -> Plan:
        ctes = self._with(node, ctes)
        previous, self._ctes = self._ctes, ctes
        try:
            return self._bind_query(node, outer, ctes, correlation)
        finally:
            self._ctes = previous

    def _bind_query(self, node: exp.Expression, outer: Scope | None, ctes: dict[str, Any],
                    correlation: Correlation | None) -> Plan:
        if isinstance(node, exp.Select):
            return self.bind_select(node, outer, ctes, correlation)
        if isinstance(node, (exp.Union, exp.Intersect, exp.Except)):
            return self._bind_set_operation(node, outer, ctes)
        if isinstance(node, exp.Subquery):
            plan = self.bind_query(node.this, outer, ctes, correlation)
            return self._order_limit_on_output(node, plan, outer, ctes)
        if isinstance(node, exp.Values):
            return self._bind_values(node)
        raise UnsupportedSQLError(f"statement '{node.sql()[:60]}' is not a query")

    def _with(self, node: exp.Expression, ctes: dict[str, Any]) -> dict[str, Any]:
        with_ = node.args.get("with_") or node.args.get("with")
        if not with_:
            return ctes
        if with_.args.get("recursive"):
            raise UnsupportedSQLError("WITH RECURSIVE is not supported")
        ctes = dict(ctes)
        for cte in with_.expressions:
            columns = [c.name for c in cte.args["alias"].columns] if cte.args.get("alias") and cte.args["alias"].columns else None
            ctes[cte.alias.lower()] = (cte.this, columns, dict(ctes))
        return ctes

    # --- SELECT -----------------------------------------------------------------------------

    def bind_select(self, sel: exp.Select, outer: Scope | None, ctes: dict[str, Any],
                    correlation: Correlation | None = None) -> Plan:
        plan, scope = self._bind_from(sel, outer, ctes)

        # WHERE (correlated conditions are set aside for the enclosing query)
        where = sel.args.get("where")
        if where is not None:
            kept: list[Expr] = []
            for part_ast in _ast_conjuncts(where.this):
                binder = ExprBinder(self, scope)
                bound = binder.bind(part_ast)
                if binder.outer_refs:
                    if correlation is None:
                        raise UnsupportedSQLError("a correlated reference is not supported in this position")
                    if has_subquery(bound):
                        raise UnsupportedSQLError("a correlated condition containing a subquery is not supported")
                    correlation.conditions.append(bound)
                else:
                    kept.append(bound)
            predicate = conjunction([ExprBinder.coerce(part, pa.bool_()) for part in kept])
            if predicate is not None:
                plan = plan_filter(plan, predicate, self.new_field)

        # SELECT list (stars expanded), bound over the FROM scope
        items = self._select_items(sel, scope)
        select_binder = ExprBinder(self, scope, allow_aggregates=True, allow_windows=True)
        bound_items = [(name, select_binder.bind(node)) for name, node in items]
        if select_binder.outer_refs:
            raise UnsupportedSQLError("correlated references in a subquery's SELECT list are not supported")
        aliases = {name: expr for name, expr in bound_items}

        group_nodes = list(sel.args["group"].expressions) if sel.args.get("group") else []
        groups = [self._group_expr(g, scope, bound_items) for g in group_nodes]
        if sel.args.get("group") is not None and sel.args["group"].args.get("all"):
            # DuckDB's GROUP BY ALL: every select item that holds no aggregate or window function.
            groups += [e for _, e in bound_items
                       if not any(isinstance(n, (AggregateCall, WindowCall)) for n in walk(e))]
        having_node = sel.args.get("having")
        having = (ExprBinder(self, scope, allow_aggregates=True, aliases=aliases).bind(having_node.this)
                  if having_node is not None else None)
        order_nodes = list(sel.args["order"].expressions) if sel.args.get("order") else []
        order_keys = [self._order_key(o, scope, bound_items) for o in order_nodes]

        has_aggregates = any(isinstance(n, AggregateCall) for _, e in bound_items for n in walk(e)) or (
            having is not None) or any(isinstance(n, AggregateCall) for k in order_keys for n in walk(k.expr))
        correlated_keys: list[Expr] = []
        if correlation is not None and correlation.conditions and (groups or has_aggregates):
            correlated_keys = self._correlation_keys(correlation, plan)
        grouped = bool(groups) or has_aggregates or bool(correlated_keys)

        if grouped:
            plan, lift = self._aggregate(plan, groups + correlated_keys, bound_items, having, order_keys)
            bound_items = [(name, lift(e)) for name, e in bound_items]
            order_keys = [SortKey(lift(k.expr), k.ascending, k.nulls_first) for k in order_keys]
            if having is not None:
                plan = plan_filter(plan, lift(having), self.new_field)
            if correlated_keys:
                key_refs = [lift(k) for k in correlated_keys]
                correlation.conditions = [  # type: ignore[union-attr]
                    Call("eq", (ref, outer_expr), pa.bool_())
                    for ref, (_, outer_expr) in zip(key_refs, self._split_correlations(correlation, plan))]
                if len(bound_items) == 1:
                    correlation.empty_value = _empty_group_value(bound_items[0][1], plan)  # type: ignore[union-attr]

        # window functions
        windows = [n for _, e in bound_items for n in walk(e) if isinstance(n, WindowCall)]
        windows += [n for k in order_keys for n in walk(k.expr) if isinstance(n, WindowCall)]
        if windows:
            unique = list(dict.fromkeys(windows))
            outputs = tuple(self.new_field(f"{w.func}()", w.type) for w in unique)
            window_exprs: list[Expr] = []
            for w in unique:
                plan, rewritten = self._plan_window_inputs(plan, w)
                window_exprs.append(rewritten)
            plan = Window(plan, tuple(window_exprs), outputs)  # type: ignore[arg-type]
            mapping = {w: f.ref() for w, f in zip(unique, outputs)}
            bound_items = [(n, transform(e, lambda x: mapping.get(x))) for n, e in bound_items]  # type: ignore[arg-type]
            order_keys = [SortKey(transform(k.expr, lambda x: mapping.get(x)), k.ascending, k.nulls_first)  # type: ignore[arg-type]
                          for k in order_keys]

        # scalar subqueries in the SELECT list and ORDER BY become joins below the projection
        planned_items = []
        for name, expr in bound_items:
            plan, expr = plan_expression(plan, expr, self.new_field)
            planned_items.append((name, expr))
        planned_keys = []
        for key in order_keys:
            plan, key_expr = plan_expression(plan, key.expr, self.new_field)
            planned_keys.append(SortKey(key_expr, key.ascending, key.nulls_first))

        # projection (+ hidden ORDER BY columns, + inner columns a correlated parent needs)
        exprs = [e for _, e in planned_items]
        fields = [self.new_field(n, e.type) for n, e in planned_items]
        visible = len(fields)
        sort_keys: list[SortKey] = []
        for key in planned_keys:
            index = next((i for i, e in enumerate(exprs[:visible]) if e == key.expr), None)
            if index is None:
                if sel.args.get("distinct"):
                    raise PlanError("with SELECT DISTINCT, ORDER BY expressions must appear in the select list")
                exprs.append(key.expr)
                fields.append(self.new_field("__order", key.expr.type))
                index = len(fields) - 1
            sort_keys.append(SortKey(fields[index].ref(), key.ascending, key.nulls_first))
        if correlation is not None and correlation.conditions:
            needed = set().union(*(column_ids(c) for c in correlation.conditions)) & plan.field_ids()
            for f in plan.fields:
                if f.id in needed:
                    exprs.append(f.ref())
                    fields.append(f)  # pass-through keeps the id the correlation refers to
        plan = Project(plan, tuple(exprs), tuple(fields))

        if sel.args.get("distinct"):
            if sel.args["distinct"].args.get("on"):
                raise UnsupportedSQLError("DISTINCT ON is not supported")
            group_fields = tuple(self.new_field(f.name, f.type) for f in plan.fields)
            plan = Aggregate(plan, tuple(f.ref() for f in plan.fields), (), group_fields)
            remap = {old.id: new for old, new in zip(fields, group_fields)}
            sort_keys = [SortKey(remap[k.expr.id].ref(), k.ascending, k.nulls_first)  # type: ignore[attr-defined]
                         for k in sort_keys]
        if sort_keys:
            plan = Sort(plan, tuple(sort_keys))
        limit, offset = _constant_int(sel.args.get("limit"), "LIMIT"), _constant_int(sel.args.get("offset"), "OFFSET")
        if limit is not None or offset:
            plan = Limit(plan, limit, offset or 0)
        if len(plan.fields) > visible and not (correlation is not None and correlation.conditions):
            shown = plan.fields[:visible]
            plan = Project(plan, tuple(f.ref() for f in shown), shown)
        return plan

    def _select_items(self, sel: exp.Select, scope: Scope) -> list[tuple[str, exp.Expression]]:
        items: list[tuple[str, exp.Expression]] = []
        for node in sel.expressions:
            if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star)):
                table = node.table if isinstance(node, exp.Column) else None
                excluded = {c.name.lower() for c in (node.args.get("except_") or node.args.get("except") or [])}
                if node.args.get("replace"):
                    raise UnsupportedSQLError("SELECT * REPLACE is not supported")
                matched = False
                for relation in scope.relations:
                    if table and (relation.alias or "").lower() != table.lower():
                        continue
                    matched = True
                    for name in relation.names:
                        if name.lower() in excluded or (not table and name in relation.hidden):
                            continue
                        column = exp.column(name, table=relation.alias, quoted=True) if relation.alias else exp.column(name, quoted=True)
                        items.append((name, column))
                if table and not matched:
                    raise PlanError(scope._not_found(table, "*"))
                continue
            if isinstance(node, exp.Alias):
                items.append((node.alias, node.this))
            else:
                items.append((_display_name(node), node))
        if not items:
            raise PlanError("SELECT list is empty")
        return items

    def _group_expr(self, node: exp.Expression, scope: Scope, items: list[tuple[str, Expr]]) -> Expr:
        if isinstance(node, exp.Literal) and not node.is_string:
            position = int(node.this)
            if not 1 <= position <= len(items):
                raise PlanError(f"GROUP BY position {position} is not in the select list (1 to {len(items)})")
            return items[position - 1][1]
        if isinstance(node, exp.Column) and not node.table:
            try:
                return ExprBinder(self, scope).bind(node)
            except PlanError:
                for name, expr in items:
                    if name.lower() == node.name.lower():
                        return expr
                raise
        return ExprBinder(self, scope).bind(node)

    def _order_key(self, node: exp.Ordered, scope: Scope, items: list[tuple[str, Expr]]) -> SortKey:
        target = node.this
        descending = bool(node.args.get("desc"))
        nulls_first = bool(node.args.get("nulls_first"))
        if isinstance(target, exp.Literal) and not target.is_string:
            position = int(target.this)
            if not 1 <= position <= len(items):
                raise PlanError(f"ORDER BY position {position} is not in the select list (1 to {len(items)})")
            return SortKey(items[position - 1][1], not descending, nulls_first)
        if isinstance(target, exp.Column) and not target.table:
            for name, expr in items:
                if name == target.name:
                    return SortKey(expr, not descending, nulls_first)
        aliases = {name: expr for name, expr in items}
        binder = ExprBinder(self, scope, allow_aggregates=True, allow_windows=True, aliases=aliases)
        return SortKey(binder.bind(target), not descending, nulls_first)

    def _aggregate(self, plan: Plan, groups: list[Expr], items: list[tuple[str, Expr]], having: Expr | None,
                   order_keys: list[SortKey]) -> tuple[Plan, Any]:
        unique_groups = list(dict.fromkeys(groups))
        calls: list[AggregateCall] = []
        for expr in [e for _, e in items] + ([having] if having is not None else []) + [k.expr for k in order_keys]:
            for node in walk(expr):
                if isinstance(node, AggregateCall) and node not in calls:
                    calls.append(node)
        for i, g in enumerate(unique_groups):
            plan, unique_groups[i] = plan_expression(plan, g, self.new_field)
        group_fields = [self.new_field(_expr_name(g), g.type) for g in unique_groups]
        agg_fields = [self.new_field(f"{c.func}(...)", c.type) for c in calls]
        node = Aggregate(plan, tuple(unique_groups), tuple(calls), tuple(group_fields + agg_fields))
        group_map = {g: f.ref() for g, f in zip(unique_groups, group_fields)}
        agg_map = {c: f.ref() for c, f in zip(calls, agg_fields)}
        input_ids = plan.field_ids()

        def lift(expr: Expr) -> Expr:
            if expr in group_map:
                return group_map[expr]
            if isinstance(expr, AggregateCall):
                return agg_map[expr]
            if isinstance(expr, ColumnRef) and expr.id in input_ids:
                raise PlanError(f"column '{expr.name}' must appear in the GROUP BY clause or be used in an "
                                "aggregate function")
            if isinstance(expr, SubqueryExpr):
                # The subquery is joined above the aggregation, so the outer columns it correlates
                # on are lifted too (they must be GROUP BY keys, like any other column there).
                correlation = tuple(lift(c) for c in expr.correlation)
                arg = lift(expr.arg) if expr.arg is not None else None
                return SubqueryExpr(expr.kind, expr.plan, expr.output, correlation, arg, expr.type,
                                    expr.empty_value)
            children = expr.children()
            if not children:
                return expr
            return expr.with_children(tuple(lift(c) for c in children))

        return node, lift

    def _plan_window_inputs(self, plan: Plan, call: WindowCall) -> tuple[Plan, Expr]:
        for arg in call.children():
            if has_subquery(arg):
                raise UnsupportedSQLError("subqueries inside window functions are not supported")
        return plan, call

    # --- correlation ---------------------------------------------------------------------------

    def _split_correlations(self, correlation: Correlation, plan: Plan) -> list[tuple[Expr, Expr]]:
        """Each correlated condition as (inner side, outer side); only equalities qualify."""
        pairs = []
        for condition in correlation.conditions:
            if not (isinstance(condition, Call) and condition.name == "eq"):
                raise UnsupportedSQLError(
                    "a correlated subquery with aggregates may only correlate through equality conditions "
                    f"(inner = outer); found {_expr_name(condition)}")
            left, right = condition.args
            inner_ids = self._inner_ids(plan)
            if column_ids(left) <= inner_ids and not (column_ids(right) & inner_ids):
                pairs.append((left, right))
            elif column_ids(right) <= inner_ids and not (column_ids(left) & inner_ids):
                pairs.append((right, left))
            else:
                raise UnsupportedSQLError("a correlated condition must compare an inner expression with an outer one")
        return pairs

    def _inner_ids(self, plan: Plan) -> set[int]:
        from engine.logical.plan import walk_plan

        ids: set[int] = set()
        for node in walk_plan(plan):
            ids |= node.field_ids()
        return ids

    def _correlation_keys(self, correlation: Correlation, plan: Plan) -> list[Expr]:
        return [inner for inner, _ in self._split_correlations(correlation, plan)]

    def bind_subquery_expr(self, kind: str, query: exp.Expression, context: ExprBinder,
                           arg: Expr | None = None) -> Expr:
        correlation = Correlation()
        plan = self.bind_query(query, context.scope, self._ctes, correlation)
        visible = plan.fields if not correlation.conditions else plan.fields[: _visible_count(plan, correlation)]
        output = None
        if kind in ("scalar", "in"):
            if len(visible) != 1:
                raise PlanError(f"a {'scalar ' if kind == 'scalar' else 'IN '}subquery must return exactly one column, "
                                f"this one returns {len(visible)}")
            output = visible[0]
        if kind == "in":
            assert arg is not None and output is not None
            target = common_type(arg.type, output.type, context="IN subquery")
            if target != output.type:
                cast_field = self.new_field(output.name, target)
                plan = Project(plan, tuple(ExprBinder.coerce(f.ref(), target) if f.id == output.id else f.ref()
                                           for f in plan.fields),
                               tuple(cast_field if f.id == output.id else f for f in plan.fields))
                output = cast_field
            arg = ExprBinder.coerce(arg, target)
        result_type = output.type if kind == "scalar" and output is not None else pa.bool_()
        return SubqueryExpr(kind, plan, output, tuple(correlation.conditions), arg, result_type,
                            correlation.empty_value)

    # --- FROM -------------------------------------------------------------------------------

    def _bind_from(self, sel: exp.Select, outer: Scope | None, ctes: dict[str, Any]) -> tuple[Plan, Scope]:
        from_ = sel.args.get("from_") or sel.args.get("from")
        if from_ is None:
            if sel.args.get("joins"):
                raise PlanError("JOIN without FROM")
            return Values((), ((),)), Scope([], outer)
        plan, scope = self._bind_table_ref(from_.this, outer, ctes)
        for join in sel.args.get("joins") or []:
            right, right_scope = self._bind_table_ref(join.this, outer, ctes)
            plan, scope = self._bind_join(join, plan, scope, right, right_scope)
        return plan, scope

    def _bind_table_ref(self, node: exp.Expression, outer: Scope | None, ctes: dict[str, Any]) -> tuple[Plan, Scope]:
        alias_node = node.args.get("alias")
        alias = alias_node.name if alias_node is not None and alias_node.name else None
        column_aliases = [c.name for c in alias_node.columns] if alias_node is not None and alias_node.columns else None
        if isinstance(node, exp.Table):
            if node.args.get("joins"):
                raise UnsupportedSQLError(f"'{node.sql(dialect='duckdb')[:60]}' is not supported in FROM")
            if isinstance(node.this, exp.Func):
                source = table_function(node.this, self.catalog)
                fields = tuple(self.new_field(f.name, f.type, f.nullable) for f in source.schema)
                plan = Scan(source, source.name, tuple(source.schema.names), fields)
                names = _rename(list(source.schema.names), column_aliases, source.name)
                return plan, Scope([Relation(alias or source.name, names, list(fields))], outer)
            if node.args.get("when") is not None:
                # Other dialects' time travel (AT (VERSION => n)): refuse rather than read the latest.
                raise UnsupportedSQLError(f"'{node.args['when'].sql()[:60]}' is not supported; "
                                          "use VERSION AS OF n or TIMESTAMP AS OF '...'")
            name = node.name
            parts = [p.name for p in node.parts] if not node.this.args.get("quoted") else [name]
            key = ".".join(parts)
            if len(parts) == 1 and key.lower() in ctes and node.args.get("version") is None:
                query, columns, visible_ctes = ctes[key.lower()]
                plan = self.bind_query(query, None, visible_ctes)
                names = columns or [f.name for f in plan.fields]
                return plan, Scope([Relation(alias or key, _rename(names, column_aliases, key), list(plan.fields))], outer)
            version = self._version(node.args.get("version"))
            source = self.catalog.resolve(key, version=version)
            schema: pa.Schema = source.schema
            fields = tuple(self.new_field(f.name, f.type, f.nullable) for f in schema)
            plan = Scan(source, key, tuple(schema.names), fields)
            names = _rename(list(schema.names), column_aliases, key)
            return plan, Scope([Relation(alias or parts[-1], names, list(fields))], outer)
        if isinstance(node, exp.Subquery):
            if node.args.get("lateral"):
                raise UnsupportedSQLError("LATERAL subqueries are not supported")
            plan = self.bind_query(node.this, None, ctes)
            plan = self._order_limit_on_output(node, plan, outer, ctes)
            names = _rename([f.name for f in plan.fields], column_aliases, alias or "subquery")
            return plan, Scope([Relation(alias, names, list(plan.fields))], outer)
        if isinstance(node, exp.Values):
            plan = self._bind_values(node)
            names = _rename([f.name for f in plan.fields], column_aliases, alias or "values")
            return plan, Scope([Relation(alias, names, list(plan.fields))], outer)
        if isinstance(node, exp.Lateral) or isinstance(node, exp.Unnest):
            raise UnsupportedSQLError(f"'{node.sql()[:60]}' is not supported in FROM")
        raise UnsupportedSQLError(f"'{node.sql()[:60]}' is not supported in FROM")

    @staticmethod
    def _version(node: exp.Expression | None) -> tuple[str, Any] | None:
        if node is None:
            return None
        kind = str(node.this).upper()
        value = node.args.get("expression")
        if isinstance(value, exp.Literal):
            literal: Any = value.this if value.is_string else int(value.this)
        elif isinstance(value, exp.Cast) and isinstance(value.this, exp.Literal):
            literal = value.this.this
        else:
            raise PlanError(f"{kind} AS OF needs a literal, got '{value.sql() if value is not None else ''}'")
        if kind == "VERSION" and isinstance(literal, str):
            return ("tag", literal)
        return ("version" if kind == "VERSION" else "timestamp", literal)

    def _bind_join(self, join: exp.Join, left: Plan, left_scope: Scope, right: Plan,
                   right_scope: Scope) -> tuple[Plan, Scope]:
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if (join.args.get("method") or "").upper() == "ASOF" or kind == "ASOF":
            return self._bind_asof_join(join, left, left_scope, right, right_scope)
        scope = left_scope.merged(right_scope)
        if kind in ("SEMI", "ANTI"):
            join_kind = kind.lower()
            scope = left_scope
        elif kind == "CROSS":
            join_kind = "cross"
        elif side in ("LEFT", "RIGHT", "FULL"):
            join_kind = side.lower()
        elif kind in ("", "INNER", "OUTER"):
            join_kind = "inner"
        else:
            raise UnsupportedSQLError(f"{kind} JOIN is not supported")
        condition: Expr | None = None
        using = join.args.get("using")
        if using:
            parts = []
            for identifier in using:
                name = identifier.name
                left_field, _ = Scope(left_scope.relations).resolve(None, name)
                right_field, _ = Scope(right_scope.relations).resolve(None, name)
                parts.append(ExprBinder(self, scope).call("eq", [left_field.ref(), right_field.ref()]))
                for relation in right_scope.relations:
                    relation.hidden.add(name)
            condition = parts[0]
            for part in parts[1:]:
                condition = Call("and", (condition, part), pa.bool_())
        elif join.args.get("on") is not None:
            binder = ExprBinder(self, left_scope.merged(right_scope))
            condition = ExprBinder.coerce(binder.bind(join.args["on"]), pa.bool_())
            if has_subquery(condition):
                raise UnsupportedSQLError("subqueries in JOIN ... ON conditions are not supported")
        elif join_kind not in ("cross", "inner"):
            raise PlanError(f"{join_kind.upper()} JOIN needs an ON or USING condition")
        if join_kind == "inner" and condition is None:
            join_kind = "cross"
        return Join(left, right, join_kind, condition), scope

    def _bind_asof_join(self, join: exp.Join, left: Plan, left_scope: Scope, right: Plan,
                        right_scope: Scope) -> tuple[Plan, Scope]:
        """``ASOF [LEFT] JOIN`` as in DuckDB: equalities, exactly one inequality, and conditions
        on one input; ``USING (k..., ts)`` means ``k = k ... AND l.ts >= r.ts``."""
        side = (join.args.get("side") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if kind not in ("", "INNER", "OUTER", "ASOF") or side not in ("", "LEFT"):
            raise UnsupportedSQLError(f"ASOF {side or kind} JOIN is not supported; use ASOF JOIN or ASOF LEFT JOIN")
        join_kind = "asof_left" if side == "LEFT" else "asof"
        scope = left_scope.merged(right_scope)
        binder = ExprBinder(self, scope)
        using = join.args.get("using")
        if using:
            parts = []
            for position, identifier in enumerate(using):
                name = identifier.name
                left_field, _ = Scope(left_scope.relations).resolve(None, name)
                right_field, _ = Scope(right_scope.relations).resolve(None, name)
                op = "gte" if position == len(using) - 1 else "eq"
                parts.append(binder.call(op, [left_field.ref(), right_field.ref()]))
                for relation in right_scope.relations:
                    relation.hidden.add(name)
            condition = conjunction(parts)
        elif join.args.get("on") is not None:
            condition = ExprBinder.coerce(binder.bind(join.args["on"]), pa.bool_())
            if has_subquery(condition):
                raise UnsupportedSQLError("subqueries in ASOF JOIN ... ON conditions are not supported")
        else:
            raise PlanError("ASOF JOIN needs an ON or USING condition with one inequality, "
                            "e.g. ON l.k = r.k AND l.ts >= r.ts")
        assert condition is not None
        self._check_asof_condition(condition, left.field_ids(), right.field_ids())
        return Join(left, right, join_kind, condition), scope

    @staticmethod
    def _check_asof_condition(condition: Expr, left_ids: set[int], right_ids: set[int]) -> None:
        """Refuse ASOF conditions the sorted-merge join cannot run (DuckDB refuses the first two too)."""
        from engine.logical.display import expr_text

        parts = asof_parts(condition, left_ids, right_ids)
        if not parts.inequalities:
            raise PlanError("ASOF JOIN needs one inequality between the inputs (<, <=, > or >=), "
                            "e.g. ON l.k = r.k AND l.ts >= r.ts")
        if len(parts.inequalities) > 1:
            raise PlanError("ASOF JOIN allows only one inequality between the inputs; found "
                            + ", ".join(expr_text(Call(op, (a, b), pa.bool_())) for op, a, b in parts.inequalities))
        if parts.other:
            raise UnsupportedSQLError(f"ASOF JOIN condition '{expr_text(parts.other[0])}' is not supported; use "
                                      "equalities, one inequality, or conditions on one input (AND-ed)")
        _, low, high = parts.inequality  # type: ignore[misc]
        for expr in (low, high):
            dtype = expr.type
            if pa.types.is_nested(dtype) or pa.types.is_null(dtype) or pa.types.is_binary(dtype) \
                    or pa.types.is_large_binary(dtype) or pa.types.is_interval(dtype):
                raise UnsupportedSQLError(f"ASOF JOIN cannot order by '{expr_text(expr)}' of type {dtype}; "
                                          "use a number, date, timestamp or string")

    def _bind_values(self, node: exp.Values) -> Plan:
        rows = []
        binder = ExprBinder(self, Scope())
        for row in node.expressions:
            values = row.expressions if isinstance(row, exp.Tuple) else [row]
            rows.append([binder.bind(v) for v in values])
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise PlanError("every VALUES row must have the same number of values")
        types = []
        for i in range(len(rows[0])):
            t = rows[0][i].type
            for r in rows[1:]:
                t = common_type(t, r[i].type, context="VALUES")
            types.append(pa.string() if pa.types.is_null(t) else t)
        fields = tuple(self.new_field(f"col{i}", t) for i, t in enumerate(types))
        return Values(fields, tuple(tuple(ExprBinder.coerce(v, t) for v, t in zip(r, types)) for r in rows))

    # --- set operations -------------------------------------------------------------------

    def _bind_set_operation(self, node: exp.Expression, outer: Scope | None, ctes: dict[str, Any]) -> Plan:
        left = self.bind_query(node.this, outer, ctes)
        right = self.bind_query(node.expression, outer, ctes)
        kind = {exp.Union: "union", exp.Intersect: "intersect", exp.Except: "except"}[type(node)]
        if node.args.get("by_name"):
            raise UnsupportedSQLError("UNION BY NAME is not supported")
        if len(left.fields) != len(right.fields):
            raise PlanError(f"{kind.upper()} inputs have {len(left.fields)} and {len(right.fields)} columns; "
                            "both sides need the same number")
        types = [common_type(a.type, b.type, context=f"{kind.upper()} column {i + 1}")
                 for i, (a, b) in enumerate(zip(left.fields, right.fields))]
        left, right = self._cast_to(left, types), self._cast_to(right, types)
        fields = tuple(self.new_field(f.name, t) for f, t in zip(left.fields, types))
        plan: Plan = SetOp(kind, not node.args.get("distinct", True), left, right, fields)
        return self._order_limit_on_output(node, plan, outer, ctes)

    def _cast_to(self, plan: Plan, types: list[pa.DataType]) -> Plan:
        if all(f.type == t for f, t in zip(plan.fields, types)):
            return plan
        exprs = tuple(ExprBinder.coerce(f.ref(), t) for f, t in zip(plan.fields, types))
        return Project(plan, exprs, tuple(self.new_field(f.name, t) for f, t in zip(plan.fields, types)))

    def _order_limit_on_output(self, node: exp.Expression, plan: Plan, outer: Scope | None,
                               ctes: dict[str, Any]) -> Plan:
        """ORDER BY / LIMIT attached to a set operation or parenthesised query: by output column."""
        order = node.args.get("order")
        if order:
            scope = Scope([Relation(None, [f.name for f in plan.fields], list(plan.fields))], outer)
            items = [(f.name, f.ref()) for f in plan.fields]
            keys = tuple(self._order_key(o, scope, items) for o in order.expressions)  # type: ignore[arg-type]
            plan = Sort(plan, keys)
        limit = _constant_int(node.args.get("limit"), "LIMIT")
        offset = _constant_int(node.args.get("offset"), "OFFSET")
        if limit is not None or offset:
            plan = Limit(plan, limit, offset or 0)
        return plan


def _ast_conjuncts(node: exp.Expression) -> list[exp.Expression]:
    """The AND-ed parts of a condition, in order (iterative: chains can be thousands long)."""
    parts: list[exp.Expression] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, exp.Paren) and isinstance(current.this, exp.And):
            current = current.this
        if isinstance(current, exp.And):
            stack.append(current.expression)
            stack.append(current.this)
        else:
            parts.append(current)
    return parts


def _rename(names: list[str], aliases: list[str] | None, what: str) -> list[str]:
    if aliases is None:
        return names
    if len(aliases) > len(names):
        raise PlanError(f"'{what}' has {len(names)} columns but {len(aliases)} column aliases were given")
    return aliases + names[len(aliases):]


def _expr_name(expr: Expr) -> str:
    if isinstance(expr, ColumnRef):
        return expr.name
    from engine.logical.display import expr_text

    return expr_text(expr)


def _visible_count(plan: Plan, correlation: Correlation) -> int:
    """Columns of a correlated subquery's output that its SELECT list produced."""
    needed = set().union(*(column_ids(c) for c in correlation.conditions)) if correlation.conditions else set()
    count = len(plan.fields)
    while count > 0 and plan.fields[count - 1].id in needed:
        count -= 1
    return max(count, 1) if plan.fields else 0


def _empty_group_value(expr: Expr, plan: Plan) -> Expr:
    """The select expression's value over an empty group: count() is 0, other aggregates NULL."""
    aggregate_node = next((p for p in _plan_chain(plan) if isinstance(p, Aggregate)), None)
    if aggregate_node is None:
        return Literal(None, expr.type)
    agg_fields = aggregate_node.fields[len(aggregate_node.groups):]
    values = {f.id: Literal(0 if c.func in ("count", "count_star") else None, c.type)
              for f, c in zip(agg_fields, aggregate_node.aggregates)}

    def substitute(node: Expr) -> Expr | None:
        if isinstance(node, ColumnRef) and node.id in values:
            return values[node.id]
        return None

    result = transform(expr, substitute)
    return result if not column_ids(result) else Literal(None, expr.type)


def _plan_chain(plan: Plan) -> list[Plan]:
    out = [plan]
    while out[-1].inputs():
        out.append(out[-1].inputs()[0])
    return out


__all__ = ["Binder", "Catalog", "Correlation", "conjuncts"]
