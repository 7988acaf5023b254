"""The benchmark harness: registry, statistics, result records, markdown. Never times anything.

Speed is not asserted here; the end-to-end test only proves the ``commits`` suite runs with
tiny parameters, exits 0, and writes a well-formed record and doc section.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks
from benchmarks import harness
from benchmarks.harness import Check, Row, RunRecord, SuiteOutput

REPO = Path(__file__).resolve().parent.parent
STARTED = dt.datetime(2026, 11, 22, 3, 4, 5, tzinfo=dt.timezone.utc)


def _record(**overrides) -> RunRecord:
    output = SuiteOutput(
        parameters={"commits": 12},
        rows=[Row("open", "ckpt 10 vs 10", "median", "ms", 20.0, "deltalake", 10.0),
              Row("append", "ckpt 10 vs 100", "p95", "ms", 5.0, "deltalake", 10.0)],
        checks=[Check("rows at latest version", 12, {"lakehouse@10": 12, "deltalake@10": 12})],
        series={"open/lakehouse@10": [0.02, 0.021]},
        info={"checkpoints": {}},
        notes=["a note"],
    )
    values = dict(suite="commits", title="a title", command="python -m benchmarks commits", argv=["commits"],
                  started_at=STARTED, finished_at=STARTED + dt.timedelta(seconds=90),
                  machine={"cpu_count": 2, "python": "3.11", "packages": {"pyarrow": "26"}}, output=output)
    values.update(overrides)
    return RunRecord(**values)


# --- registry ------------------------------------------------------------------------------

def test_registry_lists_commits_and_loads_its_module():
    assert "commits" in benchmarks.SUITES
    assert "commits" in benchmarks.suite_names()
    module = benchmarks.load_suite("commits")
    for attribute in ("TITLE", "DESCRIPTION", "add_arguments", "run"):
        assert hasattr(module, attribute), attribute


def test_unknown_suite_names_the_known_ones():
    with pytest.raises(KeyError, match="commits"):
        benchmarks.load_suite("nope")


def test_suite_options_parse_with_defaults():
    from benchmarks.__main__ import build_parser

    options = build_parser("commits").parse_args([])
    assert options.commits == 1000 and options.appends == 50
    assert options.results_dir == harness.DEFAULT_RESULTS_DIR and options.doc == harness.DEFAULT_DOC


# --- statistics ----------------------------------------------------------------------------

def test_percentile_interpolates_like_numpy():
    samples = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert harness.percentile(samples, 50) == 3.0
    assert harness.percentile(samples, 0) == 1.0
    assert harness.percentile(samples, 100) == 5.0
    assert harness.percentile(samples, 95) == pytest.approx(4.8)
    assert harness.percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        harness.percentile([], 50)


def test_row_from_samples_converts_units_and_computes_ratio():
    row = Row.from_samples("m", "s", "median", lakehouse=[0.010, 0.030, 0.020], peer="deltalake",
                           peer_samples=[0.005, 0.005, 0.005], unit="ms")
    assert row.lakehouse == pytest.approx(20.0)
    assert row.peer_value == pytest.approx(5.0)
    assert row.ratio == pytest.approx(4.0)
    missing = Row.from_samples("m", "s", "p95", lakehouse=[0.01], peer="deltalake", peer_samples=[])
    assert missing.peer_value is None and missing.ratio is None


def test_check_ok_only_when_every_observation_matches():
    assert Check("c", 3, {"a": 3, "b": 3}).ok
    assert not Check("c", 3, {"a": 3, "b": 4}).ok
    assert not Check("c", 3, {}).ok


# --- result JSON ---------------------------------------------------------------------------

def test_record_json_shape():
    data = _record().to_json()
    for key in ("schema_version", "suite", "command", "argv", "started_at", "finished_at", "duration_s",
                "machine", "parameters", "rows", "checks", "all_checks_passed", "series", "notes"):
        assert key in data, key
    assert data["started_at"] == "2026-11-22T03:04:05Z"
    assert data["duration_s"] == 90
    assert data["rows"][0] == {"measure": "open", "setup": "ckpt 10 vs 10", "stat": "median", "unit": "ms",
                               "lakehouse": 20.0, "peer": "deltalake", "peer_value": 10.0, "ratio": 2.0}
    assert data["checks"][0]["ok"] is True and data["all_checks_passed"] is True
    json.dumps(data)  # serializable as is


def test_write_result_names_by_suite_and_utc_time_and_never_overwrites(tmp_path):
    record = _record()
    first = harness.write_result(record, tmp_path / "results")
    second = harness.write_result(record, tmp_path / "results")
    assert first.name == "commits-20261122T030405Z.json"
    assert second != first and second.exists()
    assert json.loads(first.read_text())["suite"] == "commits"


def test_machine_info_has_the_versions():
    info = harness.machine_info()
    assert info["cpu_count"] == os.cpu_count()
    assert info["python"].count(".") == 2
    assert set(info["packages"]) >= {"pyarrow", "deltalake", "lakehouse"}


# --- markdown ------------------------------------------------------------------------------

def test_render_rows_single_peer_table():
    text = harness.render_rows(_record().output.rows)
    lines = text.strip().splitlines()
    assert lines[0] == "| Measure | Setup | Stat | lakehouse | deltalake | ratio |"
    assert lines[1] == "|---|---|---|---:|---:|---:|"
    assert lines[2] == "| open | ckpt 10 vs 10 | median | 20.0 ms | 10.0 ms | 2.00× |"
    assert lines[3] == "| append | ckpt 10 vs 100 | p95 | 5.00 ms | 10.0 ms | 0.50× |"


def test_render_rows_several_peers_get_a_peer_column():
    rows = [Row("q1", "sf1", "median", "s", 2.0, "duckdb", 1.0), Row("q1", "sf1", "median", "s", 2.0, "polars", 4.0)]
    lines = harness.render_rows(rows).strip().splitlines()
    assert lines[0] == "| Measure | Setup | Stat | lakehouse | peer | peer time | ratio |"
    assert all(line.count("|") == 8 for line in lines)
    assert lines[3].endswith("| polars | 4.00 s | 0.50× |")


def test_render_section_has_command_date_machine_and_failed_checks():
    text = harness.render_section(_record())
    assert "`python -m benchmarks commits`" in text
    assert "2026-11-22 03:04 UTC" in text
    assert "2 CPUs" in text and "pyarrow 26" in text
    assert "FAILED" not in text
    bad = _record()
    bad.output.checks.append(Check("rows at version 6", 6, {"lakehouse@10": 5, "deltalake@10": 6}))
    text = harness.render_section(bad)
    assert "FAILED" in text and "lakehouse@10 = 5" in text


def test_replace_section_creates_the_document_with_an_intro():
    doc = harness.replace_section("", "commits", "body one")
    assert doc.startswith("# Benchmarks")
    assert "<!-- suite:commits -->\nbody one\n<!-- /suite:commits -->\n" in doc


def test_replace_section_keeps_other_suites_byte_for_byte():
    other = "<!-- suite:tpch -->\ntpch numbers | kept\n<!-- /suite:tpch -->"
    doc = f"# Benchmarks\n\nintro\n\n<!-- suite:commits -->\nold\n<!-- /suite:commits -->\n\n{other}\n"
    updated = harness.replace_section(doc, "commits", "new")
    assert "old" not in updated and "\nnew\n" in updated
    assert updated.startswith("# Benchmarks\n\nintro\n\n")
    assert updated.endswith(f"\n\n{other}\n")
    added = harness.replace_section(updated, "skipping", "skip body")
    assert added.startswith(updated.rstrip("\n"))
    assert added.index("suite:tpch") < added.index("suite:skipping")


def test_replace_section_refuses_unbalanced_markers():
    with pytest.raises(ValueError, match="unbalanced"):
        harness.replace_section("<!-- suite:commits -->\nno end\n", "commits", "x")
    with pytest.raises(ValueError):
        harness.replace_section("", "Bad Name", "x")


def test_update_doc_rewrites_only_its_section(tmp_path):
    doc = tmp_path / "docs" / "benchmarks.md"
    harness.update_doc(doc, _record())
    first = doc.read_text()
    assert first.count("<!-- suite:commits -->") == 1
    harness.update_doc(doc, _record(command="python -m benchmarks commits --commits 12"))
    second = doc.read_text()
    assert second.count("<!-- suite:commits -->") == 1
    assert "--commits 12" in second


# --- end to end, tiny ----------------------------------------------------------------------

def test_commits_suite_runs_end_to_end_and_exits_zero(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- suite:tpch -->\nkeep me\n<!-- /suite:tpch -->\n")
    results = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "commits", "--commits", "12", "--appends", "3",
               "--append-rows", "2", "--start-versions", "1", "--repeats", "1", "--replay-offset", "2",
               "--results-dir", str(results), "--doc", str(doc), "--workdir", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[1/5]" in done.stderr  # progress goes to stderr

    (path,) = results.glob("commits-*.json")
    assert re.fullmatch(r"commits-\d{8}T\d{6}Z\.json", path.name)
    data = json.loads(path.read_text())
    assert data["all_checks_passed"] is True
    assert data["parameters"]["commits"] == 12 and data["parameters"]["travel_version"] == 6
    assert data["command"].startswith("python -m benchmarks commits --commits 12")
    measures = {row["measure"] for row in data["rows"]}
    assert {"open latest snapshot (v12)", "time travel to v6", "time travel to v8"} <= measures
    assert all(row["lakehouse"] is not None and row["peer_value"] is not None for row in data["rows"])
    assert {"series", "machine", "info"} <= set(data)

    text = doc.read_text()
    assert "<!-- suite:tpch -->\nkeep me\n<!-- /suite:tpch -->" in text
    assert "<!-- suite:commits -->" in text and "<!-- /suite:commits -->" in text
    assert list((tmp_path / "work").iterdir()) == []  # scratch tables removed
