"""Suite ``commits``: what the transaction log costs, lakehouse beside deltalake.

Three measures, each on local scratch tables built in the same run for both libraries:

1. latency of one small append on a table with a few versions (median and p95);
2. opening the latest snapshot of a table with ``--commits`` single-row commits
   (``lakehouse.open_table(p).snapshot()`` versus ``deltalake.DeltaTable(p)``; both replay
   the log into a file list);
3. time travel on that table to ``--travel-version``, and ``--replay-offset`` versions
   further, where the interval-100 tables replay about that many JSON commits after
   their checkpoint (at version 500 and 1,000 every table has a checkpoint at or one
   commit before the target, so those opens read almost no JSON).

Checkpoint intervals change all three, and the libraries' defaults differ (lakehouse 10,
deltalake 100), so every table exists in four flavours, each library at interval 10 and
at 100, and rows compare them in three pairings: both at their defaults, both at 10, and
both at 100. Correctness is checked outside the timed sections.

deltalake's ``to_pyarrow_table``/``to_pyarrow_dataset`` are never called: in deltalake
1.6.6 they make the interpreter abort at exit. Rows are read through its ``QueryBuilder``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

import lakehouse
from benchmarks.harness import Check, Row, RunContext, SuiteOutput, time_once

TITLE = "commit latency, snapshot open and time travel, beside deltalake"
DESCRIPTION = (
    "Small-append latency, opening the latest snapshot after many commits, and time travel, "
    "for lakehouse and deltalake on local scratch tables, with each library's checkpoint interval "
    "at 10 and at 100.")
PEER = "deltalake"
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
CHECKPOINT_PROPERTY = "delta.checkpointInterval"
LAKEHOUSE_DEFAULT_INTERVAL = 10
DELTALAKE_DEFAULT_INTERVAL = 100
_CHECKPOINT_FILE = re.compile(r"^(\d{20})\.checkpoint(\.\d{10}\.\d{10})?\.parquet$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--appends", type=int, default=50, help="timed small appends per table (measure 1)")
    parser.add_argument("--append-rows", type=int, default=10, help="rows in each timed append")
    parser.add_argument("--start-versions", type=int, default=3,
                        help="untimed appends before the timed ones, so the table has a few versions")
    parser.add_argument("--commits", type=int, default=1000,
                        help="single-row commits in the tables that are opened (measures 2 and 3)")
    parser.add_argument("--travel-version", type=int, default=None,
                        help="version to time-travel to; None means half of --commits")
    parser.add_argument("--replay-offset", type=int, default=50,
                        help="also time-travel this many versions past --travel-version, where each table must "
                             "replay JSON commits after its checkpoint (0 to skip)")
    parser.add_argument("--repeats", type=int, default=7, help="timed opens per table, after one warm-up open")


# --- the four table flavours --------------------------------------------------------------

@dataclass(frozen=True)
class Flavor:
    library: str  # "lakehouse" or "deltalake"
    interval: int

    @property
    def key(self) -> str:
        return f"{self.library}@{self.interval}"

    @property
    def is_default(self) -> bool:
        default = LAKEHOUSE_DEFAULT_INTERVAL if self.library == "lakehouse" else DELTALAKE_DEFAULT_INTERVAL
        return self.interval == default

    @property
    def properties(self) -> dict[str, str]:
        """Table properties: none at the library's default, so the default really is used."""
        return {} if self.is_default else {CHECKPOINT_PROPERTY: str(self.interval)}


LH10, LH100 = Flavor("lakehouse", 10), Flavor("lakehouse", 100)
DL100, DL10 = Flavor("deltalake", 100), Flavor("deltalake", 10)
FLAVORS = (LH10, DL100, DL10, LH100)
# (setup label, lakehouse flavour, deltalake flavour); ratio = lakehouse / deltalake
PAIRINGS = (
    ("ckpt 10 vs 100 (each default)", LH10, DL100),
    ("ckpt 10 vs 10", LH10, DL10),
    ("ckpt 100 vs 100", LH100, DL100),
)


