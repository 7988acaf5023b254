"""Shared helpers for the command-line tests: run ``python -m engine.cli`` as a user would."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

import lakehouse

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI process: this checkout importable, no inherited warehouse."""
    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUSE_WAREHOUSE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_cli(*args: str, cwd: str | Path, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m engine.cli ARGS`` with ``stdin`` piped in (never a terminal)."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], cwd=str(cwd), env=cli_env(**env),
                          input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=120)


PEOPLE = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "name": pa.array(["ada", 'bob, "the builder"', None], pa.string()),
    "born": pa.array([dt.date(1815, 12, 10), dt.date(1970, 1, 1), None], pa.date32()),
    "balance": pa.array([Decimal("12.50"), Decimal("-0.01"), None], pa.decimal128(10, 2)),
    "seen": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), None, None],
                     pa.timestamp("us", tz="UTC")),
    "score": pa.array([0.1, float("nan"), None], pa.float64()),
})


@pytest.fixture(scope="package")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A warehouse with one small table, ``people``, holding awkward values (tests only read it)."""
    root = tmp_path_factory.mktemp("cli") / "warehouse"
    table = lakehouse.create_table(str(root / "people"), PEOPLE.schema)
    table.append(PEOPLE)
    return root
