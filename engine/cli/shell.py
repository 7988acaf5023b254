"""``lakehouse shell``: an interactive SQL prompt (prompt_toolkit), or a script reader when
stdin is not a terminal.

Statements end with ``;`` and may span lines; lines starting with ``.`` are dot commands
(``.help`` lists them). A statement runs in a worker thread: Ctrl+C cancels it and the
shell carries on; errors print one line and the shell carries on.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable, TextIO

from engine.cli.commands import QueryCancelled, QueryRunner, emit, is_complete, report, split_statements
from engine.cli.completion import DOT_COMMANDS, SchemaCache, quote_name
from engine.cli.render import FORMATS
from lakehouse.errors import LakehouseError

PROMPT = "lakehouse> "
CONTINUATION = "      ...> "
SHELL_MAX_ROWS = 40  # rows a box shows: the first and last 20
_READS_ONLY = re.compile(r"^\s*(?:\(|select\b|with\b|values\b|from\b|explain\b|show\b|describe\b|desc\b)",
                         re.IGNORECASE)


def history_path() -> str:
    """``$LAKEHOUSE_HISTORY``, else ``~/.lakehouse_history``."""
    return os.environ.get("LAKEHOUSE_HISTORY") or os.path.join(os.path.expanduser("~"), ".lakehouse_history")


class Shell:
    """The state of one shell: session, output mode and file, timer; runs statements and dot commands."""

    def __init__(self, session: Any, *, debug: bool = False, mode: str | None = None) -> None:
        self.session = session
        self.debug = debug
        self.mode = mode or ("box" if sys.stdout.isatty() else "csv")
        self.timer = False
        self._file: TextIO | None = None  # set by ``.output FILE``
        self.cache = SchemaCache(session)
        self.runner = QueryRunner(session, progress=sys.stderr.isatty())
        self.errors = 0
        self.done = False
        self.interrupted = False  # Ctrl+C cancelled a statement: the rest of a script is skipped
        self._depth = 0

    @property
    def output(self) -> TextIO:
        """Where results go: the ``.output`` file, else the current stdout."""
        return self._file if self._file is not None else sys.stdout

    # --- statements ---------------------------------------------------------------------

    def error(self, exc: BaseException) -> None:
        """Count an error and print it in one line (with the traceback under ``--debug``)."""
        self.errors += 1
        report(exc, debug=self.debug)

    def run_sql(self, text: str) -> None:
        """Run each statement of ``text``; an error or Ctrl+C skips the rest of ``text``."""
        for statement in split_statements(text):
            if not self._run_one(statement):
                return

    def _run_one(self, statement: str) -> bool:
        try:
            table, elapsed = self.runner.run(statement)
        except QueryCancelled:
            self.errors += 1
            self.interrupted = True
            print("query cancelled", file=sys.stderr, flush=True)
            return False
        except Exception as exc:  # noqa: BLE001 - one line, then the next statement
            self.error(exc)
            return False
        finally:
            if not _READS_ONLY.match(statement):
                self.cache.invalidate()  # tables may have come or gone
        try:
            if self.mode == "box":
                self._box(table)
            else:
                emit(table, self.mode, self.output)
        except KeyboardInterrupt:
            print("\noutput interrupted", file=sys.stderr, flush=True)
            self.interrupted = True
            return False
        except OSError as exc:
            self.error(LakehouseError(f"cannot write the result: {exc.strerror or exc}"))
            return False
        if self.timer:
            print(f"Run Time: {elapsed:.3f} s", flush=True)
        return True

    def _box(self, table: Any) -> None:
        from engine.cli.render import box

        self.output.write(box(table, max_rows=SHELL_MAX_ROWS) + "\n")
        self.output.flush()

    # --- dot commands -------------------------------------------------------------------

    def dot(self, line: str) -> None:
        """Run one dot command line, e.g. ``.mode csv``."""
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        handler = getattr(self, "_dot_" + command[1:], None) if command[1:].isidentifier() else None
        if command not in DOT_COMMANDS or handler is None:
            self.error(LakehouseError(f"unknown command '{command}'; .help lists the commands"))
            return
        try:
            handler(argument)
        except Exception as exc:  # noqa: BLE001
            self.error(exc)

    def _dot_help(self, _: str) -> None:
        width = max(len(name) for name in DOT_COMMANDS)
        for name, text in DOT_COMMANDS.items():
            print(f"{name:<{width}}  {text}")
        print("SQL statements end with ';' and may span lines. Ctrl+C cancels a running query; Ctrl+D quits.")

    def _dot_quit(self, _: str) -> None:
        self.done = True

    _dot_exit = _dot_quit

    def _dot_tables(self, _: str) -> None:
        self.cache.invalidate()
        for name in self.cache.tables():
            print(name, file=self.output)
        self.output.flush()

    def _dot_schema(self, argument: str) -> None:
        if argument:
            name = argument.strip().strip(";")
            name = name[1:-1] if name[:1] in "\"'" and name[-1:] == name[:1] else name
            self.session.catalog.resolve(name)  # raises a one-line "does not exist" error
            names = [name]
        else:
            names = self.cache.tables()
        for name in names:
            columns = self.cache.columns(name)
            body = ",\n".join(f"  {quote_name(column)} {type_}" for column, type_ in columns)
            print(f"CREATE TABLE {quote_name(name)} (\n{body}\n);", file=self.output)
        self.output.flush()

    def _dot_mode(self, argument: str) -> None:
        if not argument:
            print(f"current output mode: {self.mode}")
        elif argument in FORMATS:
            self.mode = argument
        else:
            raise LakehouseError(f"unknown mode '{argument}'; use one of {', '.join(FORMATS)}")

    def _dot_timer(self, argument: str) -> None:
        if argument.lower() not in ("on", "off"):
            raise LakehouseError("use '.timer on' or '.timer off'")
        self.timer = argument.lower() == "on"

    def _dot_output(self, argument: str) -> None:
        self.close()
        if argument:
            try:
                self._file = open(os.path.expanduser(argument), "w", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise LakehouseError(f"cannot write to '{argument}': {exc.strerror or exc}") from None

    def _dot_read(self, argument: str) -> None:
        if not argument:
            raise LakehouseError("name the file to read: .read FILE")
        if self._depth >= 16:
            raise LakehouseError(f"'.read {argument}' nests too deeply; a file reads itself?")
        try:
            with open(os.path.expanduser(argument), encoding="utf-8") as handle:
                lines = handle.read().splitlines(keepends=True)
        except OSError as exc:
            raise LakehouseError(f"cannot read '{argument}': {exc.strerror or exc}") from None
        self._depth += 1
        try:
            self.run_lines(lines)
        finally:
            self._depth -= 1

    # --- input --------------------------------------------------------------------------

    def handle(self, text: str) -> None:
        """One entry from the prompt: a dot command or SQL statements."""
        self.interrupted = False
        if text.lstrip().startswith("."):
            self.dot(text)
        elif text.strip():
            self.run_sql(text)

    def run_lines(self, lines: Iterable[str]) -> None:
        """Feed lines as typed: dot commands on their own line, statements up to their ``;``."""
        buffer = ""
        for line in lines:
            if self.done or self.interrupted:
                return
            if not buffer.strip() and line.lstrip().startswith("."):
                self.dot(line)
                continue
            buffer += line if line.endswith("\n") else line + "\n"
            if is_complete(buffer):
                self.run_sql(buffer)
                buffer = ""
        if buffer.strip() and not (self.done or self.interrupted):
            self.run_sql(buffer)  # a last statement without ';'

    def close(self) -> None:
        """Close the ``.output`` file, if any; results go to stdout again."""
        if self._file is not None:
            self._file.close()
            self._file = None


def run_shell(warehouse: str, *, debug: bool = False) -> int:
    """``lakehouse shell``: interactive on a terminal, a script reader otherwise.

    Exit code 0, or 1 when reading a script and any statement failed.
    """
    import engine

    shell = Shell(engine.connect(warehouse), debug=debug)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            interact(shell, warehouse)
            return 0
        shell.run_lines(sys.stdin)
        return 1 if shell.errors else 0
    finally:
        shell.close()
        shell.runner.wait_for_cancelled()


# --- the interactive prompt -------------------------------------------------------------------


def _history() -> Any:
    """The history file, or history in memory when the file cannot be written."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError:
        print(f"note: cannot write the history file '{path}'; history is not kept", file=sys.stderr)
        return InMemoryHistory()
    return FileHistory(path)


