"""Render Arrow tables for a terminal: boxed tables that elide the middle of long results."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return value.hex()
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def box(table: pa.Table, *, max_rows: int = 20) -> str:
    """A box-drawn table with a header, eliding middle rows past ``max_rows``, and a row count."""
    names = table.column_names
    rows = table.to_pylist()
    shown: list[list[str] | None]
    if len(rows) > max_rows:
        head, tail = rows[: max_rows // 2], rows[-(max_rows - max_rows // 2):]
        shown = [[_cell(r[n]) for n in names] for r in head] + [None] + [[_cell(r[n]) for n in names] for r in tail]
    else:
        shown = [[_cell(r[n]) for n in names] for r in rows]
    widths = [len(n) for n in names]
    for row in shown:
        if row is not None:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def fmt(cells: list[str]) -> str:
        return "│" + "│".join(f" {c:<{w}} " for c, w in zip(cells, widths)) + "│"

    out = [line("┌", "┬", "┐"), fmt(names), line("├", "┼", "┤")]
    for row in shown:
        out.append(fmt(["·"] * len(names)) if row is None else fmt(row))
    out.append(line("└", "┴", "┘"))
    count = table.num_rows
    out.append(f"{count} row{'s' if count != 1 else ''}" + (f" ({len(rows) - max_rows} not shown)" if len(rows) > max_rows else ""))
    return "\n".join(out)
