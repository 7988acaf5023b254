"""Errors raised by the SQL engine; all are ``LakehouseError`` subclasses (design §6)."""

from __future__ import annotations

from lakehouse import errors as lakehouse_errors
from lakehouse.errors import LakehouseError


class EngineError(LakehouseError):
    """Root of the SQL engine's errors."""


class SQLSyntaxError(EngineError):
    """The SQL text does not parse. ``line``/``col`` are 1-based; the message has a caret."""

    def __init__(self, message: str, *, line: int | None = None, col: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


class UnsupportedSQLError(EngineError):
    """Valid SQL that this engine does not implement; the message names the construct."""


class PlanError(EngineError):
    """The query cannot be planned: unknown names, type mismatches, misuse of aggregates."""


class ExecutionError(EngineError):
    """The query failed while running (division by zero in strict casts, bad data...)."""


class QueryCancelledError(ExecutionError):
    """``Result.cancel()`` stopped the query (e.g. Ctrl+C in the shell); nothing was returned."""


class ResourcesExhaustedError(ExecutionError):
    """The query needs more memory than ``config.memory_limit`` allows."""


class ConstraintViolationError(ExecutionError, lakehouse_errors.ConstraintViolationError):
    """A write would break a CHECK or NOT NULL constraint; the message names it and a failing row.

    Also a :class:`lakehouse.errors.ConstraintViolationError`, so one ``except`` catches the
    engine's SQL-level checks and the table writer's own."""
