"""Every ```python block of docs/features.md that starts with ``# test: run`` runs, in order."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def runnable_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [block for block in blocks if block.startswith("# test: run\n")]


def test_runnable_examples_in_features_doc(capsys):
    blocks = runnable_blocks()
    assert len(blocks) >= 3
    namespace: dict = {"__name__": "docs_features"}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    finally:
        if "warehouse" in namespace:
            shutil.rmtree(namespace["warehouse"], ignore_errors=True)
    assert "0 0 " in capsys.readouterr().out  # the stream example printed batch 0 from version 0
