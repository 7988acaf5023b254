"""Which files may hold rows matching a predicate, decided for all files at once.

The verdict per file is *may match* (read it) or *cannot match* (skip it). It uses the
partition values and the ``minValues``/``maxValues``/``nullCount``/``numRecords`` stats of
the log. Anything unknown (no stats, a column without stats, a construct we cannot reason
about) counts as *may match*: skipping must never drop a file holding a matching row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from functools import cached_property
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.json as pajson

from lakehouse.expressions import (
    Always, And, Comparison, In, IsNull, Like, Not, Or, Predicate, int_comparable, negation_normal_form,
    to_arrow_expression,
)
from lakehouse.partitions import parse_partition_values

MAX_IN_VALUES = 64  # above this, IN is judged by the range of its values


def _json_type(dtype: pa.DataType) -> pa.DataType | None:
    """How a min/max value of ``dtype`` appears in stats JSON (``None``: no min/max)."""
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return pa.float64()
    if pa.types.is_string(dtype) or pa.types.is_date(dtype) or pa.types.is_timestamp(dtype):
        return pa.string()
    return None


def _nested_struct(paths: dict[tuple[str, ...], pa.DataType]) -> pa.DataType:
    tree: dict[str, Any] = {}
    for path, dtype in paths.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = dtype

    def build(node: dict[str, Any]) -> pa.DataType:
        return pa.struct([(k, build(v) if isinstance(v, dict) else v) for k, v in node.items()])

    return build(tree)


def _dig(array: pa.Array, path: tuple[str, ...]) -> pa.Array:
    for name in path:
        array = pc.struct_field(array, name)
    return array


class FileStats:
    """Typed per-file partition values and statistics, parsed on first use."""

    def __init__(self, files: pa.Table, schema: pa.Schema, partition_columns: tuple[str, ...]) -> None:
        self.files = files
        self.schema = schema
        self.partition_columns = partition_columns
        self._partitions: dict[str, pa.Array] = {}
        self._parsed: dict[tuple[str, ...], dict[str, pa.Array]] = {}

    @property
    def num_files(self) -> int:
        return self.files.num_rows

    def column_type(self, name: str) -> pa.DataType | None:
        dtype: pa.DataType | None = None
        fields = list(self.schema)
        for part in name.split("."):
            match = [f for f in fields if f.name == part]
            if not match:
                return None
            dtype = match[0].type
            fields = [dtype.field(i) for i in range(dtype.num_fields)] if pa.types.is_struct(dtype) else []
        return dtype

    def partition(self, column: str) -> pa.Array:
        if column not in self._partitions:
            values = pc.map_lookup(self.files.column("partitionValues").combine_chunks(), column, "first")
            self._partitions[column] = parse_partition_values(values, self.column_type(column), column=column)
        return self._partitions[column]

    @cached_property
    def num_records(self) -> pa.Array:
        return self._parse_stats(()).get("numRecords")

    def stats(self, column: str) -> dict[str, pa.Array]:
        """``min``, ``max`` (typed, may be absent) and ``nulls`` arrays for a data column."""
        path = tuple(column.split("."))
        if path not in self._parsed:
            self._parsed[path] = self._parse_stats(path)
        return self._parsed[path]

    # --- parsing ----------------------------------------------------------------------

    def _stats_lines(self) -> bytes:
        stats = pc.fill_null(self.files.column("stats").combine_chunks(), "{}")
        stats = pc.if_else(pc.equal(stats, ""), "{}", stats)
        return ("\n".join(stats.to_pylist()) + "\n").encode()

    @cached_property
    def _lines(self) -> bytes:
        return self._stats_lines()

    def _parse_stats(self, path: tuple[str, ...]) -> dict[str, pa.Array]:
        n = self.num_files
        fields: list[tuple[str, pa.DataType]] = [("numRecords", pa.int64())]
        dtype = self.column_type(".".join(path)) if path else None
        json_type = _json_type(dtype) if dtype is not None else None
        if path:
            fields.append(("nullCount", _nested_struct({path: pa.int64()})))
            if json_type is not None:
                fields.append(("minValues", _nested_struct({path: json_type})))
                fields.append(("maxValues", _nested_struct({path: json_type})))
        schema = pa.schema(fields)
        table = self._read_json(schema)
        out = {"numRecords": table.column("numRecords").combine_chunks()} if not path else {}
        if path:
            out["nulls"] = _dig(table.column("nullCount").combine_chunks(), path)
            if json_type is not None:
                out["min"] = self._typed(_dig(table.column("minValues").combine_chunks(), path), dtype, upper=False)
                out["max"] = self._typed(_dig(table.column("maxValues").combine_chunks(), path), dtype, upper=True)
        for key, value in out.items():
            assert len(value) == n, key
        return out

    def _read_json(self, schema: pa.Schema) -> pa.Table:
        options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        try:
            return pajson.read_json(io.BytesIO(self._lines), parse_options=options)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._read_json_per_row(schema)

    def _read_json_per_row(self, schema: pa.Schema) -> pa.Table:
        """Slow path for logs with odd stats: a row that does not fit gets no stats."""
        rows = []
        for line in self._lines.decode().splitlines():
            try:
                obj = json.loads(line)
                pa.Table.from_pylist([obj], schema=schema)
                rows.append(obj)
            except (ValueError, TypeError, pa.ArrowException):
                rows.append({})
        return pa.Table.from_pylist(rows, schema=schema)

    @staticmethod
    def _typed(values: pa.Array, dtype: pa.DataType, *, upper: bool) -> pa.Array:
        try:
            if pa.types.is_date(dtype):
                return pc.cast(values, pa.date32())
            if pa.types.is_timestamp(dtype):
                text = values
                if dtype.tz is not None:
                    has_zone = pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$")
                    text = pc.if_else(has_zone, text, pc.binary_join_element_wise(text, "Z", ""))
                parsed = pc.cast(text, pa.timestamp("us", tz=dtype.tz))
                if upper:
                    # Stats are truncated to milliseconds: the true max may be up to 999µs later.
                    parsed = pc.add(parsed, pa.scalar(dt.timedelta(milliseconds=1)))
                return parsed
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.nulls(len(values), dtype if not pa.types.is_timestamp(dtype) else pa.timestamp("us", tz=dtype.tz))
        return values


def _literal_for(array: pa.Array, value: Any) -> pa.Scalar:
    if pa.types.is_integer(array.type) and isinstance(value, (int, float, decimal.Decimal)) \
            and not isinstance(value, bool):
        if isinstance(value, int) and -2**63 <= value < 2**63:
            return pa.scalar(value, array.type)
        return int_comparable(value)  # 2.5 or 2**70 against int64 bounds, without rounding
    if isinstance(value, decimal.Decimal) or (pa.types.is_floating(array.type) and isinstance(value, int)):
        return pa.scalar(float(value))
    return pa.scalar(value, array.type)


def _compare(op: str) -> Callable[[Any, Any], pa.Array]:
    return {"=": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
            ">": pc.greater, ">=": pc.greater_equal}[op]


def _like_prefix(pattern: str) -> str:
    prefix = []
    for ch in pattern:
        if ch in "%_\\":
            break
        prefix.append(ch)
    return "".join(prefix)


class _Evaluator:
    def __init__(self, view: FileStats) -> None:
        self.view = view
        self.n = view.num_files

    def const(self, value: bool) -> pa.Array:
        return pa.array([value] * self.n, pa.bool_())

    def is_partition(self, column: str) -> bool:
        return column in self.view.partition_columns

    def evaluate(self, p: Predicate) -> pa.Array:
        """Boolean per file: may the file hold a row where ``p`` is true?"""
        if isinstance(p, Always):
            return self.const(p.value)
        if isinstance(p, And):
            result = self.evaluate(p.children[0])
            for child in p.children[1:]:
                result = pc.and_(result, self.evaluate(child))
            return result
        if isinstance(p, Or):
            result = self.evaluate(p.children[0])
            for child in p.children[1:]:
                result = pc.or_(result, self.evaluate(child))
            return result
        column = getattr(p, "column", None) if not isinstance(p, Not) else getattr(p.child, "column", None)
        if column is not None and self.is_partition(column):
            return self.partition_exact(p)
        if isinstance(p, Comparison):
            return self.stats_comparison(p)
        if isinstance(p, In):
            return self.stats_in(p)
        if isinstance(p, IsNull):
            nulls = self.view.stats(p.column)["nulls"]
            return pc.fill_null(pc.greater(nulls, 0), True)
        if isinstance(p, Not) and isinstance(p.child, IsNull):
            nulls = self.view.stats(p.child.column)["nulls"]
            return pc.fill_null(pc.less(nulls, self.view.num_records), True)
        if isinstance(p, Like):
            return self.stats_like(p)
        return self.const(True)

    def partition_exact(self, p: Predicate) -> pa.Array:
        """Partition columns are constant per file, so the predicate is evaluated exactly."""
        column = p.child.column if isinstance(p, Not) else p.column  # type: ignore[union-attr]
        values = self.view.partition(column)
        schema = pa.schema([pa.field(column, values.type)])
        mask = _evaluate_on(pa.table({column: values}), to_arrow_expression(p, schema))
        return pc.fill_null(mask, False)

    def _bounds(self, column: str) -> tuple[pa.Array | None, pa.Array | None, pa.Array]:
        stats = self.view.stats(column)
        all_null = pc.fill_null(pc.equal(stats["nulls"], self.view.num_records), False)
        return stats.get("min"), stats.get("max"), all_null

    def stats_comparison(self, p: Comparison) -> pa.Array:
        low, high, all_null = self._bounds(p.column)
        if low is None or high is None:
            return pc.invert(all_null)
        v_low, v_high = _literal_for(low, p.value), _literal_for(high, p.value)
        op = p.op
        if isinstance(p.value, decimal.Decimal) and pa.types.is_floating(low.type) \
                and decimal.Decimal(float(p.value)) != p.value:
            # Decimal bounds are doubles and the literal was rounded to one: a bound equal to
            # it may lie on either side of the exact value, so a tie must keep the file.
            if op == "!=":
                return pc.invert(all_null)
            op = {"<": "<=", ">": ">="}.get(op, op)
        if op == "=":
            result = pc.and_kleene(pc.less_equal(low, v_low), pc.greater_equal(high, v_high))
        elif op == "!=":
            result = pc.invert(pc.and_kleene(pc.equal(low, v_low), pc.equal(high, v_high)))
        elif op in ("<", "<="):
            result = _compare(op)(low, v_low)
        else:
            result = _compare(op)(high, v_high)
        return pc.and_(pc.fill_null(result, True), pc.invert(all_null))

    def stats_in(self, p: In) -> pa.Array:
        values = [v for v in p.values if v is not None]  # a NULL in the list never makes IN true
        if not values:
            return self.const(False)
        if len(values) <= MAX_IN_VALUES:
            result = self.const(False)
            for value in values:
                result = pc.or_(result, self.stats_comparison(Comparison(p.column, "=", value)))
            return result
        try:
            lo, hi = min(values), max(values)
        except TypeError:
            return self.const(True)
        return pc.and_(self.stats_comparison(Comparison(p.column, ">=", lo)),
                       self.stats_comparison(Comparison(p.column, "<=", hi)))

    def stats_like(self, p: Like) -> pa.Array:
        prefix = _like_prefix(p.pattern)
        if not prefix or p.case_insensitive:
            return self.const(True)
        low, high, all_null = self._bounds(p.column)
        if low is None or high is None:
            return pc.invert(all_null)
        result = pc.and_kleene(pc.greater_equal(high, pa.scalar(prefix)),
                               pc.less_equal(low, pa.scalar(prefix + "\U0010ffff")))
        return pc.and_(pc.fill_null(result, True), pc.invert(all_null))


def _evaluate_on(table: pa.Table, expression: pc.Expression) -> pa.Array:
    return ds.dataset(table).to_table(columns={"m": expression}).column("m").combine_chunks()


def may_match(files: pa.Table, predicate: Predicate | None, schema: pa.Schema,
              partition_columns: tuple[str, ...], *, view: FileStats | None = None) -> pa.Array:
    """Boolean mask over ``files``: ``True`` where the file may hold a matching row.

    ``predicate`` must already be bound to ``schema`` (see ``expressions.bind``).
    """
    if predicate is None or files.num_rows == 0:
        return pa.array([True] * files.num_rows, pa.bool_())
    evaluator = _Evaluator(view or FileStats(files, schema, partition_columns))
    return pc.fill_null(evaluator.evaluate(negation_normal_form(predicate)), True)
