"""Joins: Arrow's hash join for equi-joins, and a pairs-based path for everything else.

The hash join takes equality keys plus an optional residual filter (when the residual can
be written as an Arrow expression). Mark joins, null-aware anti joins with correlation,
non-equi joins and residuals Arrow cannot express go through *match pairs*: the (left row,
right row) index pairs that satisfy the keys, filtered by the residual with our own
evaluator, from which every join kind's output is assembled.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.acero as acero
import pyarrow.compute as pc

from engine.errors import ExecutionError
from engine.logical.expr import Call, ColumnRef, Expr, Field, column_ids, conjunction, conjuncts
from engine.physical.exprs import column_name, evaluate_array, to_arrow_expression
from engine.physical.operators.base import ExecutionContext, Operator, table_batches

_ACERO_KIND = {"inner": "inner", "left": "left outer", "right": "right outer", "full": "full outer",
               "semi": "left semi", "anti": "left anti"}
# Join types as seen with the inputs exchanged (probe <-> build).
_SWAPPED = {"inner": "inner", "left": "right outer", "right": "left outer", "full": "full outer",
            "semi": "right semi", "anti": "right anti"}
_LEFT_ID, _RIGHT_ID = "__left_row", "__right_row"
# Build sides up to this many rows are joined with a streamed probe side.
_STREAM_BUILD_ROWS = 2_000_000
# A left input that feeds runtime filters is held in memory up to this many rows.
_LEFT_FIRST_ROWS = 1_000_000


def split_condition(condition: Expr | None, left_ids: set[int], right_ids: set[int]
                    ) -> tuple[list[tuple[Expr, Expr]], Expr | None]:
    """Equality keys (left expr, right expr) and the residual predicate."""
    keys: list[tuple[Expr, Expr]] = []
    rest: list[Expr] = []
    for part in conjuncts(condition):
        if isinstance(part, Call) and part.name == "eq":
            a, b = part.args
            ids_a, ids_b = column_ids(a), column_ids(b)
            if ids_a and ids_b and ids_a <= left_ids and ids_b <= right_ids:
                keys.append((a, b))
                continue
            if ids_a and ids_b and ids_a <= right_ids and ids_b <= left_ids:
                keys.append((b, a))
                continue
        rest.append(part)
    return keys, conjunction(rest)


class JoinOp(Operator):
    label = "Join"

    def __init__(self, context: ExecutionContext, left: Operator, right: Operator, kind: str,
                 condition: Expr | None, fields: tuple[Field, ...], null_aware: bool = False) -> None:
        super().__init__(context, fields, [left, right])
        self.kind, self.condition, self.null_aware = kind, condition, null_aware
        # Runtime filters (see runtime_filters.py) fed with this join's keys: from the right
        # input once it is read, and from the left input, which is then read first.
        self.publish_right: list[tuple[Any, Expr]] = []
        self.publish_left: list[tuple[Any, Expr]] = []

    # --- entry ---------------------------------------------------------------------------

    def execute(self) -> Iterator[pa.RecordBatch]:
        left_source: pa.Table | Iterator[pa.RecordBatch] | None = None
        if self.publish_left:
            left_source = self._read_left_first()
        right = self.collect_input(self.children[1], "join build side")
        _publish(self.publish_right, right)
        if left_source is None:
            left_source = self.children[0].run()
        yield from self._join(left_source, right)

    def _read_left_first(self) -> pa.Table | Iterator[pa.RecordBatch]:
        """Read the left input before the right one, and publish its keys when it is small.

        A left input beyond ``_LEFT_FIRST_ROWS`` is not worth holding: what was read is
        handed back with the rest of the stream, unfiltered, and the join goes on as usual.
        """
        stream = self.children[0].run()
        buffered: list[pa.RecordBatch] = []
        rows = total = 0
        for batch in stream:
            buffered.append(batch)
            rows += batch.num_rows
            total += batch.nbytes
            self.context.check_memory("join input", total)
            if rows > _LEFT_FIRST_ROWS:
                return itertools.chain(buffered, stream)
        left = pa.Table.from_batches(buffered, schema=self.children[0].schema)
        _publish(self.publish_left, left)
        return left

    def _join(self, left_source: pa.Table | Iterator[pa.RecordBatch], right: pa.Table) -> Iterator[pa.RecordBatch]:
        left_ids = {f.id for f in self.children[0].fields}
        right_ids = {f.id for f in self.children[1].fields}
        keys, residual = split_condition(self.condition, left_ids, right_ids)
        self.metrics.extra["build_rows"] = right.num_rows
        arrow_residual = to_arrow_expression(residual) if residual is not None else None
        streamable = self.kind in _ACERO_KIND and keys and (residual is None or arrow_residual is not None) \
            and not (self.kind == "anti" and self.null_aware) and right.num_rows <= _STREAM_BUILD_ROWS
        if streamable:
            # The build side is small: stream the probe side through the hash join, so memory
            # holds the build table and one batch, never the whole probe input.
            batches = iter(table_batches(left_source, self.context.batch_size)) \
                if isinstance(left_source, pa.Table) else left_source
            yield from self._streaming_hash_join(batches, right, keys, arrow_residual)
            return
        left = left_source if isinstance(left_source, pa.Table) else self._collect(left_source, "join probe side")
        if self.kind == "single":
            out = self._single(left, right)
        elif self.kind == "anti" and self.null_aware:
            out = self._null_aware_anti(left, right, keys, residual)
        elif self.kind == "mark":
            out = self._mark(left, right, keys, residual)
        else:
            if keys and (residual is None or arrow_residual is not None) and self.kind != "cross":
                out = self._hash_join(left, right, keys, arrow_residual)
            else:
                out = self._from_pairs(left, right, self._pairs(left, right, keys, residual))
        yield from table_batches(self.conform(out), self.context.batch_size)

    def _collect(self, stream: Iterator[pa.RecordBatch], what: str) -> pa.Table:
        batches, total = [], 0
        for batch in stream:
            total += batch.nbytes
            self.context.check_memory(what, total)
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=self.children[0].schema)

    def _streaming_hash_join(self, stream: Iterator[pa.RecordBatch], right: pa.Table, keys: list[tuple[Expr, Expr]],
                             residual: pc.Expression | None) -> Iterator[pa.RecordBatch]:
        probe = self.children[0]
        right_out = list(right.column_names)
        right, right_keys = self._with_keys(right, [k[1] for k in keys], "__rk")
        left_exprs = [k[0] for k in keys]
        left_keys = [column_name(e.id) if isinstance(e, ColumnRef) else f"__lk{i}" for i, e in enumerate(left_exprs)]
        computed = [(i, e) for i, e in enumerate(left_exprs) if not isinstance(e, ColumnRef)]
        left_schema = probe.schema
        for i, e in computed:
            left_schema = left_schema.append(pa.field(f"__lk{i}", e.type))

        def probe_batches() -> Iterator[pa.RecordBatch]:
            for batch in stream:
                for i, e in computed:
                    batch = batch.append_column(f"__lk{i}", evaluate_array(e, batch))
                yield batch

        join_type = _ACERO_KIND[self.kind]
        options = acero.HashJoinNodeOptions(
            join_type, left_keys=left_keys, right_keys=right_keys, left_output=list(probe.schema.names),
            right_output=right_out if join_type not in ("left semi", "left anti") else [],
            filter_expression=residual)
        schema = self.schema
        build = acero.Declaration("table_source", acero.TableSourceNodeOptions(right))
        if not hasattr(acero, "RecordBatchReaderSourceNodeOptions"):
            # pyarrow < 26 cannot feed a reader into Acero: join the probe side in chunks,
            # rebuilding the (small) build side's hash table per chunk; memory stays bounded.
            for chunk in _chunks(probe_batches(), left_schema, self.context.batch_size * _PROBE_CHUNK_BATCHES):
                probe_side = acero.Declaration("table_source", acero.TableSourceNodeOptions(chunk))
                out = acero.Declaration("hashjoin", options, inputs=[probe_side, build]).to_table(use_threads=True)
                for batch in out.to_batches():
                    if batch.num_rows:
                        yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            return
        reader = pa.RecordBatchReader.from_batches(left_schema, probe_batches())
        plan = acero.Declaration("hashjoin", options, inputs=[
            acero.Declaration("record_batch_reader_source", acero.RecordBatchReaderSourceNodeOptions(reader)),
            build])
        joined = plan.to_reader(use_threads=True)
        try:
            for batch in joined:
                if batch.num_rows:
                    yield pa.RecordBatch.from_arrays(batch.columns, schema=schema) if batch.schema != schema else batch
        finally:
            # A consumer that stops early (LIMIT, cancel, error) must close the Acero plan,
            # or its threads outlive the interpreter and abort it at exit.
            joined.close()

    # --- hash join ---------------------------------------------------------------------------

    @staticmethod
    def _with_keys(table: pa.Table, exprs: list[Expr], prefix: str) -> tuple[pa.Table, list[str]]:
        names = []
        for i, expr in enumerate(exprs):
            if isinstance(expr, ColumnRef):
                names.append(column_name(expr.id))
                continue
            name = f"{prefix}{i}"
            table = table.append_column(name, evaluate_array(expr, table))
            names.append(name)
        return table, names

    def _hash_join(self, left: pa.Table, right: pa.Table, keys: list[tuple[Expr, Expr]],
                   residual: pc.Expression | None, kind: str | None = None) -> pa.Table:
        """Arrow hash join, building the hash table on the smaller input."""
        kind = kind or self.kind
        left_out, right_out = list(left.column_names), list(right.column_names)
        left, left_keys = self._with_keys(left, [k[0] for k in keys], "__lk")
        right, right_keys = self._with_keys(right, [k[1] for k in keys], "__rk")
        swap = left.num_rows < right.num_rows and kind in _SWAPPED
        if swap:
            # Arrow builds on its right input: hand it the smaller table and mirror the join type.
            join_type = _SWAPPED[kind]
            options = acero.HashJoinNodeOptions(
                join_type, left_keys=right_keys, right_keys=left_keys,
                left_output=right_out if join_type not in ("right semi", "right anti") else [],
                right_output=left_out, filter_expression=residual)
            inputs = [right, left]
        else:
            join_type = _ACERO_KIND[kind]
            options = acero.HashJoinNodeOptions(
                join_type, left_keys=left_keys, right_keys=right_keys, left_output=left_out,
                right_output=right_out if join_type not in ("left semi", "left anti") else [],
                filter_expression=residual)
            inputs = [left, right]
        plan = acero.Declaration("hashjoin", options, inputs=[
            acero.Declaration("table_source", acero.TableSourceNodeOptions(t)) for t in inputs])
        out = plan.to_table(use_threads=True)
        if swap:
            wanted = left_out + ([] if kind in ("semi", "anti") else right_out)
            out = out.select(wanted)
        return out

    # --- match pairs -----------------------------------------------------------------------

    def _pairs(self, left: pa.Table, right: pa.Table, keys: list[tuple[Expr, Expr]],
               residual: Expr | None) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (left row, right row) where keys are equal and the residual is true."""
        if keys:
            left_idx = left.append_column(_LEFT_ID, pa.array(np.arange(left.num_rows, dtype=np.int64)))
            right_idx = right.append_column(_RIGHT_ID, pa.array(np.arange(right.num_rows, dtype=np.int64)))
            left_idx, left_keys = self._with_keys(left_idx, [k[0] for k in keys], "__lk")
            right_idx, right_keys = self._with_keys(right_idx, [k[1] for k in keys], "__rk")
            options = acero.HashJoinNodeOptions("inner", left_keys=left_keys, right_keys=right_keys,
                                                left_output=[_LEFT_ID], right_output=[_RIGHT_ID])
            matched = acero.Declaration("hashjoin", options, inputs=[
                acero.Declaration("table_source", acero.TableSourceNodeOptions(left_idx.select([_LEFT_ID] + left_keys))),
                acero.Declaration("table_source", acero.TableSourceNodeOptions(right_idx.select([_RIGHT_ID] + right_keys)))
            ]).to_table(use_threads=True)
            li = matched.column(_LEFT_ID).to_numpy()
            ri = matched.column(_RIGHT_ID).to_numpy()
        else:
            total = left.num_rows * right.num_rows
            width = max(1, (left.nbytes // max(1, left.num_rows)) + (right.nbytes // max(1, right.num_rows)))
            self.context.check_memory("cross join", total * width if residual is None else min(total, 1 << 22) * width)
            li = np.repeat(np.arange(left.num_rows, dtype=np.int64), right.num_rows)
            ri = np.tile(np.arange(right.num_rows, dtype=np.int64), left.num_rows)
        if residual is not None and len(li):
            keep = []
            chunk = 1 << 20
            for start in range(0, len(li), chunk):
                lpart, rpart = li[start:start + chunk], ri[start:start + chunk]
                rows = _gather(left, right, lpart, rpart)
                mask = pc.fill_null(evaluate_array(residual, rows), False)
                keep.append(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))
            mask_all = np.concatenate(keep)
            li, ri = li[mask_all], ri[mask_all]
        return li, ri

    def _from_pairs(self, left: pa.Table, right: pa.Table, pairs: tuple[np.ndarray, np.ndarray]) -> pa.Table:
        li, ri = pairs
        kind = self.kind
        if kind in ("semi", "anti"):
            matched = np.zeros(left.num_rows, dtype=bool)
            matched[li] = True
            return left.filter(pa.array(matched if kind == "semi" else ~matched))
        parts = [_gather(left, right, li, ri)]
        if kind in ("left", "full"):
            unmatched = np.setdiff1d(np.arange(left.num_rows), li)
            parts.append(_gather(left, right, unmatched, None))
        if kind in ("right", "full"):
            unmatched = np.setdiff1d(np.arange(right.num_rows), ri)
            parts.append(_gather(left, right, None, unmatched))
        return pa.concat_tables(parts)

    # --- special kinds ----------------------------------------------------------------------

    def _single(self, left: pa.Table, right: pa.Table) -> pa.Table:
        """Attach a scalar subquery's single row (or NULLs) to every left row."""
        if right.num_rows > 1:
            raise ExecutionError(f"a scalar subquery returned {right.num_rows} rows; it must return at most one "
                                 "(add LIMIT 1 or an aggregate)")
        columns = list(left.columns)
        for column in right.columns:
            value = column[0] if right.num_rows else pa.scalar(None, column.type)
            columns.append(pc.take(pa.array([value.as_py()], column.type), pa.array(np.zeros(left.num_rows, np.int32)))
                           if value.is_valid else pa.nulls(left.num_rows, column.type))
        return pa.table(columns, names=left.column_names + right.column_names)

    def _key_values(self, left: pa.Table, right: pa.Table, keys: list[tuple[Expr, Expr]]):  # noqa: ANN202
        return ([evaluate_array(k[0], left) for k in keys], [evaluate_array(k[1], right) for k in keys])

    def _null_aware_anti(self, left: pa.Table, right: pa.Table, keys: list[tuple[Expr, Expr]],
                         residual: Expr | None) -> pa.Table:
        """``x NOT IN (subquery)``: a NULL on either side makes the answer unknown, so the row goes."""
        if right.num_rows == 0:
            return left
        key_left, key_right = self._key_values(left, right, keys[:1])
        if residual is None:
            if key_right[0].null_count:
                return left.slice(0, 0)
            kept = self._hash_join(left, right, keys, None, kind="anti")
            return kept.filter(pc.is_valid(evaluate_array(keys[0][0], kept)))
        # Correlated NOT IN: decide per left row over the right rows its correlation selects.
        li, ri = self._pairs(left, right, [], residual) if not keys[1:] else self._pairs(left, right, keys[1:], residual)
        lk = pc.take(key_left[0], pa.array(li))
        rk = pc.take(key_right[0], pa.array(ri))
        equal = pc.equal(lk, rk)
        equal_np = np.asarray(pc.fill_null(equal, False).to_numpy(zero_copy_only=False), dtype=bool)
        unknown_np = np.asarray(pc.is_null(equal).to_numpy(zero_copy_only=False), dtype=bool)
        excluded = np.zeros(left.num_rows, dtype=bool)
        excluded[li[equal_np | unknown_np]] = True
        return left.filter(pa.array(~excluded))

    def _mark(self, left: pa.Table, right: pa.Table, keys: list[tuple[Expr, Expr]], residual: Expr | None) -> pa.Table:
        """Left rows plus a boolean: does a matching right row exist (IN: NULL when unknown)?"""
        li, _ = self._pairs(left, right, keys, residual) if keys or residual is not None else (
            np.arange(left.num_rows) if right.num_rows else np.array([], dtype=np.int64), None)
        matched = np.zeros(left.num_rows, dtype=bool)
        matched[li] = True
        mark = pa.array(matched)
        if self.null_aware and keys and right.num_rows:
            key_left, key_right = self._key_values(left, right, keys[:1])
            right_has_null = key_right[0].null_count > 0
            unknown = pc.or_(pc.is_null(key_left[0]), pa.scalar(right_has_null)) if not isinstance(
                key_left[0], pa.Scalar) else pa.scalar(True)
            mark = pc.if_else(pc.and_(pc.invert(mark), unknown), pa.scalar(None, pa.bool_()), mark)
        return left.append_column("__mark", mark)


def _publish(filters: list[tuple[Any, Expr]], table: pa.Table) -> None:
    for key_filter, key in filters:
        key_filter.publish(evaluate_array(key, table))


def _gather(left: pa.Table, right: pa.Table, li: np.ndarray | None, ri: np.ndarray | None) -> pa.Table:
    n = len(li) if li is not None else len(ri)  # type: ignore[arg-type]
    left_part = left.take(pa.array(li)) if li is not None else pa.table(
        [pa.nulls(n, c.type) for c in left.columns], names=left.column_names)
    right_part = right.take(pa.array(ri)) if ri is not None else pa.table(
        [pa.nulls(n, c.type) for c in right.columns], names=right.column_names)
    return pa.table(list(left_part.columns) + list(right_part.columns),
                    names=left.column_names + right.column_names)


_PROBE_CHUNK_BATCHES = 16  # probe batches joined per Acero plan when pyarrow cannot stream into Acero


def _chunks(batches: Iterator[pa.RecordBatch], schema: pa.Schema, rows: int) -> Iterator[pa.Table]:
    """Group ``batches`` into tables of about ``rows`` rows."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield pa.Table.from_batches(pending, schema=schema)
            pending, count = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=schema)
