"""Scan.to_batches as the ML reader: units, order, shards, drop_last, filters, read-ahead."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakehouse.errors import LakehouseError
from lakehouse.read.batches import BatchOptions, iter_shard
from lakehouse.read.plan import ReadOptionError, ShardSpec

from tests.read.conftest import ids_of


def test_units_are_row_groups(many_table, many_total):
    snapshot = many_table.snapshot()
    plan = snapshot.scan().unit_plan
    assert len(plan.units) >= snapshot.num_files + 2  # the big file holds 3 row groups
    assert sum(u.num_rows for u in plan.units) == many_total
    assert [u.index for u in plan.units] == list(range(len(plan.units)))


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_disjoint_and_complete(small_table, world_size):
    scan = small_table.snapshot().scan()
    shards = [ids_of(scan.to_batches(64, shuffle=True, seed=3, rank=r, world_size=world_size))
              for r in range(world_size)]
    every = [i for shard in shards for i in shard]
    assert sorted(every) == list(range(600))
    assert len(every) == len(set(every))


def test_same_order_for_same_seed_epoch_new_order_for_new_epoch(many_table, many_total):
    scan = many_table.snapshot().scan(columns=["id"])
    first = ids_of(scan.to_batches(4096, shuffle=True, seed=11, epoch=0, rank=0, world_size=1))
    again = ids_of(many_table.snapshot().scan(columns=["id"]).to_batches(4096, shuffle=True, seed=11, epoch=0,
                                                                          rank=0, world_size=1))
    other = ids_of(scan.to_batches(4096, shuffle=True, seed=11, epoch=1))
    assert first == again
    assert first != other
    assert sorted(first) == sorted(other) == list(range(many_total))
    assert first != sorted(first)  # rows inside units are shuffled too
    assert ids_of(scan.to_batches(4096, drop_last=False, rank=0, world_size=1)) == list(range(many_total))


def test_exact_batch_sizes_across_units(small_table):
    sizes = [b.num_rows for b in small_table.snapshot().scan().to_batches(77, shuffle=True)]
    assert sizes[:-1] == [77] * (len(sizes) - 1) and sizes[-1] == 600 % 77


def test_drop_last_gives_every_shard_the_same_rows(small_table):
    scan = small_table.snapshot().scan()
    counts = [sum(b.num_rows for b in scan.to_batches(40, shuffle=True, rank=r, world_size=5, drop_last=True))
              for r in range(5)]
    assert len(set(counts)) == 1 and counts[0] % 40 == 0 and counts[0] > 0
    batches = list(scan.to_batches(40, shuffle=True, rank=0, world_size=5, drop_last=True))
    assert all(b.num_rows == 40 for b in batches)


def test_filter_and_partition_columns(partitioned_table):
    scan = partitioned_table.snapshot().scan(columns=["id", "region"], filter="region = 'eu' and id >= 100")
    expected = scan.to_arrow()
    got = pa.Table.from_batches(list(scan.to_batches(33, shuffle=True, seed=1, rank=0, world_size=1)))
    assert got.schema == expected.schema
    assert got.sort_by("id").equals(expected.sort_by("id"))
    halves = [ids_of(scan.to_batches(10, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(halves[0]) == len(halves[1]) and not set(halves[0]) & set(halves[1])


def test_filter_on_data_column_with_drop_last_counts_filtered_rows(many_table):
    scan = many_table.snapshot().scan(columns=["id"], filter="x < 1000")  # ids < 2000, all in the big file
    counts = [sum(b.num_rows for b in scan.to_batches(100, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert counts[0] == counts[1]
    assert sorted(ids_of(scan.to_batches(100, shuffle=True, rank=0, world_size=1))) == list(range(2000))


def test_empty_table_and_no_match(empty_table, small_table):
    assert list(empty_table.snapshot().scan().to_batches(10, shuffle=True)) == []
    assert list(small_table.snapshot().scan(filter="id < 0").to_batches(10, shuffle=True)) == []


def test_resume_by_skipping_rows(small_table):
    plan = small_table.snapshot().scan().unit_plan
    spec = ShardSpec(1, 2, True, 5, 2)
    options = BatchOptions(32)
    whole = ids_of(iter_shard(plan, spec, options))
    for skip in (0, 32, 50, 64, 288):
        assert ids_of(iter_shard(plan, spec, options, skip_rows=skip)) == whole[skip:]


def test_read_ahead_is_bounded(small_table):
    plan = small_table.snapshot().scan().unit_plan
    calls = []
    original = plan.read

    def counting(unit, **kwargs):
        calls.append(unit.index)
        return original(unit, **kwargs)

    plan.read = counting  # type: ignore[method-assign]
    try:
        stream = iter_shard(plan, ShardSpec(), BatchOptions(10, prefetch=2))
        next(stream)
        import time
        time.sleep(0.2)
        assert len(calls) <= 3  # the unit being consumed plus two ahead, never the whole table
        stream.close()
    finally:
        del plan.read


@pytest.mark.parametrize("kwargs, words", [
    ({"batch_size": 0, "shuffle": True}, "batch_size must be a positive integer"),
    ({"batch_size": 10, "rank": 2, "world_size": 2}, "rank 2 must lie within 0..1"),
    ({"batch_size": 10, "rank": 0}, "pass rank= and world_size= together"),
    ({"batch_size": 10, "shuffle": True, "seed": -1}, "must be non-negative"),
])
def test_bad_options(small_table, kwargs, words):
    scan = small_table.snapshot().scan()
    with pytest.raises(ReadOptionError) as info:
        scan.to_batches(**kwargs)
    assert isinstance(info.value, LakehouseError)
    assert words in str(info.value) and str(info.value) == str(info.value).lower()


def test_plain_to_batches_unchanged(small_table):
    scan = small_table.snapshot().scan()
    assert ids_of(scan.to_batches(100)) == list(range(600))
