"""Aggregate functions: result types (DuckDB's) and how Arrow's hash aggregation computes them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import PlanError, UnsupportedSQLError
from engine.types import is_numeric, type_name


@dataclass(frozen=True)
class AggregateFunction:
    name: str
    arrow: str  # Arrow hash-aggregate kernel name (without the "hash_" prefix)
    min_args: int = 1
    max_args: int = 1

    def result_type(self, types: Sequence[pa.DataType]) -> pa.DataType:
        if self.name in ("count", "count_star"):
            return pa.int64()
        if len(types) < self.min_args or len(types) > self.max_args:
            raise PlanError(f"aggregate {self.name}() takes {self.min_args} argument(s), got {len(types)}")
        arg = types[0] if types else pa.null()
        if self.name == "sum":
            if pa.types.is_decimal(arg):
                return pa.decimal128(38, arg.scale)
            if pa.types.is_integer(arg) or pa.types.is_boolean(arg):
                return pa.int64()
            if pa.types.is_floating(arg) or pa.types.is_null(arg):
                return pa.float64()
            raise PlanError(f"sum() needs numbers, got {type_name(arg)}")
        if self.name in ("avg", "stddev_samp", "stddev_pop", "var_samp", "var_pop"):
            if not (is_numeric(arg) or pa.types.is_null(arg)):
                raise PlanError(f"{self.name}() needs numbers, got {type_name(arg)}")
            return pa.float64()
        if self.name in ("bool_and", "bool_or"):
            return pa.bool_()
        if self.name == "string_agg":
            return pa.string()
        return arg  # min, max, any_value, first, last

    def input_type(self, arg: pa.DataType) -> pa.DataType:
        """The type the argument is cast to before aggregating."""
        if self.name == "sum" and pa.types.is_decimal(arg):
            return pa.decimal128(38, arg.scale)  # room for the sum of many rows
        if self.name == "sum" and (pa.types.is_integer(arg) or pa.types.is_boolean(arg)):
            return pa.int64()
        if self.name in ("avg", "stddev_samp", "stddev_pop", "var_samp", "var_pop"):
            return pa.float64()
        return arg

    def options(self) -> pc.FunctionOptions | None:
        if self.name in ("stddev_samp", "var_samp"):
            return pc.VarianceOptions(ddof=1)
        if self.name in ("stddev_pop", "var_pop"):
            return pc.VarianceOptions(ddof=0)
        if self.name == "count":
            return pc.CountOptions(mode="only_valid")
        if self.name in ("min", "max", "sum", "avg", "any_value", "first", "last", "bool_and", "bool_or"):
            return pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)
        return None


_FUNCTIONS = {f.name: f for f in (
    AggregateFunction("count", "count", 0, 1),
    AggregateFunction("count_star", "count_all", 0, 0),
    AggregateFunction("sum", "sum"),
    AggregateFunction("avg", "mean"),
    AggregateFunction("min", "min"),
    AggregateFunction("max", "max"),
    AggregateFunction("stddev_samp", "stddev"),
    AggregateFunction("stddev_pop", "stddev"),
    AggregateFunction("var_samp", "variance"),
    AggregateFunction("var_pop", "variance"),
    AggregateFunction("bool_and", "all"),
    AggregateFunction("bool_or", "any"),
    # Any non-NULL value will do; Arrow's "first" is an ordered aggregator that refuses threaded
    # grouping, "min" is not, and it is deterministic.
    AggregateFunction("any_value", "min"),
    AggregateFunction("first", "first"),
    AggregateFunction("last", "last"),
    AggregateFunction("string_agg", "list", 1, 2),
)}
_ALIASES = {"mean": "avg", "stddev": "stddev_samp", "std": "stddev_samp", "variance": "var_samp",
            "every": "bool_and", "any": "bool_or", "some": "bool_or", "arbitrary": "any_value",
            "group_concat": "string_agg", "listagg": "string_agg"}


def is_aggregate(name: str) -> bool:
    key = name.lower()
    return key in _FUNCTIONS or key in _ALIASES


def aggregate(name: str) -> AggregateFunction:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _FUNCTIONS:
        raise UnsupportedSQLError(f"aggregate function '{name}' is not supported")
    return _FUNCTIONS[key]
