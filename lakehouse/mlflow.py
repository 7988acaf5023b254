"""MLflow: record a pinned table version as a run's dataset input, and load it back exactly.

Needs the ``mlflow`` extra (``pip install 'lakehouse[mlflow]'``); ``import lakehouse`` never
imports this module or MLflow. ::

    import mlflow, lakehouse
    from lakehouse.mlflow import log_input

    table = lakehouse.open_table("warehouse/events")
    table.tag("train-2026-11")
    with mlflow.start_run():
        log_input(table, tag="train-2026-11")          # uri, version, tag, fingerprint
        ...

    # a year later
    run = mlflow.get_run(run_id)
    source = mlflow.data.get_source(run.inputs.dataset_inputs[0])
    rows = source.load()                                 # the same rows, as a pyarrow.Table

The input's source is a :class:`LakehouseDatasetSource` (source type ``"lakehouse"``),
registered with MLflow through the ``mlflow.dataset_source`` entry point in
``pyproject.toml``, so ``mlflow.data.get_source`` finds it in any process where lakehouse
is installed. It stores no storage options (they may hold credentials): pass them to
``load(storage_options=...)`` or rely on the environment (AWS credential chain).

``LakehouseDatasetSource`` also resolves raw sources: a ``Table``, ``Snapshot`` or ``Scan``,
and URIs ``lakehouse:<table location>[?version=N | ?tag=NAME]`` such as
``lakehouse:/data/events?version=3`` or ``lakehouse:s3://bucket/events?tag=train``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from typing import Any, Mapping
from urllib.parse import parse_qs

import pyarrow as pa

from lakehouse.optional import require


def _entry_point_registers_us() -> bool:
    """True when MLflow's registry, already being imported, will register our source itself:
    this module is then being loaded *by* the ``mlflow.dataset_source`` entry point."""
    if "mlflow.data.dataset_source_registry" not in sys.modules:
        return False  # we import MLflow first: its entry-point pass will find us half-initialized
    from importlib.metadata import entry_points

    return any(ep.value == f"{__name__}:LakehouseDatasetSource" for ep in entry_points(group="mlflow.dataset_source"))


_REGISTER_HERE = not _entry_point_registers_us()

with warnings.catch_warnings():
    # Importing MLflow loads every mlflow.dataset_source entry point, ours included. When this
    # module is what triggered that import it is still half-initialized, so MLflow warns and
    # skips it; the registration at the bottom covers exactly that case.
    warnings.filterwarnings("ignore", message=r"Failure attempting to register dataset constructor.*lakehouse\.mlflow")
    require("mlflow", "mlflow")  # a clear MissingDependencyError, naming the extra, when mlflow is absent
    import mlflow
    import mlflow.data
from mlflow.data.dataset import Dataset  # noqa: E402
from mlflow.data.dataset_source import DatasetSource  # noqa: E402
from mlflow.data.dataset_source_registry import get_registered_sources, register_dataset_source  # noqa: E402

from lakehouse.errors import LakehouseError, PinMismatchError, TagNotFoundError  # noqa: E402
from lakehouse.expressions import to_sql  # noqa: E402
from lakehouse.scan import Scan  # noqa: E402
from lakehouse.snapshot import Snapshot  # noqa: E402
from lakehouse.table import Table, open_table  # noqa: E402

SOURCE_TYPE = "lakehouse"
URI_PREFIX = "lakehouse:"


class LakehouseDatasetSource(DatasetSource):
    """Where a run's rows came from: table ``uri`` at ``version`` (via ``tag``), with the
    version's ``fingerprint``, optionally only ``columns`` and rows matching ``filter``."""

    def __init__(self, uri: str, version: int, *, tag: str | None = None, fingerprint: str | None = None,
                 columns: list[str] | None = None, filter: str | None = None) -> None:  # noqa: A002
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise LakehouseError(f"lakehouse dataset source for '{uri}': version must be an integer >= 0, "
                                 f"got {version!r}")
        self.uri = uri
        self.version = version
        self.tag = tag
        self.fingerprint = fingerprint
        self.columns = list(columns) if columns is not None else None
        self.filter = filter

    @staticmethod
    def _get_source_type() -> str:
        return SOURCE_TYPE

    def __repr__(self) -> str:
        pin = f"tag={self.tag!r}, " if self.tag is not None else ""
        columns = f"columns={self.columns!r}, " if self.columns is not None else ""
        where = f"filter={self.filter!r}, " if self.filter is not None else ""
        return (f"LakehouseDatasetSource({self.uri!r}, version={self.version}, {pin}{columns}{where}"
                f"fingerprint={self.fingerprint!r})")

    # --- loading ----------------------------------------------------------------------------

    def snapshot(self, *, storage_options: Mapping[str, Any] | None = None) -> Snapshot:
        """The recorded version, after checking the tag and fingerprint still match it.

        Raises ``PinMismatchError`` when the tag now names another version or the version's
        files differ from what was recorded, ``TagNotFoundError`` when the tag is gone.
        """
        table = open_table(self.uri, storage_options=storage_options)
        if self.tag is not None:
            from lakehouse.refs import get_tag

            try:
                tag = get_tag(table, self.tag)
            except TagNotFoundError as exc:
                raise TagNotFoundError(
                    f"the recorded input pinned table '{self.uri}' version {self.version} with tag '{self.tag}', "
                    f"but the tag is gone ({exc}); its files may have been vacuumed. If version {self.version} is "
                    f"still readable, LakehouseDatasetSource('{self.uri}', {self.version}).load() reads it") from None
            if tag.version != self.version:
                raise PinMismatchError(
                    f"tag '{self.tag}' of table '{self.uri}' now pins version {tag.version}, but the recorded input "
                    f"read version {self.version}; the tag was dropped and re-created. If version {self.version} is still "
                    f"readable, LakehouseDatasetSource('{self.uri}', {self.version}).load() reads it")
        snapshot = table.snapshot(self.version)
        if self.fingerprint is not None and snapshot.fingerprint() != self.fingerprint:
            raise PinMismatchError(
                f"table '{self.uri}' version {self.version} no longer has the files the recorded input read "
                f"(fingerprint {snapshot.fingerprint()[:12]}... instead of {self.fingerprint[:12]}...); "
                "the table was replaced or its log rewritten at this location")
        return snapshot

    def load(self, *, storage_options: Mapping[str, Any] | None = None) -> pa.Table:
        """The recorded rows as a ``pyarrow.Table`` (same version, columns and filter)."""
        snapshot = self.snapshot(storage_options=storage_options)
        return snapshot.scan(columns=self.columns, filter=self.filter).to_arrow()

    # --- serialization ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        # uri, version, tag and fingerprint are always written (nulls explicit) and nothing is
        # dropped for being falsy: version 0 and an empty column list must survive a round trip.
        out: dict[str, Any] = {"uri": self.uri, "version": self.version, "tag": self.tag,
                               "fingerprint": self.fingerprint}
        if self.columns is not None:
            out["columns"] = list(self.columns)
        if self.filter is not None:
            out["filter"] = self.filter
        return out

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> LakehouseDatasetSource:
        if "uri" not in source_dict or "version" not in source_dict:
            raise LakehouseError(f"a lakehouse dataset source needs 'uri' and 'version', got {source_dict!r}")
        version = source_dict["version"]
        if isinstance(version, str) and version.isdigit():
            version = int(version)
        return cls(source_dict["uri"], version, tag=source_dict.get("tag"),
                   fingerprint=source_dict.get("fingerprint"), columns=source_dict.get("columns"),
                   filter=source_dict.get("filter"))

    # --- resolving raw sources --------------------------------------------------------------

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        # Only what is unmistakably ours: plain paths could be anyone's (CSV folders, S3 prefixes).
        if isinstance(raw_source, (Table, Snapshot, Scan)):
            return True
        return isinstance(raw_source, str) and raw_source.startswith(URI_PREFIX)

    @classmethod
    def _resolve(cls, raw_source: Any) -> LakehouseDatasetSource:
        if isinstance(raw_source, str):
            location, version, tag = parse_uri(raw_source)
            table = open_table(location)
            raw_source = table.snapshot(version, tag=tag) if (version is not None or tag is not None) else table
            return source_for(raw_source, tag=tag)
        return source_for(raw_source)


