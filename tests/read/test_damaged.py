"""Damaged data files: one DataFileError naming the file, on every read path."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lakehouse
from lakehouse.errors import DataFileError, InvalidFilterError
from lakehouse.scan import is_data_file_error


def _table(tmp_path, name: str) -> tuple[lakehouse.Table, str]:
    table = lakehouse.create_table(str(tmp_path / name), pa.schema([("id", pa.int64()), ("y", pa.float64())]))
    table.append(pa.table({"id": [1, 2, 3], "y": [0.1, 0.2, 0.3]}))
    table.append(pa.table({"id": [4, 5], "y": [0.4, 0.5]}))
    return table, table.snapshot().files.column("path")[0].as_py()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_file_is_one_error_naming_it(tmp_path, damage):
    table, path = _table(tmp_path, damage)
    full = tmp_path / damage / path
    before = table.snapshot().scan().to_torch(2) if pytest.importorskip("torch") else None  # footers read before
    data = full.read_bytes()
    full.write_bytes(b"" if damage == "empty" else data[:12])

    scan = lambda: table.snapshot().scan()  # noqa: E731
    attempts = {
        "to_arrow": lambda: scan().to_arrow(),
        "count": lambda: scan().count(),
        "plain to_batches": lambda: list(scan().to_batches(2)),
        "filtered to_batches": lambda: list(scan().to_batches(2) if False else table.snapshot().scan(
            filter="y > 0").to_batches(2)),
        "ml to_batches": lambda: list(scan().to_batches(2, shuffle=True)),
        "to_torch": lambda: scan().to_torch(2),
        "torch iteration": lambda: list(before),
    }
    for label, attempt in attempts.items():
        with pytest.raises(DataFileError) as info:
            attempt()
        message = str(info.value)
        assert f"version 2: a data file could not be read: '{path}'" in message, (label, message)
        assert str(tmp_path) not in message and "damaged or not a parquet file" in message, (label, message)


def test_a_file_replaced_by_another_is_refused_by_the_ml_reader(tmp_path):
    table, path = _table(tmp_path, "foreign")
    pq.write_table(pa.table({"zzz": ["a", "b", "c", "d", "e"]}), tmp_path / "foreign" / path)
    with pytest.raises(DataFileError, match=f"data file '{path}' holds 5 rows but the log recorded 3"):
        list(table.snapshot().scan().to_batches(2, shuffle=True))


def test_other_arrow_errors_are_not_taken_for_damaged_files(tmp_path):
    assert is_data_file_error(pa.ArrowInvalid("Could not open Parquet input source 'x': Parquet file size is 0 bytes"))
    assert is_data_file_error(OSError("Corrupt snappy compressed data."))
    assert not is_data_file_error(pa.ArrowInvalid("Failed to parse string: 'abc' as a scalar of type int64"))
    assert not is_data_file_error(pa.ArrowNotImplementedError("Function 'x' has no kernel matching input types"))
    table, _ = _table(tmp_path, "ok")
    with pytest.raises(InvalidFilterError):
        table.snapshot().scan(filter="id = 'abc'").to_arrow()
