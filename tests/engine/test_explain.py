"""EXPLAIN prints the optimized plan without running it; EXPLAIN ANALYZE runs it and adds
rows and time per operator, and files/bytes scanned vs skipped per lakehouse scan.

The expected file and byte counts come from the table's own log (the snapshot's add
actions with their statistics), not from the engine.
"""

from __future__ import annotations

import json
import os
import re

import pyarrow as pa
import pytest

import engine
import lakehouse
from engine.errors import ExecutionError
from lakehouse import LakehouseError

ROWS_PER_FILE = 20
FILES = 100


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    # ``t``: 2,000 rows sorted by id; a 320-byte target closes a file after every 20-row chunk.
    t = lakehouse.create_table(str(root / "t"), pa.schema([("id", pa.int64()), ("v", pa.float64())]))
    n = ROWS_PER_FILE * FILES
    t.append(pa.table({"id": pa.array(range(n), pa.int64()), "v": [x / 3 for x in range(n)]}),
             target_file_size=ROWS_PER_FILE * 16)
    # ``sales``: partitioned by region, each region in a different number of files.
    sales = lakehouse.create_table(str(root / "sales"), pa.schema([("region", pa.string()), ("amount", pa.int64())]),
                                   partition_by=["region"])
    for i, region in enumerate(["eu", "us", "asia"]):
        rows = 30 * (i + 1)
        sales.append(pa.table({"region": [region] * rows, "amount": list(range(rows))}), target_file_size=160)
    return str(root)


@pytest.fixture(scope="module")
def session(warehouse):
    return engine.connect(warehouse)


def files_of(warehouse: str, name: str) -> list[dict]:
    """The table's live files as the log lists them: path, size, partition values, stats."""
    files = lakehouse.open_table(os.path.join(warehouse, name)).snapshot().files.to_pylist()
    for f in files:
        f["partitionValues"] = dict(f["partitionValues"] or [])
        f["stats"] = json.loads(f["stats"])
    return files


def plan_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def line_for(text: str, prefix: str) -> str:
    (line,) = [line for line in plan_lines(text) if line.strip().startswith(prefix)]
    return line


def test_the_table_has_100_files_sorted_by_id(warehouse):
    files = files_of(warehouse, "t")
    assert len(files) == FILES
    ranges = sorted((f["stats"]["minValues"]["id"], f["stats"]["maxValues"]["id"]) for f in files)
    assert all(hi < next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))  # disjoint id ranges


@pytest.mark.parametrize("target", [0, 1234, 1999])
def test_explain_analyze_point_lookup_reads_one_file_of_100(session, warehouse, target):
    files = files_of(warehouse, "t")
    (hit,) = [f for f in files if f["stats"]["minValues"]["id"] <= target <= f["stats"]["maxValues"]["id"]]
    total = sum(f["size"] for f in files)

    result = session.sql(f"EXPLAIN ANALYZE select * from t where id = {target}")
    table = result.to_arrow()
    assert result.columns == ["plan"] and table.column_names == ["plan"] and table.num_rows == 1
    text = table.column("plan")[0].as_py()
    scan = line_for(text, "Scan t")
    assert f"filters=[(id#1 = {target})]" in scan
    assert "rows=1," in scan
    assert "files=1/100 skipped=99" in scan
    assert f"bytes={hit['size']:,}/{total:,} skipped={total - hit['size']:,}" in scan


def test_result_explain_analyze_matches_the_rows_returned(session):
    result = session.sql("select id, v from t where id >= 1990")
    assert result.to_arrow().column("id").to_pylist() == list(range(1990, 2000))
    text = result.explain(analyze=True)
    scan = line_for(text, "Scan t")
    assert "rows=10," in scan and "files=1/100 skipped=99" in scan
    # A range that crosses a file boundary reads exactly the two files holding it.
    text = session.sql("select id from t where id between 1015 and 1025").explain(analyze=True)
    assert "files=2/100 skipped=98" in line_for(text, "Scan t")


