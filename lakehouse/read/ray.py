"""Ray Data: a scan of a pinned version as a ``ray.data.Dataset``, read by our own reader.

The driver resolves the snapshot once, prunes files with the log's statistics and reads
the footers of the selected files (:mod:`lakehouse.read.plan`). It then splits the files,
in log order, into at most ``parallelism`` groups of about equal bytes. Each
``ReadTask`` carries only plain data: the table URL, the version, the storage options, the
projection, the filter (our picklable predicate) and its file paths. On the worker it opens
that version (once per worker process and version), and reads its files row group by row
group through :class:`~lakehouse.read.plan.UnitPlan`, so partition values appear as
columns and the filter runs on every row, exactly as in ``Scan.to_arrow()``.

Nothing in it assumes one machine: the same code runs under a local ``ray.init()`` and on
a cluster, as long as the workers reach the table's storage with the same options.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import read_datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from lakehouse.read.plan import ScanSpec, build_plan

_SNAPSHOTS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_SNAPSHOTS_LOCK = threading.Lock()
_SNAPSHOTS_KEPT = 8


def _snapshot_key(spec: ScanSpec) -> tuple[Any, ...]:
    options = tuple(sorted((str(k), repr(v)) for k, v in (spec.storage_options or {}).items()))
    return spec.url, spec.version, options, spec.allowed_roots


def _open_scan(spec: ScanSpec) -> Any:
    """The scan of ``spec``, reusing this process's snapshot of that table version."""
    key = _snapshot_key(spec)
    with _SNAPSHOTS_LOCK:
        snapshot = _SNAPSHOTS.get(key)
        if snapshot is not None:
            _SNAPSHOTS.move_to_end(key)
    if snapshot is None:
        snapshot = spec.open().snapshot
        with _SNAPSHOTS_LOCK:
            _SNAPSHOTS[key] = snapshot
            while len(_SNAPSHOTS) > _SNAPSHOTS_KEPT:
                _SNAPSHOTS.popitem(last=False)
    columns = list(spec.columns) if spec.columns is not None else None
    return snapshot.scan(columns=columns, filter=spec.predicate)


def read_files(spec: ScanSpec, paths: tuple[str, ...]) -> Iterator[pa.Table]:
    """What one read task does: the matching rows of ``paths``, one block per row group."""
    scan = _open_scan(spec)
    files = scan.selected_files
    files = files.filter(pc.is_in(files.column("path"), value_set=pa.array(list(paths), pa.string())))
    plan = build_plan(scan, files)
    produced = False
    with scan._reading():
        for unit in plan.units:
            table = plan.read(unit)
            if table.num_rows:
                produced = True
                yield table
    if not produced:
        yield plan.output_schema.empty_table()


class LakehouseDatasource(Datasource):
    """A ``ray.data.Datasource`` over one scan at its pinned version (see the module doc)."""

    def __init__(self, scan: Any) -> None:
        super().__init__()
        self.spec = ScanSpec.of(scan)
        self.table = scan.snapshot.location.name
        plan = scan.unit_plan
        self.schema = plan.output_schema
        # Per selected file, in log order: (path, stored rows, compressed bytes, in-memory bytes).
        per_file: dict[str, list[int]] = {}
        for unit in plan.units:
            totals = per_file.setdefault(unit.path, [0, 0, 0])
            totals[0] += unit.num_rows
            totals[1] += unit.num_bytes
            totals[2] += unit.memory_bytes
        self.files = [(path, rows, size, memory) for path, (rows, size, memory) in per_file.items()]
        self.filtered = scan.predicate is not None
        width = len(plan.columns) / max(1, len(plan.schema.names))
        self.width = width  # share of the columns read: scales the in-memory estimate

    def get_name(self) -> str:
        return f"Lakehouse({self.table}@v{self.spec.version})"

    def estimate_inmemory_data_size(self) -> int | None:
        return int(sum(memory for _, _, _, memory in self.files) * self.width)

    def _groups(self, parallelism: int) -> list[list[tuple[str, int, int, int]]]:
        """Files in log order cut into at most ``parallelism`` runs of about equal bytes."""
        if not self.files:
            return []
        count = max(1, min(parallelism if parallelism > 0 else len(self.files), len(self.files)))
        total = sum(size for _, _, size, _ in self.files) or len(self.files)
        groups: list[list[tuple[str, int, int, int]]] = [[]]
        done = 0
        for item in self.files:
            target = total * len(groups) / count
            if groups[-1] and done >= target and len(groups) < count:
                groups.append([])
            groups[-1].append(item)
            done += item[2] or 1
        return groups

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for group in self._groups(parallelism):
            paths = tuple(path for path, _, _, _ in group)
            rows = None if self.filtered else sum(r for _, r, _, _ in group)
            memory = int(sum(m for _, _, _, m in group) * self.width)
            metadata = BlockMetadata(num_rows=rows, size_bytes=memory, exec_stats=None, input_files=paths)
            tasks.append(ReadTask(functools.partial(read_files, self.spec, paths), metadata, schema=self.schema,
                                  per_task_row_limit=per_task_row_limit))
        if not tasks:  # an empty table or a filter no file can match: one empty block keeps the schema
            empty = self.schema.empty_table()
            tasks.append(ReadTask(functools.partial(_empty, empty), BlockMetadata(0, 0, None, ()), schema=self.schema,
                                  per_task_row_limit=per_task_row_limit))
        return tasks


def _empty(table: pa.Table) -> list[pa.Table]:
    return [table]


def read_scan(scan: Any, *, parallelism: int = -1, **read_args: Any) -> Any:
    """``ray.data.read_datasource`` over :class:`LakehouseDatasource` for ``scan``."""
    return read_datasource(LakehouseDatasource(scan), parallelism=parallelism, **read_args)
