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


# --- tensor types follow the schema -------------------------------------------------------


def _typed_table(path):
    import datetime as dt
    import decimal

    import pyarrow as pa

    import lakehouse

    schema = pa.schema([("id", pa.int64()), ("flag", pa.bool_()), ("ts", pa.timestamp("us", tz="UTC")),
                        ("day", pa.date32()), ("amount", pa.decimal128(10, 2)), ("x", pa.float32()),
                        ("name", pa.string())])
    table = lakehouse.create_table(str(path), schema)
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    table.append(pa.table({
        "id": [1, 2, 2**53 + 1, None], "flag": [True, False, True, None], "ts": [when, when, when, None],
        "day": [dt.date(2026, 1, 1)] * 3 + [None], "amount": [decimal.Decimal("1.25")] * 3 + [None],
        "x": [0.5, None, 1.5, 2.5], "name": ["a", None, "c", "d"]}, schema=schema))
    return table


def test_tensor_types_depend_on_the_schema_only(tmp_path):
    from lakehouse.errors import NullValueError

    table = _typed_table(tmp_path / "typed")
    fills = {"id": -1, "flag": False, "ts": 0, "day": 0, "amount": 0}
    batches = list(table.snapshot().scan().to_torch(2, fill_nulls=fills))  # the null sits in the 2nd batch only
    assert len(batches) == 2
    for name, dtype in [("id", torch.int64), ("flag", torch.bool), ("ts", torch.int64), ("day", torch.int32),
                        ("amount", torch.float64), ("x", torch.float32)]:
        assert [b[name].dtype for b in batches] == [dtype, dtype], name
        torch.cat([b[name] for b in batches])  # batches of an epoch always concatenate
    assert batches[1]["id"].tolist() == [2**53 + 1, -1]  # exact above 2**53, null filled
    assert batches[1]["ts"].tolist() == [1767225600000000, 0] and batches[1]["day"].tolist() == [20454, 0]
    assert torch.isnan(batches[0]["x"][1]) and batches[0]["name"] == ["a", None]

    # Without fill_nulls: refused up front, the log's nullCount proves the nulls.
    with pytest.raises(NullValueError, match=r"column 'id' \(int64\) holds nulls.*fill_nulls=\{'id'.*id IS NOT NULL"):
        table.snapshot().scan().to_torch(2)
    # With a filter the stats cannot tell: the first batch holding a null raises, naming the column.
    dataset = table.snapshot().scan(columns=["flag"], filter="x > 1").to_torch(2)
    with pytest.raises(NullValueError, match="column 'flag' .*holds nulls"):
        list(dataset)
    ok = table.snapshot().scan(columns=["id", "day"], filter="id IS NOT NULL").to_torch(4)
    assert next(iter(ok))["id"].tolist() == [1, 2, 2**53 + 1]
    with pytest.raises(ReadOptionError, match=r"fill_nulls\['id'\] = 1.5 is not a value of the column's type int64"):
        table.snapshot().scan().to_torch(2, fill_nulls={"id": 1.5})
    with pytest.raises(ReadOptionError, match="fill_nulls names column 'nope', which the scan does not read"):
        table.snapshot().scan().to_torch(2, fill_nulls={"nope": 1})


def test_a_column_added_later_is_null_in_old_files_and_caught_up_front(tmp_path):
    import pyarrow as pa

    import lakehouse
    from lakehouse.alter import add_columns
    from lakehouse.errors import NullValueError

    table = lakehouse.create_table(str(tmp_path / "evolved"), pa.schema([("id", pa.int64())]))
    table.append(pa.table({"id": [1, 2]}))
    add_columns(table.snapshot(), [pa.field("z", pa.int32())])
    table.append(pa.table({"id": [3], "z": pa.array([30], pa.int32())}))
    with pytest.raises(NullValueError, match="column 'z'"):
        table.snapshot().scan().to_torch(2)
    batches = list(table.snapshot().scan().to_torch(8, fill_nulls={"z": 0}))
    assert sorted(batches[0]["z"].tolist()) == [0, 0, 30] and batches[0]["z"].dtype == torch.int32


# --- shards, state identity, epochs ------------------------------------------------------------


def test_more_shards_than_row_groups_is_refused(small_table, empty_table):
    scan = small_table.snapshot().scan()  # 12 row groups
    with pytest.raises(ReadOptionError, match=r"12 read units .* but 13 shards \(world size 13\).*use at most 12"):
        scan.to_torch(10, rank=0, world_size=13)
    with pytest.raises(ReadOptionError, match=r"but 16 shards \(world size 4 x 4 dataloader workers\)"):
        scan.to_torch(10, rank=0, world_size=4).loader(num_workers=4)
    assert list(empty_table.snapshot().scan().to_torch(10, rank=0, world_size=13)) == []  # empty: fine
    # one process: workers beyond the row groups just idle, every row still comes once
    from tests.read.conftest import ids_of

    one_unit = small_table.snapshot().scan(filter="id < 10")
    assert len(one_unit.unit_plan.units) == 1
    assert sorted(ids_of(one_unit.to_torch(4, shuffle=True).loader(num_workers=2))) == list(range(10))


