"""Completion and colouring for the shell: keywords, tables, columns and dot commands."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.lexers import Lexer

from engine.cli.commands import skip_quoted
from engine.cli.render import FORMATS

KEYWORDS = sorted(set("""
    ADD ALL ALTER ANALYZE AND ANTI ANY AS ASC BETWEEN BIGINT BOOLEAN BY CASE CAST CHECK CLONE
    COLUMN COLUMNS COMMENT CONSTRAINT CREATE CROSS CURRENT_DATE CURRENT_TIMESTAMP DATE DECIMAL
    DELETE DESC DESCRIBE DETAIL DISTINCT DOUBLE DROP ELSE END ESCAPE EXCEPT EXISTS EXPLAIN FALSE
    FILTER FIRST FLOAT FOLLOWING FOR FROM FULL GROUP HAVING HISTORY IF ILIKE IN INNER INSERT
    INTEGER INTERSECT INTERVAL INTO IS JOIN LAST LATERAL LEFT LIKE LIMIT NATURAL NOT NULL NULLS
    OF OFFSET ON OPTIMIZE OR ORDER OUTER OVER PARTITION PARTITIONED PRECEDING PROPERTIES QUALIFY
    RANGE RECURSIVE RENAME REPLACE RESTORE RETAIN RIGHT ROW ROWS SELECT SEMI SET SHALLOW SHOW
    SMALLINT STRING TABLE TABLES TAG TBLPROPERTIES THEN TIMESTAMP TO TRUE TRUNCATE UNBOUNDED UNION
    UPDATE USING VACUUM VALUES VARCHAR VERSION VIEW WHEN WHERE WINDOW WITH ZORDER
    AVG COALESCE COUNT MAX MIN SUM ROW_NUMBER RANK DENSE_RANK LAG LEAD NULLIF ROUND ABS LOWER UPPER
    LENGTH SUBSTRING TRIM CONCAT DATE_TRUNC EXTRACT
""".split()))

DOT_COMMANDS = {
    ".tables": "list the tables",
    ".schema": "columns of a table (or of all)",
    ".mode": "output format: " + "|".join(FORMATS),
    ".timer": "on|off: print each statement's run time",
    ".read": "run the statements in a file",
    ".output": "send results to a file (no file: back to stdout)",
    ".help": "list the dot commands",
    ".quit": "leave the shell",
    ".exit": "leave the shell",
}

# words after which a table name comes
_TABLE_CONTEXT = {"from", "join", "into", "table", "update", "describe", "history", "detail", "vacuum",
                  "optimize", "restore", "clone", "exists"}
_REFERENCE = re.compile(r"""\b(?:from|join|update|into|table|describe)\s+("[^"]+"|'[^']+'|[\w$]+)"""
                        r"""(?:\s+(?:as\s+)?([A-Za-z_]\w*))?""", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][\w$]*\Z")
_WORD = re.compile(r"[\w$.\"]+$")


def quote_name(name: str) -> str:
    """``name`` as SQL: bare when it is a plain identifier, else in double quotes."""
    if _IDENTIFIER.match(name) and name.upper() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) > 1 and name[0] in "\"'" and name[-1] == name[0] else name


def in_quote(text: str) -> bool:
    """True when ``text`` ends inside a string, quoted name or comment."""
    i = 0
    while i < len(text):
        after = skip_quoted(text, i)
        if after == -1:
            return True
        i = i + 1 if after is None else after
    return False


class SchemaCache:
    """Table names and columns for completion, cached until :meth:`invalidate` (after DDL)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._tables: list[str] | None = None
        self._columns: dict[str, list[tuple[str, str]]] = {}

    def invalidate(self) -> None:
        self._tables = None
        self._columns.clear()

    def tables(self) -> list[str]:
        if self._tables is None:
            try:
                self._tables = list(self.session.catalog.table_names())
            except Exception:  # noqa: BLE001 - completion must never break the prompt
                self._tables = []
        return self._tables

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of the table's columns; empty when it cannot be opened."""
        key = table.lower()
        if key not in self._columns:
            from engine.types import type_name

            try:
                schema = self.session.catalog.resolve(table).schema
                self._columns[key] = [(f.name, type_name(f.type)) for f in schema]
            except Exception:  # noqa: BLE001
                self._columns[key] = []
        return self._columns[key]


def references(text: str) -> dict[str, str]:
    """Tables named in ``text`` (after FROM, JOIN, ...) by name and by alias -> table name."""
    found: dict[str, str] = {}
    for match in _REFERENCE.finditer(text):
        table = _unquote(match.group(1))
        if table.upper() in KEYWORDS:
            continue
        found[table.lower()] = table
        alias = match.group(2)
        if alias and alias.upper() not in KEYWORDS:
            found[alias.lower()] = table
    return found


