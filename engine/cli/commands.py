"""SQL scripting for the command line: split scripts into statements, run them with progress
and cancellation, print errors in one line, and the ``lakehouse sql`` command itself."""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, TextIO

import pyarrow as pa

from engine.cli.render import render
from lakehouse.errors import LakehouseError

PROGRESS_AFTER = 2.0  # seconds a statement runs before the progress line appears
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


# --- splitting ------------------------------------------------------------------------------


def skip_quoted(text: str, i: int) -> int | None:
    """If a string, quoted name or comment starts at ``i``: the offset past it, or -1 if it is never
    closed. ``None`` when ``text[i]`` starts none of them."""
    ch = text[i]
    if ch in ("'", '"'):
        j = i + 1
        while True:
            j = text.find(ch, j)
            if j == -1:
                return -1
            if text.startswith(ch * 2, j):  # a doubled quote stands for the quote itself
                j += 2
                continue
            return j + 1
    if text.startswith("--", i):
        end = text.find("\n", i)
        return len(text) if end == -1 else end + 1
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return -1 if end == -1 else end + 2
    return None


def strip_comments_ahead(statement: str) -> str:
    """``statement`` without the whitespace and comments before its first word."""
    i = 0
    while i < len(statement):
        if statement[i].isspace():
            i += 1
            continue
        if statement.startswith("--", i) or statement.startswith("/*", i):
            after = skip_quoted(statement, i)
            if after is None or after == -1:
                return ""
            i = after
            continue
        break
    return statement[i:]


def scan(text: str) -> tuple[list[str], str]:
    """Split ``text`` at the semicolons outside strings, quoted names and comments.

    Returns the complete statements (stripped, without the ``;``; statements made only of
    comments are dropped) and the incomplete rest after the last semicolon.
    """
    statements: list[str] = []
    start = i = 0
    while i < len(text):
        after = skip_quoted(text, i)
        if after == -1:  # an open quote or comment: everything from ``start`` is incomplete
            break
        if after is not None:
            i = after
            continue
        if text[i] == ";":
            statement = strip_comments_ahead(text[start:i]).strip()
            if statement:
                statements.append(statement)
            start = i + 1
        i += 1
    return statements, text[start:]


def split_statements(text: str) -> list[str]:
    """Every statement of a script; a last statement without a ``;`` counts too."""
    statements, rest = scan(text)
    last = strip_comments_ahead(rest).strip()
    return statements + ([last] if last else [])


def is_complete(text: str) -> bool:
    """True when ``text`` holds no partial statement: it ends with a ``;`` (after comments)."""
    _, rest = scan(text)
    return not strip_comments_ahead(rest).strip()


# --- errors ---------------------------------------------------------------------------------


def error_line(exc: BaseException) -> str:
    """One line for an error: ``Error: <message>``. Our own errors name what to do; anything
    else also says how to see the traceback."""
    if isinstance(exc, LakehouseError):
        message = str(exc).strip().splitlines()
        return f"Error: {message[0] if message else type(exc).__name__}"
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return f"Error: {text} (run with --debug for a traceback)"


def report(exc: BaseException, *, debug: bool, stream: TextIO | None = None) -> None:
    """Print ``exc`` to stderr: a traceback first with ``debug``, then its one line."""
    stream = stream or sys.stderr
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=stream)
    print(error_line(exc), file=stream, flush=True)


# --- running --------------------------------------------------------------------------------


class QueryCancelled(Exception):
    """The user pressed Ctrl+C while a statement ran."""

    def __init__(self) -> None:
        super().__init__("query cancelled")


@dataclass
class _Job:
    sql: str
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    result: Any = None
    table: pa.Table | None = None
    error: BaseException | None = None


def _stop_execution(job: _Job) -> bool:
    """Cancel the statement's query once its ``Result`` exists. True when done.

    ``Result.cancel`` works before and during execution: operators stop between batches.
    """
    cancel = getattr(job.result, "cancel", None)
    if cancel is None:
        return False
    cancel()
    return True


def _watch_cancel(job: _Job) -> None:
    """After Ctrl+C: raise the engine's flag as soon as the query's execution has started."""
    while not job.done.is_set():
        if _stop_execution(job):
            return
        job.done.wait(0.02)


