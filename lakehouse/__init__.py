"""lakehouse: a Delta Lake compatible table format for Python.

>>> import lakehouse, pyarrow as pa
>>> t = lakehouse.create_table("/tmp/events", pa.schema([("id", pa.int64())]))  # doctest: +SKIP
>>> t.append(pa.table({"id": [1, 2, 3]}))  # doctest: +SKIP
>>> t.snapshot(version=1).to_arrow()  # doctest: +SKIP
"""

from lakehouse._version import __version__
from lakehouse.errors import (
    ColumnNotFoundError, CommitConflictError, CommitError, CommitOutcomeUnknownError, ConstraintViolationError, CorruptLogError, DataFileError, InvalidFilterError, LakehouseError,
    LakehouseWarning, MissingDependencyError, ProtocolError, SchemaError, StorageError, TableAlreadyExistsError,
    TableNotFoundError, TagNotFoundError, UnsafePathError, UnsupportedFeatureError, VersionNotFoundError,
)
from lakehouse.scan import Scan, ScanMetrics
from lakehouse.snapshot import Snapshot
from lakehouse.table import Table, create_table, open_table
from lakehouse.clone import shallow_clone

__all__ = [
    "ColumnNotFoundError", "CommitConflictError", "CommitError", "CommitOutcomeUnknownError", "ConstraintViolationError", "CorruptLogError", "DataFileError", "InvalidFilterError",
    "LakehouseError", "LakehouseWarning", "MissingDependencyError", "ProtocolError", "Scan", "ScanMetrics",
    "SchemaError", "Snapshot", "StorageError", "Table", "TableAlreadyExistsError", "TableNotFoundError",
    "TagNotFoundError", "UnsafePathError", "UnsupportedFeatureError", "VersionNotFoundError", "__version__",
    "create_table", "open_table", "shallow_clone",
]
