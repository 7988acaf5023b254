"""Splitting scripts into statements, and the shell's state driven in-process."""

from __future__ import annotations

import pytest

import engine
from engine.cli.commands import is_complete, scan, split_statements
from engine.cli.shell import Shell


@pytest.mark.parametrize("text, statements", [
    ("select 1; select 2;", ["select 1", "select 2"]),
    ("select ';' as s; select 2", ["select ';' as s", "select 2"]),
    ("select 'it''s; fine'", ["select 'it''s; fine'"]),
    ('select 1 as "a;b"', ['select 1 as "a;b"']),
    ("-- only a comment;\n;;", []),
    ("select 1 -- trailing; comment\n; /* a; b */ select 2", ["select 1 -- trailing; comment", "select 2"]),
])
def test_split_statements(text, statements):
    assert split_statements(text) == statements


@pytest.mark.parametrize("text, complete", [
    ("", True), ("select 1", False), ("select 1;", True), ("select 1; -- done", True),
    ("select ';", False), ("select 1 /* ; ", False), ("select 1; select", False), ("select 1;\n", True),
])
def test_is_complete(text, complete):
    assert is_complete(text) is complete


def test_scan_keeps_the_unfinished_rest():
    assert scan("select 1; select 'a\n;") == (["select 1"], " select 'a\n;")


@pytest.fixture
def shell(tmp_path):
    session = engine.connect(str(tmp_path / "wh"))
    session.sql("create table t (id bigint, name varchar)")
    session.sql("insert into t values (1, 'one'), (2, 'two')")
    shell = Shell(session, mode="box")
    yield shell
    shell.close()


def test_dot_schema_mode_and_timer(shell, capsys):
    shell.handle(".schema t")
    assert capsys.readouterr().out == "CREATE TABLE t (\n  id BIGINT,\n  name VARCHAR\n);\n"
    shell.handle(".mode markdown")
    shell.handle(".timer on")
    shell.handle("select id from t order by id;")
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == ["| id |", "|---:|", "| 1 |", "| 2 |"] and out[4].startswith("Run Time: ")
    shell.handle(".mode yaml")
    shell.handle(".schema nope")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Error: unknown mode 'yaml'; use one of box, table, csv, json, jsonl, markdown"
    assert err[1].startswith("Error: table 'nope' does not exist")
    assert shell.mode == "markdown" and shell.errors == 2


def test_dot_output_and_read(shell, tmp_path, capsys):
    script = tmp_path / "script.sql"
    script.write_text(".mode csv\ninsert into t\nvalues (3, 'three');\nselect count(*) as n from t;\n")
    target = tmp_path / "out.csv"
    shell.handle(f".output {target}")
    shell.handle(f".read {script}")
    shell.handle(".output")
    shell.handle("select 'back' as s;")
    assert target.read_text() == "num_affected_rows\n1\nn\n3\n"
    assert capsys.readouterr().out == "s\nback\n"
    shell.handle(".read /no/such/file")
    assert capsys.readouterr().err.startswith("Error: cannot read '/no/such/file'")


def test_tables_follow_ddl_and_quit_stops_reading(shell, capsys):
    shell.run_lines(["create table u (x int);\n", ".tables\n", ".quit\n", "select 1;\n"])
    assert capsys.readouterr().out.splitlines() == ["OK", "t", "u"]
    assert shell.done
