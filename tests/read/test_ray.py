"""Scan.to_ray: a ray.data.Dataset from our own Datasource, equal to to_arrow() for a pinned version."""

from __future__ import annotations

import sys

import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from lakehouse.errors import MissingDependencyError  # noqa: E402
from lakehouse.read.ray import LakehouseDatasource  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def _table(dataset) -> pa.Table:
    refs = dataset.to_arrow_refs()
    tables = ray.get(refs)
    return pa.concat_tables(tables) if tables else None


def test_to_ray_equals_to_arrow_for_a_pinned_version(local_ray, tmp_path, many_table):
    import lakehouse

    table = lakehouse.create_table(str(tmp_path / "t"), pa.schema([("id", pa.int64()), ("region", pa.string())]),
                                   partition_by=["region"])
    for k in range(5):
        ids = list(range(k * 100, (k + 1) * 100))
        table.append(pa.table({"id": ids, "region": ["eu" if i % 2 else "us" for i in ids]}))
    pinned = table.snapshot()
    table.append(pa.table({"id": [10_000], "region": ["eu"]}))  # after the pin: must not appear
    scan = pinned.scan(columns=["id", "region"], filter="id >= 150 and region = 'eu'")
    datasource = LakehouseDatasource(scan)
    assert len(datasource.get_read_tasks(2)) == 2  # files split across tasks on the driver
    got = _table(scan.to_ray())
    expected = scan.to_arrow()
    assert got.schema == expected.schema
    assert got.sort_by("id").equals(expected.sort_by("id"))

    big = many_table.snapshot().scan(columns=["id", "name"])
    got = _table(big.to_ray(parallelism=3))
    assert got.num_rows == big.to_arrow().num_rows
    assert got.sort_by("id").equals(big.to_arrow().sort_by("id"))


def test_to_ray_empty(local_ray, empty_table):
    dataset = empty_table.snapshot().scan().to_ray()
    assert dataset.count() == 0
    assert dataset.schema().names == ["id", "name"]


def test_missing_ray(small_table, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(MissingDependencyError, match=r"lakehouse\[ray\]"):
        small_table.snapshot().scan().to_ray()
