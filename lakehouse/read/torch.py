"""PyTorch: a scan as an ``IterableDataset`` that shards itself and resumes mid-epoch.

Use it with ``batch_size=None`` (the dataset batches itself), through its own loader::

    dataset = table.snapshot().scan(columns=[...]).to_torch(256, shuffle=True, seed=7)
    loader = dataset.loader(num_workers=2)        # a torch DataLoader that tracks progress
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for batch in loader:                      # dict: column -> tensor (strings: lists)
            ...
            state = dataset.state_dict()          # save with the model checkpoint

Tensors: a column's tensor type follows from the table's schema alone, never from the rows
of one batch (see :func:`to_tensors`), so batches of an epoch always concatenate. Integer,
boolean, temporal and decimal tensors cannot hold a null: a null there raises
``NullValueError`` naming the column, unless ``fill_nulls`` gives the value to use.

Sharding: each iterator finds its DataLoader worker (``get_worker_info()``) and its rank
and world size (``torch.distributed`` when initialized, else the ``rank``/``world_size``
given), and reads global shard ``rank * num_workers + worker_id`` of
``world_size * num_workers`` (see :mod:`lakehouse.read.plan`). Shards are disjoint and
together hold every matching row once per epoch. More shards than read units (row groups)
is a ``ReadOptionError``: some rank would get no rows and stall the job.

Resume: every batch carries its position (epoch, shard, shards, rows of the shard up to and
including it, world size, workers) as an attribute ``lakehouse_position`` of the dict,
invisible to training code. The dataset learns what was *consumed* (not merely prefetched
by a worker) when the batch reaches the consumer: in-process when iterated directly or with
``num_workers=0``, else through :meth:`TorchDataset.loader`, a ``DataLoader`` that records
each batch it hands out. ``state_dict()`` is (what identifies the scan, epoch, consumed
rows per shard, whether the epoch was completed); after ``load_state_dict()`` the next pass
of that epoch skips exactly those rows (a completed epoch resumes at the next one), so the
epoch finishes without repeats or gaps. Resume with the same scan and options and the same
number of shards (world size x workers); anything else is refused.

**Use** ``dataset.loader(...)``, **not** ``torch.utils.data.DataLoader(dataset, ...)``: with
worker processes a plain DataLoader's progress never reaches the dataset. This is detected
(the workers flag it in shared memory) and ``state_dict()`` then raises instead of returning
a wrong state. Workers copy the dataset when an iterator starts, so call
``set_epoch``/``load_state_dict`` before iterating; ``persistent_workers=True`` is refused
because persistent workers would keep the first epoch's copy.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lakehouse.errors import NullValueError
from lakehouse.expressions import to_sql
from lakehouse.read.batches import BatchOptions, iter_shard
from lakehouse.read.plan import (
    ReadOptionError, ScanSpec, ShardSpec, UnitPlan, check_batch_size, check_flag, check_int, check_shards,
    shard_of, shard_spec,
)

POSITION = "lakehouse_position"

# Keys of state_dict() that identify the read; a state loads only into a dataset that matches.
IDENTITY = ("table_id", "version", "columns", "filter", "shuffle", "seed", "drop_last", "shuffle_buffer")
_STATE_KEYS = (*IDENTITY, "epoch", "rows", "num_shards")


class Batch(dict):
    """A dict of column -> tensor (or list); ``lakehouse_position`` says where it came from."""

    # (epoch, shard, num_shards, rows of the shard through this batch, world_size, num_workers)
    lakehouse_position: tuple[int, int, int, int, int, int]


def tensor_kind(dtype: pa.DataType) -> str:
    """What a column of Arrow type ``dtype`` becomes: a NumPy/torch dtype name, or ``list``."""
    if pa.types.is_floating(dtype) or pa.types.is_integer(dtype):
        return str(np.dtype(dtype.to_pandas_dtype()))
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_date32(dtype):
        return "int32"
    if pa.types.is_timestamp(dtype) or pa.types.is_date64(dtype) or pa.types.is_time(dtype) or \
            pa.types.is_duration(dtype):
        return "int64"
    if pa.types.is_decimal(dtype):
        return "float64"
    return "list"


def _holds_nulls_error(table: str, name: str, dtype: pa.DataType) -> NullValueError:
    return NullValueError(
        f"table '{table}': column '{name}' ({dtype}) holds nulls, which its tensor type ({tensor_kind(dtype)}) cannot "
        f"hold; pass to_torch(..., fill_nulls={{'{name}': <value>}}) to read them as that value, or "
        f"scan(filter=\"{name} IS NOT NULL\") to leave those rows out")


def _column(name: str, column: pa.Array, table: str) -> np.ndarray | list[Any]:
    """One column as a NumPy array of the type :func:`tensor_kind` names, or a list."""
    dtype = column.type
    kind = tensor_kind(dtype)
    if kind == "list":
        return column.to_pylist()
    if column.null_count and not pa.types.is_floating(dtype):
        raise _holds_nulls_error(table, name, dtype)
    if pa.types.is_temporal(dtype):
        ticks = pa.int32() if dtype.bit_width == 32 else pa.int64()  # time32 casts only to int32
        column = column.cast(ticks)
    elif pa.types.is_decimal(dtype):
        column = column.cast(pa.float64())
    array = column.to_numpy(zero_copy_only=False)  # floats: nulls become NaN
    if array.dtype != np.dtype(kind):
        array = array.astype(kind)
    if not array.flags.writeable:
        array = np.array(array)
    return array


def to_tensors(batch: pa.RecordBatch, *, as_numpy: bool = False, fill_nulls: Mapping[str, pa.Scalar] | None = None,
               table: str = "?") -> Batch:
    """A batch as a dict of tensors whose types depend on the schema only.

    Integers keep their type, floats too (nulls become NaN), booleans become ``bool``,
    timestamps, times, durations and date64 ``int64`` ticks of their unit, date32 ``int32``
    days, decimals ``float64`` (lossy beyond 15-17 significant digits); strings, binary and
    nested values Python lists. A null in an integer, boolean, temporal or decimal column
    raises ``NullValueError`` naming the column, unless ``fill_nulls`` (column -> Arrow
    scalar of its type) replaces it first.

    ``as_numpy`` keeps NumPy arrays instead: a DataLoader worker sends those through its pipe
    in one piece, while every tensor would cost a shared-memory segment and a file
    descriptor handed over separately (about a millisecond each); the consumer side of
    :meth:`TorchDataset.loader` wraps them as tensors without a copy.
    """
    out = Batch()
    for name, column in zip(batch.schema.names, batch.columns):
        fill = fill_nulls.get(name) if fill_nulls else None
        if fill is not None and column.null_count:
            column = column.fill_null(fill)
        array = _column(name, column, table)
        out[name] = array if as_numpy or isinstance(array, list) else torch.from_numpy(array)
    return out


def _fill_values(fill_nulls: Any, schema: pa.Schema, table: str) -> dict[str, pa.Scalar]:
    """``fill_nulls`` checked against the columns read: column -> Arrow scalar of its type."""
    if fill_nulls is None:
        return {}
    if not isinstance(fill_nulls, Mapping):
        raise ReadOptionError(f"table '{table}': fill_nulls must map column names to values, "
                              f"got {type(fill_nulls).__name__}")
    out = {}
    for name, value in fill_nulls.items():
        if name not in schema.names:
            raise ReadOptionError(f"table '{table}': fill_nulls names column '{name}', which the scan does not "
                                  f"read; columns read are {', '.join(schema.names)}")
        dtype = schema.field(name).type
        integral = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        try:
            if value is None or (pa.types.is_integer(dtype) and not integral):
                raise TypeError
            out[name] = pa.scalar(value, type=dtype)
        except (TypeError, ValueError, pa.ArrowException):
            raise ReadOptionError(f"table '{table}': fill_nulls['{name}'] = {value!r} is not a value of the "
                                  f"column's type {dtype}; give a non-null value of that type") from None
    return out


def _known_nulls(scan: Any, plan: UnitPlan, fills: Mapping[str, Any]) -> str | None:
    """A column that will hold nulls its tensor cannot hold, if the log or the footers (both
    already read) prove it: a ``nullCount`` above zero, or a file written before the column
    was added. Unfiltered scans only: a filter may leave those rows out."""
    from lakehouse.skipping import FileStats

    snapshot = scan.snapshot
    files = scan.selected_files
    candidates = [name for name in plan.columns if name not in fills and name not in snapshot.partition_columns
                  and snapshot.schema.field(name).nullable
                  and tensor_kind(snapshot.schema.field(name).type) != "list"
                  and not pa.types.is_floating(snapshot.schema.field(name).type)]
    if scan.predicate is not None or not plan.units or not candidates:
        return None
    with_rows = sorted({unit.file for unit in plan.units})
    for file in with_rows:
        stored = set(plan.fragments[file].metadata.schema.to_arrow_schema().names)
        for name in candidates:
            if name not in stored:
                return name
    if files.num_rows * len(candidates) > 2_000_000:  # parsing that many stats is no longer cheap
        return None
    stats = FileStats(files, snapshot.schema, snapshot.partition_columns)
    for name in candidates:
        nulls = stats.stats(name).get("nulls")
        if nulls is not None and (nulls.to_numpy(zero_copy_only=False) > 0).any():
            return name
    return None


def _init_tracked_worker(numpy_arrays: bool, user_init: Callable[[int], Any] | None, worker_id: int) -> None:
    """``worker_init_fn`` of :meth:`TorchDataset.loader`: marks the worker's copy as tracked."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, TorchDataset):
        info.dataset._tracked_worker = True
        info.dataset._numpy_in_workers = numpy_arrays
    if user_init is not None:
        user_init(worker_id)


