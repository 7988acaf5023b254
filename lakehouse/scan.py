"""Scans: choose columns and a filter, skip files with the log's stats, read with Arrow."""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.errors import ColumnNotFoundError, CorruptLogError, DataFileError, ReadOptionError
from lakehouse.expressions import And, Like, Not, Or, Predicate, bind, columns_of, to_arrow_expression, to_predicate
from lakehouse.optional import require
from lakehouse.partitions import partition_scalar
from lakehouse.skipping import may_match

if TYPE_CHECKING:
    from lakehouse.snapshot import Snapshot

# Spark writes timestamps as INT96 by default. pyarrow decodes INT96 to nanoseconds, which
# overflow outside 1677-2262 (0001-01-01 and 9999-12-31 are common sentinels) and then fail
# the cast to the table's microseconds; Delta timestamps are microseconds, so decode to those.
_READ_OPTIONS = ds.ParquetReadOptions(coerce_int96_timestamp_unit="us")


# A column chunk whose dictionary page is this small a share of it holds few distinct values.
_DICTIONARY_SHARE = 1 / 20
_DICTIONARY_PAGE_BYTES = 1 << 16
_LOW_CARDINALITY: dict[str, frozenset[str]] = {}


def _low_cardinality(fragment: ds.ParquetFileFragment, names: list[str]) -> list[str]:
    """Which of ``names`` the file stores as small dictionaries (its first row group decides)."""
    # Keyed by path only: data files are written once, and a stale answer would only cost speed.
    key = fragment.path
    known = _LOW_CARDINALITY.get(key)
    if known is None:
        fragment.ensure_complete_metadata()
        metadata = fragment.metadata
        found = set()
        if metadata.num_row_groups:
            group = metadata.row_group(0)
            for i in range(group.num_columns):
                chunk = group.column(i)
                if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
                    page = chunk.data_page_offset - chunk.dictionary_page_offset
                    if 0 < page <= _DICTIONARY_PAGE_BYTES and page <= _DICTIONARY_SHARE * chunk.total_compressed_size:
                        found.add(chunk.path_in_schema)
        known = frozenset(found)
        if len(_LOW_CARDINALITY) > 4096:
            _LOW_CARDINALITY.clear()
        _LOW_CARDINALITY[key] = known
    return [name for name in names if name in known]


def _like_columns(predicate: Predicate) -> set[str]:
    """Columns a LIKE tests (Arrow matches patterns on plain strings only)."""
    if isinstance(predicate, Like):
        return {predicate.column}
    if isinstance(predicate, (And, Or)):
        return set().union(*(_like_columns(child) for child in predicate.children))
    if isinstance(predicate, Not):
        return _like_columns(predicate.child)
    return set()


def _leaf_type(schema: pa.Schema, name: str) -> pa.DataType:
    """Type of a (bound, exactly named) column, ``a`` or nested ``a.b``."""
    first, *rest = name.split(".")
    dtype = schema.field(first).type
    for part in rest:
        dtype = dtype.field(part).type
    return dtype


# Words of the ArrowInvalid/OSError messages Parquet decoding raises for a damaged file (zero
# bytes, truncated, overwritten); filters and casts raise ArrowInvalid without them.
_DAMAGED_WORDS = ("parquet", "thrift", "magic bytes", "corrupt", "end of stream", "decompress", "page header")
_MISSING_WORDS = ("no such file", "not found", "does not exist", "nosuchkey")


