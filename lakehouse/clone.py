"""Zero-copy shallow clones: a new table whose version 0 references the source's files.

The clone's first commit holds the source's protocol, a new ``metaData`` (new table id,
same schema, partitioning and properties) and one ``add`` per live source file, with the
path made absolute (``<source url>/<relative path>``). No data file is copied. Later writes
to the clone land in the clone's own folder, so the two tables diverge independently.

Two small records keep that safe (each a put-if-absent file, never a shared document):

* ``<source>/_lakehouse/clones/<sha256(clone url)>.json`` — the source's registry of the
  clones that reference its files, so the source's vacuum keeps them (``retention``).
* ``<clone>/_lakehouse/clone-source.json`` — the roots the clone may read from, so it can
  be opened without the caller passing ``allowed_roots`` (``clone_source_roots``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Mapping

from lakehouse.errors import (
    CorruptLogError, LakehouseError, TableAlreadyExistsError, TableNotFoundError, UnsupportedFeatureError,
)
from lakehouse.location import TableLocation
from lakehouse.log.actions import AddFile, CommitInfo, Metadata, parse_commit
from lakehouse.log.paths import LOG_DIR, check_relative_path, commit_name, encode_relative_path, is_absolute_uri
from lakehouse.log.segment import list_log
from lakehouse.txn.conflicts import ReadSet
from lakehouse.txn.transaction import Commit

if TYPE_CHECKING:
    from lakehouse.table import Table

CLONES_DIR = ("_lakehouse", "clones")
SOURCE_RECORD = ("_lakehouse", "clone-source.json")


def clone_source_roots(location: TableLocation) -> tuple[str, ...]:
    """The outside roots (URLs) a shallow clone at ``location`` reads; ``()`` if not a clone.

    One read of ``_lakehouse/clone-source.json``; the table opener adds these to
    ``allowed_roots`` so a clone opens like any other table.
    """
    try:
        data = location.storage.read(location.path(*SOURCE_RECORD))
    except FileNotFoundError:
        return ()
    try:
        roots = json.loads(data)["allowedRoots"]
        if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
            raise ValueError("allowedRoots is not a list of urls")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptLogError(f"table '{location.name}': '{'/'.join(SOURCE_RECORD)}' is unreadable ({exc}); "
                              "repair it or open the table with allowed_roots=[source url]") from None
    return tuple(roots)


def registered_clones(table: Table) -> list[str]:
    """URLs of every shallow clone registered on ``table`` (including clones since dropped)."""
    storage = table.location.storage
    urls = set()
    for info in storage.list_dir(table.location.path(*CLONES_DIR)):
        if not info.name.endswith(".json"):
            continue  # temp files of an in-flight local publish
        try:
            record = json.loads(storage.read(info.path))
            urls.add(str(record["url"]))
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptLogError(f"table '{table.name}': clone record '{info.name}' is unreadable ({exc}); "
                                  "repair or delete it") from None
    return sorted(urls)


def shallow_clone(source: Table | str, location: str, *, version: int | None = None,
                  storage_options: Mapping[str, Any] | None = None) -> Table:
    """Create a shallow clone of ``source`` (at ``version``, latest if ``None``) at ``location``.

    ``source`` is a ``Table`` or a location string (opened with ``storage_options`` too).
    Copies no data file. Raises ``TableNotFoundError`` when the source has no table and
    ``TableAlreadyExistsError`` when ``location`` already holds one.
    """
    from lakehouse.table import Table

    src = _open_source(source, storage_options)
    try:
        snapshot = src.snapshot(version)
    except TableNotFoundError:
        raise TableNotFoundError(f"cannot clone '{src.uri}': there is no delta table there; check the path") from None
    source_url = src.location.url
    target = TableLocation.of(os.fspath(location), storage_options=storage_options)
    if _exists(target):
        raise TableAlreadyExistsError(f"cannot clone table '{src.name}' to '{target.url}': a table already exists "
                                      "there; pick another location or drop that table first")
    if target.url.startswith(source_url.rstrip("/") + "/"):
        # The source's vacuum would see the clone's own files as orphans of the source.
        raise LakehouseError(f"cannot clone table '{src.name}' into '{target.url}': the clone must live "
                             "outside the source table's folder; pick another location")
    inherited = (*clone_source_roots(src.location), *src.location.allowed_roots)
    roots = tuple(dict.fromkeys((source_url, *inherited)))
    target = dataclasses.replace(target, allowed_roots=roots)
    clone = Table(target)
    adds = [_absolute(add, source_url, src.name) for add in snapshot.add_files()]
    old = snapshot.metadata
    metadata = Metadata(id=str(uuid.uuid4()), schema_string=old.schema_string, partition_columns=old.partition_columns,
                        configuration=dict(old.configuration), name=None, description=old.description,
                        created_time=int(time.time() * 1000))
    # Register before committing: once the clone's commit exists its files must already be
    # protected from the source's vacuum. A crash here leaves a registry entry for a table
    # that does not exist, which protects nothing.
    for root in (source_url, *clone_source_roots(src.location)):
        _register(root, target.url, snapshot.version, src.location.storage_options)
    _write_record(target, source_url, snapshot.version, roots)
    commit = Commit(
        storage=target.storage, root=target.root, table=target.name, read_version=None, operation="CLONE",
        parameters={"source": source_url, "sourceVersion": snapshot.version, "isShallow": True},
        metrics={"sourceTableSize": snapshot.size_bytes, "sourceNumOfFiles": snapshot.num_files,
                 "numCopiedFiles": 0, "copiedFilesSize": 0},
        actions=[snapshot.protocol, metadata, *adds], read_set=ReadSet(), configuration=metadata.configuration)
    try:
        commit.publish()
    except TableAlreadyExistsError:
        _repair_record(target, storage_options)  # our record may have clobbered the winner's
        raise TableAlreadyExistsError(f"cannot clone table '{src.name}' to '{target.url}': another writer created "
                                      "a table there concurrently; pick another location") from None
    # A concurrent loser may have written its record after ours; the winner writes last.
    _write_record(target, source_url, snapshot.version, roots)
    return clone


def _open_source(source: Table | str, storage_options: Mapping[str, Any] | None) -> Table:
    from lakehouse.table import Table

    if isinstance(source, Table):
        return source
    if isinstance(source, (str, os.PathLike)):
        loc = TableLocation.of(os.fspath(source), storage_options=storage_options)
        return Table(dataclasses.replace(loc, allowed_roots=clone_source_roots(loc)))  # a clone of a clone
    raise LakehouseError(f"shallow_clone needs a lakehouse.Table or a location string as source, "
                         f"got {type(source).__name__}")


def _exists(location: TableLocation) -> bool:
    try:
        list_log(location.storage, location.root, table=location.name)
    except TableNotFoundError:
        return False
    return True


def _absolute(add: AddFile, source_url: str, table: str) -> AddFile:
    """The clone's ``add``: same file, addressed by absolute URL, counted as a data change."""
    dv = add.deletion_vector
    if dv is not None and dv.get("storageType") != "i":
        # Deletion-vector files are addressed relative to the table root; the clone would
        # look for them in its own folder.
        raise UnsupportedFeatureError(f"cannot shallow-clone table '{table}': file '{add.path}' has an on-disk "
                                      "deletion vector; run optimize/purge on the source first")
    if is_absolute_uri(add.path):
        path = add.path  # the source is itself a clone: keep pointing at the original file
    else:
        check_relative_path(add.path, table=table)  # never turn '../x' into an absolute reference
        # Log paths are URI-encoded; encode the root the same way so readers decode both once.
        path = encode_relative_path(source_url.rstrip("/")) + "/" + add.path
    return dataclasses.replace(add, path=path, data_change=True)


