"""Scan.to_torch: self-sharding IterableDataset, epochs, and resuming mid-epoch."""

from __future__ import annotations

import json
import pickle
import sys

import pytest

torch = pytest.importorskip("torch")

from lakehouse.errors import MissingDependencyError  # noqa: E402
from lakehouse.read.plan import ReadOptionError  # noqa: E402

from tests.read.conftest import ids_of  # noqa: E402


@pytest.mark.parametrize("workers", [0, 2])
def test_shards_disjoint_and_complete_over_ranks_and_workers(small_table, workers):
    scan = small_table.snapshot().scan()
    for world_size in (1, 2, 3, 4):
        seen: list[int] = []
        for rank in range(world_size):
            dataset = scan.to_torch(16, shuffle=True, seed=9, rank=rank, world_size=world_size)
            seen += ids_of(dataset.loader(num_workers=workers))
        assert sorted(seen) == list(range(600)), (world_size, workers)


def test_dataloader_two_workers_every_row_once_per_epoch(small_table):
    dataset = small_table.snapshot().scan(columns=["id", "name"]).to_torch(25, shuffle=True, seed=1)
    loader = dataset.loader(num_workers=2)
    orders = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        batches = list(loader)
        ids = ids_of(batches)
        assert sorted(ids) == list(range(600))
        orders.append(ids)
    assert orders[0] != orders[1]
    dataset.set_epoch(1)
    assert ids_of(loader) == orders[1]  # same (version, seed, epoch): same order
    batch = batches[0]
    assert batch["id"].dtype == torch.int64 and isinstance(batch["name"], list)
    assert batch["name"][0] == f"n{int(batch['id'][0])}"


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_without_repeats_or_gaps(many_table, many_total, workers):
    scan = many_table.snapshot().scan(columns=["id"])
    dataset = scan.to_torch(5000, shuffle=True, seed=4)
    dataset.set_epoch(3)
    before: list[int] = []
    for step, batch in enumerate(dataset.loader(num_workers=workers)):
        before += batch["id"].tolist()
        if step == 6:
            state = json.loads(json.dumps(dataset.state_dict()))  # as a checkpoint would store it
            break
    assert state["epoch"] == 3 and sum(state["rows"].values()) == len(before)

    resumed = many_table.snapshot(version=scan.snapshot.version).scan(columns=["id"]).to_torch(5000, shuffle=True,
                                                                                               seed=4)
    resumed.load_state_dict(state)
    after = ids_of(resumed.loader(num_workers=workers))
    assert not set(before) & set(after)
    assert sorted(before + after) == list(range(many_total))
    assert resumed.state_dict()["rows"] == {}  # the pass finished: the next one starts afresh
    assert len(ids_of(resumed.loader(num_workers=workers))) == many_total


def test_resume_with_other_worker_count_is_refused(small_table):
    dataset = small_table.snapshot().scan().to_torch(50)
    loader = dataset.loader(num_workers=2)
    next(iter(loader))
    state = dataset.state_dict()
    other = small_table.snapshot().scan().to_torch(50)
    other.load_state_dict(state)
    with pytest.raises(ReadOptionError, match="resume with the same world size and num_workers"):
        list(other)
    with pytest.raises(ReadOptionError, match="seed"):
        small_table.snapshot().scan().to_torch(50, seed=2).load_state_dict(state)


def test_distributed_rank_and_world_size_come_from_torch_distributed(small_table, monkeypatch):
    scan = small_table.snapshot().scan()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 3)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None, r=rank: r)
        shards.append(ids_of(scan.to_torch(40, shuffle=True, drop_last=True)))
    assert len({len(s) for s in shards}) == 1 and 0 < len(shards[0]) < 600
    assert len(set().union(*map(set, shards))) == 3 * len(shards[0])


def test_pickled_dataset_reopens_the_pinned_version(small_table):
    dataset = small_table.snapshot().scan(filter="id >= 100").to_torch(64, shuffle=True)
    clone = pickle.loads(pickle.dumps(dataset))  # what a spawned DataLoader worker gets
    assert ids_of(clone) == ids_of(dataset)


def test_filter_partitions_and_empty(partitioned_table, empty_table):
    scan = partitioned_table.snapshot().scan(filter="region = 'us'")
    dataset = scan.to_torch(30, shuffle=True)
    batches = list(dataset.loader(num_workers=2))
    assert sorted(ids_of(batches)) == sorted(scan.to_arrow().column("id").to_pylist())
    assert set(batches[0]["region"]) == {"us"} and batches[0]["score"].dtype == torch.float64
    assert list(empty_table.snapshot().scan().to_torch(10).loader(num_workers=2)) == []


def test_options_and_missing_torch(small_table, monkeypatch):
    scan = small_table.snapshot().scan()
    with pytest.raises(ReadOptionError, match="table 'small': rank 3 must lie within 0..2"):
        scan.to_torch(10, rank=3, world_size=3)
    with pytest.raises(ReadOptionError, match="leave the data loader's batch_size unset"):
        scan.to_torch(10).loader(batch_size=4)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"lakehouse\[torch\]"):
        scan.to_torch(10)
