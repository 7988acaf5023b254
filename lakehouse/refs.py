"""Named tags that pin a table version (ML runs, ``ALTER TABLE t CREATE TAG``).

On storage every change is its own put-if-absent event file, so concurrent taggers can
never overwrite each other and a create/drop race has exactly one winner::

    <table>/_lakehouse/refs/tags/<name>@<seq:020d>.json   {"op": "create" | "drop", ...}

The state of a name is its highest-``seq`` event: a ``create`` means the tag is live, a
``drop`` means it is gone. A writer reads the current state, validates against it, and
writes ``seq + 1``; losing that race (the file exists) re-reads and re-validates. The
layout is flat (one folder) because ``Storage.list_dir`` lists files only and one listing
of one prefix is a single request on object stores.

Each create event records the version's ``fingerprint`` and, unless the tag was created
with ``hash_rows=False``, a ``rowsHash`` of its rows (:func:`lakehouse.verify.rows_hash`),
so :func:`lakehouse.verify.verify` can later prove the files still hold the same data.

Expiry: a tag created with ``retain=`` stops protecting its files from vacuum once
``retain_until_ms`` has passed, but it stays listed (``Tag.expired`` is ``True``) and still
names its version until someone drops it, so nothing disappears behind the user's back.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.errors import (
    CorruptLogError, InvalidTagError, TagExistsError, TagNotFoundError, VersionNotFoundError,
)

if TYPE_CHECKING:
    from lakehouse.snapshot import Snapshot
    from lakehouse.table import Table

TAGS_DIR = ("_lakehouse", "refs", "tags")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_EVENT = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]{0,127})@(\d{20})\.json$")
_MAX_ATTEMPTS = 64  # lost races before giving up (each loss means someone else made progress)


@dataclass(frozen=True)
class Tag:
    """A live tag: ``name`` pins ``version`` (whose files ``fingerprint`` identifies)."""

    name: str
    version: int
    created_ms: int
    note: str | None
    retain_until_ms: int | None  # None: protects its files forever
    fingerprint: str
    rows_hash: str | None = None  # None: created with hash_rows=False (verify skips the rows)

    @property
    def expired(self) -> bool:
        """True once the retention period has passed (the tag no longer protects files)."""
        return self.expired_at(int(time.time() * 1000))

    def expired_at(self, now_ms: int) -> bool:
        return self.retain_until_ms is not None and now_ms >= self.retain_until_ms


def fingerprint(snapshot: Snapshot) -> str:
    """sha256 hex of the table id, version and sorted (path, size) of the live files.

    Two snapshots with the same fingerprint hold byte-for-byte the same file set, so a
    tag can be checked later against what it pinned.
    """
    files = snapshot.files
    pairs = sorted(zip(files.column("path").to_pylist(), files.column("size").to_pylist()))
    canonical = json.dumps({"tableId": snapshot.table_id, "version": snapshot.version,
                            "files": [[path, int(size)] for path, size in pairs]},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- reading the events --------------------------------------------------------------------


def _dir(table: Table) -> str:
    return table.location.path(*TAGS_DIR)


def _heads(table: Table) -> dict[str, tuple[int, str]]:
    """For each name ever tagged: (highest seq, path of that event file). One listing."""
    heads: dict[str, tuple[int, str]] = {}
    for info in table.location.storage.list_dir(_dir(table)):
        match = _EVENT.match(info.name)
        if match is None:
            continue  # temp files of an in-flight local publish, or foreign files
        name, seq = match.group(1), int(match.group(2))
        if name not in heads or seq > heads[name][0]:
            heads[name] = (seq, info.path)
    return heads


def _read_event(table: Table, path: str) -> dict[str, Any]:
    try:
        event = json.loads(table.location.storage.read(path))
    except FileNotFoundError:
        raise CorruptLogError(f"table '{table.name}': tag event '{path}' vanished while reading; retry") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptLogError(f"table '{table.name}': tag event '{path}' is not valid json ({exc}); "
                              "delete or repair it") from None
    if not isinstance(event, dict) or event.get("op") not in ("create", "drop"):
        raise CorruptLogError(f"table '{table.name}': tag event '{path}' has no valid 'op'; delete or repair it")
    return event


def _to_tag(event: dict[str, Any]) -> Tag:
    return Tag(name=event["name"], version=int(event["version"]), created_ms=int(event["createdMs"]),
               note=event.get("note"), retain_until_ms=event.get("retainUntilMs"),
               fingerprint=event["fingerprint"], rows_hash=event.get("rowsHash"))


def _state(table: Table, name: str) -> tuple[int, Tag | None]:
    """(highest seq, live tag or None) for one name; seq 0 when the name was never used."""
    head = _heads(table).get(name)
    if head is None:
        return 0, None
    event = _read_event(table, head[1])
    return head[0], _to_tag(event) if event["op"] == "create" else None


def list_tags(table: Table) -> dict[str, Tag]:
    """Every live (created, not dropped) tag by name, sorted; expired tags included."""
    out: dict[str, Tag] = {}
    for name, (_seq, path) in sorted(_heads(table).items()):
        event = _read_event(table, path)
        if event["op"] == "create":
            out[name] = _to_tag(event)
    return out


def get_tag(table: Table, name: str) -> Tag:
    """The live tag ``name``; ``TagNotFoundError`` suggests the nearest existing names."""
    _seq, tag = _state(table, name) if _valid(name) else (0, None)
    if tag is None:
        names = list(list_tags(table))
        near = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(n) for n in near)}?" if near else _existing(names)
        raise TagNotFoundError(f"table '{table.name}' has no tag '{name}'; {hint}")
    return tag


def _valid(name: Any) -> bool:
    return isinstance(name, str) and _NAME.match(name) is not None


def _existing(names: list[str]) -> str:
    if not names:
        return "the table has no tags; create one with table.tag(name) or ALTER TABLE t CREATE TAG name"
    return "existing tags: " + ", ".join(repr(n) for n in names)


# --- changing tags -------------------------------------------------------------------------


def _check_name(table: Table, name: Any) -> str:
    if not _valid(name):
        raise InvalidTagError(
            f"table '{table.name}': invalid tag name {name!r}; use 1 to 128 letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'")
    return name


def _retain_ms(table: Table, retain: dt.timedelta | float | int | None) -> int | None:
    if retain is None:
        return None
    if isinstance(retain, dt.timedelta):
        ms = retain.total_seconds() * 1000
    elif isinstance(retain, (int, float)) and not isinstance(retain, bool):
        ms = float(retain) * 3_600_000  # a number means hours
    else:
        raise InvalidTagError(f"table '{table.name}': retain must be a datetime.timedelta or a number of hours, "
                              f"got {type(retain).__name__}")
    if ms < 0:
        raise InvalidTagError(f"table '{table.name}': retain must not be negative, got {retain!r}")
    return int(ms)


def _publish(table: Table, name: str, seq: int, event: dict[str, Any]) -> bool:
    """Write event ``seq`` for ``name``; False when another writer took that seq first."""
    data = json.dumps({**event, "name": name, "seq": seq}, sort_keys=True).encode("utf-8")
    path = table.location.storage.join(_dir(table), f"{name}@{seq:020d}.json")
    try:
        table.location.storage.write_if_absent(path, data)
    except FileExistsError:
        return False
    return True


def create_tag(table: Table, name: str, *, version: int | None = None,
               retain: dt.timedelta | float | None = None, note: str | None = None,
               hash_rows: bool = True) -> Tag:
    """Pin ``version`` (latest when ``None``) of ``table`` under ``name`` and return the tag.

    ``retain`` (a ``timedelta`` or hours) limits how long the tag keeps vacuum from deleting
    the version's files; ``None`` keeps them forever. ``hash_rows`` reads every row of the
    version once (streaming) to record a rows hash for :func:`lakehouse.verify.verify`;
    pass ``False`` for huge tables (verify then checks files and sizes only). Raises
    ``TagExistsError`` if a live tag of that name exists (drop it first),
    ``VersionNotFoundError`` for a missing version.
    """
    _check_name(table, name)
    if version is not None:
        from lakehouse.table import as_version

        version = as_version(version, table=table.name)
    if note is not None and not isinstance(note, str):
        raise InvalidTagError(f"table '{table.name}': tag note must be a string, got {type(note).__name__}")
    retain_ms = _retain_ms(table, retain)
    snapshot = table.snapshot(version)  # validates the version before anything is written
    pinned = {"op": "create", "version": snapshot.version, "note": note, "fingerprint": fingerprint(snapshot),
              "tableId": snapshot.table_id}
    if hash_rows:
        from lakehouse.verify import rows_hash  # lazily: verify reads data files, refs only the log

        _refuse_existing(table, name)  # fail fast, before the (possibly long) read of every row
        pinned["rowsHash"] = rows_hash(snapshot)
    for _ in range(_MAX_ATTEMPTS):
        seq = _refuse_existing(table, name)
        created = int(time.time() * 1000)
        event = {**pinned, "createdMs": created,
                 "retainUntilMs": None if retain_ms is None else created + retain_ms}
        if _publish(table, name, seq + 1, event):
            return _to_tag({**event, "name": name})
    raise InvalidTagError(f"table '{table.name}': could not create tag '{name}' after {_MAX_ATTEMPTS} lost races; "
                          "another writer keeps changing it (or a case-insensitive filesystem maps two names "
                          "to one file); retry later")


def _refuse_existing(table: Table, name: str) -> int:
    """The name's highest event seq; ``TagExistsError`` if a live tag holds the name."""
    seq, live = _state(table, name)
    if live is not None:
        raise TagExistsError(f"table '{table.name}' already has a tag '{name}' (version {live.version}); "
                             "drop it first or pick another name")
    return seq


def drop_tag(table: Table, name: str) -> None:
    """Remove the live tag ``name``; ``TagNotFoundError`` (listing existing tags) if none.

    Of two concurrent drops exactly one succeeds; the other sees the tag already gone.
    """
    for _ in range(_MAX_ATTEMPTS):
        seq, live = _state(table, name) if _valid(name) else (0, None)
        if live is None:
            raise TagNotFoundError(f"cannot drop tag '{name}': table '{table.name}' has no such tag; "
                                   f"{_existing(list(list_tags(table)))}")
        if _publish(table, name, seq + 1, {"op": "drop", "version": live.version,
                                           "droppedMs": int(time.time() * 1000)}):
            return
    raise InvalidTagError(f"table '{table.name}': could not drop tag '{name}' after {_MAX_ATTEMPTS} lost races; "
                          "retry later")


__all__ = ["InvalidTagError", "Tag", "TagExistsError", "create_tag", "drop_tag", "fingerprint", "get_tag",
           "list_tags"]