class QueryRunner:
    """Runs one statement at a time in a worker thread, so Ctrl+C can cancel it.

    On Ctrl+C the query's execution is told to stop (it does between two batches), and a
    query still being planned is not started. A statement (INSERT, CREATE TABLE AS, ...)
    cannot be stopped: it finishes in the background and its answer is dropped.
    """

    def __init__(self, session: Any, *, progress: bool = False, progress_stream: TextIO | None = None,
                 progress_after: float = PROGRESS_AFTER) -> None:
        self.session = session
        self.progress = progress
        self.progress_stream = progress_stream or sys.stderr
        self.progress_after = progress_after
        self.cancelled: list[threading.Thread] = []  # workers of cancelled statements

    def still_running(self) -> list[threading.Thread]:
        """Workers of cancelled statements that have not finished yet."""
        self.cancelled = [t for t in self.cancelled if t.is_alive()]
        return self.cancelled

    def wait_for_cancelled(self, stream: TextIO | None = None) -> None:
        """Before exiting: let cancelled statements finish (a write must not stop halfway;
        a query stops at its next batch). Ctrl+C stops waiting."""
        if not self.still_running():
            return
        stream = stream or sys.stderr
        print("waiting for a cancelled statement to finish… (Ctrl+C quits now)", file=stream, flush=True)
        try:
            for thread in self.still_running():
                thread.join()
        except KeyboardInterrupt:
            pass

    def run(self, sql: str) -> tuple[pa.Table, float]:
        """The statement's answer and its wall time; raises its error, or :class:`QueryCancelled`."""
        job = _Job(sql)
        started = time.perf_counter()
        worker = threading.Thread(target=self._work, args=(job,), name="lakehouse-query", daemon=True)
        worker.start()
        shown = False
        try:
            while not job.done.wait(0.1):
                elapsed = time.perf_counter() - started
                if self.progress and elapsed >= self.progress_after:
                    frame = _SPINNER[int(elapsed * 10) % len(_SPINNER)]
                    self.progress_stream.write(f"\r{frame} running… {elapsed:.1f} s  (Ctrl+C cancels)")
                    self.progress_stream.flush()
                    shown = True
        except KeyboardInterrupt:
            job.cancelled = True
            self.cancelled.append(worker)
            if not _stop_execution(job):
                threading.Thread(target=_watch_cancel, args=(job,), name="lakehouse-cancel", daemon=True).start()
            raise QueryCancelled() from None
        finally:
            if shown:
                self.progress_stream.write("\r\x1b[K")
                self.progress_stream.flush()
        elapsed = time.perf_counter() - started
        if job.error is not None:
            error, job.error = job.error, None
            try:
                raise error
            finally:
                del error, job  # no frame -> exception -> traceback -> frame cycle (see _work)
        assert job.table is not None
        return job.table, elapsed

    def _work(self, job: _Job) -> None:
        try:
            job.result = self.session.sql(job.sql)
            if job.cancelled:
                return
            job.table = job.result.to_arrow()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            # A cancelled query's error is dropped here and now: its traceback holds the
            # query's suspended operators, and pyarrow streams among them must be released
            # while the interpreter runs (they abort the process if left to its shutdown).
            if not job.cancelled:
                job.error = exc
        finally:
            job.done.set()


def emit(table: pa.Table, fmt: str, out: TextIO) -> None:
    """Print one statement's answer; statements without columns print ``OK`` for people only."""
    if table.num_columns == 0 and fmt in ("csv", "json", "jsonl", "markdown"):
        return
    render(table, fmt, out)
    out.flush()


# --- lakehouse sql --------------------------------------------------------------------------


def add_sql_parser(commands: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``lakehouse sql`` to the sub-command parsers."""
    from engine.cli.render import FORMATS

    sql = commands.add_parser("sql", parents=[parent], help="run SQL statements and print their results",
                              description="Run ';'-separated SQL statements from -c, -f or stdin.")
    source = sql.add_mutually_exclusive_group()
    source.add_argument("-c", "--command", dest="sql_text", metavar="SQL", help="the statements to run")
    source.add_argument("-f", "--file", dest="sql_file", metavar="FILE", help="a file of statements ('-' is stdin)")
    sql.add_argument("--format", choices=FORMATS, default=None,
                     help="output format (default: box on a terminal, csv otherwise)")
    sql.add_argument("warehouse", nargs="?", default=None,
                     help="warehouse folder or URL (default: $LAKEHOUSE_WAREHOUSE or ./warehouse)")


def _read_script(args: argparse.Namespace) -> str:
    if args.sql_text is not None:
        return args.sql_text
    if args.sql_file is not None and args.sql_file != "-":
        try:
            with open(args.sql_file, encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            raise LakehouseError(f"cannot read SQL file '{args.sql_file}': {exc.strerror or exc}") from None
    if sys.stdin.isatty():
        raise LakehouseError("no SQL given: pass -c 'SQL', -f FILE, or pipe statements into stdin")
    return sys.stdin.read()


def run_sql_command(args: argparse.Namespace, warehouse: str) -> int:
    """``lakehouse sql``: run every statement, print each answer; stop at the first error."""
    import engine

    script = _read_script(args)
    fmt = args.format or ("box" if sys.stdout.isatty() else "csv")
    session = engine.connect(warehouse)
    runner = QueryRunner(session, progress=sys.stderr.isatty())
    try:
        for statement in split_statements(script):
            table, _ = runner.run(statement)
            emit(table, fmt, sys.stdout)
    finally:
        runner.wait_for_cancelled()
    return 0
