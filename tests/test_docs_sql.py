"""Every ```sql example in docs/sql.md runs, in order, against the demo warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import engine
from engine.cli.demo import run_demo

DOC = Path(__file__).resolve().parents[1] / "docs" / "sql.md"


def sql_examples() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    statements = []
    for block in blocks:
        statements += [s.strip() for s in re.split(r";\s*(?:\n|$)", block) if s.strip()]
    return statements


def test_every_sql_example_in_the_docs_runs(tmp_path):
    warehouse = str(tmp_path / "warehouse")
    run_demo(warehouse, echo=lambda text: None)
    session = engine.connect(warehouse)
    examples = sql_examples()
    assert len(examples) >= 35
    answers = {}
    for sql in examples:
        answers[sql] = session.sql(sql).to_arrow()
    # spot checks that the examples do what the text around them says
    changes = next(v for k, v in answers.items() if k.startswith("SELECT user_id, plan, _change_type"))
    assert {"insert", "update_preimage", "update_postimage", "delete"} <= set(changes.column("_change_type").to_pylist())
    tags = next(v for k, v in answers.items() if k.startswith("SHOW TAGS"))
    assert set(tags.column("tag").to_pylist()) == {"training_2026_11", "first_load"}
    assert next(v for k, v in answers.items() if k.startswith("SELECT * FROM range(3)")).num_rows == 3
    users = session.sql("SELECT user_id, plan FROM users ORDER BY user_id").to_arrow().to_pylist()
    restored = session.sql("SELECT user_id, plan FROM users VERSION AS OF 3 ORDER BY user_id").to_arrow().to_pylist()
    assert users == restored
