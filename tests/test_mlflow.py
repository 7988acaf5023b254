"""lakehouse.mlflow: a pinned version as an MLflow run input, loaded back through MLflow."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pyarrow as pa
import pytest

mlflow = pytest.importorskip("mlflow")

import mlflow.data  # noqa: E402
from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source  # noqa: E402

import lakehouse  # noqa: E402
from lakehouse.errors import LakehouseError, PinMismatchError, TagNotFoundError  # noqa: E402
from lakehouse.mlflow import LakehouseDatasetSource, log_input, parse_uri  # noqa: E402

SCHEMA = pa.schema([("id", pa.int64()), ("label", pa.string())])


@pytest.fixture(autouse=True)
def quiet_mlflow():
    # MLflow's own deprecation/UserWarnings are not ours; LakehouseWarning stays an error.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="mlflow")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


@pytest.fixture(params=["sqlite", "file"])
def tracking(request, tmp_path, monkeypatch):
    """A local tracking store: sqlite (MLflow's default backend) and the plain file store,
    which this MLflow keeps behind MLFLOW_ALLOW_FILE_STORE."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = f"file://{tmp_path}/mlruns"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(previous)


def rows(start: int, count: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + count)), "label": [f"r{i}" for i in range(start, start + count)]},
                    schema=SCHEMA)


def logged_inputs(run_id: str) -> list:
    return mlflow.get_run(run_id).inputs.dataset_inputs


def test_round_trip_version_0_and_a_tagged_version(tmp_path, tracking):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    with mlflow.start_run() as empty_run:
        log_input(table.snapshot(0))  # version 0: the empty table
    table.append(rows(0, 5))
    table.append(rows(5, 3))
    table.tag("train", note="run 7")
    pinned = table.snapshot(tag="train").to_arrow()
    with mlflow.start_run() as run:
        dataset = log_input(table, tag="train")
    table.append(rows(100, 4))  # later writes must not leak into the loaded input
    table.delete("id < 2")

    (first,) = logged_inputs(empty_run.info.run_id)
    source = mlflow.data.get_source(first)  # found through the mlflow.dataset_source entry point
    assert isinstance(source, LakehouseDatasetSource)
    assert source.version == 0 and source.to_dict()["version"] == 0 and source.tag is None
    loaded = source.load()
    assert loaded.num_rows == 0 and loaded.schema == table.snapshot(0).to_arrow().schema

    (second,) = logged_inputs(run.info.run_id)
    assert second.dataset.source_type == "lakehouse"
    assert {t.key: t.value for t in second.tags} == {
        "mlflow.data.context": "training", "lakehouse.version": "2", "lakehouse.tag": "train"}
    assert second.dataset.digest == table.tags()["train"].fingerprint[:10] == dataset.digest
    assert second.dataset.name == "t@train"
    source = mlflow.data.get_source(second)
    assert (source.uri, source.version, source.tag) == (table.uri, 2, "train")
    assert source.fingerprint == table.tags()["train"].fingerprint
    assert source.load().equals(pinned)


def test_scan_records_columns_and_filter(tmp_path, tracking):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    table.append(rows(0, 10))
    scan = table.snapshot().scan(columns=["id"], filter="id >= 4")
    with mlflow.start_run() as run:
        log_input(scan, context="eval", name="holdout")
        log_input(table.snapshot(), context="training")
    table.overwrite(rows(50, 2))
    inputs = {i.dataset.name: i for i in logged_inputs(run.info.run_id)}
    assert set(inputs) == {"holdout", "t@v1"}
    holdout = mlflow.data.get_source(inputs["holdout"])
    assert holdout.columns == ["id"] and holdout.filter == "id >= 4"
    assert holdout.load().equals(scan.to_arrow())
    assert inputs["holdout"].dataset.digest != inputs["t@v1"].dataset.digest  # a narrower read, another digest
    assert mlflow.data.get_source(inputs["t@v1"]).load().num_rows == 10


def test_load_refuses_a_moved_or_dropped_tag(tmp_path):
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    table.append(rows(0, 3))
    table.tag("train")
    source = LakehouseDatasetSource.from_json(LakehouseDatasetSource(
        table.uri, 1, tag="train", fingerprint=table.snapshot(1).fingerprint()).to_json())
    assert source.load().num_rows == 3
    table.append(rows(3, 3))
    table.drop_tag("train")
    with pytest.raises(TagNotFoundError, match=r"tag .train.*is gone.*load\(\) reads it"):
        source.load()
    table.tag("train")  # re-created on version 2
    with pytest.raises(PinMismatchError, match="now pins version 2.*read version 1"):
        source.load()
    untagged = LakehouseDatasetSource(table.uri, 1, fingerprint="f" * 64)
    with pytest.raises(PinMismatchError, match="no longer has the files"):
        untagged.load()
    with pytest.raises(PinMismatchError, match="pins version 2, not the snapshot's version 1"):
        log_input(table.snapshot(1), tag="train")


def test_entry_point_registration_and_uri_resolution(tmp_path):
    assert LakehouseDatasetSource in get_registered_sources()
    table = lakehouse.create_table(str(tmp_path / "t"), SCHEMA)
    table.append(rows(0, 4))
    table.tag("best")
    by_version = resolve_dataset_source(f"lakehouse:{tmp_path / 't'}?version=0")
    assert isinstance(by_version, LakehouseDatasetSource) and by_version.version == 0
    assert by_version.load().num_rows == 0
    by_tag = resolve_dataset_source(f"lakehouse://{tmp_path / 't'}?tag=best")
    assert (by_tag.version, by_tag.tag) == (1, "best") and by_tag.load().num_rows == 4
    assert resolve_dataset_source(table.snapshot(0)).version == 0
    assert not LakehouseDatasetSource._can_resolve(str(tmp_path / "t"))  # plain paths may be anyone's
    assert parse_uri("lakehouse:s3://bucket/events?version=3") == ("s3://bucket/events", 3, None)
    with pytest.raises(LakehouseError, match="not both"):
        parse_uri("lakehouse:/t?version=1&tag=x")
    with pytest.raises(LakehouseError, match="version must be"):
        LakehouseDatasetSource("/t", -1)


def test_import_lakehouse_does_not_import_mlflow():
    code = "import sys, lakehouse; lakehouse.open_table; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_mlflow_the_error_names_the_extra():
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from lakehouse.errors import MissingDependencyError\n"
            "try:\n    import lakehouse.mlflow\nexcept MissingDependencyError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'lakehouse[mlflow]'" in out.stdout


@pytest.mark.parametrize("first", ["lakehouse.mlflow", "mlflow.data"])
def test_registered_once_whatever_is_imported_first(first):
    # Importing lakehouse.mlflow first makes MLflow's entry-point pass meet it half-initialized;
    # it must still end up registered exactly once, without MLflow's failure warning.
    code = (f"import {first}\nimport lakehouse.mlflow as lm\n"
            "from mlflow.data.dataset_source_registry import get_registered_sources\n"
            "print(get_registered_sources().count(lm.LakehouseDatasetSource))")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    assert "Failure attempting to register" not in out.stderr
