"""PyTorch: a scan as an ``IterableDataset`` that shards itself and resumes mid-epoch.

Use it with ``batch_size=None`` (the dataset batches itself)::

    dataset = table.snapshot().scan(columns=[...]).to_torch(256, shuffle=True, seed=7)
    loader = dataset.loader(num_workers=2)        # a torch DataLoader
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for batch in loader:                      # dict: column -> tensor (strings: lists)
            ...
            state = dataset.state_dict()          # save with the model checkpoint

Sharding: each iterator finds its DataLoader worker (``get_worker_info()``) and its rank
and world size (``torch.distributed`` when initialized, else the ``rank``/``world_size``
given), and reads global shard ``rank * num_workers + worker_id`` of
``world_size * num_workers`` (see :mod:`lakehouse.read.plan`). Shards are disjoint and
together hold every matching row once per epoch.

Resume: every batch carries its position (epoch, shard, rows of the shard up to and
including it) as an attribute ``lakehouse_position`` of the dict, invisible to training
code. The dataset learns what was *consumed* (not merely prefetched by a worker) when the
batch reaches the consumer: in-process when iterated directly or with ``num_workers=0``,
else through :meth:`TorchDataset.loader`, a ``DataLoader`` that records each batch it hands
out. ``state_dict()`` is (epoch, consumed rows per shard); after ``load_state_dict()`` the
next pass of that epoch skips exactly those rows, so the epoch finishes without repeats
or gaps. Resume with the same world size and number of workers.

Workers copy the dataset when an iterator starts, so call ``set_epoch``/``load_state_dict``
before iterating and do not use ``persistent_workers=True`` with them.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lakehouse.read.batches import BatchOptions, iter_shard
from lakehouse.read.plan import ReadOptionError, ScanSpec, ShardSpec, UnitPlan, check_batch_size, shard_of, shard_spec

POSITION = "lakehouse_position"


class Batch(dict):
    """A dict of column -> tensor (or list); ``lakehouse_position`` says where it came from."""

    lakehouse_position: tuple[int, int, int, int]  # (epoch, shard, num_shards, rows through it)


def to_tensors(batch: pa.RecordBatch, *, as_numpy: bool = False) -> Batch:
    """Numeric, boolean and temporal columns as tensors (temporal as int64 ticks, decimals as
    float64, integers with nulls as float64 with NaN); strings and nested values as lists.

    ``as_numpy`` keeps NumPy arrays instead: a DataLoader worker sends those through its pipe
    in one piece, while every tensor would cost a shared-memory segment and a file
    descriptor handed over separately (about a millisecond each); the consumer side of
    :meth:`TorchDataset.loader` wraps them as tensors without a copy.
    """
    out = Batch()
    for name, column in zip(batch.schema.names, batch.columns):
        dtype = column.type
        if pa.types.is_temporal(dtype):
            column = column.cast(pa.int64()) if not pa.types.is_date32(dtype) else column.cast(pa.int32())
            dtype = column.type
        elif pa.types.is_decimal(dtype):
            column = column.cast(pa.float64())
            dtype = column.type
        if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or (
                pa.types.is_boolean(dtype) and not column.null_count):
            array = column.to_numpy(zero_copy_only=False)
            if not array.flags.writeable:
                array = np.array(array)
            out[name] = array if as_numpy else torch.from_numpy(array)
        else:
            out[name] = column.to_pylist()
    return out


class TorchDataset(IterableDataset):
    """Batches of one scan at its pinned version; see the module docstring."""

    def __init__(self, scan: Any, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, rank: int | None = None, world_size: int | None = None,
                 prefetch: int = 2) -> None:
        super().__init__()
        name = scan.snapshot.location.name
        self.table = name
        self.batch_size = check_batch_size(batch_size, table=name)
        self.rank, self.world_size = (None, None) if rank is None and world_size is None else \
            shard_of(rank, world_size, table=name)
        if self.rank is not None:
            shard_spec(name, self.rank, self.world_size)  # validates rank < world_size
        shard_spec(name, 0, 1, bool(shuffle), seed, 0)  # validates seed
        self.shuffle, self.seed, self.drop_last, self.prefetch = bool(shuffle), seed, bool(drop_last), prefetch
        self.version = scan.snapshot.version
        self.epoch = 0
        self._spec = ScanSpec.of(scan)
        self._scan: Any = scan
        self._plan: UnitPlan | None = scan.unit_plan  # footers read once, here; forked workers inherit it
        self._skip: dict[int, int] = {}       # shard -> rows to skip in this epoch (from a state)
        self._skip_shards: int | None = None  # number of shards the loaded state was taken with
        self._seen: dict[int, int] = {}       # shard -> rows consumed in this epoch
        self._seen_shards: int | None = None
        self._numpy_in_workers = False        # set by loader(): workers send arrays, the loader wraps

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
        shard_spec(self.table, 0, 1, self.shuffle, self.seed, epoch)  # validates
        if epoch != self.epoch:
            self._skip, self._skip_shards, self._seen, self._seen_shards = {}, None, {}, None
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where this epoch stands: rows consumed per shard (plus what identifies the order)."""
        shards = self._seen_shards or self._skip_shards
        rows = {**self._skip, **self._seen} if shards is not None else {}
        return {"table": self.table, "version": self.version, "seed": self.seed, "shuffle": self.shuffle,
                "batch_size": self.batch_size, "drop_last": self.drop_last, "epoch": self.epoch,
                "num_shards": shards, "rows": {int(k): int(v) for k, v in rows.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next pass of its epoch skips the rows it consumed."""
        for key in ("version", "seed", "shuffle", "drop_last"):
            if state.get(key) != getattr(self, key):
                raise ReadOptionError(
                    f"table '{self.table}': the saved read state has {key}={state.get(key)!r} but this dataset "
                    f"has {key}={getattr(self, key)!r}; resume with the same scan options and table version")
        self.epoch = int(state["epoch"])
        self._skip = {int(k): int(v) for k, v in state.get("rows", {}).items()}
        self._skip_shards = state.get("num_shards")
        self._seen, self._seen_shards = {}, None

    def _record(self, position: tuple[int, int, int, int]) -> None:
        epoch, shard, shards, rows = position
        if epoch != self.epoch:
            return
        if self._seen_shards not in (None, shards):
            self._seen = {}
        self._seen_shards = shards
        self._seen[shard] = max(rows, self._seen.get(shard, 0))

    def _pass_finished(self) -> None:
        """A pass ran to its end: the next pass of this epoch starts from the beginning."""
        self._skip, self._skip_shards, self._seen, self._seen_shards = {}, None, {}, None

    # --- iteration ------------------------------------------------------------------------

    def _topology(self) -> tuple[int, int, bool]:
        """(global shard, number of shards, whether this is a DataLoader worker)."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.rank, self.world_size
        if rank is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
        return rank * workers + worker, world * workers, info is not None

    def __iter__(self) -> Iterator[Batch]:
        shard, shards, in_worker = self._topology()
        if self._skip_shards is not None and self._skip_shards != shards:
            raise ReadOptionError(
                f"table '{self.table}': the read state was saved with {self._skip_shards} shards (world size x "
                f"workers) but this run has {shards}; resume with the same world size and num_workers")
        spec = ShardSpec(shard, shards, self.shuffle, self.seed, self.epoch)
        skip = self._skip.get(shard, 0)
        options = BatchOptions(self.batch_size, self.drop_last, self.prefetch)
        position = skip
        for batch in iter_shard(self._unit_plan(), spec, options, skip_rows=skip):
            position += batch.num_rows
            out = to_tensors(batch, as_numpy=in_worker and self._numpy_in_workers)
            out.lakehouse_position = (self.epoch, shard, shards, position)
            if not in_worker:
                self._record(out.lakehouse_position)
            yield out
        if not in_worker:
            self._pass_finished()

    def loader(self, **kwargs: Any) -> DataLoader:
        """A ``DataLoader`` over this dataset (``batch_size=None``) that records consumed
        batches, so :meth:`state_dict` is exact with worker processes too."""
        kwargs.setdefault("batch_size", None)
        if kwargs["batch_size"] is not None:
            raise ReadOptionError(f"table '{self.table}': the dataset batches itself; set the batch size in "
                                  "to_torch() and leave the data loader's batch_size unset")
        # Batches are final: skip default_convert, which walks string lists element by element.
        kwargs.setdefault("collate_fn", keep)
        self._numpy_in_workers = kwargs["collate_fn"] is keep
        return _TrackingLoader(self, **kwargs)


def keep(batch: Batch) -> Batch:
    """The collate function for this dataset: batches are already complete dicts."""
    return batch


class _TrackingLoader(DataLoader):
    """A DataLoader that tells its :class:`TorchDataset` which batches the consumer received."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        dataset: TorchDataset = self.dataset  # type: ignore[assignment]
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