def _key_bindings() -> Any:
    """Enter runs the buffer when it is complete (ends with ';' or is a dot command), else
    starts a new line; Alt+Enter always runs it."""
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and state.current_completion is not None:
            buffer.apply_completion(state.current_completion)
            return
        text = buffer.text
        at_end = not buffer.document.text_after_cursor.strip()
        if at_end and (not text.strip() or text.lstrip().startswith(".") or is_complete(text)):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    @bindings.add("escape", "enter")
    def _run(event: Any) -> None:
        event.current_buffer.validate_and_handle()

    return bindings


def interact(shell: Shell, warehouse: str) -> None:
    """Read, run, print until ``.quit`` or Ctrl+D. Ctrl+C at the prompt clears the input."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import ThreadedCompleter

    from engine.cli.completion import SqlCompleter, sql_lexer

    prompt = PromptSession(
        history=_history(), lexer=sql_lexer(), completer=ThreadedCompleter(SqlCompleter(shell.cache)),
        complete_while_typing=False, multiline=True, key_bindings=_key_bindings(),
        prompt_continuation=lambda width, line, wrap: CONTINUATION, enable_history_search=False)
    print(f"lakehouse shell · warehouse {warehouse}")
    print("End statements with ';'. '.help' lists the dot commands; Ctrl+C cancels a query, Ctrl+D quits.")
    while not shell.done:
        try:
            text = prompt.prompt(PROMPT)
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        try:
            shell.handle(text)
        except KeyboardInterrupt:  # Ctrl+C between a query's end and the next prompt
            print("interrupted", file=sys.stderr)
