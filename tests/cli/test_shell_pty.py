"""The interactive shell through a pseudo-terminal, as a person at a keyboard would use it."""

from __future__ import annotations

import re
import sys
import time

import pytest

import engine
from tests.cli.conftest import cli_env

if sys.platform == "win32":  # pragma: no cover - no pseudo-terminals there
    pytest.skip("the shell tests need a pseudo-terminal (pty)", allow_module_level=True)

import pexpect  # noqa: E402 - after the platform check

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\r")
TIMEOUT = 30


def clean(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return ANSI.sub("", text)


def spawn(warehouse, tmp_path) -> pexpect.spawn:
    env = cli_env(TERM="xterm", LAKEHOUSE_HISTORY=str(tmp_path / "history"), PROMPT_TOOLKIT_NO_CPR="1",
                  COLUMNS="120", LINES="40")
    child = pexpect.spawn(sys.executable, ["-m", "engine.cli", "shell", str(warehouse)], env=env,
                          encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 120), cwd=str(tmp_path))
    child.expect("lakehouse>")  # the banner printed, the prompt is up
    return child


def complete(child: pexpect.spawn, typed: str, rest: str) -> None:
    """Type ``typed`` and Tab; wait until the completion has added ``rest``."""
    child.send(typed + "\t")
    child.expect(re.escape(rest))


def finish(child: pexpect.spawn) -> None:
    """Ctrl+D at the next prompt ends the shell with exit code 0."""
    child.expect("lakehouse>")  # control keys typed before the prompt is up would go to the tty driver
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, (child.signalstatus, clean(child.before))


def test_multi_line_statements_dot_commands_completion_and_history(warehouse, tmp_path):
    child = spawn(warehouse, tmp_path)
    try:
        child.send("select 1\r")
        child.expect("...>")  # no ';' yet: a continuation line
        child.send("+ 1 as r;\r")
        child.expect("│ +2 │")
        child.expect("1 row")

        child.send(".tables\r")
        child.expect("people")
        child.expect("lakehouse>")

        complete(child, "sel", "ect")  # the keyword, in the case typed
        complete(child, " name from peo", "ple")  # a table
        complete(child, " order by bal", "ance")  # a column of the table named in FROM
        child.send(";\r")
        child.expect("3 rows")
        names = [line.split("│")[1].strip() for line in clean(child.before).splitlines() if line.count("│") == 2]
        assert sorted(names[-3:]) == ["NULL", "ada", 'bob, "the builder"']

        child.send("select * from nobody;\r")
        child.expect("Error: table 'nobody' does not exist")
        child.expect("lakehouse>")
        child.send("select garbage")
        child.sendintr()  # Ctrl+C at the prompt drops the input
        child.send("select 7 as seven;\r")
        child.expect("│ +7 │")
        finish(child)
    finally:
        child.close(force=True)
    history = (tmp_path / "history").read_text()
    assert "+select 1\n++ 1 as r;\n" in history and "+select name from people order by balance;\n" in history


@pytest.fixture
def big_warehouse(tmp_path):
    """Tables whose join has a billion rows: far longer than the test waits for."""
    root = tmp_path / "big"
    session = engine.connect(str(root))
    session.sql("create table a (x bigint)")
    session.sql("insert into a values " + ", ".join(f"({i})" for i in range(1000)))
    session.sql("create table b as select x.x * 1000 + y.x as id, 0 as k from a x, a y, "
                "(select x from a where x < 10) z")
    session.sql("create table c as select x as id, 0 as k from a where x < 100")
    return root


def test_ctrl_c_cancels_a_long_query_and_the_shell_goes_on(big_warehouse, tmp_path):
    child = spawn(big_warehouse, tmp_path)
    try:
        child.send("select count(*), sum(b.id + c.id) from b join c on b.k = c.k;\r")
        child.expect("running… [0-9.]+ s", timeout=TIMEOUT)  # the progress line, past 2 s
        started = time.monotonic()
        child.sendintr()
        child.expect("query cancelled")
        child.expect("lakehouse>")
        assert time.monotonic() - started < 5
        child.send("select 40 + 2 as answer;\r")
        child.expect("│ +42 │")
        finish(child)
    finally:
        child.close(force=True)