def is_data_file_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from opening or decoding a data file (not from a filter or cast)."""
    if isinstance(exc, OSError):  # pyarrow's ArrowIOError is an OSError
        return True
    return isinstance(exc, pa.ArrowInvalid) and any(word in str(exc).lower() for word in _DAMAGED_WORDS)


def data_file_error(table: str, version: int, exc: BaseException, *, path: str | None = None,
                    root: str | None = None) -> DataFileError:
    """One :class:`DataFileError` for ``exc``, naming the file (relative to the table) and the fix.

    ``path`` is the file as the log names it when the caller knows it; otherwise the first
    quoted path in the message is taken, shortened to be relative to ``root``.
    """
    text = str(exc).strip()
    quoted = re.findall(r"'([^']+)'", text)
    full = next((q for q in quoted if (root and q.startswith(root.rstrip("/") + "/")) or q.endswith(".parquet")), None)
    if full is not None:
        text = text.split(f"'{full}'", 1)[1].lstrip(" .:") or text
        if path is None:
            path = full[len(root.rstrip("/")) + 1:] if root and full.startswith(root.rstrip("/") + "/") else full
    text = (text.splitlines()[0] if text else "") or type(exc).__name__
    lower = f"{type(exc).__name__} {text}".lower()
    if isinstance(exc, FileNotFoundError) or (not isinstance(exc, pa.ArrowInvalid)
                                              and any(word in lower for word in _MISSING_WORDS)):
        advice = "it may have been deleted or vacuumed; read another version or restore the file"
    elif isinstance(exc, pa.ArrowInvalid) or any(word in lower for word in _DAMAGED_WORDS):
        advice = ("it is damaged or not a parquet file (empty, truncated or overwritten); restore it from a backup "
                  "or read a version that does not use it")
    else:
        advice = ("it may have been deleted or vacuumed, or the storage failed; check the storage, read another "
                  "version or restore the file")
    where = f"'{path}'" if path is not None else "a data file"
    return DataFileError(f"table '{table}' version {version}: a data file could not be read: {where} ({text}); "
                         f"{advice}")


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

    def fragments(self, files: pa.Table, parquet: ds.ParquetFileFormat | None = None) -> list[ds.Fragment]:
        snapshot = self.snapshot
        schema = snapshot.schema
        parquet = parquet or ds.ParquetFileFormat(read_options=_READ_OPTIONS)
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

    def _dictionary_dataset(self) -> tuple[ds.Dataset, frozenset[str]]:
        """The dataset, reading low-cardinality string columns dictionary-encoded.

        Decoding a dictionary-encoded Parquet string column into plain strings costs far more
        than reading its indices. Read as dictionaries, conditions on such a column are tested
        once per distinct value (:func:`_dictionary_mask`) and only the surviving rows are
        decoded (:class:`_ReadPlan`).
        """
        fragments = self.fragments(self.selected_files)
        wanted = self.columns if self.columns is not None else self.snapshot.schema.names
        strings = [name for name in wanted if name not in self.snapshot.partition_columns
                   and pa.types.is_string(self.snapshot.schema.field(name).type)]
        if self.predicate is not None:
            strings = [name for name in strings if name not in _like_columns(self.predicate)]
        chosen = frozenset(_low_cardinality(fragments[0], strings)) if fragments and strings else frozenset()
        if not chosen:
            return ds.FileSystemDataset(fragments, self.snapshot.schema,
                                        ds.ParquetFileFormat(read_options=_READ_OPTIONS)), chosen
        schema = self.snapshot.schema
        for name in chosen:
            index = schema.get_field_index(name)
            schema = schema.set(index, schema.field(index).with_type(pa.dictionary(pa.int32(), pa.string())))
        parquet = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
            coerce_int96_timestamp_unit="us", dictionary_columns=sorted(chosen)))
        # Each fragment reads with its own format's options: make them anew with these.
        return ds.FileSystemDataset(self.fragments(self.selected_files, parquet), schema, parquet), chosen

    def _read_plan(self, batch_size: int | None = None) -> _ReadPlan:
        dataset, chosen = self._dictionary_dataset()
        size = {"batch_size": batch_size} if batch_size else {}
        if self.predicate is None:
            return _ReadPlan(dataset.scanner(columns=self.columns, use_threads=True, **size), chosen, [], None)
        schema = self.snapshot.schema
        rest, by_value = _split_by_dictionary_column(self.predicate, chosen)
        columns = self.columns
        if by_value and columns is not None:
            columns = list(dict.fromkeys([*columns, *(name for name, _ in by_value)]))
        options: dict[str, Any] = {"columns": columns, "use_threads": True, **size}
        if rest is None:
            return _ReadPlan(dataset.scanner(**options), chosen, by_value, self.columns)
        options["filter"] = to_arrow_expression(rest, schema, chosen)
        names = columns_of(rest)
        if not any(pa.types.is_floating(_leaf_type(schema, name)) for name in names):
            return _ReadPlan(dataset.scanner(**options), chosen, by_value, self.columns)
        # Parquet min/max leave NaN out and pyarrow reads min == max as "every value equals
        # it", so it drops row groups whose NaN rows match (``f != 1`` over [1, NaN]). Filters
        # on float columns therefore run on the rows as read, without row-group pruning.
        needed = None if columns is None else list(dict.fromkeys(
            [*columns, *(name.split(".")[0] for name in names)]))
        raw = dataset.scanner(columns=needed, use_threads=True, **size)
        return _ReadPlan(ds.Scanner.from_batches(raw.to_reader(), **options), chosen, by_value, self.columns)

    # --- terminals ------------------------------------------------------------------

    def read_files(self, files: pa.Table | None = None) -> Iterator[tuple[str, pa.Table]]:
        """Each selected file's path (as the log names it) and all of its rows, unfiltered.

        Copy-on-write statements (DELETE, UPDATE, MERGE) decide per file what to rewrite,
        so they need every row of a file together with the file it came from.
        """
        files = self.selected_files if files is None else files
        schema = self.snapshot.schema
        parquet = ds.ParquetFileFormat(read_options=_READ_OPTIONS)
        with self._reading():
            for path, fragment in zip(files.column("path").to_pylist(), self.fragments(files, parquet)):
                yield path, ds.FileSystemDataset([fragment], schema, parquet).to_table()

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a data file that vanished or cannot be decoded into one clear error.

        Catches IO errors and the ``ArrowInvalid`` Parquet raises for a damaged file
        (:func:`is_data_file_error`), not other ``ArrowInvalid`` (a filter or a cast).
        """
        try:
            yield
        except DataFileError:
            raise
        except Exception as exc:
            if not is_data_file_error(exc):
                raise
            snapshot = self.snapshot
            raise data_file_error(snapshot.location.name, snapshot.version, exc, root=snapshot.location.root) from None

    def to_arrow(self) -> pa.Table:
        """All matching rows as one Arrow table, files in log order."""
        with self._reading():
            plan = self._read_plan()
            if plan.plain:
                return plan.scanner.to_table()
            return pa.Table.from_batches(plan.batches(), schema=plan.schema)

    def to_batches(self, batch_size: int | None = None, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                   rank: int | None = None, world_size: int | None = None, drop_last: bool = False,
                   prefetch: int = 2, shuffle_buffer: int = 1) -> Iterator[pa.RecordBatch]:
        """Matching rows as a stream of record batches (memory bounded by batches).

        Plain ``to_batches(batch_size)`` streams the files in log order, batches of at most
        ``batch_size`` rows. Any of ``shuffle``, ``rank``/``world_size`` or ``drop_last`` makes
        it the ML reader (:mod:`lakehouse.read.batches`): units are row groups, ``shuffle``
        orders units and the rows inside them by ``(seed, epoch, version)``, shard ``rank``
        of ``world_size`` owns every ``world_size``-th unit, batches hold exactly
        ``batch_size`` rows (the last may be short unless ``drop_last``, which also makes
        every shard yield the same number of rows), ``prefetch`` units are read ahead, and
        ``shuffle_buffer`` (with ``shuffle``) mixes the rows of that many consecutive units
        of the shard at a time (memory grows with it).

        Options are checked here, before anything is read: ``ReadOptionError`` for a bad value,
        or for more shards (``world_size``) than read units (some shard would get no rows).
        """
        from lakehouse.read.plan import check_batch_size, check_flag, check_int, shard_of, shard_spec

        name = self.snapshot.location.name
        shuffle = check_flag("shuffle", shuffle, table=name)
        drop_last = check_flag("drop_last", drop_last, table=name)
        prefetch = check_int("prefetch", prefetch, table=name, minimum=0)
        shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, table=name, minimum=1)
        if not (shuffle or rank is not None or world_size is not None or drop_last):
            if shuffle_buffer != 1:
                raise ReadOptionError(f"table '{name}': shuffle_buffer mixes rows only when shuffle=True; "
                                      "pass shuffle=True or leave shuffle_buffer at 1")
            size = check_batch_size(batch_size, table=name) if batch_size is not None else None
            shard_spec(name, 0, 1, False, seed, epoch)  # unused here, but a bad value is still a mistake
            return self._stream(size)
        from lakehouse.read.batches import BatchOptions, check_shards, iter_shard

        size = check_batch_size(batch_size, table=name)
        shard, shards = shard_of(rank, world_size, table=name)
        spec = shard_spec(name, shard, shards, shuffle, seed, epoch)
        options = BatchOptions(size, drop_last, prefetch, shuffle_buffer=shuffle_buffer)
        options.check(name, spec)
        plan = self.unit_plan
        check_shards(plan, spec.num_shards, made_of=f"world size {spec.num_shards}")
        return self._guarded(iter_shard(plan, spec, options))

    def _stream(self, batch_size: int | None) -> Iterator[pa.RecordBatch]:
        with self._reading():
            yield from self._read_plan(batch_size).batches()

    def _guarded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        with self._reading():
            yield from batches

    @cached_property
    def unit_plan(self) -> Any:
        """Read units (file, row group) of the selected files, from footers read once per scan
        (:class:`lakehouse.read.plan.UnitPlan`)."""
        from lakehouse.read.plan import build_plan

        return build_plan(self)

    def to_torch(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world_size: int | None = None, prefetch: int = 2,
                 fill_nulls: Mapping[str, Any] | None = None, shuffle_buffer: int = 1) -> Any:
        """A ``torch.utils.data.IterableDataset`` of batches (dicts of tensors) of this scan.

        It shards itself across ``torch.distributed`` ranks and DataLoader workers, has
        ``set_epoch()`` and ``state_dict()``/``load_state_dict()``; see
        :class:`lakehouse.read.torch.TorchDataset`. A column's tensor type follows from the
        schema alone (see ``docs/ml.md``); ``fill_nulls`` maps a column to the value its nulls
        become (integer, boolean, temporal and decimal tensors cannot hold nulls). Iterate it
        through ``dataset.loader(...)``. Needs the ``torch`` extra.
        """
        require("torch", "torch")
        from lakehouse.read.torch import TorchDataset

        return TorchDataset(self, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                            world_size=world_size, prefetch=prefetch, fill_nulls=fill_nulls,
                            shuffle_buffer=shuffle_buffer)

    def to_ray(self, *, parallelism: int = -1, **read_args: Any) -> Any:
        """A ``ray.data.Dataset`` of this scan's rows at its pinned version, read by Ray tasks
        through lakehouse's reader (:class:`lakehouse.read.ray.LakehouseDatasource`).
        ``parallelism`` is the most read tasks (-1: one per file). Extra keyword arguments go
        to ``ray.data.read_datasource``. Needs the ``ray`` extra."""
        from lakehouse.read.plan import check_int

        name = self.snapshot.location.name
        parallelism = check_int("parallelism", parallelism, table=name)
        if parallelism == 0 or parallelism < -1:
            raise ReadOptionError(f"table '{name}': parallelism must be a positive integer or -1 (automatic), "
                                  f"got {parallelism}")
        require("ray.data", "ray")
        from lakehouse.read.ray import read_scan

        return read_scan(self, parallelism=parallelism, **read_args)

    def to_reader(self, batch_size: int | None = None) -> pa.RecordBatchReader:
        plan = self._read_plan(batch_size)
        if plan.plain:
            return plan.scanner.to_reader()
        return pa.RecordBatchReader.from_batches(plan.schema, plan.batches())

    def to_pandas(self) -> Any:
        require("pandas", "pandas")
        return self.to_arrow().to_pandas()

    def to_polars(self) -> Any:
        polars = require("polars", "polars")
        return polars.from_arrow(self.to_arrow())

    def count(self) -> int:
        """Number of matching rows."""
        with self._reading():
            plan = self._read_plan()
            if not plan.filters:
                return plan.scanner.count_rows()
            return sum(batch.num_rows for batch in plan.batches())


