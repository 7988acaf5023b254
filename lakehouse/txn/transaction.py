"""Publishing one commit: put-if-absent, conflict checks against winners, bounded retries."""

from __future__ import annotations

import json
import random
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from lakehouse._version import __version__
from lakehouse.errors import (
    CommitError, CommitOutcomeUnknownError, LakehouseError, LakehouseWarning, TableAlreadyExistsError,
)
from lakehouse.log.actions import (
    Action, AddFile, CommitInfo, Metadata, Protocol, RemoveFile, parse_commit, serialize_commit,
)
from lakehouse.log.checkpoint import write_checkpoint
from lakehouse.log.paths import LOG_DIR, commit_name
from lakehouse.log.replay import read_commit, replay
from lakehouse.log.segment import list_log
from lakehouse.properties import checkpoint_interval
from lakehouse.storage.base import FileInfo, Storage
from lakehouse.txn.conflicts import ReadSet, check_winner

DEFAULT_MAX_RETRIES = 40
_BACKOFF_BASE_S = 0.005
_BACKOFF_CAP_S = 0.5


@dataclass
class Commit:
    """A commit ready to publish: actions built without IO, plus what it read."""

    storage: Storage
    root: str
    table: str
    read_version: int | None  # None: creating the table (version 0)
    operation: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    read_set: ReadSet = field(default_factory=ReadSet)
    is_blind_append: bool = False
    configuration: Mapping[str, str] = field(default_factory=dict)
    max_retries: int = DEFAULT_MAX_RETRIES
    txn_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def commit_info(self) -> CommitInfo:
        values: dict[str, Any] = {
            "timestamp": int(time.time() * 1000),
            "operation": self.operation,
            "operationParameters": {k: _text(v) for k, v in self.parameters.items()},
        }
        if self.read_version is not None:
            values["readVersion"] = self.read_version
        values.update({
            "isolationLevel": self.read_set.isolation_level,
            "isBlindAppend": self.is_blind_append,
            "operationMetrics": {k: _text(v) for k, v in self.metrics.items()},
            "engineInfo": f"lakehouse/{__version__}",
            "txnId": self.txn_id,
        })
        return CommitInfo(values)

    def publish(self) -> int:
        """Write the commit at the next free version and return that version.

        Losing a race re-reads each winning commit, applies the conflict rules, and retries
        with jittered exponential backoff. If the commit file already exists and carries our
        own ``txnId`` (a retried request whose first answer was lost), it already succeeded.
        """
        log_dir = self.storage.join(self.root, LOG_DIR)
        version = 0 if self.read_version is None else self.read_version + 1
        for attempt in range(self.max_retries + 1):
            data = serialize_commit([self.commit_info(), *self.actions])
            path = self.storage.join(log_dir, commit_name(version))
            try:
                self.storage.write_if_absent(path, data)
            except FileExistsError:
                if self._is_ours(path):
                    break
                if self.read_version is None:
                    raise TableAlreadyExistsError(
                        f"table '{self.table}' was created concurrently by another writer") from None
                version = self._check_winners(log_dir, version)
                time.sleep(min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** min(attempt, 10)) * random.uniform(0.5, 1.5))
                continue
            except (LakehouseError, OSError) as exc:
                # Unknown outcome (e.g. the connection dropped after S3 applied the PUT): the
                # caller would delete our data files, so a commit that did land would point
                # at missing files. Reading the file back decides.
                landed = self._landed(path)
                if landed:
                    break
                if landed is None:
                    raise CommitOutcomeUnknownError(
                        f"table '{self.table}': commit {version} failed ({exc}) and could not be read back, so "
                        "it may or may not have landed; its data files were kept; read the table to check "
                        "before writing again") from exc
                raise
            break
        else:
            raise CommitError(
                f"table '{self.table}': gave up committing after {self.max_retries} retries under contention; "
                "nothing was committed, retry later")
        self._after_commit(version)
        return version

    def _landed(self, path: str) -> bool | None:
        """Did our commit land at ``path``? ``None`` when the store cannot tell us."""
        try:
            data = self.storage.read(path)
        except FileNotFoundError:
            return False
        except (LakehouseError, OSError):
            return None
        try:
            actions = parse_commit(data, path)
        except LakehouseError:
            return False
        info = next((a for a in actions if isinstance(a, CommitInfo)), None)
        return info is not None and info.txn_id == self.txn_id

    def _is_ours(self, path: str) -> bool:
        try:
            actions = parse_commit(self.storage.read(path), path)
        except (FileNotFoundError, LakehouseError):
            return False
        info = next((a for a in actions if isinstance(a, CommitInfo)), None)
        return info is not None and info.txn_id == self.txn_id

    def _check_winners(self, log_dir: str, taken: int) -> int:
        """Check every commit from ``taken`` on; return the next version to try."""
        version = taken
        while True:
            info = self.storage.head(self.storage.join(log_dir, commit_name(version)))
            if info is None:
                return version
            winner = read_commit(self.storage, FileInfo(info.path, info.size, info.modified_ms), table=self.table)
            check_winner(self.read_set, version, winner, table=self.table)
            version += 1

    def _after_commit(self, version: int) -> None:
        interval = checkpoint_interval(self.configuration)
        if version == 0 or version % interval:
            return
        try:
            listing = list_log(self.storage, self.root, table=self.table)
            state = replay(self.storage, listing, version, table=self.table)
            write_checkpoint(self.storage, self.root, version, protocol=state.protocol, metadata=state.metadata,
                             files=state.files, tombstones=list(state.tombstones), txns=state.txns,
                             domains=state.domains)
        except (LakehouseError, OSError) as exc:
            # The commit is durable; a missing checkpoint only makes later opens slower.
            warnings.warn(f"table '{self.table}': commit {version} succeeded but its checkpoint was not written: {exc}",
                          LakehouseWarning, stacklevel=3)
            return
        try:
            # A new checkpoint is what lets older log entries go (delta.enableExpiredLogCleanup).
            from lakehouse.logcleanup import cleanup_after_checkpoint

            cleanup_after_checkpoint(self.storage, self.root, state.metadata.configuration)
        except (LakehouseError, OSError) as exc:
            # The commit is durable; an uncleaned log only costs listing time until the next try.
            warnings.warn(f"table '{self.table}': commit {version} succeeded but expired log entries were not "
                          f"cleaned up: {exc}", LakehouseWarning, stacklevel=3)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def file_actions_only_rearrange(actions: list[Action]) -> bool:
    """True when every file action is ``dataChange=false`` and nothing else changes."""
    files = [a for a in actions if isinstance(a, (AddFile, RemoveFile))]
    others = [a for a in actions if isinstance(a, (Metadata, Protocol))]
    return bool(files) and not others and all(not a.data_change for a in files)