class _Library:
    """The handful of operations the suite times, for one flavour at one path."""

    def __init__(self, flavor: Flavor, path: Path) -> None:
        self.flavor = flavor
        self.path = str(path)
        self._table: lakehouse.Table | None = None

    def create(self) -> None:
        if self.flavor.library == "lakehouse":
            self._table = lakehouse.create_table(self.path, SCHEMA, properties=self.flavor.properties)
        else:
            from deltalake import DeltaTable

            DeltaTable.create(self.path, SCHEMA, configuration=self.flavor.properties or None)

    def append(self, data: pa.Table) -> None:
        if self._table is not None:
            self._table.append(data)
        else:
            from deltalake import write_deltalake

            write_deltalake(self.path, data, mode="append")

    def open_latest(self) -> Any:
        if self.flavor.library == "lakehouse":
            return lakehouse.open_table(self.path).snapshot()
        from deltalake import DeltaTable

        return DeltaTable(self.path)

    def open_version(self, version: int) -> Any:
        if self.flavor.library == "lakehouse":
            return lakehouse.open_table(self.path).snapshot(version=version)
        from deltalake import DeltaTable

        return DeltaTable(self.path, version=version)

    def contents(self, version: int | None = None) -> tuple[int, int, int]:
        """(version, row count, sum of ids) read through the library itself (untimed)."""
        opened = self.open_latest() if version is None else self.open_version(version)
        if self.flavor.library == "lakehouse":
            ids = opened.to_arrow(columns=["id"]).column("id")
            return opened.version, len(ids), int(pc.sum(ids).as_py() or 0)
        from deltalake import QueryBuilder

        result = pa.table(QueryBuilder().register("t", opened)
                          .execute("select count(*) as n, coalesce(sum(id), 0) as s from t").read_all())
        row = result.to_pylist()[0]
        return opened.version(), int(row["n"]), int(row["s"])

    def checkpoint_versions(self) -> list[int]:
        log = os.path.join(self.path, "_delta_log")
        found = {int(m.group(1)) for name in os.listdir(log) if (m := _CHECKPOINT_FILE.match(name))}
        return sorted(found)


def _rows_batch(first_id: int, count: int) -> pa.Table:
    ids = list(range(first_id, first_id + count))
    return pa.table({"id": ids, "name": [f"row-{i}" for i in ids], "score": [i * 0.5 for i in ids]}, schema=SCHEMA)


def _rotated(items: tuple[Flavor, ...], turn: int) -> list[Flavor]:
    """Take turns going first, so no flavour always runs right after the same neighbour."""
    k = turn % len(items)
    return list(items[k:] + items[:k])


def _interleaved(libs: dict[Flavor, _Library], rounds: int, step: Callable[[_Library, int], Any],
                 samples: dict[Flavor, list[float]], *, warmup: int = 0) -> None:
    for turn in range(warmup + rounds):
        for flavor in _rotated(tuple(libs), turn):
            seconds, _ = time_once(lambda: step(libs[flavor], turn))
            if turn >= warmup:
                samples[flavor].append(seconds)


def _series(prefix: str, samples: dict[Flavor, list[float]]) -> dict[str, list[float]]:
    return {f"{prefix}/{flavor.key}": [round(s, 7) for s in values] for flavor, values in samples.items()}


def _pair_rows(measure: str, stats: tuple[str, ...], samples: dict[Flavor, list[float]], unit: str = "ms") -> list[Row]:
    return [Row.from_samples(measure, setup, stat, lakehouse=samples[lh], peer=PEER, peer_samples=samples[dl], unit=unit)
            for setup, lh, dl in PAIRINGS for stat in stats]


# --- the suite ----------------------------------------------------------------------------