@dataclass
class _ReadPlan:
    """A pyarrow scanner plus what is left to do to its batches.

    ``filters`` are conditions on dictionary-read columns, applied per distinct value here
    rather than per row by the scanner; ``columns`` is the projection to return when filter
    columns were read only to test them.
    """

    scanner: ds.Scanner
    dictionary_columns: frozenset[str]
    filters: list[tuple[str, Predicate]]
    columns: list[str] | None

    @property
    def plain(self) -> bool:
        return not self.dictionary_columns and not self.filters

    @property
    def schema(self) -> pa.Schema:
        schema = self.scanner.projected_schema
        if self.filters and self.columns is not None:
            schema = pa.schema([schema.field(name) for name in self.columns])
        return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema])

    def batches(self) -> Iterator[pa.RecordBatch]:
        verdicts: dict[tuple[str, tuple], np.ndarray] = {}  # batches of one file share dictionaries
        for batch in self.scanner.to_batches():
            if self.filters:
                mask = None
                for name, predicate in self.filters:
                    found = _dictionary_mask(batch.column(name), name, predicate, verdicts)
                    mask = found if mask is None else np.logical_and(mask, found, out=mask)
                batch = batch.filter(pa.array(mask))
                if self.columns is not None:
                    batch = batch.select(self.columns)
            if self.dictionary_columns:
                batch = pa.RecordBatch.from_arrays(
                    [column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
                     for column in batch.columns], names=batch.schema.names)
            yield batch