class TorchDataset(IterableDataset):
    """Batches of one scan at its pinned version; see the module docstring.

    Iterate it through :meth:`loader` (a ``DataLoader``), or directly in one process. A
    plain ``torch.utils.data.DataLoader(dataset, num_workers=N)`` reads correctly but its
    progress is invisible to the dataset: :meth:`state_dict` then raises.
    """

    def __init__(self, scan: Any, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int | None = None, world_size: int | None = None,
                 prefetch: int = 2, fill_nulls: Mapping[str, Any] | None = None, shuffle_buffer: int = 1) -> None:
        super().__init__()
        name = scan.snapshot.location.name
        self.table = name
        self.batch_size = check_batch_size(batch_size, table=name)
        self.shuffle = check_flag("shuffle", shuffle, table=name)
        self.drop_last = check_flag("drop_last", drop_last, table=name)
        self.prefetch = check_int("prefetch", prefetch, table=name, minimum=0)
        self.shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, table=name, minimum=1)
        self.rank, self.world_size = (None, None) if rank is None and world_size is None else \
            shard_of(rank, world_size, table=name)
        self.seed = shard_spec(name, 0, 1, self.shuffle, seed, 0).seed  # validates seed
        BatchOptions(self.batch_size, self.drop_last, self.prefetch, shuffle_buffer=self.shuffle_buffer).check(
            name, ShardSpec(shuffle=self.shuffle))
        self.version = scan.snapshot.version
        self.epoch = 0
        self._spec = ScanSpec.of(scan)
        self._scan: Any = scan
        self._plan: UnitPlan | None = scan.unit_plan  # footers read once, here; forked workers inherit it
        schema = self._plan.output_schema
        if not schema.names:
            raise ReadOptionError(f"table '{name}': to_torch needs at least one column; scan(columns=[]) selects "
                                  "none (use scan().count() to count rows)")
        self._fills = _fill_values(fill_nulls, schema, name)
        with_nulls = _known_nulls(scan, self._plan, self._fills)
        if with_nulls is not None:
            raise _holds_nulls_error(name, with_nulls, schema.field(with_nulls).type)
        self._identity = {
            "table_id": scan.snapshot.table_id, "version": self.version, "columns": list(schema.names),
            "filter": to_sql(scan.predicate) if scan.predicate is not None else None, "shuffle": self.shuffle,
            "seed": self.seed, "drop_last": self.drop_last, "shuffle_buffer": self.shuffle_buffer}
        if self.world_size is not None or _distributed() is not None:
            world = self.world_size if self.world_size is not None else _distributed()[1]  # type: ignore[index]
            check_shards(self._plan, world, made_of=f"world size {world}")
        self._skip: dict[int, int] = {}       # shard -> rows to skip in this epoch (from a state)
        self._skip_shards: int | None = None  # number of shards the loaded state was taken with
        self._seen: dict[int, int] = {}       # shard -> rows consumed in this epoch
        self._seen_shards: int | None = None
        self._topology: tuple[int, int] | None = None  # (world size, workers) of the recorded positions
        self._completed = False               # the last pass of this epoch ran to its end
        # Set in a worker's copy by loader()'s worker_init_fn; a worker without it belongs to a
        # DataLoader that is not ours and flags that here, in memory shared with this process.
        self._tracked_worker = False
        self._numpy_in_workers = False        # workers of loader() send arrays, the loader wraps them
        self._untracked = torch.zeros(1, dtype=torch.uint8).share_memory_()

    # --- pickling (spawned workers reopen the pinned snapshot) --------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_scan"] = None
        state["_plan"] = None
        return state

    def _unit_plan(self) -> UnitPlan:
        if self._plan is None:
            if self._scan is None:
                self._scan = self._spec.open()
            self._plan = self._scan.unit_plan
        return self._plan

    # --- epochs and state ---------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Order of the next passes (with ``shuffle``); a new epoch forgets progress."""
        epoch = shard_spec(self.table, 0, 1, self.shuffle, self.seed, epoch).epoch  # validates
        if epoch != self.epoch:
            self._forget()
        self._completed = False
        self._untracked[0] = 0
        self.epoch = epoch

    def _forget(self) -> None:
        self._skip, self._skip_shards, self._seen, self._seen_shards = {}, None, {}, None
        self._topology = None
        self._completed = False

    def state_dict(self) -> dict[str, Any]:
        """Where this epoch stands: rows consumed per shard, whether the epoch was completed,
        and what identifies the read (table id, version, columns, filter, order options).

        Raises ``ReadOptionError`` when worker processes of a ``DataLoader`` other than
        :meth:`loader` iterated the dataset: their progress is unknown here.
        """
        if int(self._untracked[0]):
            raise ReadOptionError(
                f"table '{self.table}': this dataset was iterated by worker processes of a DataLoader that is not "
                "dataset.loader(...), so which batches were consumed never reached it and state_dict() cannot be "
                "exact; create the loader with dataset.loader(num_workers=..., ...) (it takes DataLoader's "
                "arguments)")
        shards = self._seen_shards or self._skip_shards
        rows = {**self._skip, **self._seen} if shards is not None and not self._completed else {}
        world, workers = self._topology or (None, None)
        return {"table": self.table, **self._identity, "batch_size": self.batch_size, "epoch": self.epoch,
                "completed": self._completed, "num_shards": None if self._completed else shards,
                "world_size": world, "num_workers": workers, "rows": {int(k): int(v) for k, v in rows.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``: the next pass of its epoch skips the rows it consumed; a
        state of a completed epoch continues with the next epoch.

        Refuses (``ReadOptionError``) anything but a state of this same read: another table,
        version, columns, filter or order options, or row counts a shard cannot have.
        """
        where = f"table '{self.table}': "
        if not isinstance(state, Mapping):
            raise ReadOptionError(f"{where}load_state_dict() expects the dict state_dict() returned, "
                                  f"got {type(state).__name__}")
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ReadOptionError(f"{where}the saved read state lacks {', '.join(missing)}; pass the dict "
                                  "dataset.state_dict() returned")
        state_columns = list(state["columns"]) if isinstance(state["columns"], (list, tuple)) else state["columns"]
        differ = [key for key in IDENTITY if (state_columns if key == "columns" else state[key]) != self._identity[key]]
        if differ:
            details = "; ".join(f"{key}={state[key]!r} there, {self._identity[key]!r} here" for key in differ)
            raise ReadOptionError(
                f"{where}the saved read state belongs to another read ({details}); resume with the same table, "
                "version, columns, filter, shuffle, seed, drop_last and shuffle_buffer")
        epoch, rows, shards = state["epoch"], state["rows"], state["num_shards"]
        try:
            epoch = shard_spec(self.table, 0, 1, self.shuffle, self.seed, epoch).epoch
            skip = {check_int("shard", int(k) if isinstance(k, str) and k.isdigit() else k, table=self.table,
                              minimum=0): check_int("rows", v, table=self.table, minimum=0)
                    for k, v in dict(rows).items()}
            if shards is not None:
                shards = check_int("num_shards", shards, table=self.table, minimum=1)
        except (TypeError, ValueError) as exc:
            raise ReadOptionError(f"{where}the saved read state is damaged ({exc})") from None
        if state.get("completed"):
            self._forget()
            self.epoch = epoch + 1
            self._untracked[0] = 0
            return
        if skip and shards is None:
            raise ReadOptionError(f"{where}the saved read state has rows but no num_shards; it is damaged")
        if skip:
            self._check_rows(epoch, shards, skip)  # type: ignore[arg-type]
        self._forget()
        self.epoch = epoch
        self._skip, self._skip_shards = skip, shards if skip else None
        if skip and state.get("world_size") is not None:
            self._topology = (int(state["world_size"]), int(state["num_workers"] or 0))
        self._untracked[0] = 0

    def _check_rows(self, epoch: int, shards: int, skip: Mapping[int, int]) -> None:
        plan = self._unit_plan()
        sizes = plan.shard_rows(ShardSpec(0, shards, self.shuffle, self.seed, epoch))
        if self.drop_last:
            limit = (min(sizes) // self.batch_size) * self.batch_size if sizes else 0
            sizes = [limit] * len(sizes)
        for shard, rows in skip.items():
            if shard >= shards:
                raise ReadOptionError(f"table '{self.table}': the saved read state names shard {shard} of {shards}; "
                                      "it is damaged")
            if rows > sizes[shard]:
                raise ReadOptionError(
                    f"table '{self.table}': the saved read state says shard {shard} of {shards} consumed {rows} rows "
                    f"in epoch {epoch}, but that shard has only {sizes[shard]}; the state belongs to another read")

    def _record(self, position: tuple[int, ...]) -> None:
        epoch, shard, shards, rows, world, workers = position
        if epoch != self.epoch:
            return
        if self._seen_shards not in (None, shards):
            self._seen = {}
        self._seen_shards = shards
        self._topology = (world, workers)
        self._completed = False
        self._seen[shard] = max(rows, self._seen.get(shard, 0))

    def _pass_finished(self) -> None:
        """A pass ran to its end: the epoch is complete; a state now resumes at the next one,
        and a next pass of this epoch (without ``set_epoch``) starts from its beginning."""
        self._forget()
        self._completed = True

    # --- iteration ------------------------------------------------------------------------

    def _where(self) -> tuple[int, int, int, int, bool]:
        """(global shard, number of shards, world size, workers, whether in a DataLoader worker)."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 0)
        rank, world = self.rank, self.world_size
        if rank is None:
            rank, world = _distributed() or (0, 1)
        assert world is not None
        return rank * max(workers, 1) + worker, world * max(workers, 1), world, workers, info is not None

    def __iter__(self) -> Iterator[Batch]:
        shard, shards, world, workers, in_worker = self._where()
        if in_worker and not self._tracked_worker:
            self._untracked[0] = 1  # a DataLoader that is not ours: state_dict() must refuse
        if self._skip_shards is not None and self._skip_shards != shards:
            saved = f" (world size {self._topology[0]} x {self._topology[1]} workers)" if self._topology else ""
            raise ReadOptionError(
                f"table '{self.table}': the read state was saved with {self._skip_shards} shards{saved} but this run "
                f"has {shards} (world size {world} x {workers} workers); resume with the same world size and "
                "num_workers")
        plan = self._unit_plan()
        # One process: idle workers are harmless. Several ranks: a rank without rows would stall the job.
        if world > 1:
            check_shards(plan, shards, made_of=f"world size {world} x {max(workers, 1)} dataloader workers")
        spec = ShardSpec(shard, shards, self.shuffle, self.seed, self.epoch)
        skip = self._skip.get(shard, 0)
        options = BatchOptions(self.batch_size, self.drop_last, self.prefetch, shuffle_buffer=self.shuffle_buffer)
        position = skip
        for batch in iter_shard(plan, spec, options, skip_rows=skip, empty_shards_ok=world == 1):
            position += batch.num_rows
            out = to_tensors(batch, as_numpy=in_worker and self._numpy_in_workers, fill_nulls=self._fills,
                             table=self.table)
            out.lakehouse_position = (self.epoch, shard, shards, position, world, workers)
            if not in_worker:
                self._record(out.lakehouse_position)
            yield out
        if not in_worker:
            self._pass_finished()

    def loader(self, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over this dataset (``batch_size=None``) that records consumed
        batches, so :meth:`state_dict` is exact with worker processes too.

        Takes ``DataLoader``'s keyword arguments; ``batch_size`` (set it in ``to_torch``) and
        ``persistent_workers=True`` are refused.
        """
        kwargs.setdefault("batch_size", None)
        if kwargs["batch_size"] is not None:
            raise ReadOptionError(f"table '{self.table}': the dataset batches itself; set the batch size in "
                                  "to_torch() and leave the data loader's batch_size unset")
        if kwargs.get("persistent_workers"):
            raise ReadOptionError(
                f"table '{self.table}': persistent_workers=True is not supported: a worker copies the dataset "
                "when it starts, so persistent workers would keep the first epoch's order and ignore later "
                "set_epoch()/load_state_dict() calls; leave persistent_workers unset (workers restart each epoch)")
        workers = check_int("num_workers", kwargs.get("num_workers", 0), table=self.table, minimum=0)
        rank, world = (self.rank, self.world_size) if self.rank is not None else (_distributed() or (0, 1))
        if world > 1:  # type: ignore[operator]
            check_shards(self._unit_plan(), world * max(workers, 1),  # type: ignore[operator]
                         made_of=f"world size {world} x {max(workers, 1)} dataloader workers")
        # Batches are final: skip default_convert, which walks string lists element by element.
        kwargs.setdefault("collate_fn", keep)
        kwargs["worker_init_fn"] = functools.partial(_init_tracked_worker, kwargs["collate_fn"] is keep,
                                                     kwargs.get("worker_init_fn"))
        return _TrackingLoader(self, **kwargs)


def _distributed() -> tuple[int, int] | None:
    """(rank, world size) of an initialized ``torch.distributed`` group, else ``None``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return None


def keep(batch: Batch) -> Batch:
    """The collate function for this dataset: batches are already complete dicts."""
    return batch


class _TrackingLoader(DataLoader):
    """A DataLoader that tells its :class:`TorchDataset` which batches the consumer received."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
        dataset._untracked[0] = 0  # this pass is tracked, whatever iterated the dataset before
        for batch in super().__iter__():
            position = getattr(batch, POSITION, None)
            if position is not None:
                dataset._record(position)
            if isinstance(batch, dict):
                for name, value in batch.items():
                    if isinstance(value, np.ndarray):
                        batch[name] = torch.from_numpy(value)
            yield batch
        dataset._pass_finished()
