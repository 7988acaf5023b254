"""The ``lakehouse`` command, driven as a user would: a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import deltalake
import pyarrow as pa

import lakehouse


def run_cli(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUSE_WAREHOUSE"}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_demo_builds_a_versioned_table_and_tours_it(tmp_path):
    result = run_cli("demo", "--warehouse", str(tmp_path / "wh"), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "History (newest first)" in out and "DELETE" in out and "CREATE TABLE" in out
    assert re.search(r"Time travel.*?VERSION AS OF 1.*?\b1000\b", out, re.DOTALL)  # version 1 had 1,000 rows
    assert re.search(r"files=1/\d+ skipped=\d+", out)  # partition values and min/max stats skip files

    table = lakehouse.open_table(str(tmp_path / "wh" / "events"))
    assert table.version() == 4
    assert [h["operation"] for h in table.history()] == ["DELETE", "WRITE", "WRITE", "WRITE", "CREATE TABLE"]
    # The demo table is plain Delta: deltalake agrees on its contents.
    theirs = pa.table(deltalake.QueryBuilder().register("t", deltalake.DeltaTable(str(tmp_path / "wh" / "events")))
                      .execute("select count(*) as n from t").read_all())
    assert theirs.column("n")[0].as_py() == table.snapshot().scan().count()


def test_demo_runs_twice_and_uses_the_default_warehouse(tmp_path):
    assert run_cli("demo", cwd=str(tmp_path)).returncode == 0
    again = run_cli("demo", cwd=str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert lakehouse.open_table(str(tmp_path / "warehouse" / "events")).version() == 4


def test_demo_refuses_to_replace_a_table_it_did_not_make(tmp_path):
    lakehouse.create_table(str(tmp_path / "wh" / "events"), pa.schema([("id", pa.int64())]))
    result = run_cli("demo", "--warehouse", str(tmp_path / "wh"), cwd=str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "not made by 'lakehouse demo'" in lines[0]
    assert "Traceback" not in result.stderr
    assert lakehouse.open_table(str(tmp_path / "wh" / "events")).version() == 0
