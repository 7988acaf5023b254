"""``lakehouse sql`` driven as a user would: a subprocess with -c, -f or stdin."""

from __future__ import annotations

import csv
import io
import json

from tests.cli.conftest import run_cli


def test_json_output_reads_back_with_exact_decimals_and_iso_dates(warehouse, tmp_path):
    result = run_cli("sql", "--format", "json", "-c", "select * from people order by id", str(warehouse), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = json.loads(result.stdout)
    assert rows[0] == {"id": 1, "name": "ada", "born": "1815-12-10", "balance": "12.50",
                       "seen": "2024-01-02T03:04:05+00:00", "score": 0.1}
    assert rows[1]["name"] == 'bob, "the builder"' and rows[1]["balance"] == "-0.01" and rows[1]["score"] == "NaN"
    assert rows[2] == {"id": 3, "name": None, "born": None, "balance": None, "seen": None, "score": None}


def test_a_file_of_statements_split_outside_quotes_and_comments_prints_csv_when_piped(warehouse, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text("-- a comment; not a statement\n"
                      "select 'a;b' as s, 1 as n;\n"
                      "/* ; */ select name, balance from people where id = 2;\n"
                      "select count(*) as rows_ from people  -- the last one needs no ';'\n")
    result = run_cli("sql", "-f", str(script), str(warehouse), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["s", "n"], ["a;b", "1"], ["name", "balance"], ['bob, "the builder"', "-0.01"], ["rows_"], ["3"]]


def test_stdin_and_the_warehouse_from_the_environment(warehouse, tmp_path):
    result = run_cli("sql", "--format", "jsonl", cwd=tmp_path, stdin="select id, born from people order by id;",
                     LAKEHOUSE_WAREHOUSE=str(warehouse))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [{"id": 1, "born": "1815-12-10"}, {"id": 2, "born": "1970-01-01"}, {"id": 3, "born": None}]


def test_a_failing_statement_prints_one_line_and_exits_1(warehouse, tmp_path):
    result = run_cli("sql", "-c", "select 1 as a; select * from nobody; select 3 as c", str(warehouse), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == "a\n1\n"  # what ran before the error was printed; nothing after it
    assert result.stderr.splitlines() == ["Error: table 'nobody' does not exist; tables: people"]


def test_a_syntax_error_is_one_line_and_debug_adds_the_traceback(warehouse, tmp_path):
    plain = run_cli("sql", "-c", "selec 1", str(warehouse), cwd=tmp_path)
    assert plain.returncode == 1
    lines = plain.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: syntax error at line 1, column")
    assert "Traceback" not in plain.stderr

    debug = run_cli("sql", "--debug", "-c", "selec 1", str(warehouse), cwd=tmp_path)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "SQLSyntaxError" in debug.stderr and debug.stderr.splitlines()[-1] == lines[0]


def test_shell_reads_statements_and_dot_commands_from_piped_stdin(warehouse, tmp_path):
    script = (".tables\n"
              ".mode json\n"
              "select\n  1\n+ 1 as two;\n"
              ".nonsense\n"
              "select * from nobody;\n"
              "select 'still here' as s;\n")
    result = run_cli("shell", str(warehouse), cwd=tmp_path, stdin=script)
    assert result.returncode == 1  # some statements failed
    assert result.stdout == 'people\n[\n{"two": 2}\n]\n[\n{"s": "still here"}\n]\n'
    assert result.stderr.splitlines() == ["Error: unknown command '.nonsense'; .help lists the commands",
                                          "Error: table 'nobody' does not exist; tables: people"]