def parse_uri(uri: str) -> tuple[str, int | None, str | None]:
    """``lakehouse:<location>[?version=N|?tag=NAME]`` -> (location, version, tag)."""
    if not uri.startswith(URI_PREFIX):
        raise LakehouseError(f"not a lakehouse dataset uri: {uri!r}; write lakehouse:<table location>[?version=N]")
    rest = uri[len(URI_PREFIX):]
    if rest.startswith("///"):  # lakehouse:///data/t -> /data/t
        rest = rest[2:]
    location, _, query = rest.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(params) - {"version", "tag"}
    if not location or unknown or ("version" in params and "tag" in params):
        raise LakehouseError(f"cannot read lakehouse dataset uri {uri!r}: write lakehouse:<table location> "
                             "optionally followed by ?version=N or ?tag=NAME (not both)")
    version = params.get("version")
    if version is not None and not version.isdigit():
        raise LakehouseError(f"lakehouse dataset uri {uri!r}: version must be a whole number, got {version!r}")
    return location, int(version) if version is not None else None, params.get("tag")


# --- the dataset ---------------------------------------------------------------------------------


def _parts(data: Table | Snapshot | Scan, tag: str | None) -> tuple[Snapshot, list[str] | None, str | None]:
    """(snapshot, columns, filter text) of what a run reads, checking ``tag`` pins that snapshot."""
    columns = filter_text = None
    if isinstance(data, Table):
        data = data.snapshot(tag=tag) if tag is not None else data.snapshot()
    if isinstance(data, Scan):
        columns = list(data.columns) if data.columns is not None else None
        filter_text = to_sql(data.predicate) if data.predicate is not None else None
        data = data.snapshot
    if not isinstance(data, Snapshot):
        raise LakehouseError(f"log_input needs a lakehouse Table, Snapshot or Scan, got {type(data).__name__}")
    if tag is not None:
        from lakehouse.refs import get_tag

        pinned = get_tag(Table(data.location), tag)
        if pinned.version != data.version or pinned.fingerprint != data.fingerprint():
            raise PinMismatchError(
                f"table '{data.location.name}': tag '{tag}' pins version {pinned.version}, not the snapshot's "
                f"version {data.version}; pass table.snapshot(tag='{tag}') or leave tag out")
    return data, columns, filter_text


