"""Delta commands in SQL: SHALLOW CLONE, RESTORE, VACUUM, OPTIMIZE, tags, ALTER TABLE, SET."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import engine
import lakehouse
from engine.errors import PlanError
from lakehouse.errors import LakehouseError, TagNotFoundError


@pytest.fixture()
def session(tmp_path):
    return engine.connect(str(tmp_path / "wh"))


def rows(session, sql):
    return session.sql(sql).to_arrow().to_pylist()


def parquet_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts}


def files_scanned(session, sql) -> tuple[int, int]:
    """(files read, files in the table) from EXPLAIN ANALYZE of ``sql``."""
    plan = rows(session, f"EXPLAIN ANALYZE {sql}")[0]["plan"]
    found = re.search(r"files=(\d+)/(\d+)", plan)
    assert found, plan
    return int(found.group(1)), int(found.group(2))


def test_shallow_clone_copies_nothing_diverges_and_survives_source_vacuum(session, tmp_path):
    session.sql("CREATE TABLE src (id BIGINT, v VARCHAR)")
    for i in range(3):
        session.sql(f"INSERT INTO src VALUES ({i}, 'v{i}')")
    wh = tmp_path / "wh"
    session.sql("CREATE TABLE old_copy SHALLOW CLONE src VERSION AS OF 2")
    session.sql("CREATE TABLE copy SHALLOW CLONE src")
    assert parquet_files(wh / "copy") == set() and parquet_files(wh / "old_copy") == set()  # zero-copy
    assert rows(session, "SELECT id FROM old_copy ORDER BY id") == [{"id": 0}, {"id": 1}]
    assert rows(session, "SELECT count(*) AS n FROM copy") == [{"n": 3}]
    history = rows(session, "DESCRIBE HISTORY copy")
    assert history[-1]["operation"] == "CLONE"
    # diverge both ways
    session.sql("INSERT INTO copy VALUES (10, 'only in copy')")
    session.sql("DELETE FROM src WHERE id = 0")
    session.sql("INSERT INTO src VALUES (5, 'v5')")  # a file no clone knows
    session.sql("UPDATE copy SET v = 'changed' WHERE id = 1")
    assert rows(session, "SELECT id, v FROM src ORDER BY id") == [
        {"id": 1, "v": "v1"}, {"id": 2, "v": "v2"}, {"id": 5, "v": "v5"}]
    assert rows(session, "SELECT id, v FROM copy ORDER BY id") == [
        {"id": 0, "v": "v0"}, {"id": 1, "v": "changed"}, {"id": 2, "v": "v2"}, {"id": 10, "v": "only in copy"}]
    # the source's vacuum keeps what the clones still read
    with pytest.raises(LakehouseError, match="retention.*run SET retention_check = false"):
        session.sql("VACUUM src RETAIN 0 HOURS")
    with pytest.raises(LakehouseError, match="retain_hours must be zero or more"):
        session.sql("VACUUM src RETAIN -1 HOURS")
    session.sql("SET retention_check = false")
    session.sql("OPTIMIZE src")
    report = rows(session, "VACUUM src RETAIN 0 HOURS")
    assert report[0]["num_files"] == 1  # only the compacted file no clone reads went
    assert rows(session, "SELECT id, v FROM copy ORDER BY id")[0] == {"id": 0, "v": "v0"}
    assert rows(session, "SELECT count(*) AS n FROM old_copy") == [{"n": 2}]
    # dropping a source that clones still read is refused; once the clones are gone it works
    with pytest.raises(LakehouseError, match="shallow clone"):
        session.sql("DROP TABLE src")
    session.sql("DROP TABLE copy")
    session.sql("DROP TABLE old_copy")
    session.sql("DROP TABLE src")
    assert rows(session, "SHOW TABLES") == []


def test_restore_and_vacuum_dry_run(session, tmp_path):
    session.sql("CREATE TABLE t (id INTEGER)")
    session.sql("INSERT INTO t VALUES (1), (2)")  # v1
    session.sql("DELETE FROM t WHERE id = 1")  # v2
    session.sql("INSERT INTO t VALUES (3)")  # v3
    report = rows(session, "RESTORE TABLE t TO VERSION AS OF 1")[0]
    assert report["numRestoredFiles"] == 1 and report["numRemovedFiles"] == 2
    assert rows(session, "SELECT id FROM t ORDER BY id") == [{"id": 1}, {"id": 2}]
    assert rows(session, "DESCRIBE HISTORY t LIMIT 1")[0]["operation"] == "RESTORE"
    session.sql("SET retention_check = off")
    listed = rows(session, "VACUUM t RETAIN 0 HOURS DRY RUN")
    assert len(listed) == 2  # the file rewritten by DELETE and the one INSERT added at v3
    assert all(r["action"] == "delete" and r["reason"].startswith("removed from the table") for r in listed)
    before = parquet_files(tmp_path / "wh" / "t")
    assert all((tmp_path / "wh" / "t" / r["path"]).exists() for r in listed)
    session.sql("VACUUM t RETAIN 0 HOURS")
    assert len(before - parquet_files(tmp_path / "wh" / "t")) == 2
    assert rows(session, "SELECT id FROM t ORDER BY id") == [{"id": 1}, {"id": 2}]
    with pytest.raises(LakehouseError, match="vacuum"):
        session.sql("RESTORE TABLE t TO VERSION AS OF 3")


def test_optimize_compacts_and_zorder_improves_skipping(session):
    session.sql("CREATE TABLE pts (x INTEGER, y INTEGER, label VARCHAR)")
    rng = random.Random(7)
    for _ in range(12):
        values = ", ".join(f"({rng.randrange(1000)}, {rng.randrange(1000)}, 'p')" for _ in range(400))
        session.sql(f"INSERT INTO pts VALUES {values}")
    query = "SELECT count(*) AS n FROM pts WHERE x BETWEEN 100 AND 150 AND y BETWEEN 600 AND 650"
    expected = rows(session, query)
    scanned_before, total_before = files_scanned(session, query)
    assert (scanned_before, total_before) == (12, 12)
    report = rows(session, "OPTIMIZE pts")[0]
    assert report["numRemovedFiles"] == 12 and report["numAddedFiles"] == 1
    assert rows(session, query) == expected
    table = lakehouse.open_table(session.catalog.table_location("pts"))
    table.optimize(zorder_by=["x", "y"], target_file_size=2048)  # small files, to see the clustering
    scanned, total = files_scanned(session, query)
    assert total >= 8 and scanned <= total // 3, (scanned, total)
    assert rows(session, query) == expected
    session.sql("OPTIMIZE pts ZORDER BY (y, x)")
    assert rows(session, query) == expected
    with pytest.raises(LakehouseError, match="label|partition"):
        session.sql("OPTIMIZE pts WHERE label = 'p'")


def test_tags_in_sql(session):
    session.sql("CREATE TABLE t (id INTEGER)")
    session.sql("INSERT INTO t VALUES (1)")
    session.sql("ALTER TABLE t CREATE TAG first_load")
    session.sql("INSERT INTO t VALUES (2)")
    session.sql("ALTER TABLE t CREATE TAG zero VERSION AS OF 0")
    assert [(r["tag"], r["version"]) for r in rows(session, "SHOW TAGS t")] == [("first_load", 1), ("zero", 0)]
    assert rows(session, "SELECT id FROM t VERSION AS OF 'first_load'") == [{"id": 1}]
    assert rows(session, "SELECT count(*) AS n FROM t VERSION AS OF 'zero'") == [{"n": 0}]
    session.sql("ALTER TABLE t DROP TAG first_load")
    with pytest.raises(TagNotFoundError, match="first_load"):
        session.sql("SELECT id FROM t VERSION AS OF 'first_load'")
    with pytest.raises(LakehouseError, match="already"):
        session.sql("ALTER TABLE t CREATE TAG zero")


def test_alter_table_and_settings(session):
    session.sql("CREATE TABLE t (id INTEGER)")
    session.sql("INSERT INTO t VALUES (1)")
    session.sql("ALTER TABLE t ADD COLUMN note VARCHAR")
    session.sql("INSERT INTO t VALUES (2, 'two')")
    assert rows(session, "SELECT id, note FROM t ORDER BY id") == [{"id": 1, "note": None}, {"id": 2, "note": "two"}]
    session.sql("ALTER TABLE t SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true', 'owner' = 'ml')")
    detail = rows(session, "DESCRIBE DETAIL t")[0]
    assert detail["minWriterVersion"] >= 4 and '"owner": "ml"' in detail["properties"]
    session.sql("UPDATE t SET note = 'one' WHERE id = 1")
    changes = rows(session, "SELECT id, note, _change_type FROM table_changes('t', 4) ORDER BY _change_type")
    assert changes == [{"id": 1, "note": "one", "_change_type": "update_postimage"},
                       {"id": 1, "note": None, "_change_type": "update_preimage"}]
    operations = [r["operation"] for r in rows(session, "DESCRIBE HISTORY t")]
    assert operations[:3] == ["UPDATE", "SET TBLPROPERTIES", "WRITE"] and "ADD COLUMNS" in operations
    with pytest.raises(PlanError, match="unknown setting 'nope'"):
        session.sql("SET nope = 1")
    with pytest.raises(LakehouseError, match="already has a column"):
        session.sql("ALTER TABLE t ADD COLUMN ID BIGINT")
