"""Delta's conflict rules: may this transaction still commit after a winner's commit?

Mirrors the rules of the protocol digest (§5): protocol or metadata changes by the winner
fail everyone; a winner's ``txn`` for one of our app ids fails us; under Serializable, files
the winner added that our read predicate may match fail us (WriteSerializable ignores the
winner's blind appends); removing a file we read, or one we remove too, fails us.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from lakehouse.errors import CommitConflictError
from lakehouse.expressions import Predicate
from lakehouse.log.actions import Action, AddFile, CommitInfo, Metadata, Protocol, RemoveFile, Txn
from lakehouse.log.filelist import files_from_adds
from lakehouse.skipping import may_match


@dataclass(frozen=True)
class ReadSet:
    """What a transaction read and changes, for checking it against concurrent commits."""

    reads_whole_table: bool = False
    read_predicate: Predicate | None = None  # bound to the table schema
    read_files: frozenset[str] = frozenset()
    removed_files: frozenset[str] = frozenset()
    app_ids: frozenset[str] = frozenset()
    changes_metadata: bool = False
    changes_protocol: bool = False
    isolation_level: str = "Serializable"
    only_rearranges: bool = False  # every file action has dataChange=false (OPTIMIZE)
    partition_columns: tuple[str, ...] = field(default=())
    schema: pa.Schema | None = None


def check_winner(read: ReadSet, winner_version: int, winner: list[Action], *, table: str) -> None:
    """Raise ``CommitConflictError`` if ``winner`` (already committed) invalidates ``read``."""

    def fail(kind: str, detail: str) -> None:
        raise CommitConflictError(
            f"table '{table}': concurrent commit {winner_version} {detail}; re-read the table and retry",
            kind=kind, winning_version=winner_version)

    info = next((a for a in winner if isinstance(a, CommitInfo)), None)
    operation = info.operation if info is not None else "an unknown operation"
    if any(isinstance(a, Protocol) for a in winner):
        fail("protocol_changed", f"({operation}) changed the table protocol")
    if any(isinstance(a, Metadata) for a in winner):
        fail("metadata_changed", f"({operation}) changed the table's metadata (schema or properties)")
    for action in winner:
        if isinstance(action, Txn) and action.app_id in read.app_ids:
            fail("concurrent_transaction", f"also wrote application transaction '{action.app_id}'")

    # An OPTIMIZE-like transaction only rearranges data, so it runs at snapshot isolation:
    # new files from others cannot invalidate it.
    isolation = "SnapshotIsolation" if read.only_rearranges else read.isolation_level
    added = [a for a in winner if isinstance(a, AddFile) and a.data_change]
    winner_blind = info.is_blind_append if info is not None else False
    check_adds = isolation == "Serializable" or (isolation == "WriteSerializable" and not winner_blind)
    if added and check_adds:
        if read.reads_whole_table:
            fail("concurrent_append", f"({operation}) added {len(added)} file(s) to the table this transaction read")
        if read.read_predicate is not None and read.schema is not None:
            mask = may_match(files_from_adds(added), read.read_predicate, read.schema, read.partition_columns)
            if any(mask.to_pylist()):
                fail("concurrent_append", f"({operation}) added file(s) that may hold rows matching this "
                     "transaction's condition")

    removed = [a for a in winner if isinstance(a, RemoveFile)]
    for action in removed:
        if action.data_change and (action.path in read.read_files or read.reads_whole_table):
            fail("concurrent_delete_read", f"({operation}) removed file '{action.path}' that this transaction read")
        if action.path in read.removed_files:
            fail("concurrent_delete_delete", f"({operation}) also removed file '{action.path}'")
