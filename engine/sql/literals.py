"""SQL literal values as typed logical literals (DuckDB's literal typing rules)."""

from __future__ import annotations

import decimal
import re

import pyarrow as pa

from engine.errors import PlanError
from engine.logical.expr import Literal

_UNIT_ALIASES = {
    "year": "year", "years": "year", "y": "year", "yr": "year", "yrs": "year",
    "quarter": "quarter", "quarters": "quarter",
    "month": "month", "months": "month", "mon": "month", "mons": "month",
    "week": "week", "weeks": "week", "w": "week",
    "day": "day", "days": "day", "d": "day",
    "hour": "hour", "hours": "hour", "h": "hour", "hr": "hour",
    "minute": "minute", "minutes": "minute", "min": "minute", "m": "minute",
    "second": "second", "seconds": "second", "s": "second", "sec": "second",
    "millisecond": "millisecond", "milliseconds": "millisecond", "ms": "millisecond",
    "microsecond": "microsecond", "microseconds": "microsecond", "us": "microsecond",
}
_NANOS = {"hour": 3_600_000_000_000, "minute": 60_000_000_000, "second": 1_000_000_000,
          "millisecond": 1_000_000, "microsecond": 1_000}


def number_literal(text: str) -> Literal:
    """``42`` -> INTEGER, ``3000000000`` -> BIGINT, ``0.07`` -> DECIMAL(3,2), ``1e3`` -> DOUBLE."""
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value < 2**31:
            return Literal(value, pa.int32())
        if value < 2**63:
            return Literal(value, pa.int64())
        return Literal(decimal.Decimal(value), pa.decimal128(38, 0))
    if re.fullmatch(r"\d*\.\d*", text):
        whole, _, frac = text.partition(".")
        digits = len((whole + frac).lstrip("0")) or 1
        scale = len(frac)
        precision = min(38, max(digits, scale + 1, len(whole) + scale))
        return Literal(decimal.Decimal(text), pa.decimal128(precision, scale))
    try:
        return Literal(float(text), pa.float64())
    except ValueError:
        raise PlanError(f"'{text}' is not a number") from None


def interval_literal(amount: str, unit: str | None) -> Literal:
    """``INTERVAL '90' DAY`` / ``INTERVAL '3 months'`` as a month-day-nano interval."""
    text = amount.strip()
    parts: list[tuple[str, str]] = []
    if unit:
        parts.append((text, unit))
    else:
        tokens = text.split()
        if len(tokens) % 2:
            raise PlanError(f"cannot read interval '{amount}': use forms like INTERVAL '3 days' or INTERVAL 3 DAY")
        parts = [(tokens[i], tokens[i + 1]) for i in range(0, len(tokens), 2)]
    months = days = nanos = 0
    for count_text, unit_text in parts:
        name = _UNIT_ALIASES.get(unit_text.lower())
        try:
            count = int(count_text)
        except ValueError:
            raise PlanError(f"interval amount '{count_text}' must be a whole number") from None
        if name is None:
            raise PlanError(f"unknown interval unit '{unit_text}'")
        if name == "year":
            months += 12 * count
        elif name == "quarter":
            months += 3 * count
        elif name == "month":
            months += count
        elif name == "week":
            days += 7 * count
        elif name == "day":
            days += count
        else:
            nanos += _NANOS[name] * count
    return Literal(pa.scalar((months, days, nanos), pa.month_day_nano_interval()).value,
                   pa.month_day_nano_interval())
