"""Planning an ML read: read units from Parquet footers, a seeded order, disjoint shards.

A *unit* is one row group of one selected data file (files without row groups give none).
Units are listed in log order: files as the snapshot lists them, row groups in file order.
The footers are read once per :class:`~lakehouse.scan.Scan` (in parallel threads, which
matters on object stores) and kept with the Parquet fragments, so reading a unit later does
not read its footer again.

Order and shards are pure functions of plain numbers, so every process and machine computes
the same answer without talking to each other:

- ``shuffle``: units are permuted by ``numpy.random.default_rng([seed, epoch, version])``;
  rows inside a unit by ``default_rng([seed, epoch, version, unit.index])``; with a shuffle
  buffer of ``k > 1`` units, the rows of each run of ``k`` consecutive units of a shard
  together by ``default_rng([seed, epoch, version, first_unit.index, len(run)])``;
- shard ``s`` of ``n`` takes every ``n``-th unit of that order starting at ``s``. Under
  ``torch`` the shard index is ``rank * num_workers + worker_id`` over
  ``world_size * num_workers``, so ranks and DataLoader workers split the units together.
  Distributed reads need at least as many units as shards (:func:`check_shards`).

Shuffling is therefore at row-group granularity plus within row groups (or within windows
of ``k`` row groups): a batch holds rows of one or two units (windows). See ``docs/ml.md``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from lakehouse.errors import DataFileError, ReadOptionError
from lakehouse.expressions import Predicate, columns_of, to_arrow_expression
from lakehouse.partitions import partition_scalar
from lakehouse.scan import data_file_error, is_data_file_error

if TYPE_CHECKING:
    from lakehouse.scan import Scan

# Footers read at once while planning; an object store answers each in one round trip.
_FOOTER_THREADS = 8


@dataclass(frozen=True)
class ReadUnit:
    """One row group of one data file: the smallest piece a shard owns."""

    index: int       # position in log order; seeds the row shuffle inside the unit
    file: int        # index into the scan's selected files
    path: str        # the file as the log names it
    row_group: int   # row group within the file
    num_rows: int    # rows stored (before the scan's filter), from the footer
    num_bytes: int   # compressed bytes of the row group, from the footer
    memory_bytes: int  # uncompressed bytes of the row group, from the footer


@dataclass(frozen=True)
class ShardSpec:
    """Which part of the table one reader owns, and in which order it reads it."""

    shard: int = 0
    num_shards: int = 1
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0

    def __post_init__(self) -> None:
        for name in ("shard", "num_shards", "seed", "epoch"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ReadOptionError(f"{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # NumPy integers become plain ints (JSON, hashing)
        object.__setattr__(self, "shuffle", bool(self.shuffle))
        if self.num_shards < 1:
            raise ReadOptionError(f"world size must be at least 1, got {self.num_shards}")
        if not 0 <= self.shard < self.num_shards:
            raise ReadOptionError(
                f"rank {self.shard} must lie within 0..{self.num_shards - 1} for world size {self.num_shards}; "
                "pass a rank below the world size")
        if self.seed < 0 or self.epoch < 0:
            raise ReadOptionError(f"seed and epoch must be non-negative, got seed={self.seed}, epoch={self.epoch}")


def check_batch_size(batch_size: Any, *, table: str) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ReadOptionError(f"table '{table}': batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def check_int(name: str, value: Any, *, table: str, minimum: int | None = None) -> int:
    """``value`` as a plain int (Python or NumPy integers, not bools), at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ReadOptionError(f"table '{table}': {name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ReadOptionError(f"table '{table}': {name} must be at least {minimum}, got {value!r}")
    return int(value)


def check_flag(name: str, value: Any, *, table: str) -> bool:
    """``value`` as a bool; only real booleans (Python or NumPy) are accepted, not 'no' or 0."""
    if not isinstance(value, (bool, np.bool_)):
        raise ReadOptionError(f"table '{table}': {name} must be a bool (true or false), got {value!r}")
    return bool(value)


def check_shards(plan: UnitPlan, num_shards: int, *, made_of: str) -> None:
    """Refuse more shards than read units: a shard without units yields no rows, so its rank
    runs no step and a distributed job waits on it forever (an empty table is fine)."""
    units = len(plan.units)
    if 0 < units < num_shards:
        raise ReadOptionError(
            f"table '{plan.table}': the scan has {units} read unit{'s' if units != 1 else ''} (row groups of its "
            f"{len(plan.fragments)} selected file{'s' if len(plan.fragments) != 1 else ''}) but {num_shards} shards "
            f"({made_of}), so {num_shards - units} shard{'s' if num_shards - units != 1 else ''} would get no rows; "
            f"use at most {units} shard{'s' if units != 1 else ''} (fewer ranks or dataloader workers), or write "
            "the table in more files or smaller row groups (e.g. overwrite or append with a smaller "
            "target_file_size)")


def shard_spec(table: str, shard: int = 0, num_shards: int = 1, shuffle: bool = False, seed: int = 0,
               epoch: int = 0) -> ShardSpec:
    """A :class:`ShardSpec`, its errors naming ``table``."""
    try:
        return ShardSpec(shard, num_shards, shuffle, seed, epoch)
    except ReadOptionError as exc:
        raise ReadOptionError(f"table '{table}': {exc}") from None


def shard_of(rank: int | None, world_size: int | None, *, table: str) -> tuple[int, int]:
    """(rank, world size) from the caller's options; both or neither must be given."""
    if (rank is None) != (world_size is None):
        given, missing = ("rank", "world_size") if world_size is None else ("world_size", "rank")
        raise ReadOptionError(f"table '{table}': pass rank= and world_size= together ({given} was given "
                              f"without {missing})")
    if rank is None:
        return 0, 1
    spec = shard_spec(table, rank, world_size)  # type: ignore[arg-type]
    return spec.shard, spec.num_shards


@dataclass
class UnitPlan:
    """The units of one scan, with everything needed to read any of them.

    Holds the fragments (with their footers) of the selected files, so it is built once per
    scan and reused by every epoch and shard in this process.
    """

    table: str
    version: int
    schema: pa.Schema
    columns: list[str]                     # the projection returned
    predicate: Predicate | None
    fragments: list[ds.ParquetFileFragment]     # one per selected file, footers loaded
    partition_values: list[dict[str, pa.Scalar]]  # per selected file: partition column -> value
    units: list[ReadUnit]
    _filtered_counts: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def output_schema(self) -> pa.Schema:
        return pa.schema([self.schema.field(name) for name in self.columns])

    # --- order and shards ---------------------------------------------------------------

    def order(self, spec: ShardSpec) -> list[ReadUnit]:
        """All units in the order of ``spec``'s epoch (log order without shuffle)."""
        if not spec.shuffle:
            return list(self.units)
        permutation = np.random.default_rng([spec.seed, spec.epoch, self.version]).permutation(len(self.units))
        return [self.units[i] for i in permutation]

    def shard(self, spec: ShardSpec) -> list[ReadUnit]:
        """The units of shard ``spec.shard``: every ``num_shards``-th unit of the epoch's order."""
        return self.order(spec)[spec.shard::spec.num_shards]

    def windows(self, spec: ShardSpec, size: int = 1) -> list[list[ReadUnit]]:
        """The shard's units cut into runs of ``size`` (in shard order) whose rows are mixed
        together when shuffling: the shuffle buffer. Without shuffle, one unit each."""
        units = self.shard(spec)
        size = size if spec.shuffle else 1
        return [units[i:i + size] for i in range(0, len(units), size)]

    def row_permutation(self, window: Sequence[ReadUnit], spec: ShardSpec, num_rows: int) -> np.ndarray | None:
        """The order of the rows of ``window`` (its units' rows, concatenated) in ``spec``'s epoch.

        Seeded by the window's first unit (and its length when it holds several), so a
        window's order never depends on which process reads it or where a resume starts.
        """
        if not spec.shuffle or num_rows < 2:
            return None
        key = [spec.seed, spec.epoch, self.version, window[0].index]
        if len(window) > 1:
            key.append(len(window))
        return np.random.default_rng(key).permutation(num_rows)

    # --- counts -------------------------------------------------------------------------

    def counts(self) -> np.ndarray:
        """Rows each unit yields after the filter, by ``unit.index``.

        Without a filter the footers tell; with one, every unit's filter columns are read
        once (only when ``drop_last`` or a resume needs exact counts) and remembered.
        """
        if self.predicate is None:
            return np.array([u.num_rows for u in self.units], dtype=np.int64)
        with self._lock:
            if self._filtered_counts is None:
                names = sorted({name.split(".")[0] for name in columns_of(self.predicate)})
                self._filtered_counts = np.array(
                    [self.read(unit, columns=names).num_rows for unit in self.units], dtype=np.int64)
            return self._filtered_counts

    def shard_rows(self, spec: ShardSpec) -> list[int]:
        """Rows each shard of ``spec.num_shards`` yields in ``spec``'s epoch."""
        counts = self.counts()
        order = self.order(spec)
        return [int(sum(counts[u.index] for u in order[s::spec.num_shards])) for s in range(spec.num_shards)]

    # --- reading ------------------------------------------------------------------------

    def read(self, unit: ReadUnit, *, columns: Sequence[str] | None = None, use_threads: bool = True,
             dictionaries: bool = False) -> pa.Table:
        """The unit's rows that pass the filter, in file order, projected to ``columns``.

        One ``ParquetFile.read_row_group`` with the footer already in hand (Arrow decodes
        the columns in parallel; a one-fragment dataset scan is about twice as slow here).
        Columns then take the table's types: partition values (from the log) become
        constant columns, columns a file lacks (added later) become nulls, other types are
        cast. The filter runs on the rows as read (no row-group statistics: Parquet min/max
        leave NaN out, see ``lakehouse.scan``).

        ``dictionaries`` (unfiltered scans only) keeps the file's small-dictionary string
        columns dictionary-encoded: shuffling then moves int32 indices, not strings, and
        :func:`decode_dictionaries` makes them plain once, after the shuffle.
        """
        wanted = self.columns if columns is None else list(columns)
        needed = wanted if self.predicate is None else list(dict.fromkeys([*wanted, *self._filter_columns]))
        fragment = self.fragments[unit.file]
        partitions = self.partition_values[unit.file]
        try:
            with fragment.filesystem.open_input_file(fragment.path) as source:
                chosen = self._dictionary_columns(unit.file) if dictionaries and self.predicate is None else []
                parquet = pq.ParquetFile(source, metadata=fragment.metadata, coerce_int96_timestamp_unit="us",
                                         read_dictionary=chosen or None)
                present = set(parquet.schema_arrow.names)
                stored = [name for name in needed if name not in partitions and name in present]
                raw = parquet.read_row_group(unit.row_group, columns=stored, use_threads=use_threads)
        except Exception as exc:
            if not is_data_file_error(exc):
                raise
            raise data_file_error(self.table, self.version, exc, path=unit.path) from None
        rows = raw.num_rows
        arrays = []
        fields = []
        for name in needed:
            dtype = self.schema.field(name).type
            if name in chosen and pa.types.is_dictionary(raw.schema.field(name).type):
                column = raw.column(name)
                if column.type.value_type == dtype:
                    arrays.append(column)
                    fields.append(self.schema.field(name).with_type(column.type))
                    continue
            fields.append(self.schema.field(name))
            if name in partitions:
                value = partitions[name]
                arrays.append(pa.nulls(rows, dtype) if not value.is_valid else
                              pa.array([value.as_py()], dtype).take(np.zeros(rows, dtype=np.int32)))
            elif name in present:
                column = raw.column(name)
                arrays.append(column if column.type == dtype else column.cast(dtype))
            else:
                arrays.append(pa.nulls(rows, dtype))
        # No columns (``columns=[]``): keep the row count, as ``Scan.to_arrow`` does.
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields)) if arrays else raw.select([])
        if self.predicate is not None:
            table = table.filter(self._expression)
            if needed != wanted:
                table = table.select(wanted)
        return table

    def _dictionary_columns(self, file: int) -> list[str]:
        """String columns this file stores as small dictionaries (its first row group decides)."""
        from lakehouse.scan import _low_cardinality

        strings = [name for name in self.columns if name not in self.partition_values[file]
                   and pa.types.is_string(self.schema.field(name).type)]
        return _low_cardinality(self.fragments[file], strings) if strings else []

    @property
    def _expression(self) -> Any:
        return to_arrow_expression(self.predicate, self.schema) if self.predicate is not None else None

    @property
    def _filter_columns(self) -> list[str]:
        return sorted({name.split(".")[0] for name in columns_of(self.predicate)}) if self.predicate else []