def source_for(data: Table | Snapshot | Scan, *, tag: str | None = None) -> LakehouseDatasetSource:
    """The dataset source recording ``data`` (latest version of a ``Table``) and ``tag``."""
    snapshot, columns, filter_text = _parts(data, tag)
    return LakehouseDatasetSource(snapshot.location.url, snapshot.version, tag=tag,
                                  fingerprint=snapshot.fingerprint(), columns=columns, filter=filter_text)


class LakehouseDataset(Dataset):
    """An MLflow dataset for one pinned table version (optionally a scan of it).

    ``digest`` is the first 10 hex digits of the version's fingerprint (of fingerprint,
    columns and filter for a narrowed scan, so different reads of one version never share a
    digest); ``profile`` gives rows, files and bytes of the version from the log.
    """

    def __init__(self, data: Table | Snapshot | Scan, *, tag: str | None = None, name: str | None = None) -> None:
        self._snapshot, self._columns, self._filter = _parts(data, tag)
        source = LakehouseDatasetSource(self._snapshot.location.url, self._snapshot.version, tag=tag,
                                        fingerprint=self._snapshot.fingerprint(), columns=self._columns,
                                        filter=self._filter)
        default = f"{self._snapshot.location.name}@{tag if tag is not None else f'v{self._snapshot.version}'}"
        super().__init__(source=source, name=name or default)

    def _compute_digest(self) -> str:
        fingerprint = self._snapshot.fingerprint()
        if self._columns is None and self._filter is None:
            return fingerprint[:10]
        narrowed = json.dumps([fingerprint, self._columns, self._filter], separators=(",", ":"))
        return hashlib.sha256(narrowed.encode("utf-8")).hexdigest()[:10]

    @property
    def source(self) -> LakehouseDatasetSource:
        return self._source  # type: ignore[return-value]

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def profile(self) -> dict[str, Any]:
        """Rows, files and bytes of what the run reads, from the log (no data is read).

        A whole version or a projection of it: its exact ``num_rows``. A filtered scan: the
        files left after skipping (``num_files``, ``size_bytes``, ``num_files_skipped``) and
        their rows, exact as ``num_rows`` when the filter tests partition columns only, else
        as ``num_rows_upper_bound`` (the filter may drop rows inside those files).
        """
        snapshot = self._snapshot
        if self._filter is None:
            rows = snapshot.num_records
            if rows is None:  # some file has no numRecords statistic: count from the footers
                rows = snapshot.scan().count()
            out: dict[str, Any] = {"num_rows": rows, "num_files": snapshot.num_files,
                                   "size_bytes": snapshot.size_bytes}
        else:
            scan = snapshot.scan(columns=self._columns, filter=self._filter)
            metrics = scan.metrics
            rows, exact = _filtered_rows(scan)
            out = {"num_rows" if exact else "num_rows_upper_bound": rows, "num_files": metrics.files_selected,
                   "size_bytes": metrics.bytes_selected, "num_files_skipped": metrics.files_skipped,
                   "filter": self._filter}
        if self._columns is not None:
            out["columns"] = list(self._columns)
        return out

    @property
    def schema(self) -> Any:
        """The columns read, as an ``mlflow.types.Schema``."""
        from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

        arrow = self._snapshot.schema
        names = self._columns if self._columns is not None else arrow.names
        specs = []
        for name in names:
            field = arrow.field(name)
            dtype = _mlflow_type(field.type, DataType)
            specs.append(ColSpec(type=dtype if dtype is not None else AnyType(), name=name, required=not field.nullable))
        return Schema(specs)

    def to_dict(self) -> dict[str, str]:
        out = super().to_dict()
        out["schema"] = json.dumps({"mlflow_colspec": self.schema.to_dict()})
        out["profile"] = json.dumps(self.profile)
        return out

    def to_arrow(self) -> pa.Table:
        """The rows this dataset records (read now, from the pinned version)."""
        return self._snapshot.scan(columns=self._columns, filter=self._filter).to_arrow()


