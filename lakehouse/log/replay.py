"""Replay a log segment into the state of one version.

Commits are read newest first; the first action seen for a file key decides it (added or
removed), later-read (older) actions for that key are ignored. The checkpoint's add rows,
which may be millions, are then filtered in one vectorized step against the keys the
commits decided.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import CorruptLogError, LakehouseWarning
from lakehouse.log.actions import (
    Action, AddFile, CommitInfo, DomainMetadata, Metadata, Protocol, RemoveFile, Txn, parse_commit,
)
from lakehouse.log.checkpoint import read_checkpoint
from lakehouse.log.filelist import FILES_SCHEMA, add_key, file_keys, files_from_adds
from lakehouse.log.segment import LogListing, LogSegment, segment_for
from lakehouse.storage.base import FileInfo, Storage


@dataclass(frozen=True)
class TableState:
    """Everything the log says about one version."""

    version: int
    protocol: Protocol
    metadata: Metadata
    files: pa.Table  # live adds, FILES_SCHEMA
    tombstones: tuple[RemoveFile, ...]
    txns: dict[str, Txn]
    domains: dict[str, DomainMetadata]
    commit_info: CommitInfo | None


def read_commit(storage: Storage, info: FileInfo, *, table: str) -> list[Action]:
    try:
        data = storage.read(info.path)
    except FileNotFoundError:
        raise CorruptLogError(f"table '{table}': commit file '{info.name}' vanished while reading the log") from None
    if not data.strip():
        raise CorruptLogError(f"table '{table}': commit file '{info.name}' is empty; the log is corrupt")
    return parse_commit(data, f"table '{table}' commit '{info.name}'")


def read_commits(storage: Storage, infos: list[FileInfo], *, table: str) -> list[list[Action]]:
    """Read several commit files, concurrently when there are many (remote stores)."""
    if len(infos) <= 4 or not storage.parallel_reads:
        return [read_commit(storage, info, table=table) for info in infos]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda info: read_commit(storage, info, table=table), infos))


def replay(storage: Storage, listing: LogListing, version: int | None, *, table: str) -> TableState:
    """State at ``version`` (latest if ``None``), falling back past unreadable checkpoints."""
    skipped: set[int] = set()
    while True:
        segment = segment_for(listing, version, table=table, skip_checkpoints=frozenset(skipped))
        try:
            return _replay_segment(storage, segment, table=table)
        except CorruptLogError as exc:
            if segment.checkpoint_version is None or not _is_checkpoint_error(exc):
                raise
            warnings.warn(f"{exc}; rebuilding from older log files instead", LakehouseWarning, stacklevel=3)
            skipped.add(segment.checkpoint_version)


def _is_checkpoint_error(exc: CorruptLogError) -> bool:
    return "checkpoint" in str(exc)


def _replay_segment(storage: Storage, segment: LogSegment, *, table: str) -> TableState:
    commits = read_commits(storage, [info for _, info in segment.commits], table=table)
    protocol: Protocol | None = None
    metadata: Metadata | None = None
    txns: dict[str, Txn] = {}
    domains: dict[str, DomainMetadata] = {}
    decided: set[str] = set()
    adds: list[AddFile] = []
    tombstones: list[RemoveFile] = []
    commit_info = None

    for position in range(len(commits) - 1, -1, -1):
        version = segment.commits[position][0]
        for action in commits[position]:
            if isinstance(action, AddFile):
                key = add_key(action.path, action.dv_id)
                if key not in decided:
                    decided.add(key)
                    adds.append(action)
            elif isinstance(action, RemoveFile):
                key = add_key(action.path, action.dv_id)
                if key not in decided:
                    decided.add(key)
                    tombstones.append(action)
            elif isinstance(action, Metadata):
                metadata = metadata or action
            elif isinstance(action, Protocol):
                protocol = protocol or action
            elif isinstance(action, Txn):
                txns.setdefault(action.app_id, action)
            elif isinstance(action, DomainMetadata):
                domains.setdefault(action.domain, action)
            elif isinstance(action, CommitInfo) and version == segment.version:
                commit_info = action

    files = files_from_adds(reversed(adds)) if adds else FILES_SCHEMA.empty_table()
    if segment.checkpoint_files:
        checkpoint = read_checkpoint(storage, segment.checkpoint_files, table=table)
        protocol = protocol or checkpoint.protocol
        metadata = metadata or checkpoint.metadata
        for app_id, txn in checkpoint.txns.items():
            txns.setdefault(app_id, txn)
        for name, domain in checkpoint.domains.items():
            domains.setdefault(name, domain)
        tombstones.extend(t for t in checkpoint.tombstones if add_key(t.path, t.dv_id) not in decided)
        older = checkpoint.files
        if decided and older.num_rows:
            older = older.filter(pc.invert(pc.is_in(file_keys(older), pa.array(list(decided), pa.string()))))
        files = pa.concat_tables([older, files]) if files.num_rows else older

    if protocol is None or metadata is None:
        missing = "protocol" if protocol is None else "metaData"
        raise CorruptLogError(
            f"table '{table}': no '{missing}' action at or before version {segment.version}; the log is corrupt")
    domains = {name: d for name, d in domains.items() if not d.removed}
    return TableState(segment.version, protocol, metadata, files, tuple(tombstones), txns, domains, commit_info)