def decode_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` with dictionary-encoded columns made plain (their value type)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.with_type(field.type.value_type),
                                     table.column(i).cast(field.type.value_type))
    return table


def _footers(table: str, version: int, paths: list[str],
             fragments: list[ds.ParquetFileFragment]) -> list[list[tuple[int, int, int]]]:
    """(rows, compressed bytes, memory bytes) of every row group of every fragment, read in
    parallel; a file that cannot be opened or decoded is a ``DataFileError`` naming it."""
    def one(path: str, fragment: ds.ParquetFileFragment) -> list[tuple[int, int, int]]:
        try:
            fragment.ensure_complete_metadata()
            metadata = fragment.metadata
        except Exception as exc:
            if not is_data_file_error(exc):
                raise
            raise data_file_error(table, version, exc, path=path) from None
        groups = []
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            size = sum(group.column(j).total_compressed_size for j in range(group.num_columns))
            groups.append((group.num_rows, size, group.total_byte_size))
        return groups

    if len(fragments) <= 1:
        return [one(p, f) for p, f in zip(paths, fragments)]
    with ThreadPoolExecutor(max_workers=min(_FOOTER_THREADS, len(fragments))) as pool:
        return list(pool.map(one, paths, fragments))


def _check_row_counts(scan: Scan, files: pa.Table, paths: list[str], footers: list[list[tuple[int, int, int]]]) -> None:
    """A file whose footer disagrees with the log's ``numRecords`` is not the file the log
    added (replaced or rewritten behind the log's back): refuse it rather than read it."""
    from lakehouse.skipping import FileStats

    snapshot = scan.snapshot
    recorded = FileStats(files, snapshot.schema, snapshot.partition_columns).num_records.to_pylist()
    for path, expected, groups in zip(paths, recorded, footers):
        found = sum(rows for rows, _, _ in groups)
        if expected is not None and found != expected:
            raise DataFileError(
                f"table '{snapshot.location.name}' version {snapshot.version}: data file '{path}' holds {found} "
                f"rows but the log recorded {expected} (numRecords) when it was added; the file was replaced or "
                "rewritten outside the table; restore the original file or read a version that does not use it")


def build_plan(scan: Scan, files: pa.Table | None = None) -> UnitPlan:
    """Units of ``files`` (default: the scan's selected files), read from their footers."""
    from lakehouse.scan import _READ_OPTIONS

    snapshot = scan.snapshot
    files = scan.selected_files if files is None else files
    parquet = ds.ParquetFileFormat(read_options=_READ_OPTIONS)
    fragments = scan.fragments(files, parquet)
    columns = list(scan.columns) if scan.columns is not None else list(snapshot.schema.names)
    units: list[ReadUnit] = []
    paths = files.column("path").to_pylist()
    with scan._reading():
        footers = _footers(snapshot.location.name, snapshot.version, paths, fragments)
    _check_row_counts(scan, files, paths, footers)
    for file_index, (path, groups) in enumerate(zip(paths, footers)):
        for group, (rows, size, memory) in enumerate(groups):
            if rows:
                units.append(ReadUnit(len(units), file_index, path, group, rows, size, memory))
    partitions = [
        {column: partition_scalar(dict(values or []).get(column), snapshot.schema.field(column).type, column=column)
         for column in snapshot.partition_columns}
        for values in files.column("partitionValues").to_pylist()]
    return UnitPlan(snapshot.location.name, snapshot.version, snapshot.schema, columns,
                    scan.predicate, fragments, partitions, units)


@dataclass(frozen=True)
class ScanSpec:
    """A picklable recipe for a scan of a pinned version: what a worker process or a Ray
    read task needs to open the same snapshot (storage options travel with it)."""

    url: str
    version: int
    columns: tuple[str, ...] | None
    predicate: Predicate | None
    storage_options: Mapping[str, Any] | None = None
    allowed_roots: tuple[str, ...] = ()

    @classmethod
    def of(cls, scan: Scan) -> ScanSpec:
        location = scan.snapshot.location
        return cls(location.url, scan.snapshot.version, tuple(scan.columns) if scan.columns is not None else None,
                   scan.predicate, dict(location.storage_options) if location.storage_options else None,
                   tuple(location.allowed_roots))

    def open(self) -> Scan:
        from lakehouse.table import open_table

        table = open_table(self.url, storage_options=self.storage_options, allowed_roots=self.allowed_roots)
        columns = list(self.columns) if self.columns is not None else None
        return table.snapshot(version=self.version).scan(columns=columns, filter=self.predicate)
