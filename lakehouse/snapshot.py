"""An immutable view of a table at one version."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.log.actions import AddFile, Metadata, Protocol
from lakehouse.log.filelist import adds_from_files
from lakehouse.log.replay import TableState
from lakehouse.location import TableLocation
from lakehouse.schema import schema_from_json

if TYPE_CHECKING:
    from lakehouse.expressions import Predicate
    from lakehouse.scan import Scan


@dataclass(frozen=True)
class Snapshot:
    """The table as of ``version``: schema, properties and live files. Never changes.

    Obtain one from :meth:`lakehouse.Table.snapshot`; read it with :meth:`scan`.
    """

    location: TableLocation
    version: int
    timestamp_ms: int
    state: TableState

    # --- table description -----------------------------------------------------------

    @property
    def metadata(self) -> Metadata:
        return self.state.metadata

    @property
    def protocol(self) -> Protocol:
        return self.state.protocol

    @cached_property
    def schema(self) -> pa.Schema:
        """The table schema in Arrow types (see ``lakehouse.schema`` for the mapping)."""
        return schema_from_json(self.metadata.schema_string, where=f"table '{self.location.name}'")

    @property
    def partition_columns(self) -> tuple[str, ...]:
        return tuple(self.metadata.partition_columns)

    @property
    def properties(self) -> Mapping[str, str]:
        return self.metadata.configuration

    @property
    def table_id(self) -> str:
        return self.metadata.id

    # --- files --------------------------------------------------------------------------

    @property
    def files(self) -> pa.Table:
        """Live data files as an Arrow table (path, partitionValues, size, stats, ...)."""
        return self.state.files

    def add_files(self) -> list[AddFile]:
        """Live data files as ``add`` actions."""
        return adds_from_files(self.state.files)

    @property
    def num_files(self) -> int:
        return self.state.files.num_rows

    @property
    def size_bytes(self) -> int:
        return int(pc.sum(self.state.files.column("size")).as_py() or 0)

    @cached_property
    def num_records(self) -> int | None:
        """Total rows from the stats, or ``None`` when a file has no ``numRecords``."""
        from lakehouse.skipping import FileStats

        counts = FileStats(self.files, self.schema, self.partition_columns).num_records
        if counts.null_count:
            return None
        return int(pc.sum(counts).as_py() or 0)

    def fingerprint(self) -> str:
        """A stable digest of (table id, version, live file paths and sizes); tags record it."""
        from lakehouse.refs import fingerprint

        return fingerprint(self)

    def txn_version(self, app_id: str) -> int | None:
        """The last ``txn`` version recorded for ``app_id`` (exactly-once writers), if any."""
        txn = self.state.txns.get(app_id)
        return txn.version if txn is not None else None

    # --- reading ------------------------------------------------------------------------

    def scan(self, columns: list[str] | None = None, filter: Predicate | str | None = None) -> Scan:  # noqa: A002
        """A scan of this version: pick columns, filter rows, then call a terminal."""
        from lakehouse.scan import Scan

        return Scan(self, columns=columns, filter=filter)

    def to_arrow(self, columns: list[str] | None = None, filter: Predicate | str | None = None) -> pa.Table:  # noqa: A002
        return self.scan(columns=columns, filter=filter).to_arrow()

    def to_pandas(self, columns: list[str] | None = None, filter: Predicate | str | None = None) -> Any:  # noqa: A002
        return self.scan(columns=columns, filter=filter).to_pandas()

    def __repr__(self) -> str:
        return f"Snapshot(table={self.location.name!r}, version={self.version}, files={self.num_files})"
