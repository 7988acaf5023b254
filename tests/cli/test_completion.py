"""Completion and colouring, in-process: what Tab offers for what has been typed."""

from __future__ import annotations

import pyarrow as pa
import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

import engine
from engine.cli.completion import SchemaCache, SimpleSqlLexer, SqlCompleter, in_quote, references, sql_lexer


@pytest.fixture(scope="module")
def completer(warehouse):
    session = engine.connect(str(warehouse))
    session.register("Order Lines", pa.table({"qty": [1]}))
    return SqlCompleter(SchemaCache(session))


def offered(completer: SqlCompleter, text: str) -> list[str]:
    return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]


def test_keywords_follow_the_case_typed(completer):
    assert offered(completer, "sel") == ["select"]
    assert offered(completer, "SEL") == ["SELECT"]


def test_tables_after_from_and_columns_of_the_tables_named(completer):
    assert offered(completer, "select * from peo") == ["people"]
    assert offered(completer, "select * from Ord") == ['"Order Lines"']
    assert offered(completer, "select * from people where ba") == ["balance"]
    assert offered(completer, "select * from people where bo")[0] == "born"  # columns before keywords
    assert offered(completer, "select p.na") == []  # no FROM yet: p is unknown
    assert offered(completer, "select * from people p where p.s") == ["seen", "score"]


def test_nothing_inside_strings_and_dot_commands_complete(completer, tmp_path):
    assert offered(completer, "select 'sel") == []
    assert in_quote("select 'a' || 'b") and not in_quote("select 'a''b'")
    assert offered(completer, ".sch") == [".schema"]
    assert offered(completer, ".mode j") == ["json", "jsonl"]
    assert offered(completer, ".schema pe") == ["people"]
    (tmp_path / "script.sql").write_text("select 1;")
    assert offered(completer, f".read {tmp_path}/scr") == ["ipt.sql"]


def test_references_know_aliases():
    assert references("select * from a x join \"b c\" as y on x.id = y.id where") == {
        "a": "a", "x": "a", "b c": "b c", "y": "b c"}


def test_lexers_colour_keywords():
    fallback = SimpleSqlLexer().lex_document(Document("select 'a' -- c\nfrom t"))
    assert fallback(0) == [("class:pygments.keyword", "select"), ("", " "), ("class:pygments.literal.string", "'a'"),
                           ("", " "), ("class:pygments.comment", "-- c")]
    assert fallback(1)[0] == ("class:pygments.keyword", "from")
    assert sql_lexer() is not None
