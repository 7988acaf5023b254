"""SQL statements other than queries: DDL, DML and the table-maintenance commands.

``run_statement(session, sql)`` answers a statement with a small Arrow table (what DuckDB or
spark-sql would print: affected rows, a description, a report) or returns ``None`` when the
text is a query, which the session plans and executes as usual.

Delta-specific commands (``DESCRIBE HISTORY``, ``SHALLOW CLONE``, ``RESTORE``, ``VACUUM``,
``OPTIMIZE``, tags) are recognized by :mod:`engine.statements.commands` before sqlglot sees
them, since sqlglot has no grammar for them; the standard statements come from sqlglot's AST.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from sqlglot import exp

from engine.statements import commands, ddl, dml, merge

if TYPE_CHECKING:
    from engine.session import Session

_HANDLERS = {
    exp.Create: ddl.create,
    exp.Drop: ddl.drop,
    exp.Show: ddl.show,
    exp.Describe: ddl.describe,
    exp.Alter: ddl.alter,
    exp.Insert: dml.insert,
    exp.Delete: dml.delete,
    exp.Update: dml.update,
    exp.Merge: merge.merge,
}


def run_statement(session: Session, sql: str) -> pa.Table | None:
    """Execute ``sql`` if it is a statement and return its answer; ``None`` for a query."""
    command = commands.match(sql)
    if command is not None:
        return command.run(session)
    from engine.sql.parser import parse

    statements = parse(sql, max_nesting=session.config.max_nesting)
    if len(statements) != 1:
        return None  # the session reports the count
    node = statements[0]
    for kind, handler in _HANDLERS.items():
        if isinstance(node, kind):
            return handler(session, node)
    return None