def _register(root_url: str, clone_url: str, source_version: int, options: Mapping[str, Any] | None) -> None:
    loc = TableLocation.of(root_url, storage_options=options)
    name = hashlib.sha256(clone_url.encode("utf-8")).hexdigest() + ".json"
    record = {"url": clone_url, "createdMs": int(time.time() * 1000), "sourceVersion": source_version}
    try:
        loc.storage.write_if_absent(loc.path(*CLONES_DIR, name), json.dumps(record).encode("utf-8"))
    except FileExistsError:
        pass  # registered before (a clone recreated at the same URL): one entry is enough


def _write_record(target: TableLocation, source_url: str, source_version: int, roots: tuple[str, ...]) -> None:
    record = {"source": source_url, "sourceVersion": source_version, "allowedRoots": list(roots),
              "createdMs": int(time.time() * 1000)}
    # Plain write, not put-if-absent: no table exists here yet (or we just created it), so
    # any older record is a leftover of a failed clone and must be replaced.
    target.storage.write(target.path(*SOURCE_RECORD), json.dumps(record).encode("utf-8"))


def _repair_record(target: TableLocation, options: Mapping[str, Any] | None) -> None:
    """After losing a create race, make the record describe the table that won."""
    try:
        actions = parse_commit(target.storage.read(target.path(LOG_DIR, commit_name(0))), target.url)
    except (FileNotFoundError, LakehouseError):
        return
    info = next((a for a in actions if isinstance(a, CommitInfo)), None)
    params = (info.values.get("operationParameters") or {}) if info is not None else {}
    if info is None or info.operation != "CLONE" or not isinstance(params.get("source"), str):
        target.storage.delete(target.path(*SOURCE_RECORD))  # the winner is no clone: trust nothing
        return
    source = TableLocation.of(params["source"], storage_options=options)
    roots = tuple(dict.fromkeys((source.url, *clone_source_roots(source))))
    _write_record(target, source.url, int(params.get("sourceVersion") or 0), roots)


__all__ = ["clone_source_roots", "registered_clones", "shallow_clone"]
