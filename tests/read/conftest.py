"""Tables for the ML read tests, built once per session with lakehouse's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import lakehouse

BIG_ROWS = 300_000     # one append the writer cuts into 3 row groups (131,072 rows each at most)
SMALL_APPENDS = 9      # then many small files
SMALL_ROWS = 700


def _rows(start: int, count: int) -> pa.Table:
    ids = np.arange(start, start + count, dtype=np.int64)
    return pa.table({"id": ids, "x": (ids * 0.5).astype(np.float32), "name": pa.array([f"n{i}" for i in ids])
                     if count < 10_000 else pa.array(np.char.add("n", ids.astype(str)).tolist())})


@pytest.fixture(scope="session")
def many_table(tmp_path_factory: pytest.TempPathFactory) -> lakehouse.Table:
    """Several appends (many files), the first big enough for several row groups."""
    path = tmp_path_factory.mktemp("read") / "many"
    table = lakehouse.create_table(str(path), pa.schema([("id", pa.int64()), ("x", pa.float32()),
                                                         ("name", pa.string())]))
    table.append(_rows(0, BIG_ROWS))
    for k in range(SMALL_APPENDS):
        table.append(_rows(BIG_ROWS + k * SMALL_ROWS, SMALL_ROWS))
    return table


@pytest.fixture(scope="session")
def many_total() -> int:
    return BIG_ROWS + SMALL_APPENDS * SMALL_ROWS


@pytest.fixture(scope="session")
def small_table(tmp_path_factory: pytest.TempPathFactory) -> lakehouse.Table:
    """Twelve small appends of 50 rows: twelve files, one row group each."""
    path = tmp_path_factory.mktemp("read") / "small"
    table = lakehouse.create_table(str(path), pa.schema([("id", pa.int64()), ("name", pa.string())]))
    for k in range(12):
        ids = list(range(k * 50, (k + 1) * 50))
        table.append(pa.table({"id": ids, "name": [f"n{i}" for i in ids]}))
    return table


@pytest.fixture(scope="session")
def partitioned_table(tmp_path_factory: pytest.TempPathFactory) -> lakehouse.Table:
    path = tmp_path_factory.mktemp("read") / "parts"
    table = lakehouse.create_table(str(path), pa.schema([("id", pa.int64()), ("region", pa.string()),
                                                         ("score", pa.float64())]), partition_by=["region"])
    for k in range(4):
        ids = list(range(k * 250, (k + 1) * 250))
        table.append(pa.table({"id": ids, "region": [("eu", "us", "apac")[i % 3] for i in ids],
                               "score": [i / 10 for i in ids]}))
    return table


@pytest.fixture(scope="session")
def empty_table(tmp_path_factory: pytest.TempPathFactory) -> lakehouse.Table:
    path = tmp_path_factory.mktemp("read") / "empty"
    return lakehouse.create_table(str(path), pa.schema([("id", pa.int64()), ("name", pa.string())]))


def ids_of(batches: object) -> list[int]:
    """Every id in a stream of record batches or torch batch dicts, in order."""
    out: list[int] = []
    for batch in batches:  # type: ignore[attr-defined]
        column = batch["id"] if isinstance(batch, dict) else batch.column("id")
        out += column.tolist() if hasattr(column, "tolist") else column.to_pylist()
    return out