def _case_like(word: str, typed: str) -> str:
    return word.lower() if typed and typed == typed.lower() and not typed.isupper() else word


class SqlCompleter(Completer):
    """Completes dot commands, keywords (in the case typed), table names and columns."""

    def __init__(self, cache: SchemaCache) -> None:
        self.cache = cache
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        if before.lstrip().startswith("."):
            yield from self._dot(document, complete_event)
            return
        if in_quote(before):
            return
        match = _WORD.search(before)
        word = match.group(0) if match else ""
        if "." in word:
            qualifier, _, prefix = word.rpartition(".")
            table = references(document.text).get(_unquote(qualifier).lower(), _unquote(qualifier))
            yield from self._columns([table], prefix)
            return
        prefix = word.lstrip('"')
        previous = before[: len(before) - len(word)].rstrip().rsplit(None, 1)
        after_table_word = bool(previous) and previous[-1].lower() in _TABLE_CONTEXT
        yield from self._tables(prefix, len(word))
        if after_table_word:
            return
        yield from self._columns(sorted(set(references(document.text).values())), prefix)
        upper = prefix.upper()
        for keyword in KEYWORDS:
            if keyword.startswith(upper) and prefix:
                yield Completion(_case_like(keyword, prefix), -len(word), display_meta="keyword")

    def _tables(self, prefix: str, replace: int) -> Iterator[Completion]:
        lower = prefix.lower()
        for name in self.cache.tables():
            if name.lower().startswith(lower):
                yield Completion(quote_name(name), -replace, display_meta="table")

    def _columns(self, tables: Iterable[str], prefix: str) -> Iterator[Completion]:
        lower, seen = prefix.lower(), set()
        for table in tables:
            for name, type_ in self.cache.columns(table):
                if name.lower().startswith(lower) and name not in seen:
                    seen.add(name)
                    yield Completion(quote_name(name), -len(prefix), display_meta=f"{type_.lower()} · {table}")

    def _dot(self, document: Document, event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor.lstrip()
        command, space, argument = text.partition(" ")
        if not space:
            for name, help_ in DOT_COMMANDS.items():
                if name.startswith(command):
                    yield Completion(name, -len(command), display_meta=help_)
            return
        options: list[str] = []
        if command == ".mode":
            options = list(FORMATS)
        elif command == ".timer":
            options = ["on", "off"]
        elif command == ".schema":
            options = [quote_name(t) for t in self.cache.tables()]
        elif command in (".read", ".output"):
            yield from self.paths.get_completions(Document(argument.lstrip()), event)
            return
        argument = argument.lstrip()
        for option in options:
            if option.lower().startswith(argument.lower()):
                yield Completion(option, -len(argument))


# --- colouring ------------------------------------------------------------------------------

_TOKEN = re.compile(r"""(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))|(?P<string>'(?:[^']|'')*'?)|"""
                    r"""(?P<name>"(?:[^"]|"")*"?)|(?P<number>\b\d+(?:\.\d*)?(?:e[+-]?\d+)?\b)|"""
                    r"""(?P<word>[A-Za-z_]\w*)|(?P<operator>[-+*/%<>=!|,;()])""", re.DOTALL | re.IGNORECASE)
_STYLE = {"comment": "class:pygments.comment", "string": "class:pygments.literal.string",
          "name": "class:pygments.name", "number": "class:pygments.literal.number",
          "keyword": "class:pygments.keyword", "operator": "class:pygments.operator"}


class SimpleSqlLexer(Lexer):
    """Colours SQL without pygments: keywords, strings, numbers, comments."""

    def lex_document(self, document: Document) -> Callable[[int], list[tuple[str, str]]]:
        fragments: list[tuple[str, str]] = []
        text, at = document.text, 0
        for match in _TOKEN.finditer(text):
            if match.start() > at:
                fragments.append(("", text[at:match.start()]))
            kind = match.lastgroup or ""
            if kind == "word":
                kind = "keyword" if match.group(0).upper() in KEYWORDS else ""
            fragments.append((_STYLE.get(kind, ""), match.group(0)))
            at = match.end()
        fragments.append(("", text[at:]))
        lines: list[list[tuple[str, str]]] = [[]]
        for style, chunk in fragments:
            for i, part in enumerate(chunk.split("\n")):
                if i:
                    lines.append([])
                if part:
                    lines[-1].append((style, part))
        return lambda number: lines[number] if number < len(lines) else []


def sql_lexer() -> Lexer:
    """pygments' SQL lexer when pygments is installed, else :class:`SimpleSqlLexer`."""
    try:
        from prompt_toolkit.lexers import PygmentsLexer
        from pygments.lexers.sql import SqlLexer
    except ImportError:
        return SimpleSqlLexer()
    return PygmentsLexer(SqlLexer)
