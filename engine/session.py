"""Sessions: parse -> bind -> optimize -> execute, and the result object users hold."""

from __future__ import annotations

import re
import time
from typing import Any, Mapping

import pyarrow as pa

from engine.catalog import Catalog
from engine.config import Config
from engine.errors import UnsupportedSQLError
from engine.logical.display import plan_text
from engine.logical.plan import Plan
from engine.optimizer import optimize
from engine.physical.operators.base import ExecutionContext
from engine.physical.planner import PhysicalPlan, create_physical_plan
from engine.sql.binder import Binder
from engine.sql.parser import deep_recursion, parse

_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\s+", re.IGNORECASE)
# Texts that can only be queries skip the statement dispatcher (and its extra parse).
_QUERY = re.compile(r"^\s*(?:\(|select\b|with\b|values\b|from\b)", re.IGNORECASE)


class Result:
    """The result of one query. Rows are computed on first access and kept."""

    def __init__(self, session: Session, plan: Plan, sql: str, *, analyze: bool = False,
                 explain_only: bool = False) -> None:
        self.session = session
        self.plan = plan
        self.sql = sql
        self._analyze = analyze
        self._explain_only = explain_only
        self._table: pa.Table | None = None
        self._physical: PhysicalPlan | None = None
        self._context: ExecutionContext | None = None
        self._cancelled = False
        self.elapsed: float | None = None

    def cancel(self) -> None:
        """Stop the query if it is running (from another thread), or keep it from starting.

        Operators check the flag between batches, so the run stops within one batch's work
        and raises ``QueryCancelledError``.
        """
        self._cancelled = True
        if self._context is not None:
            self._context.cancelled = True

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.plan.fields] if not self._explain_only else ["plan"]

    def _run(self) -> pa.Table:
        context = ExecutionContext(self.session.config.memory_limit, self.session.config.batch_size,
                                   cancelled=self._cancelled)
        self._context = context
        if self._cancelled:
            context.check_cancelled()
        self._physical = create_physical_plan(self.plan, context)
        started = time.perf_counter()
        batches = list(self._physical.root.run())
        self.elapsed = time.perf_counter() - started
        schema = pa.schema([pa.field(f.name, f.type) for f in self.plan.fields])
        return pa.Table.from_batches([pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in batches],
                                     schema=schema)

    def to_arrow(self) -> pa.Table:
        """All rows as a pyarrow Table, with the query's column names."""
        if self._table is None:
            if self._explain_only:
                text = self.explain(analyze=self._analyze)
                self._table = pa.table({"plan": [text]})
            else:
                self._table = self._run()
        return self._table

    def to_pandas(self) -> Any:
        from lakehouse.optional import require

        require("pandas", "pandas")
        return self.to_arrow().to_pandas()

    def fetchall(self) -> list[tuple[Any, ...]]:
        table = self.to_arrow()
        return list(zip(*[c.to_pylist() for c in table.columns])) if table.num_columns else []

    def explain(self, analyze: bool = False) -> str:
        """The optimized plan; with ``analyze``, run it and add rows, time and files per operator."""
        if not analyze:
            return plan_text(self.plan)
        if self._physical is None or self._table is None:
            self._table = self._run() if not self._explain_only else None
            if self._explain_only:
                self._run()
        physical = self._physical
        assert physical is not None

        def annotate(node: Plan) -> str:
            op = physical.operator_for(node)
            if op is None:
                return ""
            parts = [f"rows={op.metrics.rows:,}", f"time={op.metrics.seconds * 1000:,.1f}ms"]
            extra = op.metrics.extra
            if "files_total" in extra and "files_scanned" in extra:
                parts.append(f"files={extra['files_scanned']}/{extra['files_total']} "
                             f"skipped={extra['files_skipped']}")
                parts.append(f"bytes={extra['bytes_scanned']:,}/{extra['bytes_total']:,} "
                             f"skipped={extra['bytes_skipped']:,}")
            if "runtime_filtered" in extra:
                parts.append(f"join-filtered={extra['runtime_filtered']:,}")
            return ", ".join(parts)

        return plan_text(self.plan, annotate)

    def show(self, max_rows: int = 20) -> None:
        from engine.cli.render import box

        print(box(self.to_arrow(), max_rows=max_rows))

    def __repr__(self) -> str:
        return f"Result(columns={self.columns})"


class StatementResult(Result):
    """The answer of a statement, computed when the statement ran."""

    def __init__(self, session: Session, sql: str, table: pa.Table) -> None:
        from engine.logical.expr import Field
        from engine.logical.plan import Values

        fields = tuple(Field(i, f.name, f.type) for i, f in enumerate(table.schema))
        super().__init__(session, Values(fields, ()), sql)
        self._table = table
        self.elapsed = 0.0

    @property
    def columns(self) -> list[str]:
        return list(self._table.column_names) if self._table is not None else []

    def explain(self, analyze: bool = False) -> str:  # noqa: ARG002
        return f"statement: {self.sql.strip()}"


class Session:
    """A connection to a warehouse: ``session.sql(query)`` returns a :class:`Result`."""

    def __init__(self, warehouse: str | None = None, *, config: Config | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.config = config or Config()
        self.catalog = Catalog(warehouse, storage_options)

    def register(self, name: str, data: Any) -> None:
        """Make an Arrow table, pandas/polars frame, or a lakehouse ``Snapshot``/``Table`` queryable as ``name``.

        Snapshots stay scans over their files (a pinned version, with file skipping); frames
        are held in memory.
        """
        self.catalog.register(name, data)

    def plan(self, sql: str) -> Plan:
        """The optimized logical plan of one query."""
        statements = parse(sql, max_nesting=self.config.max_nesting)
        if len(statements) != 1:
            raise UnsupportedSQLError(f"expected one statement, got {len(statements)}; run them one at a time")
        with deep_recursion():
            try:
                bound = Binder(self.catalog).bind(statements[0])
                return optimize(bound)
            except RecursionError:
                raise UnsupportedSQLError("the query is nested too deeply to plan; simplify it") from None

    def sql(self, sql: str) -> Result:
        """Run one statement or plan one query (``EXPLAIN [ANALYZE]`` prefixes are understood).

        Statements (CREATE, INSERT, DELETE, VACUUM, ...) run now and their answer is kept;
        a query's rows come on first access.
        """
        from engine.statements import run_statement

        match = _EXPLAIN.match(sql)
        if not match and not _QUERY.match(sql):
            answer = run_statement(self, sql)
            if answer is not None:
                return StatementResult(self, sql, answer)
        if match:
            return Result(self, self.plan(sql[match.end():]), sql, analyze=bool(match.group(1)), explain_only=True)
        return Result(self, self.plan(sql), sql)


def connect(warehouse: str | None = None, *, config: Config | None = None,
            storage_options: Mapping[str, Any] | None = None) -> Session:
    """Open a session over a warehouse folder/URL (its sub-folders are tables)."""
    return Session(warehouse, config=config, storage_options=storage_options)
