"""Every error lakehouse raises on purpose.

All errors derive from :class:`LakehouseError`, so callers (and the CLI) can catch one
class and print one line. Messages are lowercase, name the object involved (table, file,
column, version) and say what to do about it.
"""

from __future__ import annotations


class LakehouseError(Exception):
    """Root of every error raised deliberately by lakehouse and its engine."""


class LakehouseWarning(UserWarning):
    """Root of every warning lakehouse emits (e.g. a checkpoint that could not be written)."""


# --- tables, versions, tags -------------------------------------------------------------


class TableNotFoundError(LakehouseError):
    """No Delta table (no ``_delta_log`` with a commit) at the given location."""


class TableAlreadyExistsError(LakehouseError):
    """``create_table`` was asked to create a table where one already exists."""


class VersionNotFoundError(LakehouseError):
    """A requested version or timestamp lies outside the versions the log can rebuild."""


class TagNotFoundError(LakehouseError):
    """A named tag does not exist on the table."""


# --- protocol and log -------------------------------------------------------------------


class InvalidTagError(LakehouseError):
    """A tag name, version or retention period is not acceptable."""


class TagExistsError(InvalidTagError):
    """A live tag of that name exists already; drop it first or pick another name."""


class RetentionCheckError(LakehouseError):
    """VACUUM was asked to keep less history than the table's retention without forcing it."""


class ProtocolError(LakehouseError):
    """The table's log breaks or exceeds what the Delta protocol (as we support it) allows."""


class UnsupportedFeatureError(ProtocolError):
    """The table needs a reader/writer feature this version of lakehouse does not implement."""


class CorruptLogError(ProtocolError):
    """A commit or checkpoint is missing, truncated, or holds something that is not valid."""


class UnsafePathError(CorruptLogError):
    """A path in the log would resolve outside the table root (``..``, control chars, ...)."""


# --- schema and input -------------------------------------------------------------------


class SchemaError(LakehouseError):
    """Data or a schema does not fit the table's schema or the Delta type system."""


class ColumnNotFoundError(SchemaError):
    """A column named by the caller does not exist in the table."""


class InvalidFilterError(LakehouseError):
    """A filter (predicate object or string) cannot be parsed or bound to the table."""


# --- commits ----------------------------------------------------------------------------


class CommitError(LakehouseError):
    """A commit could not be published (e.g. retries exhausted under heavy contention)."""


class CommitConflictError(CommitError):
    """A concurrent commit made this one invalid under the table's isolation level.

    ``kind`` names the conflict (``concurrent_append``, ``concurrent_delete_read``,
    ``concurrent_delete_delete``, ``metadata_changed``, ``protocol_changed``,
    ``concurrent_transaction``); ``winning_version`` is the version that caused it.
    """

    def __init__(self, message: str, *, kind: str, winning_version: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.winning_version = winning_version


class CommitOutcomeUnknownError(CommitError):
    """The commit may or may not have landed (the store failed and could not be read back).

    Its data files are kept: if the commit did land they are live, if not they are orphans
    that vacuum removes. Read the table to find out; never blindly retry the same write.
    """


# --- environment ------------------------------------------------------------------------


class StorageError(LakehouseError):
    """The storage backend failed (permissions, network, unsupported URL scheme...)."""


class DataFileError(StorageError):
    """A data file the log references is missing or unreadable (deleted, vacuumed, corrupt)."""


class ConstraintViolationError(LakehouseError):
    """Data breaks a table's CHECK constraint or NOT NULL column; the message names the
    constraint and shows a failing row."""


class MissingDependencyError(LakehouseError):
    """An optional dependency is needed for this call; the message names the pip extra."""


__all__ = [
    "ColumnNotFoundError",
    "CommitConflictError",
    "CommitError",
    "CommitOutcomeUnknownError",
    "ConstraintViolationError",
    "CorruptLogError",
    "DataFileError",
    "InvalidFilterError",
    "InvalidTagError",
    "LakehouseError",
    "LakehouseWarning",
    "MissingDependencyError",
    "ProtocolError",
    "RetentionCheckError",
    "SchemaError",
    "StorageError",
    "TableAlreadyExistsError",
    "TableNotFoundError",
    "TagExistsError",
    "TagNotFoundError",
    "UnsafePathError",
    "UnsupportedFeatureError",
    "VersionNotFoundError",
]


class ReadOptionError(LakehouseError, ValueError):
    """An ML read option is out of range (batch size, rank, world size, seed, epoch, state)."""


class StreamCheckpointError(LakehouseError):
    """A stream checkpoint is unusable: it belongs to another table or is damaged."""


class CheckpointOwnedError(StreamCheckpointError):
    """Another consumer wrote the checkpoint's next offset or commit first."""


class PinMismatchError(LakehouseError):
    """A recorded reference to a table version (an MLflow input, a tag) no longer matches the
    table: the tag was moved or dropped, or the version's files changed (its fingerprint)."""


class NullValueError(SchemaError, ValueError):
    """A column read into tensors holds nulls its tensor type cannot represent (integers,
    booleans, temporal values, decimals); the message names the column and the fixes:
    ``to_torch(fill_nulls={column: value})`` or a ``column IS NOT NULL`` filter."""


class StreamBehindCleanupError(StreamCheckpointError):
    """A stream's next versions were removed by log cleanup, so it cannot continue without
    losing changes. ``checkpoint`` is the checkpoint location, ``missing`` the ``(first, last)``
    versions it needs that are gone, ``earliest_available`` the oldest commit still in the log
    (``None`` if none is newer)."""

    def __init__(self, message: str, *, checkpoint: str, missing: tuple[int, int],
                 earliest_available: int | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.missing = missing
        self.earliest_available = earliest_available
