"""Hash aggregation on Arrow's grouped aggregation kernels."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from engine.functions.aggregate import aggregate
from engine.logical.expr import AggregateCall, Cast, Expr, Field
from engine.physical import decimals, scaled
from engine.physical.exprs import evaluate_array
from engine.physical.operators.base import ExecutionContext, Operator, table_batches
from engine.physical.parallel import ordered_map


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
        if self._decomposable():
            yield from table_batches(self.conform(self._two_phase()), self.context.batch_size)
            return
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
        # Arrow's ordered aggregates (first/last) refuse multi-threaded grouping.
        ordered = any(kernel in ("first", "last") for _, _, kernel, _ in specs)
        result = table.group_by(keys, use_threads=not ordered).aggregate(
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

    # --- two-phase aggregation -------------------------------------------------------------

    def _decomposable(self) -> bool:
        return bool(self.aggregates) and all(
            not call.distinct and aggregate(call.func).name in _PARTIALS for call in self.aggregates)

    def _partial_specs(self) -> list[tuple[int, str]]:
        """(aggregate index, partial kind) for every partial aggregate, in a fixed order."""
        return [(i, kind) for i, call in enumerate(self.aggregates) for kind in _PARTIALS[aggregate(call.func).name]]

    def _partial(self, batches: list[pa.RecordBatch], specs: list[tuple[int, str]]) -> pa.Table:
        """Phase one over one chunk: keys ``k*`` and one column ``s<j>`` per partial."""
        chunk = pa.Table.from_batches(batches, schema=self.children[0].schema)
        keys = [f"k{i}" for i in range(len(self.groups))]
        columns = [evaluate_array(g, chunk) for g in self.groups]
        rows = chunk.num_rows
        fast = self._scaled_inputs(chunk, specs)
        values = {i: evaluate_array(call.args[0], chunk) if call.args else pa.nulls(rows, pa.int8())
                  for i, call in enumerate(self.aggregates)
                  if any(index == i and (kind, index) not in fast for index, kind in specs)}
        names = keys + [f"s{j}" for j in range(len(specs))]
        inputs_columns = []
        rescale: dict[int, pa.DataType] = {}
        for j, (i, kind) in enumerate(specs):
            if (kind, i) in fast:
                column, sum_type = fast[(kind, i)]
                if sum_type is not None:
                    rescale[j] = sum_type
            else:
                column = values[i]
                if kind == "sum" and pa.types.is_decimal(column.type):
                    as_int64 = decimals.exact_int64_sum_input(column)
                    if as_int64 is not None:
                        rescale[j] = pa.decimal128(38, column.type.scale)
                        column = as_int64
            inputs_columns.append(column)
        inputs = pa.table(columns + inputs_columns, names=names)
        result = inputs.group_by(keys, use_threads=False).aggregate(
            [(f"s{j}", _KERNEL[kind], _partial_options(kind)) for j, (_, kind) in enumerate(specs)])
        result = result.select(keys + [f"s{j}_{_KERNEL[kind]}" for j, (_, kind) in enumerate(specs)]).rename_columns(names)
        for j, dtype in rescale.items():  # exact int64 sums back to the decimal they stand for
            position = len(keys) + j
            result = result.set_column(position, names[position], decimals.from_int64(result.column(position), dtype))
        return result

    def _scaled_inputs(self, chunk: pa.Table, specs: list[tuple[int, str]]
                       ) -> dict[tuple[str, int], tuple[pa.Array, pa.DataType | None]]:
        """Inputs computed from decimals as scaled int64 (each column converted once).

        Decimal sums whose input provably sums without overflow get their int64 input and
        the decimal type to read the sum back as; other aggregates of a decimal tree or of
        a decimal cast to DOUBLE get their finished input (and None).
        """
        found: dict[tuple[str, int], tuple[pa.Array, pa.DataType | None]] = {}
        memo: dict = {}
        rows = chunk.num_rows
        for i, kind in specs:
            call = self.aggregates[i]
            if not call.args:
                continue
            arg = call.args[0]
            decimal_sum = kind == "sum" and pa.types.is_decimal128(arg.type)
            decimal_cast = isinstance(arg, Cast) and pa.types.is_decimal128(arg.arg.type)
            if not (decimal_sum or decimal_cast or scaled.is_decimal_tree(arg)):
                continue
            value = scaled.evaluate(arg, chunk, memo)
            if value is None:
                continue
            if decimal_sum and value.scale == arg.type.scale and value.bound * max(rows, 1) < 2**62:
                found[(kind, i)] = (scaled.to_int64(value, rows), pa.decimal128(38, value.scale))
            elif not decimal_sum:
                same = next((found[(k, j)] for k, j in found if j == i and found[(k, j)][1] is None), None)
                found[(kind, i)] = same or (scaled.to_arrow(value, arg.type, rows), None)
        return found

    def _two_phase(self) -> pa.Table:
        """Aggregate each chunk of ~1M rows, then combine the partial results.

        Memory holds one chunk plus one partial row per group, never the whole input.
        """
        specs = self._partial_specs()
        keys = [f"k{i}" for i in range(len(self.groups))]
        partials: list[pa.Table] = []
        chunk_bytes = max(1, self.context.memory_limit // 8)

        def chunks() -> Iterator[list[pa.RecordBatch]]:
            pending: list[pa.RecordBatch] = []
            pending_rows = pending_bytes = 0
            for batch in self.children[0].run():
                pending.append(batch)
                pending_rows += batch.num_rows
                pending_bytes += batch.nbytes
                if pending_rows >= _CHUNK_ROWS or pending_bytes >= chunk_bytes:
                    yield pending
                    pending, pending_rows, pending_bytes = [], 0, 0
            if pending:
                yield pending

        held = 0
        # Chunks are aggregated concurrently (both cores); partials are tiny next to chunks.
        for partial in ordered_map(lambda chunk: self._partial(chunk, specs), chunks()):
            partials.append(partial)
            held += partial.nbytes
            self.context.check_memory("aggregation state", held)
        if not partials:
            partials.append(self._partial([], specs))
        merged = pa.concat_tables(partials) if len(partials) > 1 else partials[0]
        if len(partials) > 1:
            combined = merged.group_by(keys, use_threads=True).aggregate(
                [(f"s{j}", _COMBINE[kind], _combine_options(kind)) for j, (_, kind) in enumerate(specs)])
            merged = combined.select(keys + [f"s{j}_{_COMBINE[kind]}" for j, (_, kind) in enumerate(specs)]
                                     ).rename_columns(keys + [f"s{j}" for j in range(len(specs))])
        out = [merged.column(k) for k in keys]
        for i, call in enumerate(self.aggregates):
            part = {kind: merged.column(f"s{j}") for j, (index, kind) in enumerate(specs) if index == i}
            name = aggregate(call.func).name
            if name == "avg":
                count = part["count"]
                out.append(pc.divide(part["sum"].cast(pa.float64()),
                                     pc.if_else(pc.equal(count, 0), pa.scalar(None, count.type), count)))
            elif name in ("count", "count_star"):
                out.append(pc.fill_null(part["count" if name == "count" else "count_rows"], 0))
            else:
                out.append(next(iter(part.values())))
        return pa.table(out, names=[f"c{i}" for i in range(len(out))])

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


# How each decomposable aggregate splits into partial aggregates (Arrow kernel names), and
# how partials of one kind combine. count(*) counts every row of a placeholder column.
_PARTIALS = {"sum": ("sum",), "count": ("count",), "count_star": ("count_rows",), "min": ("min",),
             "max": ("max",), "avg": ("sum", "count"), "bool_and": ("all",), "bool_or": ("any",)}
_KERNEL = {"sum": "sum", "count": "count", "count_rows": "count", "min": "min", "max": "max", "all": "all",
           "any": "any"}
_COMBINE = {"sum": "sum", "count": "sum", "count_rows": "sum", "min": "min", "max": "max", "all": "all",
            "any": "any"}
_CHUNK_ROWS = 1 << 19


def _partial_options(kind: str) -> pc.FunctionOptions:
    if kind == "count":
        return pc.CountOptions(mode="only_valid")
    if kind == "count_rows":
        return pc.CountOptions(mode="all")  # every row of the placeholder column
    return pc.ScalarAggregateOptions(skip_nulls=True, min_count=1)


def _combine_options(kind: str) -> pc.FunctionOptions:
    counting = kind in ("count", "count_rows")
    return pc.ScalarAggregateOptions(skip_nulls=True, min_count=0 if counting else 1)


def _join_lists(column: pa.ChunkedArray, separator: str) -> pa.ChunkedArray:
    values = column.to_pylist()
    return pa.chunked_array([pa.array([None if v is None or all(x is None for x in v) else
                                       separator.join(str(x) for x in v if x is not None) for v in values],
                                      pa.string())])
