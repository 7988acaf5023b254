"""Every ```python block of docs/features.md that starts with ``# test: run`` runs, in order."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def runnable_blocks() -> list[tuple[int, str]]:
    """(line of the block's first code line in the doc, code) of each runnable block."""
    text = DOC.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL):
        if match.group(1).startswith("# test: run\n"):
            blocks.append((text.count("\n", 0, match.start(1)), match.group(1)))
    return blocks


def test_runnable_examples_in_features_doc(capsys):
    blocks = runnable_blocks()
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "docs_features"}
    try:
        for offset, block in blocks:
            # Padded so a failure's traceback names the doc's own line numbers.
            exec(compile("\n" * offset + block, str(DOC), "exec"), namespace)  # noqa: S102 - our own docs
    finally:
        if "warehouse" in namespace:
            shutil.rmtree(namespace["warehouse"], ignore_errors=True)
    out = capsys.readouterr().out
    assert "0 0 " in out  # the stream example printed batch 0 from version 0
    assert "churned" in out and "training" in namespace  # the training-set example ran to its end
