"""Output formats, rendered in-process: every machine format reads back, boxes elide long results."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from engine.cli.__main__ import main
from engine.cli.render import FORMATS, box, display_width, render
from tests.cli.conftest import PEOPLE


def rendered(table: pa.Table, fmt: str) -> str:
    out = io.StringIO()
    render(table, fmt, out)
    return out.getvalue()


def test_csv_reads_back_with_nulls_as_empty_fields():
    rows = list(csv.reader(io.StringIO(rendered(PEOPLE, "csv"))))
    assert rows[0] == ["id", "name", "born", "balance", "seen", "score"]
    assert rows[1] == ["1", "ada", "1815-12-10", "12.50", "2024-01-02T03:04:05+00:00", "0.1"]
    assert rows[2][1] == 'bob, "the builder"' and rows[2][5] == "nan"
    assert rows[3] == ["3", "", "", "", "", ""]


def test_json_and_jsonl_agree_and_nested_values_are_json():
    table = pa.table({
        "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
        "point": pa.array([{"x": 1, "y": Decimal("2.5")}, None],
                          pa.struct([("x", pa.int32()), ("y", pa.decimal128(4, 1))])),
        "attrs": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
        "blob": pa.array([b"\x00\xff", None], pa.binary()),
        "at": pa.array([dt.time(1, 2, 3), None], pa.time64("us")),
        "big": pa.array([float("inf"), -float("inf")], pa.float64()),
    })
    whole = json.loads(rendered(table, "json"))
    lines = [json.loads(line) for line in rendered(table, "jsonl").splitlines()]
    assert whole == lines
    assert whole[0] == {"tags": ["a", "b"], "point": {"x": 1, "y": "2.5"}, "attrs": {"k": 1}, "blob": "00ff",
                        "at": "01:02:03", "big": "Infinity"}
    assert whole[1]["big"] == "-Infinity" and whole[1]["tags"] is None


def test_empty_results_in_every_format():
    empty = PEOPLE.slice(0, 0)
    assert json.loads(rendered(empty, "json")) == []
    assert rendered(empty, "jsonl") == ""
    assert rendered(empty, "csv").strip() == "id,name,born,balance,seen,score"
    assert rendered(empty, "box").splitlines()[-1] == "0 rows"
    for fmt in FORMATS:  # a statement's answer without columns never fails
        rendered(pa.table({}), fmt)


def test_markdown_escapes_pipes_and_aligns_numbers():
    table = pa.table({"n": [1, 22], "s": ["a|b", None]})
    assert rendered(table, "markdown").splitlines() == [
        "| n | s |", "|---:|---|", "| 1 | a\\|b |", "| 22 | NULL |"]


def test_box_names_types_and_elides_the_middle_of_long_results():
    table = pa.table({"id": pa.array(range(1234), pa.int64()), "name": [f"row {i}" for i in range(1234)]})
    lines = box(table, max_rows=40).splitlines()
    assert lines[1] == "│ id     │ name     │"
    assert lines[2] == "│ bigint │ varchar  │"
    assert lines[4] == "│      0 │ row 0    │"  # numbers right-aligned
    body = lines[4:-2]
    assert len(body) == 41 and body[20] == "│      · │ ·        │"
    assert body[19].startswith("│     19 ") and body[21].startswith("│   1214 ")
    assert lines[-1] == "1,234 rows (40 shown)"
    assert box(table.slice(0, 1)).splitlines()[-1] == "1 row"


def test_box_measures_wide_characters_and_cuts_long_cells():
    table = pa.table({"s": ["日本", "x" * 100, "two\nlines"]})
    lines = box(table).splitlines()
    assert {display_width(line) for line in lines[:-1]} == {len(lines[0])}
    assert "…" in lines[5] and "two↵lines" in lines[6]


def test_main_in_process_defaults_to_csv_off_a_terminal_and_to_the_local_warehouse(warehouse, capsys,
                                                                                  monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_WAREHOUSE", raising=False)
    monkeypatch.chdir(warehouse.parent)  # ./warehouse is the fixture's warehouse
    assert main(["sql", "-c", "select id from people where id < 3 order by id"]) == 0
    assert capsys.readouterr().out == "id\n1\n2\n"
    assert main(["sql", "--format", "table", "-c", "select id, name from people where id = 1"]) == 0
    assert capsys.readouterr().out.splitlines()[:4] == [
        "+----+------+", "| id | name |", "+----+------+", "|  1 | ada  |"]


@pytest.mark.parametrize("argv, message", [
    (["sql", "-f", "/no/such/file.sql"], "Error: cannot read SQL file '/no/such/file.sql': No such file or directory"),
    (["sql", "-c", "select 1 +"], "Error: syntax error"),
])
def test_main_in_process_reports_errors_in_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, str(tmp_path / "wh")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(message)


def test_unexpected_errors_point_at_debug(capsys, monkeypatch, tmp_path):
    import engine.cli.commands as commands

    def boom(*_args, **_kwargs):
        raise RuntimeError("kaput\nsecond line")

    monkeypatch.setattr(commands, "split_statements", boom)
    assert main(["sql", "-c", "select 1", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "Error: RuntimeError: kaput (run with --debug for a traceback)\n"
