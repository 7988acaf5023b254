"""Hash aggregation on Arrow's grouped aggregation kernels."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from engine.functions.aggregate import aggregate
from engine.logical.expr import AggregateCall, Expr, Field
from engine.physical.exprs import evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator, table_batches


class AggregateOp(Operator):
    label = "Aggregate"

    def __init__(self, context: ExecutionContext, child: Operator, groups: tuple[Expr, ...],
                 aggregates: tuple[AggregateCall, ...], fields: tuple[Field, ...]) -> None:
        super().__init__(context, fields, [child])
        self.groups, self.aggregates = groups, aggregates

    def _inputs(self) -> pa.Table:
        """Group keys and aggregate arguments, evaluated batch by batch, as one table."""
        names = [f"k{i}" for i in range(len(self.groups))]
        arg_names = []
        for i, call in enumerate(self.aggregates):
            arg_names.append([f"a{i}_{j}" for j in range(len(call.args))])
        batches = []
        total = 0
        for batch in self.children[0].run():
            columns = [evaluate_array(g, batch) for g in self.groups]
            for call, call_names in zip(self.aggregates, arg_names):
                columns += [evaluate_array(a, batch) for a in call.args]
            flat = names + [n for group in arg_names for n in group]
            part = pa.table([c if not isinstance(c, pa.ChunkedArray) else c.combine_chunks() for c in columns],
                            names=flat) if flat else pa.table({"_": pa.nulls(batch.num_rows, pa.null())})
            total += part.nbytes
            self.context.check_memory("aggregation input", total)
            batches.append(part)
        if not batches:
            schema = pa.schema([pa.field(n, g.type) for n, g in zip(names, self.groups)] + [
                pa.field(n, a.type) for call, group in zip(self.aggregates, arg_names) for n, a in zip(group, call.args)])
            return schema.empty_table() if len(schema) else pa.table({"_": pa.nulls(0, pa.null())})
        return pa.concat_tables(batches)

    def execute(self) -> Iterator[pa.RecordBatch]:
        table = self._inputs()
        keys = [f"k{i}" for i in range(len(self.groups))]
        specs = []
        distinct_specs = []
        for i, call in enumerate(self.aggregates):
            func = aggregate(call.func)
            column = f"a{i}_0" if call.args else None
            if call.distinct and func.name != "count":
                distinct_specs.append((i, call))
                continue
            kernel = "count_distinct" if call.distinct else func.arrow
            options = pc.CountOptions(mode="only_valid") if call.distinct else func.options()
            specs.append((i, [] if column is None else column, kernel, options))
        result = table.group_by(keys, use_threads=True).aggregate(
            [(col, kernel, options) for _, col, kernel, options in specs]) if specs or keys else None
        columns: dict[int, pa.ChunkedArray] = {}
        if result is not None:
            for position, (i, col, kernel, _) in enumerate(specs):
                name = f"{col}_{kernel}" if col else kernel
                columns[i] = result.column(name)
            key_table = result.select(keys) if keys else None
        else:
            key_table = None
        for i, call in distinct_specs:
            columns[i] = self._distinct_aggregate(table, keys, i, call, key_table)
        out_columns = [key_table.column(k) for k in keys] if key_table is not None else []
        n = result.num_rows if result is not None else 1
        for i, call in enumerate(self.aggregates):
            column = columns[i]
            if aggregate(call.func).name == "string_agg":
                column = _join_lists(column, self._separator(call))
            out_columns.append(column)
        out = pa.table(out_columns, names=[f"c{i}" for i in range(len(out_columns))]) if out_columns else \
            pa.table({"_": pa.nulls(n, pa.null())}).select([])
        yield from table_batches(self.conform(out), self.context.batch_size) if out.num_columns else iter(())

    @staticmethod
    def _separator(call: AggregateCall) -> str:
        if len(call.args) > 1 and hasattr(call.args[1], "value"):
            return str(call.args[1].value)  # type: ignore[attr-defined]
        return ","

    def _distinct_aggregate(self, table: pa.Table, keys: list[str], i: int, call: AggregateCall,
                            key_table: pa.Table | None) -> pa.ChunkedArray:
        """Aggregate over distinct values: deduplicate (keys, value) first, then aggregate."""
        func = aggregate(call.func)
        column = f"a{i}_0"
        unique = table.select(keys + [column]).group_by(keys + [column], use_threads=False).aggregate([])
        grouped = unique.group_by(keys, use_threads=False).aggregate([(column, func.arrow, func.options())])
        values = grouped.column(f"{column}_{func.arrow}")
        if key_table is None:
            return values
        # Align with the main result's group order by joining on the keys.
        joined = key_table.append_column("__order", pa.array(range(key_table.num_rows))).join(
            grouped, keys, join_type="left outer").sort_by("__order")
        return joined.column(f"{column}_{func.arrow}")


def _join_lists(column: pa.ChunkedArray, separator: str) -> pa.ChunkedArray:
    values = column.to_pylist()
    return pa.chunked_array([pa.array([None if v is None or all(x is None for x in v) else
                                       separator.join(str(x) for x in v if x is not None) for v in values],
                                      pa.string())])
