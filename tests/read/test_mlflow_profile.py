"""The MLflow dataset of a narrowed scan describes that scan, not the whole version."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("mlflow")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from lakehouse.mlflow import LakehouseDataset, source_for  # noqa: E402


def test_profile_and_repr_of_a_filtered_scan(partitioned_table):
    snapshot = partitioned_table.snapshot()  # 4 appends x 3 regions: 12 files, 1,000 rows
    whole = LakehouseDataset(snapshot).profile
    assert whole == {"num_rows": 1000, "num_files": 12, "size_bytes": snapshot.size_bytes}

    projected = LakehouseDataset(snapshot.scan(columns=["id"])).profile
    assert projected["num_rows"] == 1000 and projected["columns"] == ["id"]

    by_partition = snapshot.scan(columns=["id"], filter="region = 'eu'")
    profile = LakehouseDataset(by_partition).profile
    assert profile["num_rows"] == by_partition.count() == 334  # partition filter: exact, from the log
    assert profile["num_files"] == 4 and profile["num_files_skipped"] == 8
    assert profile["size_bytes"] == by_partition.metrics.bytes_selected
    assert profile["filter"] == "region = 'eu'" and profile["columns"] == ["id"]

    mixed = snapshot.scan(filter="region = 'eu' and id >= 900")
    profile = LakehouseDataset(mixed).profile
    assert "num_rows" not in profile
    assert profile["num_rows_upper_bound"] >= mixed.count() and profile["num_rows_upper_bound"] <= 334
    assert profile["num_files"] <= 4

    text = repr(source_for(by_partition))
    assert "columns=['id']" in text and "filter=\"region = 'eu'\"" in text
