"""Every ```python block of docs/ml.md runs, in order, in one namespace, inside a temp dir.

The Ray block starts a local Ray (about 7 s here, under the 20 s budget), so it runs too. A
block whose first line is ``# doc-test: skip`` would be skipped (none is today); the
comment must say why, and the guide must still make sense without it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("ray.data")
mlflow = pytest.importorskip("mlflow")

DOC = Path(__file__).resolve().parents[1] / "docs" / "ml.md"
SKIP = "# doc-test: skip"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_python_block_in_ml_guide_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    previous_uri = mlflow.get_tracking_uri()
    namespace: dict[str, object] = {"__name__": "docs_ml"}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="mlflow")  # MLflow's own notices, not ours
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")
            for number, block in enumerate(blocks, start=1):
                if block.lstrip().startswith(SKIP):
                    continue
                code = compile(block, f"docs/ml.md python block {number}", "exec")
                exec(code, namespace)  # noqa: S102 - running the documentation is the point
    finally:
        mlflow.set_tracking_uri(previous_uri)
        ray = namespace.get("ray")
        if ray is not None and ray.is_initialized():  # a failing block must not leak a cluster
            ray.shutdown()
    # The guide's claims, checked on what it built.
    table = namespace["table"]
    assert namespace["tag"].version == 4 and namespace["rows"].num_rows == 2000
    assert namespace["rest"] == 2000 - 10 * 64
    weights = namespace["model"].weight.data.flatten().tolist()
    assert abs(weights[0] - 2) < 0.2 and abs(weights[1] + 1) < 0.2
    assert "clicks-train-v1" not in table.tags()
    assert (tmp_path / "mlflow.db").exists()
