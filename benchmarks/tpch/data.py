"""Generate TPC-H data (tpchgen-cli, offline) and load it as lakehouse tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq

import lakehouse
from benchmarks.tpch.queries import TABLES


def _tpchgen() -> str:
    found = shutil.which("tpchgen-cli")
    if found:
        return found
    candidate = os.path.join(os.path.dirname(sys.executable), "tpchgen-cli")
    if os.path.exists(candidate):
        return candidate
    raise RuntimeError("tpchgen-cli is not installed: pip install tpchgen-cli")


def generate_parquet(scale: float, folder: str) -> dict[str, str]:
    """Parquet files for every TPC-H table at ``scale``, generated once per folder."""
    os.makedirs(folder, exist_ok=True)
    paths = {t: os.path.join(folder, f"{t}.parquet") for t in TABLES}
    if not all(os.path.exists(p) for p in paths.values()):
        subprocess.run([_tpchgen(), "parquet", "-s", str(scale), f"--output-dir={folder}"], check=True,
                       capture_output=True)
    return paths


def load_warehouse(paths: dict[str, str], warehouse: str, *, target_file_size: int | None = None) -> None:
    """One lakehouse table per TPC-H table, in ``warehouse/<table>``."""
    for name, path in paths.items():
        location = os.path.join(warehouse, name)
        if os.path.exists(os.path.join(location, "_delta_log")):
            continue
        data = pq.read_table(path)
        table = lakehouse.create_table(location, data.schema)
        table.append(data, target_file_size=target_file_size)
