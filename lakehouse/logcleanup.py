"""Expired log cleanup: delete old ``_delta_log`` entries that no retained version or tag needs.

Delta semantics (``delta.logRetentionDuration``, default 30 days; Spark's MetadataCleanup):
commit files, their ``.crc`` files and checkpoints whose time is older than the retention
may go, but only *below a checkpoint*, so every version that stays still rebuilds from a
checkpoint plus the commits after it. Precisely, with ``cutoff = now - retention``:

1. the oldest version that must stay readable is the oldest commit newer than the cutoff
   (the latest version when every commit is older);
2. the cut ``K`` is the newest complete checkpoint at or below that version, and also at
   or below, for every live unexpired tag, the newest checkpoint at or below the tag's
   version (no checkpoint there: nothing is deleted), at or below the version that
   ``_last_checkpoint`` names (other readers trust it), and at or below the first version
   holding a file younger than the cutoff; a checkpoint whose Parquet footer cannot be
   read is never the cut (an older one is taken);
3. every log file of a version below ``K`` is deleted, oldest first, so a crash midway
   leaves a log that still reads from its oldest remaining checkpoint.

Decision: tags lower the cut instead of punching holes around their versions. The log
stays one contiguous run from ``K``, which every Delta reader (delta-rs, Spark) and our
timestamp time travel need: with holes, a version between two kept ranges would read as a
*corrupt* log and ``TIMESTAMP AS OF`` would silently answer with an older kept version.
The price is that an old tag keeps the log after its checkpoint; give tags a ``retain``
period (an expired tag protects nothing) or drop them when done.

Data files are never touched here; that is vacuum's job (:mod:`lakehouse.maintenance`).
Commits run this automatically after writing a checkpoint unless the table sets
``delta.enableExpiredLogCleanup = false``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.log.paths import LAST_CHECKPOINT, LOG_DIR, parse_log_name
from lakehouse.log.segment import LogListing, list_log
from lakehouse.properties import LOG_RETENTION, interval_ms
from lakehouse.storage.base import FileInfo, Storage

if TYPE_CHECKING:
    from lakehouse.refs import Tag
    from lakehouse.table import Table

ENABLE_EXPIRED_LOG_CLEANUP = "delta.enableExpiredLogCleanup"
DEFAULT_LOG_RETENTION_MS = 30 * 86_400_000
_CRC = re.compile(r"^(\d{20})\.crc$")
_COMPACTED = re.compile(r"^(\d{20})\.(\d{20})\.compacted\.json$")


def cleanup_enabled(configuration: Mapping[str, str]) -> bool:
    """Whether commits clean the log after a checkpoint (anything but ``false`` means yes)."""
    return str(configuration.get(ENABLE_EXPIRED_LOG_CLEANUP, "true")).strip().lower() != "false"


def log_retention_ms(configuration: Mapping[str, str]) -> int:
    """``delta.logRetentionDuration`` in milliseconds (default 30 days)."""
    return interval_ms(configuration, LOG_RETENTION, DEFAULT_LOG_RETENTION_MS)


@dataclass(frozen=True)
class CleanupPlan:
    """What a cleanup deletes (``delete``, oldest first) and what tags hold back."""

    cut: int  # every log file of a version below this goes
    cut_without_pins: int
    delete: tuple[FileInfo, ...]
    kept_by_pins: dict[str, list[str]] = field(default_factory=dict)


def _file_version(name: str) -> int | None:
    """The version a ``_delta_log`` file belongs to (for compacted files, its last one)."""
    parsed = parse_log_name(name)
    if parsed is not None:
        return parsed.version
    if match := _CRC.match(name):
        return int(match.group(1))
    if match := _COMPACTED.match(name):
        return int(match.group(2))
    return None


def plan_cleanup(listing: LogListing, files: list[FileInfo], tags: list[Tag], *, cutoff_ms: int,
                 hint_version: int | None = None, unusable: frozenset[int] = frozenset()) -> CleanupPlan:
    """Decide, without any IO, which of ``files`` (a listing of ``_delta_log``) to delete.

    ``tags`` are the live, unexpired tags; ``hint_version`` is what ``_last_checkpoint``
    names (``None`` when absent or unreadable); ``unusable`` are checkpoint versions found
    unreadable, never chosen as the cut. See the module doc for the rules.
    """
    times = listing.commit_timestamps()
    latest = listing.latest_version
    earliest = listing.earliest_version
    checkpoints = sorted(c for c in listing.checkpoints if c not in unusable)

    def checkpoint_at_or_below(version: int) -> int:
        return max((c for c in checkpoints if c <= version), default=0)  # 0: no cut possible

    versions = {info.name: _file_version(info.name) for info in files}

    def file_time(info: FileInfo) -> int:
        # Commits are dated by the monotonic commit time that time travel uses (protocol §7).
        parsed = parse_log_name(info.name)
        if parsed is not None and parsed.kind == "commit" and parsed.version in times:
            return times[parsed.version]
        return info.modified_ms

    young = [v for info in files if (v := versions[info.name]) is not None and file_time(info) > cutoff_ms]
    oldest_needed = min((v for v, t in times.items() if t > cutoff_ms), default=latest)
    ceiling = min(oldest_needed, min(young, default=latest))
    if hint_version is not None:
        ceiling = min(ceiling, hint_version)
    cut_without_pins = checkpoint_at_or_below(ceiling)
    floors: dict[str, tuple[int, int]] = {}  # tag name -> (its checkpoint, its version)
    for tag in tags:
        if earliest <= tag.version <= latest:  # a version already unreadable needs nothing
            floors[tag.name] = (checkpoint_at_or_below(tag.version), tag.version)
    cut = checkpoint_at_or_below(min([ceiling, *(f for f, _ in floors.values())]))

    doomed = [info for info in files if versions[info.name] is not None and versions[info.name] < cut]
    doomed.sort(key=lambda info: (versions[info.name], info.name))
    kept: dict[str, list[str]] = {}
    for info in files:
        version = versions[info.name]
        if version is None or not cut <= version < cut_without_pins:
            continue
        reasons = []
        for name, (floor, pinned) in sorted(floors.items()):
            if floor <= version <= pinned:
                reasons.append(f"tag '{name}' (version {pinned})")
            elif floor <= version:
                reasons.append(f"tag '{name}' (version {pinned}): the log stays contiguous from its checkpoint")
        kept[info.name] = reasons
    return CleanupPlan(cut, cut_without_pins, tuple(doomed), kept)


def _hint_version(storage: Storage, log_dir: str) -> int | None:
    try:
        hint = json.loads(storage.read(storage.join(log_dir, LAST_CHECKPOINT)))
        return int(hint["version"])
    except (FileNotFoundError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None  # no usable hint: nothing to keep consistent with


def _readable(storage: Storage, parts: tuple[FileInfo, ...]) -> bool:
    """Whether every part of a checkpoint has a valid Parquet footer (only the footer is read)."""
    try:
        for info in parts:
            with storage.arrow_filesystem.open_input_file(info.path) as handle:
                pq.read_metadata(handle)
    except (pa.ArrowException, OSError):
        return False
    return True


def _live_tags(table: Table, now_ms: int) -> list[Tag]:
    from lakehouse.refs import list_tags

    return [tag for tag in list_tags(table).values() if not tag.expired_at(now_ms)]


def cleanup_log(table: Table, *, now_ms: int | None = None, dry_run: bool = False,
                configuration: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Delete expired ``_delta_log`` files of ``table`` that no kept version or live tag needs.

    ``now_ms`` (default now) dates the cutoff; ``configuration`` (default: the latest
    version's properties) supplies ``delta.logRetentionDuration``. Returns ``{"dry_run",
    "retention_ms", "cutoff_ms", "files"`` (deleted log file names, or those a dry run would
    delete, oldest first), ``"num_files", "earliest_version"`` (the oldest version readable
    afterwards), ``"kept_by_pins"`` (file name -> tags that kept a file that would otherwise
    go)``}``. Versions below ``earliest_version`` then raise ``VersionNotFoundError``.
    """
    location = table.location
    storage = location.storage
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    config = table.snapshot().properties if configuration is None else configuration
    retention = log_retention_ms(config)
    cutoff = now - retention
    log_dir = location.path(LOG_DIR)
    listing = list_log(storage, location.root, table=location.name)
    files = storage.list_dir(log_dir)
    tags, hint = _live_tags(table, now), _hint_version(storage, log_dir)
    unusable: set[int] = set()
    while True:
        plan = plan_cleanup(listing, files, tags, cutoff_ms=cutoff, hint_version=hint, unusable=frozenset(unusable))
        # The cut checkpoint becomes the only way to rebuild its version: never cut at a damaged one.
        if plan.cut == 0 or _readable(storage, listing.checkpoints[plan.cut]):
            break
        unusable.add(plan.cut)
    if not dry_run:
        for info in plan.delete:  # one by one, oldest first: see the module doc
            storage.delete(info.path)
    earliest = max(listing.earliest_version, plan.cut)
    return {"dry_run": dry_run, "retention_ms": retention, "cutoff_ms": cutoff,
            "files": [info.name for info in plan.delete], "num_files": len(plan.delete),
            "earliest_version": earliest, "kept_by_pins": plan.kept_by_pins}


def cleanup_after_checkpoint(storage: Storage, root: str, configuration: Mapping[str, str]) -> None:
    """What a commit runs after writing a checkpoint (when the table has not turned it off)."""
    if not cleanup_enabled(configuration):
        return
    from lakehouse.location import TableLocation
    from lakehouse.table import Table

    cleanup_log(Table(TableLocation(storage, root)), configuration=configuration)


__all__ = ["CleanupPlan", "DEFAULT_LOG_RETENTION_MS", "ENABLE_EXPIRED_LOG_CLEANUP", "cleanup_after_checkpoint",
           "cleanup_enabled", "cleanup_log", "log_retention_ms", "plan_cleanup"]