def _filtered_rows(scan: Scan) -> tuple[int, bool]:
    """(rows of the files a filtered scan selects, whether that is exactly its row count).

    Exact when the filter tests partition columns only: it is then evaluated on each
    selected file's partition values, and a file matches with all of its rows or none.
    """
    from lakehouse.expressions import columns_of, to_arrow_expression
    from lakehouse.skipping import FileStats

    snapshot = scan.snapshot
    files = scan.selected_files
    stats = FileStats(files, snapshot.schema, snapshot.partition_columns)
    counts = stats.num_records.to_pylist()
    if any(count is None for count in counts):  # a file without numRecords: its footer tells
        rows_by_file: dict[int, int] = {}
        for unit in scan.unit_plan.units:
            rows_by_file[unit.file] = rows_by_file.get(unit.file, 0) + unit.num_rows
        counts = [rows_by_file.get(i, 0) for i in range(files.num_rows)]
    names = {name.split(".")[0] for name in columns_of(scan.predicate)} if scan.predicate is not None else set()
    if not names or not names <= set(snapshot.partition_columns) or not files.num_rows:
        return int(sum(counts)), not names or not files.num_rows
    values = pa.table({**{name: stats.partition(name) for name in sorted(names)},
                       "__file": pa.array(range(files.num_rows), pa.int64())})
    schema = pa.schema([snapshot.schema.field(name) for name in sorted(names)])
    kept = values.filter(to_arrow_expression(scan.predicate, schema)).column("__file").to_pylist()
    return int(sum(counts[i] for i in kept)), True


def _mlflow_type(dtype: pa.DataType, types: Any) -> Any:
    if pa.types.is_boolean(dtype):
        return types.boolean
    if pa.types.is_integer(dtype):
        return types.long if dtype.bit_width == 64 or pa.types.is_unsigned_integer(dtype) else types.integer
    if pa.types.is_float32(dtype) or pa.types.is_float16(dtype):
        return types.float
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return types.double
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return types.string
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return types.binary
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return types.datetime
    return None


def log_input(data: Table | Snapshot | Scan, *, context: str = "training", tag: str | None = None,
              name: str | None = None) -> LakehouseDataset:
    """Record ``data`` as a dataset input of the active MLflow run (one is started if none is).

    ``data`` is a ``Table`` (its latest version, or the version ``tag`` pins), a
    ``Snapshot`` (``tag``, if given, must pin exactly it) or a ``Scan`` of one (its
    columns and filter are recorded too). The input records the table URI, version, tag
    and fingerprint; ``mlflow.data.get_source(dataset_input).load()`` returns the same rows.
    Returns the logged :class:`LakehouseDataset`.
    """
    dataset = LakehouseDataset(data, tag=tag, name=name)
    input_tags = {"lakehouse.version": str(dataset.snapshot.version)}
    if tag is not None:
        input_tags["lakehouse.tag"] = tag
    mlflow.log_input(dataset, context=context, tags=input_tags)
    return dataset


if _REGISTER_HERE and LakehouseDatasetSource not in get_registered_sources():
    register_dataset_source(LakehouseDatasetSource)

__all__ = ["LakehouseDataset", "LakehouseDatasetSource", "PinMismatchError", "SOURCE_TYPE", "log_input",
           "parse_uri", "source_for"]
