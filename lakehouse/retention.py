"""What vacuum must keep beyond its retention window: files pinned by tags and by clones.

Vacuum deletes files that no version inside the retention window references. Two things
outlive that window:

* a **tag** (``lakehouse.refs``) keeps every live file of its version until the tag is
  dropped or its ``retain`` period has passed, plus the change data its own commit wrote
  (its ``cdc`` files, or, for a commit without them, the files it removed, whose rows the
  change feed reports as deletes), so ``table.changes(v, v)`` keeps working for a tagged
  ``v``;
* a **shallow clone** (``lakehouse.clone``) keeps every file of this table that any commit
  or checkpoint still in the clone's log references, so every version of the clone that
  its own log can rebuild stays readable. A clone whose folder is gone keeps nothing.

Keys are paths inside ``table.location.storage`` (the same form vacuum's ``walk`` of the
table root yields), whether the log spelled the file relative (this table's own log) or
as an absolute URL (a clone's log). Errors reading a tag's snapshot or a clone's log are
raised, never skipped: a vacuum that cannot tell what is protected must not delete.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lakehouse.clone import registered_clones
from lakehouse.errors import TableNotFoundError, UnsafePathError, VersionNotFoundError
from lakehouse.location import TableLocation
from lakehouse.log.actions import AddCDCFile, AddFile, RemoveFile
from lakehouse.log.checkpoint import read_checkpoint
from lakehouse.log.paths import is_absolute_uri, resolve_data_path
from lakehouse.log.replay import read_commits
from lakehouse.log.segment import LogListing, list_log
from lakehouse.refs import list_tags

if TYPE_CHECKING:
    from lakehouse.table import Table


def protected_files(table: Table, *, now_ms: int | None = None) -> dict[str, list[str]]:
    """Map each protected data file (storage path) to why it is kept.

    Reasons read like ``"tag 'v1' (version 3)"`` and ``"clone 'file:///data/copy'"``.
    Expired tags (``retain`` passed at ``now_ms``, default now) protect nothing; a tag
    whose version the log can no longer rebuild protects nothing either.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    location = table.location
    out: dict[str, list[str]] = {}

    def keep(path: str, reason: str) -> None:
        reasons = out.setdefault(path, [])
        if reason not in reasons:
            reasons.append(reason)

    tags = [tag for tag in list_tags(table).values() if not tag.expired_at(now)]
    listing = list_log(location.storage, location.root, table=location.name) if tags else None
    for tag in tags:
        try:
            snapshot = table.snapshot(tag.version)
        except VersionNotFoundError:
            continue  # the log was cleaned past it: the version cannot be read anyway
        reason = f"tag '{tag.name}' (version {tag.version})"
        for raw in snapshot.files.column("path").to_pylist():
            path = own_path(location, raw)
            if path is not None:
                keep(path, reason)
        for raw in _change_files(location, listing, tag.version):
            path = own_path(location, raw)
            if path is not None:
                keep(path, f"tag '{tag.name}' (version {tag.version}, change data)")

    for url in registered_clones(table):
        reason = f"clone '{url}'"
        for raw in _clone_references(location, url):
            path = own_path(location, raw) if is_absolute_uri(raw) else None  # relative: the clone's own files
            if path is not None:
                keep(path, reason)
    return out


def _change_files(location: TableLocation, listing: LogListing | None, version: int) -> list[str]:
    """Log paths of the files the change feed reads for ``version`` alone (see lakehouse.changes)."""
    info = listing.commits.get(version) if listing is not None else None
    if info is None:
        return []  # the commit was cleaned up: its changes cannot be read anyway
    (actions,) = read_commits(location.storage, [info], table=location.name)
    cdc = [a.path for a in actions if isinstance(a, AddCDCFile)]
    if cdc:
        return cdc
    return [a.path for a in actions if isinstance(a, RemoveFile) and a.data_change]


def own_path(location: TableLocation, raw: str) -> str | None:
    """The storage path of log path ``raw`` if it names a file under this table's root.

    ``None`` for files elsewhere (another table's, or an unsafe path no reader would
    open): vacuum only ever deletes below its own root, so those need no protection here.
    """
    if not is_absolute_uri(raw):
        try:
            path, url = resolve_data_path(location.root, raw, table=location.name, root_url=location.url)
        except UnsafePathError:
            return None
        return path if url is None else None
    url = unquote(raw)  # log paths are URI-encoded once, as the reader decodes them
    if ".." in url.split("/"):
        return None
    path = location.storage.from_url(url)
    root = location.root.rstrip("/") + "/"
    return path if path is not None and path.startswith(root) else None


def _clone_references(source: TableLocation, clone_url: str) -> set[str]:
    """Every ``add`` path in the commits and checkpoints still in the clone's log."""
    clone = TableLocation.of(clone_url, storage_options=source.storage_options)
    try:
        listing = list_log(clone.storage, clone.root, table=clone.name)
    except TableNotFoundError:
        return set()  # the clone was dropped: it needs nothing any more
    paths: set[str] = set()
    infos = [listing.commits[v] for v in sorted(listing.commits)]
    for actions in read_commits(clone.storage, infos, table=clone.name):
        paths.update(a.path for a in actions if isinstance(a, AddFile))
    for parts in listing.checkpoints.values():
        contents = read_checkpoint(clone.storage, parts, table=clone.name)
        paths.update(p for p in contents.files.column("path").to_pylist() if p is not None)
    return paths


__all__ = ["own_path", "protected_files"]
