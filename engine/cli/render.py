"""Render Arrow tables for people (box, table, markdown) and for programs (csv, json, jsonl).

Values are printed the same way in every format:

* NULL is ``NULL`` for people, an empty field in CSV and ``null`` in JSON;
* dates, times and timestamps are ISO 8601 (``2024-01-02``, ``2024-01-02T03:04:05+00:00``;
  people get a space instead of the ``T``);
* decimals are exact: their digits as a string, in JSON too (``"12.50"``), so no reader
  rounds them through a float;
* floats are the shortest text that reads back to the same float; NaN and the infinities
  are the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` in JSON, which has no
  numbers for them;
* binary values are lowercase hex; lists, structs and maps are JSON (maps with text keys
  become objects, other maps lists of ``[key, value]`` pairs).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import unicodedata
from typing import Any, Iterator, TextIO

import pyarrow as pa

FORMATS = ("box", "table", "csv", "json", "jsonl", "markdown")
MAX_CELL = 48  # characters of one cell in the human formats before it is cut with "…"


# --- values ---------------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A value as JSON-compatible Python data, following the rules in the module docstring."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dt.timedelta):
        return str(value)
    if hasattr(value, "isoformat"):  # date, time, datetime, pandas.Timestamp
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        # pyarrow gives a map as a list of (key, value) pairs
        if all(isinstance(k, str) for k, _ in value):
            return {k: json_value(v) for k, v in value}
        return [[json_value(k), json_value(v)] for k, v in value]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)


def text_value(value: Any, *, null: str = "NULL", sep: str = " ") -> str:
    """A value as text for people (``sep`` between date and time) or CSV (``sep="T"``)."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=sep)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(json_value(value), ensure_ascii=False)
    converted = json_value(value)
    return converted if isinstance(converted, str) else str(converted)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters take two, combining ones none."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _human(value: Any) -> str:
    text = text_value(value).replace("\r\n", "↵").replace("\n", "↵").replace("\t", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def _numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)


def _type_label(dtype: pa.DataType) -> str:
    from engine.types import type_name

    return type_name(dtype).lower()


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Rows as dicts, one batch at a time (never the whole table as Python objects)."""
    for batch in table.to_batches():
        yield from batch.to_pylist()


def _cells(table: pa.Table) -> list[list[str]]:
    names = table.column_names
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [[_human(column[r]) for column in columns] for r in range(table.num_rows)] if names else []


def row_count(total: int, shown: int | None = None) -> str:
    """``1 row``, ``12 rows``, ``1,234 rows (40 shown)``."""
    text = f"{total:,} row{'' if total == 1 else 's'}"
    return text if shown is None or shown >= total else f"{text} ({shown:,} shown)"


# --- human formats --------------------------------------------------------------------------


def box(table: pa.Table, *, max_rows: int = 40, types: bool = True) -> str:
    """A box-drawn table: names, then types, then rows; past ``max_rows`` rows the middle is
    elided (a ``·`` row stands for it) and the count under the box says how many are shown."""
    if table.num_columns == 0:
        return "OK"
    total = table.num_rows
    if total > max_rows:
        head = max_rows - max_rows // 2
        tail = max_rows // 2
        body: list[list[str] | None] = [*_cells(table.slice(0, head)), None, *_cells(table.slice(total - tail))]
        shown = head + tail
    else:
        body = list(_cells(table))
        shown = total
    names = [_human(n) for n in table.column_names]
    labels = [_type_label(f.type) for f in table.schema]
    right = [_numeric(f.type) for f in table.schema]
    widths = [max(display_width(n), display_width(t) if types else 0) for n, t in zip(names, labels)]
    for row in body:
        if row is not None:
            widths = [max(w, display_width(c)) for w, c in zip(widths, row)]

    def rule(left: str, mid: str, end: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + end

    def line(cells: list[str], align: list[bool]) -> str:
        return "│" + "│".join(f" {_pad(c, w, a)} " for c, w, a in zip(cells, widths, align)) + "│"

    plain = [False] * len(widths)
    out = [rule("┌", "┬", "┐"), line(names, plain)]
    if types:
        out.append(line(labels, plain))
    out.append(rule("├", "┼", "┤"))
    for row in body:
        out.append(line(["·"] * len(widths), right) if row is None else line(row, right))
    out.append(rule("└", "┴", "┘"))
    out.append(row_count(total, shown))
    return "\n".join(out)


def ascii_table(table: pa.Table) -> str:
    """Every row in a plain ASCII grid (``+---+``), for pagers and logs; no elision."""
    if table.num_columns == 0:
        return "OK"
    names = [_human(n) for n in table.column_names]
    right = [_numeric(f.type) for f in table.schema]
    rows = _cells(table)
    widths = [display_width(n) for n in names]
    for row in rows:
        widths = [max(w, display_width(c)) for w, c in zip(widths, row)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: list[str], align: list[bool]) -> str:
        return "|" + "|".join(f" {_pad(c, w, a)} " for c, w, a in zip(cells, widths, align)) + "|"

    out = [rule, line(names, [False] * len(names)), rule, *(line(r, right) for r in rows), rule]
    out.append(row_count(table.num_rows))
    return "\n".join(out)


def markdown(table: pa.Table) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, ``|`` escaped)."""
    if table.num_columns == 0:
        return ""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|")

    names = [cell(n) for n in table.column_names]
    out = ["| " + " | ".join(names) + " |",
           "|" + "|".join("---:" if _numeric(f.type) else "---" for f in table.schema) + "|"]
    for row in _rows(table):
        out.append("| " + " | ".join(cell(_human(v)) for v in row.values()) + " |")
    return "\n".join(out)


# --- machine formats ------------------------------------------------------------------------


def write_csv(table: pa.Table, out: TextIO) -> None:
    """CSV with a header row; NULL is an empty field."""
    if table.num_columns == 0:
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for batch in table.to_batches():
        columns = [c.to_pylist() for c in batch.columns]
        for r in range(batch.num_rows):
            writer.writerow([text_value(c[r], null="", sep="T") for c in columns])


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps({k: json_value(v) for k, v in row.items()}, ensure_ascii=False)


def write_json(table: pa.Table, out: TextIO) -> None:
    """One JSON array of objects, one object per line."""
    out.write("[")
    first = True
    for row in _rows(table):
        out.write("\n" if first else ",\n")
        out.write(_dumps(row))
        first = False
    out.write("]\n" if first else "\n]\n")


def write_jsonl(table: pa.Table, out: TextIO) -> None:
    """One JSON object per line."""
    for row in _rows(table):
        out.write(_dumps(row))
        out.write("\n")


def render(table: pa.Table, fmt: str, out: TextIO) -> None:
    """Write ``table`` to ``out`` in one of :data:`FORMATS`."""
    if fmt == "csv":
        write_csv(table, out)
    elif fmt == "json":
        write_json(table, out)
    elif fmt == "jsonl":
        write_jsonl(table, out)
    else:
        text = {"box": box, "table": ascii_table, "markdown": markdown}[fmt](table)
        if text:
            out.write(text + "\n")
