"""Table names -> sources: registered Arrow tables, warehouse tables, paths."""

from __future__ import annotations

import difflib
import os
from typing import Any, Mapping

import pyarrow as pa

from engine.datasource.base import TableSource
from engine.datasource.lakehouse import LakehouseSource
from engine.datasource.memory import MemorySource
from engine.datasource.parquet import ParquetSource
from engine.errors import PlanError, UnsupportedSQLError
from lakehouse import Table, open_table
from lakehouse.errors import TableNotFoundError
from lakehouse.storage import resolve as resolve_storage


class Catalog:
    """Resolves names in FROM. A warehouse is a folder (or URL) whose sub-folders are tables."""

    def __init__(self, warehouse: str | None = None, storage_options: Mapping[str, Any] | None = None) -> None:
        self.warehouse = warehouse
        self.storage_options = storage_options
        self._registered: dict[str, TableSource] = {}

    def register(self, name: str, data: Any) -> None:
        """Make ``data`` queryable as ``name``.

        A lakehouse ``Snapshot`` (a pinned version) or ``Table`` (its latest version, fixed
        now) stays a scan over its files, with file skipping and column pruning; a
        ``TableSource`` is used as is; anything else (Arrow, pandas, polars) is read into memory.
        """
        from lakehouse.snapshot import Snapshot
        from lakehouse.write import to_reader

        source: TableSource
        if isinstance(data, TableSource):
            source = data
        elif isinstance(data, Snapshot):
            source = LakehouseSource(name, data)
        elif isinstance(data, Table):
            source = LakehouseSource(name, data.snapshot())
        else:
            table = data if isinstance(data, pa.Table) else to_reader(data).read_all()
            source = MemorySource(name, table)
        self._registered[name.lower()] = source

    def unregister(self, name: str) -> None:
        self._registered.pop(name.lower(), None)

    def table_location(self, name: str) -> str:
        if self.warehouse is None:
            # Still suggest registered tables: a typo is likelier than a missing warehouse.
            raise TableNotFoundError(f"{self._not_found(name)} (this session has no warehouse: pass one to "
                                     "engine.connect() or read a path with FROM 'path/to/table')")
        return self.warehouse.rstrip("/") + "/" + name

    def table_names(self) -> list[str]:
        names = [source.name for source in self._registered.values()]
        if self.warehouse is not None:
            storage, root = resolve_storage(self.warehouse, self.storage_options)
            folders = {info.path[len(root):].lstrip("/").split("/")[0] for info in storage.walk(root)
                       if "/_delta_log/" in info.path[len(root):]}
            names += sorted(f for f in folders if f)
        return names

    def open_table(self, name: str) -> Table:
        """The lakehouse table called ``name`` in the warehouse, or at path ``name``."""
        is_path = "/" in name or "://" in name or os.sep in name
        location = name if is_path else self.table_location(name)
        try:
            return open_table(location, storage_options=self.storage_options)
        except TableNotFoundError:
            if is_path:
                raise TableNotFoundError(f"no table at path '{name}'") from None
            raise TableNotFoundError(self._not_found(name)) from None

    def resolve(self, name: str, *, version: tuple[str, Any] | None = None) -> TableSource:
        key = name.lower()
        if key in self._registered:
            if version is not None:
                raise PlanError(f"'{name}' is an in-memory table and has no versions to time-travel to")
            return self._registered[key]
        is_path = "/" in name or "://" in name or name.endswith(".parquet") or os.sep in name
        if is_path and (name.endswith(".parquet") or os.path.isfile(name)):
            # pyarrow's own errors (FileNotFoundError, ArrowInvalid) would leak without naming the path's role.
            try:
                return ParquetSource(name, name)
            except FileNotFoundError:
                raise TableNotFoundError(f"no Parquet file at path '{name}'") from None
            except pa.ArrowInvalid as exc:
                raise PlanError(f"cannot read '{name}' as a Parquet file: {exc}") from None
        table = self.open_table(name)
        if version is None:
            snapshot = table.snapshot()
        elif version[0] == "version":
            snapshot = table.snapshot(version=int(version[1]))
        elif version[0] == "timestamp":
            snapshot = table.snapshot(timestamp=str(version[1]))
        else:
            snapshot = table.snapshot(tag=str(version[1]))
        return LakehouseSource(name, snapshot)

    def _not_found(self, name: str) -> str:
        try:
            names = self.table_names()
        except Exception:  # noqa: BLE001 - suggestions are best effort
            names = []
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else (
            f"; tables: {', '.join(names)}" if names else "")
        return f"table '{name}' does not exist{hint}"
