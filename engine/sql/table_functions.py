"""Bind a table function call in FROM (``range``, ``generate_series``, ``table_changes``) to a source."""

from __future__ import annotations

from typing import Any

from sqlglot import expressions as exp

from engine.datasource.base import TableSource
from engine.datasource.functions import ChangesSource, RangeSource
from engine.errors import PlanError, UnsupportedSQLError

_SUPPORTED = "range(start, stop[, step]), generate_series(start, stop[, step]), table_changes('t', start[, end])"


def _constant(node: exp.Expression, function: str) -> Any:
    """The value of a literal argument (a number, a string, or a negated number)."""
    if isinstance(node, exp.Paren):
        return _constant(node.this, function)
    if isinstance(node, exp.Neg):
        value = _constant(node.this, function)
        if isinstance(value, (int, float)):
            return -value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal):
        return _constant(node.this, function)
    raise PlanError(f"{function}(): arguments must be constants, got '{node.sql(dialect='duckdb')[:60]}'")


def _integer(value: Any, function: str, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(f"{function}(): {what} must be an integer, got {value!r}")
    return value


def table_function(node: exp.Func, catalog: Any) -> TableSource:
    """The source a table function call in FROM reads."""
    if isinstance(node, exp.GenerateSeries):
        exclusive = bool(node.args.get("is_end_exclusive"))
        function = "range" if exclusive else "generate_series"
        start, end, step = node.args.get("start"), node.args.get("end"), node.args.get("step")
        values = [_integer(_constant(a, function), function, w) if a is not None else None
                  for a, w in ((start, "start"), (end, "stop"), (step, "step"))]
        first, stop, by = values
        if stop is None:  # range(n)
            first, stop = 0, first
        return RangeSource(function, function, first if first is not None else 0, stop,
                           by if by is not None else 1, inclusive=not exclusive)
    name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
    args = node.expressions if isinstance(node, exp.Anonymous) else list(node.args.values())
    if name == "table_changes":
        if not 2 <= len(args) <= 3:
            raise PlanError("table_changes('table', start_version[, end_version]) takes 2 or 3 arguments")
        table = _constant(args[0], name)
        if not isinstance(table, str):
            raise PlanError("table_changes(): the first argument is the table name as a string, e.g. 'events'")
        start = _integer(_constant(args[1], name), name, "start_version")
        end = _integer(_constant(args[2], name), name, "end_version") if len(args) == 3 else None
        return ChangesSource("table_changes", catalog.open_table(table), start, end)
    raise UnsupportedSQLError(f"table function '{node.sql(dialect='duckdb')[:60]}' is not supported; "
                              f"supported: {_SUPPORTED}")