def run(options: argparse.Namespace, context: RunContext) -> SuiteOutput:
    commits = options.commits
    travel = commits // 2 if options.travel_version is None else options.travel_version
    if commits < 1 or not 0 <= travel <= commits:
        raise SystemExit(f"--travel-version must lie within 0..--commits ({commits}), got {travel}")
    replay_to = travel + options.replay_offset
    if options.replay_offset <= 0 or replay_to > commits:
        replay_to = None
    if options.appends < 1 or options.repeats < 1 or options.append_rows < 1 or options.start_versions < 0:
        raise SystemExit("--appends, --repeats and --append-rows must be positive, --start-versions >= 0")
    say = context.progress
    params = {"appends": options.appends, "append_rows": options.append_rows,
              "start_versions": options.start_versions, "commits": commits, "travel_version": travel,
              "replay_version": replay_to, "repeats": options.repeats}
    out = SuiteOutput(parameters=params)
    out.info["checkpoint_intervals"] = {
        "lakehouse_default": LAKEHOUSE_DEFAULT_INTERVAL, "deltalake_default": DELTALAKE_DEFAULT_INTERVAL,
        "flavors": {f.key: {"interval": f.interval, "library_default": f.is_default,
                            "properties": f.properties} for f in FLAVORS},
    }

    # 1. small appends on a young table
    say(f"[1/5] small appends: {options.appends} x {options.append_rows} rows per flavour "
        f"after {options.start_versions} untimed versions")
    small = {f: _Library(f, context.workdir / "append" / f.key) for f in FLAVORS}
    next_id = 1
    for lib in small.values():
        lib.create()
    for _ in range(options.start_versions):
        batch = _rows_batch(next_id, options.append_rows)
        next_id += options.append_rows
        for lib in small.values():
            lib.append(batch)
    batches = [_rows_batch(next_id + i * options.append_rows, options.append_rows) for i in range(options.appends)]
    append_samples: dict[Flavor, list[float]] = {f: [] for f in FLAVORS}
    _interleaved(small, options.appends, lambda lib, turn: lib.append(batches[turn]), append_samples)
    out.series.update(_series("append", append_samples))
    out.rows += _pair_rows(f"append {options.append_rows} rows", ("median", "p95"), append_samples)

    # 2. the tables with many commits
    say(f"[2/5] building {commits} single-row commits for each of {len(FLAVORS)} flavours")
    big = {f: _Library(f, context.workdir / "log" / f.key) for f in FLAVORS}
    for lib in big.values():
        lib.create()
    build_samples: dict[Flavor, list[float]] = {f: [] for f in FLAVORS}
    rows = [_rows_batch(i, 1) for i in range(1, commits + 1)]
    report_every = max(1, commits // 10)
    for start in range(0, commits, report_every):
        count = min(report_every, commits - start)
        _interleaved(big, count, lambda lib, turn, s=start: lib.append(rows[s + turn]), build_samples)
        done = start + count
        recent = ", ".join(f"{f.key} {sum(v[-count:]) / count * 1e3:.1f}" for f, v in build_samples.items())
        say(f"      {done}/{commits} commits; mean ms per commit over the last {count}: {recent}")
    out.series.update(_series("build", build_samples))
    out.rows += _pair_rows(f"append 1 row, table growing to {commits:,} commits", ("mean", "p95"), build_samples)

    # 3. opening the latest snapshot, warm
    say(f"[3/5] opening version {commits}: 1 warm-up + {options.repeats} timed opens per flavour")
    open_samples: dict[Flavor, list[float]] = {f: [] for f in FLAVORS}
    _interleaved(big, options.repeats, lambda lib, turn: lib.open_latest(), open_samples, warmup=1)
    out.series.update(_series("open_latest", open_samples))
    out.rows += _pair_rows(f"open latest snapshot (v{commits:,})", ("median",), open_samples)

    # 4. time travel
    say(f"[4/5] time travel to version {travel}: 1 warm-up + {options.repeats} timed opens per flavour")
    travel_samples: dict[Flavor, list[float]] = {f: [] for f in FLAVORS}
    _interleaved(big, options.repeats, lambda lib, turn: lib.open_version(travel), travel_samples, warmup=1)
    out.series.update(_series("time_travel", travel_samples))
    out.rows += _pair_rows(f"time travel to v{travel:,}", ("median",), travel_samples)

    if replay_to is not None:
        say(f"[5/5] time travel to version {replay_to}: 1 warm-up + {options.repeats} timed opens per flavour")
        replay_samples: dict[Flavor, list[float]] = {f: [] for f in FLAVORS}
        _interleaved(big, options.repeats, lambda lib, turn: lib.open_version(replay_to), replay_samples, warmup=1)
        out.series.update(_series("time_travel_replay", replay_samples))
        out.rows += _pair_rows(f"time travel to v{replay_to:,}", ("median",), replay_samples)

    say("checking answers (untimed)")
    _add_checks(out, small, big, options, commits, [travel] if replay_to is None else [travel, replay_to])
    out.notes += [
        "Setup `ckpt A vs B`: lakehouse writes a checkpoint every A commits, deltalake every B "
        f"(defaults: lakehouse {LAKEHOUSE_DEFAULT_INTERVAL}, deltalake {DELTALAKE_DEFAULT_INTERVAL}; "
        f"other intervals set with `{CHECKPOINT_PROPERTY}` when the table is created).",
        "Append: `Table.append(t)` on a handle opened once, versus `write_deltalake(path, t, mode=\"append\")`; "
        "both re-read the log before committing. The p95 of interval-10 tables includes the commits that "
        "also write a checkpoint.",
        "Open: `lakehouse.open_table(p).snapshot()` versus `deltalake.DeltaTable(p)`; time travel: "
        "`.snapshot(version=v)` versus `DeltaTable(p, version=v)`. Both replay the log into a file list. "
        "Warm: the OS file cache holds the log; one untimed open per table first.",
        "Flavours take turns going first in every round, so drift in machine speed is shared.",
        "Checkpoint versions written: " + "; ".join(
            f"{key} {_list_versions(c['first'], c['count'])}" for key, c in out.info["checkpoints"].items())
        + ". An open replays the JSON commits after the newest checkpoint at or below its version.",
    ]
    return out


def _list_versions(first: list[int], count: int) -> str:
    if not count:
        return "none"
    shown = ", ".join(map(str, first))
    return f"{shown}, … ({count} in all)" if count > len(first) else shown


def _add_checks(out: SuiteOutput, small: dict[Flavor, _Library], big: dict[Flavor, _Library],
                options: argparse.Namespace, commits: int, travels: list[int]) -> None:
    small_versions = options.start_versions + options.appends
    small_rows = small_versions * options.append_rows
    small_state = {f.key: lib.contents() for f, lib in small.items()}
    out.checks.append(Check(f"small-append tables: version after {small_versions} appends", small_versions,
                            {k: v[0] for k, v in small_state.items()}))
    out.checks.append(Check("small-append tables: rows", small_rows, {k: v[1] for k, v in small_state.items()}))
    out.checks.append(Check("small-append tables: sum(id)", small_rows * (small_rows + 1) // 2,
                            {k: v[2] for k, v in small_state.items()}))

    latest = {f.key: lib.contents() for f, lib in big.items()}
    out.checks += [
        Check("latest version", commits, {k: v[0] for k, v in latest.items()}),
        Check("rows at latest version", commits, {k: v[1] for k, v in latest.items()}),
        Check("sum(id) at latest version", commits * (commits + 1) // 2, {k: v[2] for k, v in latest.items()}),
    ]
    for travel in travels:  # version v holds ids 1..v, one row per commit
        past = {f.key: lib.contents(travel) for f, lib in big.items()}
        out.checks += [
            Check(f"version reached by time travel to {travel}", travel, {k: v[0] for k, v in past.items()}),
            Check(f"rows at version {travel}", travel, {k: v[1] for k, v in past.items()}),
            Check(f"sum(id) at version {travel}", travel * (travel + 1) // 2, {k: v[2] for k, v in past.items()}),
        ]
    # The interval really took effect: the newest checkpoint is less than one interval old.
    checkpoints = {f.key: lib.checkpoint_versions() for f, lib in big.items()}
    fresh = {}
    for flavor in big:
        found = checkpoints[flavor.key]
        fresh[flavor.key] = (commits - (found[-1] if found else -1)) <= flavor.interval
    out.checks.append(Check("newest checkpoint at most one interval behind the latest version", True, fresh))
    out.info["checkpoints"] = {
        key: {"count": len(found), "first": found[:3], "last": found[-1] if found else None}
        for key, found in checkpoints.items()}
