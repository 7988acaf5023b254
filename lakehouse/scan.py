"""Scans: choose columns and a filter, skip files with the log's stats, read with Arrow."""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.errors import ColumnNotFoundError, CorruptLogError, DataFileError
from lakehouse.expressions import Predicate, bind, columns_of, to_arrow_expression, to_predicate
from lakehouse.optional import require
from lakehouse.partitions import partition_scalar
from lakehouse.skipping import may_match

if TYPE_CHECKING:
    from lakehouse.snapshot import Snapshot

# Spark writes timestamps as INT96 by default. pyarrow decodes INT96 to nanoseconds, which
# overflow outside 1677-2262 (0001-01-01 and 9999-12-31 are common sentinels) and then fail
# the cast to the table's microseconds; Delta timestamps are microseconds, so decode to those.
_READ_OPTIONS = ds.ParquetReadOptions(coerce_int96_timestamp_unit="us")


def _leaf_type(schema: pa.Schema, name: str) -> pa.DataType:
    """Type of a (bound, exactly named) column, ``a`` or nested ``a.b``."""
    first, *rest = name.split(".")
    dtype = schema.field(first).type
    for part in rest:
        dtype = dtype.field(part).type
    return dtype


@dataclass(frozen=True)
class ScanMetrics:
    """How much of the table a scan reads, as decided from the log alone."""

    files_total: int
    files_selected: int
    bytes_total: int
    bytes_selected: int

    @property
    def files_skipped(self) -> int:
        return self.files_total - self.files_selected

    @property
    def bytes_skipped(self) -> int:
        return self.bytes_total - self.bytes_selected


class Scan:
    """A planned read of one snapshot. Files are selected once, when first needed."""

    def __init__(self, snapshot: Snapshot, *, columns: list[str] | None = None,
                 filter: Predicate | str | None = None) -> None:  # noqa: A002
        self.snapshot = snapshot
        self.columns = self._check_columns(columns)
        predicate = to_predicate(filter)
        self.predicate = bind(predicate, snapshot.schema) if predicate is not None else None

    def _check_columns(self, columns: list[str] | None) -> list[str] | None:
        if columns is None:
            return None
        names = self.snapshot.schema.names
        for name in columns:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
                hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"columns are {', '.join(names)}"
                raise ColumnNotFoundError(f"table '{self.snapshot.location.name}' has no column '{name}'; {hint}")
        return list(columns)

    # --- planning -------------------------------------------------------------------

    @cached_property
    def selected_files(self) -> pa.Table:
        """The rows of ``snapshot.files`` that may hold matching rows."""
        files = self.snapshot.files
        if self.predicate is None:
            return files
        mask = may_match(files, self.predicate, self.snapshot.schema, self.snapshot.partition_columns)
        return files.filter(mask)

    @property
    def metrics(self) -> ScanMetrics:
        files, selected = self.snapshot.files, self.selected_files
        return ScanMetrics(files.num_rows, selected.num_rows,
                           int(pc.sum(files.column("size")).as_py() or 0),
                           int(pc.sum(selected.column("size")).as_py() or 0))

    def fragments(self, files: pa.Table) -> list[ds.Fragment]:
        snapshot = self.snapshot
        schema = snapshot.schema
        parquet = ds.ParquetFileFormat(read_options=_READ_OPTIONS)
        fragments = []
        dvs = files.column("deletionVector")
        if dvs.null_count != len(dvs):
            raise CorruptLogError(
                f"table '{snapshot.location.name}' has files with deletion vectors but does not declare the "
                "deletionVectors feature")
        for row in files.select(["path", "partitionValues", "size"]).to_pylist():
            fs, path = snapshot.location.data_file(row["path"])
            expression = None
            values = dict(row["partitionValues"] or [])
            for column in snapshot.partition_columns:
                dtype = schema.field(column).type
                value = partition_scalar(values.get(column), dtype, column=column)
                term = ds.field(column).is_null() if not value.is_valid else ds.field(column) == value
                expression = term if expression is None else expression & term
            fragments.append(parquet.make_fragment(path, fs, partition_expression=expression,
                                                   file_size=row["size"]))
        return fragments

    def dataset(self) -> ds.Dataset:
        """A pyarrow dataset over the selected files, in the table's schema."""
        return ds.FileSystemDataset(self.fragments(self.selected_files), self.snapshot.schema,
                                    ds.ParquetFileFormat(read_options=_READ_OPTIONS))

    def _scanner(self, batch_size: int | None = None) -> ds.Scanner:
        options: dict[str, Any] = {"columns": self.columns, "use_threads": True}
        if batch_size:
            options["batch_size"] = batch_size
        if self.predicate is None:
            return self.dataset().scanner(**options)
        schema = self.snapshot.schema
        options["filter"] = to_arrow_expression(self.predicate, schema)
        names = columns_of(self.predicate)
        if not any(pa.types.is_floating(_leaf_type(schema, name)) for name in names):
            return self.dataset().scanner(**options)
        # Parquet min/max leave NaN out and pyarrow reads min == max as "every value equals
        # it", so it drops row groups whose NaN rows match (``f != 1`` over [1, NaN]). Filters
        # on float columns therefore run on the rows as read, without row-group pruning.
        needed = None if self.columns is None else list(dict.fromkeys(
            [*self.columns, *(name.split(".")[0] for name in names)]))
        raw = self.dataset().scanner(columns=needed, use_threads=True, **({"batch_size": batch_size} if batch_size else {}))
        return ds.Scanner.from_batches(raw.to_reader(), **options)

    # --- terminals ------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a data file that vanished or cannot be read into one clear error."""
        try:
            yield
        except (FileNotFoundError, pa.ArrowIOError, OSError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataFileError(
                f"table '{self.snapshot.location.name}' version {self.snapshot.version}: a data file could not be "
                f"read ({text}); it may have been deleted or vacuumed; read another version or restore the file"
            ) from None

    def to_arrow(self) -> pa.Table:
        """All matching rows as one Arrow table, files in log order."""
        with self._reading():
            return self._scanner().to_table()

    def to_batches(self, batch_size: int | None = None) -> Iterator[pa.RecordBatch]:
        """Matching rows as a stream of record batches (memory bounded by batches)."""
        with self._reading():
            yield from self._scanner(batch_size).to_batches()

    def to_reader(self, batch_size: int | None = None) -> pa.RecordBatchReader:
        return self._scanner(batch_size).to_reader()

    def to_pandas(self) -> Any:
        require("pandas", "pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        polars = require("polars", "polars")
        return polars.from_arrow(self.to_arrow())

    def count(self) -> int:
        """Number of matching rows."""
        with self._reading():
            return self._scanner().count_rows()
