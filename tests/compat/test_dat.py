"""Delta Acceptance Tests (DAT): Spark-written tables, read by lakehouse at every expected version.

Each case under ``../shared/dat/<case>/`` holds the table (``delta/``) and, per expected
version (``expected/v0``, ``v1``, ..., ``latest``), the rows a correct reader returns
(``table_content.parquet``) and the version and protocol (``table_version_metadata.json``).
The tables are only read in place; the one test that writes works on a copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse.expressions import bind, parse_filter, to_arrow_expression

from .helpers import DAT_ROOT, assert_same_rows, copy_table, deltalake_rows, deltalake_table, our_rows

pytestmark = pytest.mark.interop

EXPECTED_CASES = {"basic_append", "basic_partitioned", "multi_partitioned", "with_schema_change"}


@dataclass(frozen=True)
class Expected:
    """One expected version of one DAT case."""

    case: str
    label: str  # "v0", "v1", ..., "latest"
    version: int
    min_reader_version: int
    min_writer_version: int
    properties: dict[str, str]

    @property
    def table(self) -> str:
        return str(DAT_ROOT / self.case / "delta")

    @property
    def folder(self) -> Path:
        return DAT_ROOT / self.case / "expected" / self.label

    def rows(self) -> pa.Table:
        return pq.read_table(self.folder / "table_content.parquet")


def _cases() -> list[str]:
    if not DAT_ROOT.is_dir():
        return []
    return sorted(p.name for p in DAT_ROOT.iterdir() if (p / "delta" / "_delta_log").is_dir())


def _expected_versions() -> list[Expected]:
    out = []
    for case in _cases():
        for folder in sorted((DAT_ROOT / case / "expected").iterdir()):
            meta = json.loads((folder / "table_version_metadata.json").read_text())
            out.append(Expected(case, folder.name, int(meta["version"]), int(meta["min_reader_version"]),
                                int(meta["min_writer_version"]), dict(meta.get("properties") or {})))
    return out


EXPECTED = _expected_versions()


def test_all_dat_cases_are_present() -> None:
    """Guard against an empty parametrization silently passing."""
    assert DAT_ROOT.is_dir(), f"DAT tables missing at {DAT_ROOT}"
    assert EXPECTED_CASES <= set(_cases())
    assert {e.case for e in EXPECTED} == set(_cases())
    assert all(any(e.case == c and e.label == "latest" for e in EXPECTED) for c in _cases())


@pytest.mark.parametrize("expected", EXPECTED, ids=[f"{e.case}-{e.label}" for e in EXPECTED])
def test_rows_at_expected_version(expected: Expected) -> None:
    table = lakehouse.open_table(expected.table)
    snapshot = table.snapshot() if expected.label == "latest" else table.snapshot(version=expected.version)
    assert snapshot.version == expected.version
    assert (snapshot.protocol.min_reader_version, snapshot.protocol.min_writer_version) == (
        expected.min_reader_version, expected.min_writer_version)
    assert dict(snapshot.properties) == expected.properties
    assert_same_rows(snapshot.to_arrow(), expected.rows(), context=f"{expected.case} {expected.label}")


@pytest.mark.parametrize("case", _cases())
def test_every_logged_version_matches_deltalake(case: str) -> None:
    """Versions without an expected folder (with_schema_change v0) are checked against deltalake."""
    path = str(DAT_ROOT / case / "delta")
    latest = lakehouse.open_table(path).version()
    assert latest == deltalake_table(path).version()
    for version in range(latest + 1):
        assert_same_rows(our_rows(path, version), deltalake_rows(path, version), context=f"{case} v{version}")


def test_schema_change_is_seen_per_version() -> None:
    table = lakehouse.open_table(str(DAT_ROOT / "with_schema_change" / "delta"))
    assert table.snapshot(version=0).schema == pa.schema([("letter", pa.string()), ("number", pa.int64())])
    assert table.snapshot(version=1).schema == pa.schema([("num1", pa.int64()), ("num2", pa.int64())])


# (case, version, filter) on Spark's partition values: nulls, escapes, a binary column, an emoji.
DAT_FILTERS = [
    ("basic_partitioned", 1, "letter = 'a'"),
    ("basic_partitioned", 1, "letter is null"),
    ("basic_partitioned", 1, "letter != 'a'"),
    ("basic_partitioned", 1, "number > 2 and letter in ('a', 'e')"),
    ("multi_partitioned", 1, "letter is null"),
    ("multi_partitioned", 1, "date is null"),
    ("multi_partitioned", 1, "letter = 'a' and date is null"),
    ("multi_partitioned", 1, "date = '1970-01-02'"),
    ("multi_partitioned", 1, "data = 'world'"),
    ("multi_partitioned", 2, "letter = '/%20%f'"),
    ("multi_partitioned", 2, "data = '😈'"),
    ("multi_partitioned", 2, "letter != '/%20%f'"),
    ("basic_append", 1, "number >= 4"),
]


@pytest.mark.parametrize(("case", "version", "text"), DAT_FILTERS, ids=[f"{c}-v{v}-{t}" for c, v, t in DAT_FILTERS])
def test_filters_on_spark_tables(case: str, version: int, text: str) -> None:
    snapshot = lakehouse.open_table(str(DAT_ROOT / case / "delta")).snapshot(version=version)
    full = next(e for e in EXPECTED if e.case == case and e.label == f"v{version}").rows()
    expected = ds.dataset(full).to_table(
        filter=to_arrow_expression(bind(parse_filter(text), snapshot.schema), snapshot.schema))
    assert 0 < expected.num_rows < full.num_rows, "the filter should select some rows, not all or none"
    scan = snapshot.scan(filter=text)
    assert_same_rows(scan.to_arrow(), expected, context=f"{case} v{version} {text}")
    assert scan.metrics.files_selected < scan.metrics.files_total, "partition values or stats should skip files"


@pytest.mark.parametrize("case", sorted(EXPECTED_CASES))
def test_we_append_to_a_spark_table_and_deltalake_reads_it(case: str, tmp_path: Path) -> None:
    """Our commit on top of Spark's log: both readers see Spark's rows plus ours, history intact."""
    latest = next(e for e in EXPECTED if e.case == case and e.label == "latest")
    path = copy_table(DAT_ROOT / case / "delta", tmp_path / case)
    table = lakehouse.open_table(path)
    before = table.version()
    rows = latest.rows()
    metrics = table.append(rows)
    assert metrics["version"] == before + 1
    combined = pa.concat_tables([rows, rows])
    assert_same_rows(our_rows(path), combined, context=f"lakehouse after our append to {case}")
    assert_same_rows(deltalake_rows(path), combined, context=f"deltalake after our append to {case}")
    assert_same_rows(deltalake_rows(path, before), rows, context=f"deltalake at Spark's last version of {case}")
    assert [h["operation"] for h in deltalake_table(path).history()][0] == "WRITE"
