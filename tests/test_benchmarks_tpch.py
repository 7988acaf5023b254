"""The ``tpch`` benchmark suite: registration, helpers, and a tiny end-to-end run.

Nothing here times anything or asserts a speed: the end-to-end test runs the whole suite
at scale factor 0.01 with one warm run per query and checks it exits 0 and writes a
well-formed JSON record, markdown section and PNG chart, all under a temp folder.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks

pytest.importorskip("duckdb")
pytest.importorskip("polars")
pytest.importorskip("matplotlib")

from benchmarks.tpch import suite  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Shared by the runs below, so the SF 0.01 data is generated and loaded once."""
    return tmp_path_factory.mktemp("tpch-data")


def _run(tmp_path: Path, data_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path, Path]:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- suite:commits -->\nkeep me\n<!-- /suite:commits -->\n")
    results, chart = tmp_path / "results", tmp_path / "charts" / "tpch.png"
    command = [sys.executable, "-m", "benchmarks", "tpch", "--sf", "0.01", "--repeats", "1",
               "--data-dir", str(data_dir), "--results-dir", str(results), "--doc", str(doc),
               "--chart", str(chart), "--workdir", str(tmp_path / "work"), *extra]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240)
    return done, doc, results, chart


# --- registry and options ------------------------------------------------------------------

def test_tpch_is_registered_with_its_options():
    assert benchmarks.SUITES["tpch"] == "benchmarks.tpch.suite"
    module = benchmarks.load_suite("tpch")
    for attribute in ("TITLE", "DESCRIPTION", "add_arguments", "run"):
        assert hasattr(module, attribute), attribute
    from benchmarks.__main__ import build_parser

    options = build_parser("tpch").parse_args([])
    assert options.sf == 1.0 and options.repeats == 3 and options.timeout == 300.0
    assert options.queries == list(range(1, 23)) and options.engines == ["lakehouse", "duckdb", "polars"]
    options = build_parser("tpch").parse_args(["--queries", "6,1-3", "--engines", "polars,lakehouse"])
    assert options.queries == [1, 2, 3, 6] and options.engines == ["lakehouse", "polars"]
    with pytest.raises(SystemExit):
        build_parser("tpch").parse_args(["--queries", "23"])


def test_fingerprints_compare_numeric_columns_by_position():
    import pyarrow as pa

    table = pa.table({"name": ["a", "b"], "n": [1, 2], "x": [0.5, None]})
    assert suite.fingerprint(table) == [None, 3.0, 0.5]
    assert suite.compare_fingerprints([None, 3.0, 0.5], [None, 3.0, 0.5 + 1e-12]) == "same"
    assert "column 3" in suite.compare_fingerprints([None, 3.0, 0.5], [None, 3.0, 0.6])
    assert "columns" in suite.compare_fingerprints([None, 3.0], [None, 3.0, 0.5])
    assert "numeric in one" in suite.compare_fingerprints([None, 3.0], [1.0, 3.0])


# --- end to end, tiny ----------------------------------------------------------------------

@pytest.mark.slow
def test_tpch_suite_runs_end_to_end_at_a_tiny_scale(tmp_path, data_dir):
    done, doc, results, chart = _run(tmp_path, data_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "engine duckdb" in done.stderr  # progress goes to stderr

    (path,) = results.glob("tpch-*.json")
    assert re.fullmatch(r"tpch-\d{8}T\d{6}Z\.json", path.name)
    record = json.loads(path.read_text())
    assert record["all_checks_passed"] is True
    assert record["parameters"]["sf"] == "0.01" and record["parameters"]["repeats"] == 1
    engines = record["info"]["engines"]
    assert set(engines) == {"lakehouse", "duckdb", "polars"}
    for name, run in engines.items():
        assert sorted(map(int, run["queries"])) == list(range(1, 23)), name
        assert run["peak_rss_bytes"] > 0
        for number, result in run["queries"].items():
            assert result["status"] == "ok", (name, number, result["detail"])
            assert len(result["warm_s"]) == 1 and result["cold_s"] is not None
    # each engine ran in a subprocess of its own; our answers were compared with DuckDB's
    names = {check["name"] for check in record["checks"]}
    assert "row count of our answer equals DuckDB's" in names
    assert all(len(check["observed"]) == 22 for check in record["checks"] if "DuckDB" in check["name"])
    assert {"lakehouse/q01/warm", "duckdb/q22/cold", "polars/q13/warm"} <= set(record["series"])
    assert record["info"]["bar"]["met"] in (True, False)  # reported, never asserted

    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert "<!-- suite:commits -->\nkeep me\n<!-- /suite:commits -->" in text
    section = text[text.index("<!-- suite:tpch -->"):text.index("<!-- /suite:tpch -->")]
    assert "| Query | ours (s) | DuckDB (s) | Polars (s) | ours/DuckDB | ours/Polars |" in section
    assert all(f"| Q{n} |" in section for n in range(1, 23))
    assert "Bar from the issue: every query within 8 GiB" in section
    assert "](charts/tpch.png)" in section  # linked relative to the document
    assert list((tmp_path / "work").iterdir()) == []  # scratch removed; the data cache stays
    assert (data_dir / "tpch-sf0.01" / "warehouse.complete").exists()


@pytest.mark.slow
def test_a_run_over_the_timeout_is_recorded_and_the_engine_goes_on(tmp_path, data_dir):
    done, doc, results, _ = _run(tmp_path, data_dir, "--engines", "duckdb", "--queries", "1,6",
                                 "--timeout", "1e-9", "--no-chart")
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = results.glob("tpch-*.json")
    run = json.loads(path.read_text())["info"]["engines"]["duckdb"]
    assert {r["status"] for r in run["queries"].values()} == {"timeout"}
    assert run["processes"] == 2  # restarted after Q1's timeout for Q6
    assert "**timeout**" in doc.read_text()
