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
    scan = many_table.snapshot().scan(columns=["id"], filter="x < 1000 or id >= 300000")  # 2000 + 6300 rows
    counts = [sum(b.num_rows for b in scan.to_batches(100, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert counts[0] == counts[1] > 0 and counts[0] % 100 == 0
    narrow = many_table.snapshot().scan(columns=["id"], filter="x < 1000")  # ids < 2000, all in one row group
    assert sorted(ids_of(narrow.to_batches(100, shuffle=True, rank=0, world_size=1))) == list(range(2000))
    # Every matching row sits in shard 0's unit: drop_last would cut both shards to zero rows.
    with pytest.raises(ReadOptionError, match="every shard would yield no batch: the smallest of 2 shards has 0 rows"):
        list(narrow.to_batches(100, rank=0, world_size=2, drop_last=True))


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


# --- shards vs units, drop_last -----------------------------------------------------------------


def test_more_shards_than_units_is_refused_but_an_empty_table_is_not(small_table, empty_table):
    scan = small_table.snapshot().scan()  # 12 row groups
    with pytest.raises(ReadOptionError, match=r"has 12 read units \(row groups of its 12 selected files\) but "
                                              r"16 shards \(world size 16\), so 4 shards would get no rows; "
                                              r"use at most 12"):
        scan.to_batches(10, shuffle=True, rank=0, world_size=16)
    with pytest.raises(ReadOptionError, match="but 13 shards"):
        list(iter_shard(scan.unit_plan, ShardSpec(0, 13), BatchOptions(10)))
    assert sum(1 for _ in scan.to_batches(10, rank=11, world_size=12)) == 5
    assert list(empty_table.snapshot().scan().to_batches(10, rank=3, world_size=16, drop_last=True)) == []


def test_drop_last_warns_when_it_drops_more_than_half(small_table):
    from lakehouse.errors import LakehouseWarning

    scan = small_table.snapshot().scan()  # 12 units of 50 rows over 7 shards: 100 or 50 rows each
    with pytest.warns(LakehouseWarning, match="drop_last=True drops 320 of 600 rows each epoch.*7 shards"):
        rows = sum(b.num_rows for b in scan.to_batches(40, rank=0, world_size=7, drop_last=True))
    assert rows == 40
    # Only shard 0 warns (once per epoch for the whole job): this one does not.
    assert sum(b.num_rows for b in scan.to_batches(40, rank=3, world_size=7, drop_last=True)) == 40
    with pytest.raises(ReadOptionError, match="every shard would yield no batch.*50 rows, fewer than batch_size 64"):
        list(scan.to_batches(64, rank=0, world_size=7, drop_last=True))


# --- option checking, plain and ML paths alike ------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"batch_size": -1}, "batch_size must be a positive integer, got -1"),
    ({"batch_size": "8"}, "batch_size must be a positive integer, got '8'"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer, got 2.5"),
    ({"batch_size": 8, "prefetch": "x"}, "prefetch must be an integer, got 'x'"),
    ({"batch_size": 8, "prefetch": -1}, "prefetch must be at least 0"),
    ({"batch_size": 8, "shuffle": True, "prefetch": -1}, "prefetch must be at least 0"),
    ({"batch_size": 8, "shuffle": "no"}, "shuffle must be a bool (true or false), got 'no'"),
    ({"batch_size": 8, "drop_last": 1}, "drop_last must be a bool"),
    ({"batch_size": 8, "shuffle_buffer": 4}, "shuffle_buffer mixes rows only when shuffle=true"),
    ({"batch_size": 8, "shuffle": True, "shuffle_buffer": 0}, "shuffle_buffer must be at least 1"),
])
def test_options_are_checked_on_every_path(small_table, kwargs, words):
    with pytest.raises(ReadOptionError) as info:
        small_table.snapshot().scan().to_batches(**kwargs)
    assert words in str(info.value).lower()


def test_numpy_values_are_accepted_and_parallelism_is_checked(small_table):
    np = pytest.importorskip("numpy")
    scan = small_table.snapshot().scan(columns=["id"])
    assert next(scan.to_batches(np.int64(7))).num_rows == 7
    got = ids_of(scan.to_batches(np.int64(50), shuffle=np.bool_(True), seed=np.int64(2), epoch=np.int32(1),
                                 rank=np.int64(1), world_size=np.int64(2), drop_last=np.bool_(False)))
    assert sorted(got) == sorted(ids_of(scan.to_batches(50, shuffle=True, seed=2, epoch=1, rank=1, world_size=2)))
    with pytest.raises(ReadOptionError, match="parallelism must be an integer, got 'x'"):
        scan.to_ray(parallelism="x")
    with pytest.raises(ReadOptionError, match="parallelism must be a positive integer or -1"):
        scan.to_ray(parallelism=0)


def test_no_columns_keeps_the_row_count_everywhere(small_table, partitioned_table):
    scan = small_table.snapshot().scan(columns=[])
    assert scan.to_arrow().num_rows == 600
    assert sum(b.num_rows for b in scan.to_batches(64)) == 600
    assert sum(b.num_rows for b in scan.to_batches(64, shuffle=True, shuffle_buffer=3)) == 600
    sizes = [b.num_rows for b in scan.to_batches(64, shuffle=True, rank=1, world_size=2)]
    assert sizes == [64, 64, 64, 64, 44]
    filtered = partitioned_table.snapshot().scan(columns=[], filter="region = 'eu' and id >= 100")
    expected = filtered.to_arrow().num_rows
    assert expected > 0 and sum(b.num_rows for b in filtered.to_batches(10, shuffle=True)) == expected


# --- the shuffle buffer -------------------------------------------------------------------------


def test_shuffle_buffer_mixes_row_groups_and_keeps_shards_and_resume_exact(small_table):
    scan = small_table.snapshot().scan(columns=["id"])  # written sorted by id: 12 row groups of 50

    def groups_in_first_batch(**kwargs):
        first = next(scan.to_batches(100, shuffle=True, seed=5, **kwargs))
        return len({i // 50 for i in first.column("id").to_pylist()})

    assert groups_in_first_batch() == 2  # one row group at a time: a batch holds two of them
    assert groups_in_first_batch(shuffle_buffer=4) == 4
    shards = [ids_of(scan.to_batches(30, shuffle=True, seed=5, rank=r, world_size=3, shuffle_buffer=3))
              for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(600))
    assert shards[0] == ids_of(scan.to_batches(30, shuffle=True, seed=5, rank=0, world_size=3, shuffle_buffer=3))
    assert shards[0] != ids_of(scan.to_batches(30, shuffle=True, seed=5, epoch=1, rank=0, world_size=3,
                                               shuffle_buffer=3))

    plan = scan.unit_plan
    spec = ShardSpec(1, 2, True, 5, 2)
    options = BatchOptions(32, shuffle_buffer=4)
    whole = ids_of(iter_shard(plan, spec, options))
    assert sorted(whole) == sorted(ids_of(iter_shard(plan, spec, BatchOptions(32))))
    for skip in (0, 7, 32, 199, 200, 201, 250, 299):
        assert ids_of(iter_shard(plan, spec, options, skip_rows=skip)) == whole[skip:]
