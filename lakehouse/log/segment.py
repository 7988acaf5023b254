"""Which log files rebuild a version: the newest usable checkpoint plus later commits.

``_last_checkpoint`` is deliberately not trusted: the listing of ``_delta_log`` is the
source of truth, so a stale, empty or dangling hint (trino#22748, delta-rs#2290) can never
make a table unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.errors import CorruptLogError, TableNotFoundError, VersionNotFoundError
from lakehouse.log.paths import LOG_DIR, parse_log_name
from lakehouse.storage.base import FileInfo, Storage


@dataclass(frozen=True)
class LogListing:
    """Everything a listing of ``_delta_log`` told us, indexed by version."""

    commits: dict[int, FileInfo]
    checkpoints: dict[int, tuple[FileInfo, ...]]  # complete classic or multi-part checkpoints

    @property
    def latest_version(self) -> int:
        candidates = list(self.commits) + list(self.checkpoints)
        return max(candidates)

    @property
    def earliest_version(self) -> int:
        """Oldest version that can be rebuilt (0, or the oldest checkpoint after cleanup)."""
        if 0 in self.commits:
            return 0
        return min(self.checkpoints) if self.checkpoints else min(self.commits)

    def commit_timestamps(self) -> dict[int, int]:
        """Commit time per version: the file mtime, forced strictly increasing (protocol §7)."""
        out: dict[int, int] = {}
        previous = None
        for version in sorted(self.commits):
            ts = self.commits[version].modified_ms
            if previous is not None and ts <= previous:
                ts = previous + 1
            out[version] = previous = ts
        return out


def list_log(storage: Storage, root: str, *, table: str) -> LogListing:
    """List ``_delta_log`` and classify its files. Raises ``TableNotFoundError`` if empty."""
    commits: dict[int, FileInfo] = {}
    parts: dict[tuple[int, int], dict[int, FileInfo]] = {}
    classic: dict[int, FileInfo] = {}
    for info in storage.list_dir(storage.join(root, LOG_DIR)):
        parsed = parse_log_name(info.name)
        if parsed is None:
            continue
        if parsed.kind == "commit":
            commits[parsed.version] = info
        elif parsed.kind == "checkpoint":
            classic[parsed.version] = info
        elif parsed.kind == "multipart":
            parts.setdefault((parsed.version, parsed.parts), {})[parsed.part] = info
        # V2 (UUID-named) checkpoints are skipped: they are only valid on tables with the
        # v2Checkpoint feature, which the protocol gate refuses before any data is read.
    checkpoints: dict[int, tuple[FileInfo, ...]] = {v: (info,) for v, info in classic.items()}
    for (version, count), found in parts.items():
        if version not in checkpoints and len(found) == count:  # ignore incomplete sets
            checkpoints[version] = tuple(found[i] for i in sorted(found))
    if not commits and not checkpoints:
        raise TableNotFoundError(
            f"no Delta table at '{storage.to_url(root)}': '{LOG_DIR}' holds no commits; "
            "check the path, or create the table with lakehouse.create_table")
    return LogListing(commits, checkpoints)


@dataclass(frozen=True)
class LogSegment:
    """The files that rebuild ``version``: one checkpoint (or none) and the commits after it."""

    version: int
    checkpoint_version: int | None
    checkpoint_files: tuple[FileInfo, ...]
    commits: tuple[tuple[int, FileInfo], ...]


def segment_for(listing: LogListing, version: int | None, *, table: str,
                skip_checkpoints: frozenset[int] = frozenset()) -> LogSegment:
    """The segment for ``version`` (latest when ``None``), checking the commits are contiguous.

    ``skip_checkpoints`` names checkpoints found unreadable, so the caller can fall back to
    an older one or to pure JSON replay.
    """
    latest = listing.latest_version
    earliest = listing.earliest_version
    if version is None:
        version = latest
    if version < earliest or version > latest:
        why = ("; older log entries were removed by log cleanup (delta.logRetentionDuration); tag a version to "
               "keep it readable") if 0 <= version < earliest else ""
        raise VersionNotFoundError(
            f"table '{table}' has no version {version}: versions {earliest} to {latest} can be read{why}")
    usable = [v for v in listing.checkpoints if v <= version and v not in skip_checkpoints]
    start = max(usable) if usable else None
    first_commit = 0 if start is None else start + 1
    if start is None and 0 not in listing.commits and not any(v <= version for v in listing.checkpoints):
        # No checkpoint at all to start from: the oldest commits are gone, not cleaned up.
        oldest = min(listing.commits)
        missing = "commit 0 is" if oldest == 1 else f"commits 0 to {oldest - 1} are"
        raise CorruptLogError(
            f"table '{table}': {missing} missing from '{LOG_DIR}' and no checkpoint replaces them; "
            f"version {version} cannot be rebuilt; restore the missing commit files")
    if start is None and 0 not in listing.commits:
        raise VersionNotFoundError(
            f"table '{table}': version {version} cannot be rebuilt: its checkpoint is unreadable and "
            f"the commits before it were cleaned up; versions {earliest} to {latest} exist")
    commits = []
    for v in range(first_commit, version + 1):
        info = listing.commits.get(v)
        if info is None:
            raise CorruptLogError(
                f"table '{table}': commit {v} is missing from '{LOG_DIR}' (found versions around it); "
                "the log has a gap and cannot be replayed past it")
        commits.append((v, info))
    return LogSegment(version, start, listing.checkpoints[start] if start is not None else (), tuple(commits))