def test_state_of_another_read_is_refused(small_table, tmp_path):
    import pyarrow as pa

    import lakehouse

    scan = small_table.snapshot().scan(columns=["id"], filter="id < 500")
    dataset = scan.to_torch(16, shuffle=True, seed=1)
    stream = iter(dataset)
    for _ in range(5):
        next(stream)
    state = json.loads(json.dumps(dataset.state_dict()))
    assert state["rows"] == {"0": 80} and state["filter"] == "id < 500" and state["columns"] == ["id"]

    other_filter = small_table.snapshot().scan(columns=["id"], filter="id >= 500").to_torch(16, shuffle=True, seed=1)
    with pytest.raises(ReadOptionError, match="another read .*filter='id < 500' there, 'id >= 500' here"):
        other_filter.load_state_dict(state)
    with pytest.raises(ReadOptionError, match="columns=.*'name'"):
        small_table.snapshot().scan(columns=["id", "name"], filter="id < 500").to_torch(16, shuffle=True,
                                                                                       seed=1).load_state_dict(state)
    twin = lakehouse.create_table(str(tmp_path / "small"), small_table.snapshot().schema)  # same name and version
    for k in range(12):
        twin.append(pa.table({"id": list(range(k * 50, (k + 1) * 50)), "name": ["n"] * 50}))
    with pytest.raises(ReadOptionError, match="table_id="):
        twin_scan = twin.snapshot().scan(columns=["id"], filter="id < 500")
        twin_scan.to_torch(16, shuffle=True, seed=1).load_state_dict(state)
    beyond = dict(state, rows={"0": 501})
    with pytest.raises(ReadOptionError, match="consumed 501 rows in epoch 0, but that shard has only 500"):
        scan.to_torch(16, shuffle=True, seed=1).load_state_dict(beyond)
    for bad in (None, [1], "state"):
        with pytest.raises(ReadOptionError, match="expects the dict state_dict\\(\\) returned"):
            scan.to_torch(16).load_state_dict(bad)
    resumed = scan.to_torch(16, shuffle=True, seed=1)
    resumed.load_state_dict(state)
    assert len(ids_of(resumed)) == 500 - 80


def test_a_state_saved_after_the_epoch_resumes_at_the_next_epoch(small_table):
    make = lambda: small_table.snapshot().scan(columns=["id"]).to_torch(50, shuffle=True, seed=2)  # noqa: E731
    dataset = make()
    dataset.set_epoch(4)
    assert len(ids_of(dataset.loader(num_workers=0))) == 600
    state = dataset.state_dict()
    assert state["epoch"] == 4 and state["completed"] and state["rows"] == {}
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert resumed.epoch == 5
    fresh = make()
    fresh.set_epoch(5)
    assert ids_of(resumed) == ids_of(fresh)


def test_persistent_workers_are_refused(small_table):
    with pytest.raises(ReadOptionError, match="persistent_workers=True is not supported.*keep the first epoch"):
        small_table.snapshot().scan().to_torch(10).loader(num_workers=2, persistent_workers=True)


def test_state_of_a_plain_dataloader_with_workers_is_refused(small_table):
    from torch.utils.data import DataLoader

    dataset = small_table.snapshot().scan(columns=["id"]).to_torch(16, shuffle=True, seed=1)
    for step, _ in enumerate(DataLoader(dataset, batch_size=None, num_workers=2)):
        if step == 3:
            break
    with pytest.raises(ReadOptionError, match=r"not dataset.loader\(...\).*use|not dataset.loader"):
        dataset.state_dict()
    loader = dataset.loader(num_workers=2)  # a tracked pass makes the state exact again
    for step, _ in enumerate(loader):
        if step == 3:
            break
    assert sum(dataset.state_dict()["rows"].values()) == 4 * 16
    plain_in_process = small_table.snapshot().scan(columns=["id"]).to_torch(16)
    next(iter(DataLoader(plain_in_process, batch_size=None, num_workers=0)))
    assert plain_in_process.state_dict()["rows"] == {0: 16}  # no workers: tracked in-process


def test_numpy_integers_and_columns(small_table):
    np = pytest.importorskip("numpy")
    dataset = small_table.snapshot().scan(columns=["id"]).to_torch(np.int64(50), shuffle=np.bool_(True),
                                                                   seed=np.int64(3), rank=np.int64(0),
                                                                   world_size=np.int64(2))
    dataset.set_epoch(np.int64(1))
    assert len(ids_of(dataset)) == 300
    json.dumps(dataset.state_dict())  # plain ints in the state
    with pytest.raises(ReadOptionError, match="to_torch needs at least one column"):
        small_table.snapshot().scan(columns=[]).to_torch(10)
    with pytest.raises(ReadOptionError, match="shuffle must be a bool"):
        small_table.snapshot().scan().to_torch(10, shuffle="no")
