"""Parsing SQL with sqlglot (DuckDB dialect), with errors that point at the spot."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import sqlglot
from sqlglot import expressions as exp
from sqlglot.errors import ParseError, TokenError

from engine.errors import SQLSyntaxError

DIALECT = "duckdb"
_RECURSION_LIMIT = 6000


@contextmanager
def deep_recursion() -> Iterator[None]:
    """sqlglot and the binder recurse per nesting level; allow more than Python's default."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, _RECURSION_LIMIT))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


_QUOTE_STARTS = frozenset("'\"-/")  # first characters of strings, quoted names and comments


def _skip_quoted(sql: str, i: int) -> int | None:
    """If a string, quoted name or comment starts at ``i``, the offset just past it (-1: never closed)."""
    ch, n = sql[i], len(sql)
    if ch in ("'", '"'):
        end = sql.find(ch, i + 1)
        while end != -1 and end + 1 < n and sql[end + 1] == ch:  # a doubled quote is an escaped quote
            end = sql.find(ch, end + 2)
        return -1 if end == -1 else end + 1
    if sql.startswith("--", i):
        end = sql.find("\n", i)
        return n if end == -1 else end + 1  # a line comment may end the text
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return -1 if end == -1 else end + 2
    return None


def unclosed_quote(sql: str) -> int | None:
    """Offset of the first string, quoted name or comment that is never closed, if any.

    sqlglot's tokenizer reports these without a usable position; this finds the spot to point at.
    """
    i, n = 0, len(sql)
    while i < n:
        after = _skip_quoted(sql, i)
        if after == -1:
            return i
        i = i + 1 if after is None else after
    return None


def nesting_depth(sql: str) -> tuple[int, int]:
    """Deepest parenthesis nesting outside strings and comments, and the offset where it occurs."""
    depth = deepest = where = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        after = _skip_quoted(sql, i) if ch in _QUOTE_STARTS else None
        if after is not None:
            i = n if after == -1 else after
            continue
        if ch == "(":
            depth += 1
            if depth > deepest:
                deepest, where = depth, i
        elif ch == ")":
            depth -= 1
        i += 1
    return deepest, where


def _position(sql: str, offset: int) -> tuple[int, int]:
    line = sql.count("\n", 0, offset) + 1
    col = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return line, col


def caret(sql: str, line: int, col: int) -> str:
    """The offending line with a caret under column ``col``."""
    lines = sql.splitlines() or [""]
    text = lines[min(max(line, 1), len(lines)) - 1]
    return f"  {text}\n  {' ' * max(col - 1, 0)}^"


def parse(sql: str, *, max_nesting: int = 200) -> list[exp.Expression]:
    """Parse one or more ``;``-separated statements. Raises :class:`SQLSyntaxError`."""
    if not sql or not sql.strip():
        raise SQLSyntaxError("the query is empty", line=1, col=1)
    depth, where = nesting_depth(sql)
    if depth > max_nesting:
        line, col = _position(sql, where)
        raise SQLSyntaxError(
            f"the query nests parentheses/subqueries {depth} levels deep; the limit is {max_nesting} "
            f"(line {line}, column {col})\n{caret(sql, line, col)}", line=line, col=col)
    try:
        with deep_recursion():
            statements = sqlglot.parse(sql, read=DIALECT)
    except ParseError as exc:
        detail = exc.errors[0] if exc.errors else {}
        line, col = int(detail.get("line") or 1), int(detail.get("col") or 1)
        description = str(detail.get("description") or exc).splitlines()[0]
        # sqlglot reports the column at the end of the offending token; point at its start.
        highlight = str(detail.get("highlight") or "")
        start_col = max(1, col - len(highlight) + 1) if highlight else col
        raise SQLSyntaxError(f"syntax error at line {line}, column {start_col}: {description}\n"
                             f"{caret(sql, line, start_col)}", line=line, col=start_col) from None
    except TokenError as exc:
        where = unclosed_quote(sql)
        if where is None:
            raise SQLSyntaxError(f"syntax error: {exc}", line=1, col=1) from None
        line, col = _position(sql, where)
        opener = sql[where:where + 2] if sql.startswith("/*", where) else sql[where]
        raise SQLSyntaxError(f"syntax error at line {line}, column {col}: {opener} is never closed\n"
                             f"{caret(sql, line, col)}", line=line, col=col) from None
    except RecursionError:
        raise SQLSyntaxError("the query is nested too deeply to parse; simplify it", line=1, col=1) from None
    return [s for s in statements if s is not None]
