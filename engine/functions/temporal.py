"""Date and time functions: extract/date_part, date_trunc, current_date..."""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import PlanError
from engine.functions.registry import Value, register
from engine.types import is_temporal, type_name

_PARTS = {
    "year": pc.year, "month": pc.month, "day": pc.day, "quarter": pc.quarter,
    "hour": pc.hour, "minute": pc.minute, "second": pc.second,
    "doy": pc.day_of_year, "dayofyear": pc.day_of_year, "week": pc.iso_week, "isoyear": pc.iso_year,
    "millisecond": pc.millisecond, "microsecond": pc.microsecond,
}
_ALIASES = {"years": "year", "months": "month", "days": "day", "hours": "hour", "minutes": "minute",
            "seconds": "second", "dayofmonth": "day", "yy": "year", "mm": "month", "dd": "day",
            "weekday": "dow", "dayofweek": "dow", "isodow": "isodow", "epoch": "epoch", "weeks": "week",
            "quarters": "quarter", "y": "year", "d": "day"}


def _part_name(value: Value) -> str:
    name = str(value.as_py()).lower().strip()
    return _ALIASES.get(name, name)


def _temporal_arg(types: Sequence[pa.DataType], name: str, position: int) -> None:
    t = types[position]
    if not (is_temporal(t) or pa.types.is_null(t)):
        raise PlanError(f"{name}() needs a date or timestamp, got {type_name(t)}")


def _extract_signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    _temporal_arg(types, name, 1)
    return [pa.string(), None], pa.int64()


def extract_part(part: str, values: Value) -> Value:
    if part == "dow":  # Sunday = 0
        return pc.day_of_week(values, count_from_zero=True, week_start=7).cast(pa.int64())
    if part == "isodow":  # Monday = 1
        return pc.day_of_week(values, count_from_zero=False, week_start=1).cast(pa.int64())
    if part == "epoch":
        stamps = values.cast(pa.timestamp("us")) if pa.types.is_date(values.type) else values
        return pc.divide(stamps.cast(pa.int64()), 1_000_000)
    kernel = _PARTS.get(part)
    if kernel is None:
        raise PlanError(f"unknown date part '{part}'; use year, quarter, month, day, dow, doy, week, hour, minute, second, epoch")
    return kernel(values).cast(pa.int64())


@register("date_part", _extract_signature, min_args=2, max_args=2, aliases=("extract", "datepart"))
def date_part(part: Value, values: Value, *, result: pa.DataType) -> Value:
    return extract_part(_part_name(part), values)


for _part in ("year", "month", "day", "quarter", "hour", "minute", "second", "dayofweek", "dayofyear", "week"):
    def _make(part=_part):
        def single(values: Value, *, result: pa.DataType) -> Value:
            return extract_part(_ALIASES.get(part, part), values)
        return single

    register(_part, lambda t, n: (_temporal_arg(t, n, 0), ([None], pa.int64()))[1], min_args=1, max_args=1)(_make())

_TRUNC_UNITS = {"year": "year", "quarter": "quarter", "month": "month", "week": "week", "day": "day",
                "hour": "hour", "minute": "minute", "second": "second", "millisecond": "millisecond"}


def _trunc_signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    _temporal_arg(types, name, 1)
    result = types[1] if pa.types.is_timestamp(types[1]) else pa.timestamp("us")
    return [pa.string(), None], result


@register("date_trunc", _trunc_signature, min_args=2, max_args=2, aliases=("datetrunc",))
def date_trunc(part: Value, values: Value, *, result: pa.DataType) -> Value:
    unit = _TRUNC_UNITS.get(_part_name(part))
    if unit is None:
        raise PlanError(f"date_trunc: unknown part '{part.as_py()}'")
    stamps = values.cast(pa.timestamp("us")) if pa.types.is_date(values.type) else values
    return pc.floor_temporal(stamps, unit=unit, week_starts_monday=True).cast(result)


@register("current_date", lambda t, n: ([], pa.date32()), min_args=0, max_args=0, aliases=("today",))
def current_date(*, result: pa.DataType) -> Value:
    return pa.scalar(dt.datetime.now(dt.timezone.utc).date(), pa.date32())


@register("now", lambda t, n: ([], pa.timestamp("us", tz="UTC")), min_args=0, max_args=0,
          aliases=("current_timestamp", "get_current_timestamp"))
def now(*, result: pa.DataType) -> Value:
    return pa.scalar(dt.datetime.now(dt.timezone.utc), result)


def _make_date_signature(types: Sequence[pa.DataType], name: str) -> tuple[Sequence[pa.DataType | None], pa.DataType]:
    return [pa.int64()] * 3, pa.date32()


@register("make_date", _make_date_signature, min_args=3, max_args=3)
def make_date(year: Value, month: Value, day: Value, *, result: pa.DataType) -> Value:
    text = pc.binary_join_element_wise(pc.utf8_lpad(pc.cast(year, pa.string()), 4, "0"),
                                       pc.utf8_lpad(pc.cast(month, pa.string()), 2, "0"),
                                       pc.utf8_lpad(pc.cast(day, pa.string()), 2, "0"), "-")
    return text.cast(pa.date32())