def _split_by_dictionary_column(predicate: Predicate, columns: frozenset[str]
                                ) -> tuple[Predicate | None, list[tuple[str, Predicate]]]:
    """Split the top-level AND into conditions on one dictionary-read column each, and the rest."""
    parts = list(predicate.children) if isinstance(predicate, And) else [predicate]
    by_value: list[tuple[str, Predicate]] = []
    rest: list[Predicate] = []
    for part in parts:
        names = columns_of(part)
        if len(names) == 1 and next(iter(names)) in columns:
            by_value.append((next(iter(names)), part))
        else:
            rest.append(part)
    remaining = None if not rest else rest[0] if len(rest) == 1 else And(tuple(rest))
    return remaining, by_value


def _dictionary_mask(column: pa.Array, name: str, predicate: Predicate,
                     verdicts: dict[tuple[str, tuple], np.ndarray]) -> np.ndarray:
    """Which rows of a dictionary column satisfy ``predicate``: tested once per distinct value
    (and once for NULL), then looked up by each row's index."""
    key = (name, tuple(column.dictionary.to_pylist()))
    passes = verdicts.get(key)
    if passes is None:
        values = pa.concat_arrays([column.dictionary, pa.nulls(1, column.dictionary.type)])
        table = pa.table({name: values, "__position": pa.array(np.arange(len(values), dtype=np.int32))})
        kept = table.filter(to_arrow_expression(predicate, table.schema)).column("__position").to_numpy()
        passes = np.zeros(len(values), dtype=bool)
        passes[kept] = True
        verdicts[key] = passes
    indices = column.indices
    if indices.null_count:
        indices = indices.fill_null(len(passes) - 1)  # the NULL slot appended above
    return passes[np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