def test_partition_filter_reads_only_that_partitions_files(session, warehouse):
    files = files_of(warehouse, "sales")
    per_region = {r: [f for f in files if f["partitionValues"]["region"] == r] for r in ("eu", "us", "asia")}
    assert all(len(v) >= 2 for v in per_region.values()) and len({len(v) for v in per_region.values()}) == 3

    for region, expected_rows in (("us", 60), ("asia", 90)):
        result = session.sql(f"select count(*) as n, sum(amount) as total from sales where region = '{region}'")
        assert result.to_arrow().to_pylist() == [{"n": expected_rows, "total": sum(range(expected_rows))}]
        text = result.explain(analyze=True)
        scan = line_for(text, "Scan sales")
        scanned = per_region[region]
        size = sum(f["size"] for f in scanned)
        total = sum(f["size"] for f in files)
        assert f"rows={expected_rows}," in scan
        assert f"files={len(scanned)}/{len(files)} skipped={len(files) - len(scanned)}" in scan
        assert f"bytes={size:,}/{total:,} skipped={total - size:,}" in scan
        assert "Filter" not in text  # a partition equality is exact: nothing is re-checked


def test_explain_analyze_shows_rows_and_time_for_every_operator(session):
    sql = ("select region, count(*) as n from sales where amount >= 10 "
           "group by region order by n desc")
    text = session.sql("explain analyze " + sql).to_arrow().column("plan")[0].as_py()
    lines = plan_lines(text)
    assert len(lines) >= 4
    for line in lines:
        assert re.search(r"\(rows=[\d,]+, time=[\d,]+\.\dms", line), line
    # 20 + 50 + 80 rows pass amount >= 10; three groups come out of the aggregate and the sort.
    assert "rows=150," in line_for(text, "Scan sales")
    assert "rows=3," in line_for(text, "Aggregate")
    assert "rows=3," in line_for(text, "Sort")
    # Children are indented under their parents.
    assert lines[0].startswith("Sort") and all(line.startswith("  ") for line in lines[1:])


def test_explain_analyze_of_a_join_counts_each_side(session):
    text = session.sql("select t.id, s.amount from t join sales s on t.id = s.amount "
                       "where t.id < 40 and s.region = 'eu'").explain(analyze=True)
    assert "rows=40," in line_for(text, "Scan t")
    assert "rows=30," in line_for(text, "Scan sales")
    assert "rows=30," in line_for(text, "Join INNER")


def test_explain_does_not_execute(session, warehouse, tmp_path):
    # A query that fails at run time still has a plan to print.
    session.register("codes", pa.table({"code": ["1", "x2"]}))
    sql = "select cast(code as integer) as c from codes"
    text = session.sql("EXPLAIN " + sql).to_arrow().column("plan")[0].as_py()
    assert "CAST(code#1 AS INTEGER)" in text and "rows=" not in text
    with pytest.raises(ExecutionError, match="TRY_CAST"):
        session.sql(sql).to_arrow()
    with pytest.raises(ExecutionError, match="TRY_CAST"):
        session.sql("EXPLAIN ANALYZE " + sql).to_arrow()

    # A table whose data files are gone: EXPLAIN reads only the log, running needs the data.
    gone = lakehouse.create_table(str(tmp_path / "gone"), pa.schema([("x", pa.int64())]))
    gone.append(pa.table({"x": [1, 2, 3]}))
    for name in os.listdir(tmp_path / "gone"):
        if name.endswith(".parquet"):
            os.remove(tmp_path / "gone" / name)
    other = engine.connect(str(tmp_path))
    text = other.sql("explain select x from gone where x > 1").to_arrow().column("plan")[0].as_py()
    assert line_for(text, "Scan gone").strip() == "Scan gone [x] filters=[(x#1 > 1)]"
    result = other.sql("select x from gone where x > 1")
    assert "Scan gone" in result.explain()  # Result.explain() without analyze does not run either
    with pytest.raises((LakehouseError, OSError)):
        result.to_arrow()


def test_explain_prints_the_optimized_plan(session):
    text = session.sql("explain select v from t where id = 7 order by v limit 2").to_arrow().column("plan")[0].as_py()
    lines = plan_lines(text)
    assert lines[0].startswith("TopN 2 by v#")  # ORDER BY + LIMIT fused, as the optimizer leaves it
    assert lines[-1].strip() == "Scan t [id, v] filters=[(id#1 = 7)]"  # the filter is in the scan, exact
    assert not any(line.strip().startswith(("Filter", "Sort", "Limit")) for line in lines)


def test_explain_analyze_of_a_limited_scan_still_reports_files(session):
    text = session.sql("select * from t limit 5").explain(analyze=True)
    scan = line_for(text, "Scan t")
    assert "rows=5," in scan and "files=" in scan
