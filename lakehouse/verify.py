"""Checking that a tag still pins what it pinned: files present, same sizes, same rows.

A tag records two digests when it is created (:mod:`lakehouse.refs`):

* the **fingerprint** (table id, version, sorted live file paths and sizes), which proves
  the log still describes the same file set;
* the **rows hash** (:func:`rows_hash`), which proves the bytes in those files still decode
  to the same Arrow data.

:func:`verify` recomputes both and reports every difference; it never raises for a
mismatch, so a nightly job can log the report and alert on ``not report.ok``.

Canonical form of the rows hash (``v1``), chosen so it depends on nothing but the data:

* Each live file is read through the table schema (partition values from the log become
  columns, exactly as a scan returns them), streaming in batches.
* Per column, three byte streams are hashed separately with sha256, so *where* the reader
  cuts batches cannot change the result: ``validity`` (one byte per row, 1 = valid),
  ``values`` and, for strings/binary, ``lengths``. Values: fixed-width types as their
  little-endian Arrow bytes with null slots zeroed, booleans one byte per row, strings and
  binary as int64 lengths plus the concatenated bytes (null = empty), dictionaries decoded
  first; other types (lists, structs, maps...) as one length-prefixed canonical JSON text
  per row (floats as ``float.hex``, bytes as hex), so every type is covered.
* A file's digest is sha256 of a JSON header ``{"rows": n, "columns": [[name, arrow type,
  validity, values, lengths], ...]}``; the table's is sha256 of ``lakehouse-rows-v1`` and
  the file digests in sorted log-path order. Files are hashed in parallel but combined in
  that order, so thread scheduling cannot change the result either.

Memory is bounded by one batch per file being hashed (a few files at a time).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from lakehouse.errors import DataFileError, LakehouseError

if TYPE_CHECKING:
    from lakehouse.snapshot import Snapshot
    from lakehouse.table import Table

ROWS_HASH_SCHEME = "v1"
_BATCH_ROWS = 65_536
_FILE_THREADS = 4


# --- the rows hash ---------------------------------------------------------------------------


class _ColumnHasher:
    """The three streams of one column (see the module doc), fed batch by batch."""

    def __init__(self) -> None:
        self.validity = hashlib.sha256()
        self.values = hashlib.sha256()
        self.lengths = hashlib.sha256()

    def update(self, array: pa.Array) -> None:
        if isinstance(array, pa.ChunkedArray):
            for chunk in array.chunks:
                self.update(chunk)
            return
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        dtype = array.type
        if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
            array = array.cast(pa.large_string() if pa.types.is_string_view(dtype) else pa.large_binary())
            dtype = array.type
        valid = np.ones(len(array), dtype=bool) if array.null_count == 0 else \
            np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)
        self.validity.update(valid.view(np.uint8).tobytes())
        if pa.types.is_null(dtype) or len(array) == 0:
            return
        if pa.types.is_boolean(dtype):
            values = np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
            self.values.update(values.view(np.uint8).tobytes())
        elif _is_fixed_width(dtype):
            self.values.update(_fixed_bytes(array, valid))
        elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_binary(dtype) \
                or pa.types.is_large_binary(dtype):
            lengths, data = _variable_bytes(array, valid)
            self.lengths.update(lengths)
            self.values.update(data)
        else:
            for value in array.to_pylist():
                text = json.dumps(_plain(value), sort_keys=True, separators=(",", ":")).encode("utf-8")
                self.values.update(len(text).to_bytes(8, "little") + text)

    def digests(self) -> list[str]:
        return [self.validity.hexdigest(), self.values.hexdigest(), self.lengths.hexdigest()]


def _is_fixed_width(dtype: pa.DataType) -> bool:
    try:
        return dtype.bit_width % 8 == 0 and dtype.bit_width > 0
    except ValueError:  # variable width or nested: no bit width
        return False


def _fixed_bytes(array: pa.Array, valid: np.ndarray) -> bytes:
    width = array.type.bit_width // 8
    buffer = array.buffers()[1]
    raw = np.frombuffer(buffer, dtype=np.uint8, count=(array.offset + len(array)) * width)
    values = raw[array.offset * width:].reshape(len(array), width)
    if not valid.all():
        values = values.copy()
        values[~valid] = 0  # what a null slot holds is unspecified; zero it so it cannot matter
    return values.tobytes()


def _variable_bytes(array: pa.Array, valid: np.ndarray) -> tuple[bytes, bytes]:
    if not valid.all():
        empty = "" if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else b""
        array = array.fill_null(empty)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    offsets_type = np.int64 if large else np.int32
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offsets_type, count=array.offset + len(array) + 1)[array.offset:]
    lengths = np.diff(offsets).astype("<i8")
    data = b"" if buffers[2] is None else buffers[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]
    return lengths.tobytes(), data


def _plain(value: Any) -> Any:
    """A JSON-safe, exact form of a Python value from ``to_pylist`` (nested types)."""
    if isinstance(value, float):
        return {"f": value.hex()} if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"b": base64.b16encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {"d": [[str(k), _plain(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return {"t": value.isoformat()}
    if isinstance(value, (decimal.Decimal, dt.timedelta)):
        return {"s": str(value)}
    return value  # None, bool, int, str


def file_rows_digest(snapshot: Snapshot, path: str) -> str:
    """The digest of one live file's rows (``path`` as the log names it)."""
    from lakehouse.scan import Scan

    files = snapshot.files
    row = files.filter(pc.equal(files.column("path"), path))
    if row.num_rows != 1:
        raise LakehouseError(f"table '{snapshot.location.name}' version {snapshot.version} has no live file '{path}'")
    scan = Scan(snapshot)
    schema = snapshot.schema
    (fragment,) = scan.fragments(row)  # read exactly as scans read it (INT96 as microseconds...)
    dataset = ds.FileSystemDataset([fragment], schema, fragment.format)
    hashers = [_ColumnHasher() for _ in schema.names]
    rows = 0
    with scan._reading():  # a vanished or unreadable file becomes one DataFileError naming the version
        for batch in dataset.to_batches(batch_size=_BATCH_ROWS, use_threads=True):
            rows += batch.num_rows
            for hasher, column in zip(hashers, batch.columns):
                hasher.update(column)
    header = {"rows": rows, "columns": [[f.name, str(f.type), *h.digests()] for f, h in zip(schema, hashers)]}
    return hashlib.sha256(json.dumps(header, separators=(",", ":")).encode("utf-8")).hexdigest()


def rows_hash(snapshot: Snapshot) -> str:
    """``"v1:<sha256 hex>"`` of every row of ``snapshot`` in the canonical form of the module doc.

    Streams the files (bounded memory); equal data in equal files gives an equal hash
    whatever the batch sizes or thread scheduling of the reader.
    """
    paths = sorted(snapshot.files.column("path").to_pylist())
    outer = hashlib.sha256(b"lakehouse-rows-v1\n")
    for digest in _digests(snapshot, paths):
        outer.update(digest.encode("ascii") + b"\n")
    return f"{ROWS_HASH_SCHEME}:{outer.hexdigest()}"


def _digests(snapshot: Snapshot, paths: list[str]) -> Iterator[str]:
    if len(paths) <= 1:
        yield from (file_rows_digest(snapshot, p) for p in paths)
        return
    with ThreadPoolExecutor(max_workers=min(_FILE_THREADS, len(paths))) as pool:
        yield from pool.map(lambda p: file_rows_digest(snapshot, p), paths)  # map keeps the order


# --- verify ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found. ``ok`` is True only when nothing differs.

    ``rows_hash_ok`` is ``None`` when rows were not compared (the tag records no rows hash,
    or ``rows=False`` was passed); ``unreadable`` lists files present with the right size
    that could not be decoded.
    """

    ok: bool
    tag: str
    version: int
    fingerprint_ok: bool
    missing: tuple[str, ...]
    size_mismatch: tuple[str, ...]
    rows_hash_ok: bool | None
    unreadable: tuple[str, ...] = ()

    def __str__(self) -> str:
        head = f"tag '{self.tag}' (version {self.version}): "
        if self.ok:
            rows = "rows hash the same" if self.rows_hash_ok else "rows were not checked (no rows hash recorded)"
            return head + f"ok: every file is present with its size, fingerprint matches, {rows}"
        problems = []
        if not self.fingerprint_ok:
            problems.append("the log's file list no longer matches the tag's fingerprint")
        for label, files in (("missing", self.missing), ("with a different size", self.size_mismatch),
                             ("unreadable", self.unreadable)):
            if files:
                shown = ", ".join(f"'{p}'" for p in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                problems.append(f"{len(files)} file(s) {label}: {shown}")
        if self.rows_hash_ok is False:
            problems.append("rows do not hash the same")
        return head + "FAILED: " + "; ".join(problems)


def verify(table: Table, tag: str, *, rows: bool = True) -> VerifyReport:
    """Re-check that tag ``tag`` still pins what it pinned when it was created.

    Checks the fingerprint of the tagged version against the one recorded, that every
    file is present with the size the log gives, and (unless ``rows=False``, or the tag was
    created with ``hash_rows=False``) that the rows hash the same. Differences are
    reported, not raised; ``TagNotFoundError`` for an unknown tag and
    ``VersionNotFoundError`` if the log can no longer rebuild the version.
    """
    from lakehouse.refs import get_tag, fingerprint

    pinned = get_tag(table, tag)
    snapshot = table.snapshot(pinned.version)
    fingerprint_ok = fingerprint(snapshot) == pinned.fingerprint
    files = snapshot.files.select(["path", "size"]).to_pylist()
    missing, wrong_size = _check_files(snapshot, files)
    rows_ok: bool | None = None
    unreadable: list[str] = []
    if rows and pinned.rows_hash is not None:
        if missing or not pinned.rows_hash.startswith(ROWS_HASH_SCHEME + ":"):
            rows_ok = False if missing else None  # an unknown (newer) scheme cannot be checked here
        else:
            rows_ok, unreadable = _rows_match(snapshot, pinned.rows_hash)
    ok = fingerprint_ok and not missing and not wrong_size and not unreadable and rows_ok is not False
    return VerifyReport(ok=ok, tag=pinned.name, version=pinned.version, fingerprint_ok=fingerprint_ok,
                        missing=tuple(missing), size_mismatch=tuple(wrong_size), rows_hash_ok=rows_ok,
                        unreadable=tuple(unreadable))


def _check_files(snapshot: Snapshot, files: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    location = snapshot.location

    def head(row: dict[str, Any]) -> tuple[str, int | None, int]:
        storage, path = location.file_storage(row["path"])
        info = storage.head(path)
        return row["path"], None if info is None else info.size, int(row["size"])

    if location.storage.parallel_reads and len(files) > 4:  # remote stores: one round trip per file
        with ThreadPoolExecutor(max_workers=16) as pool:
            found = list(pool.map(head, files))
    else:
        found = [head(row) for row in files]
    missing = sorted(p for p, size, _ in found if size is None)
    wrong = sorted(p for p, size, expected in found if size is not None and size != expected)
    return missing, wrong


def _rows_match(snapshot: Snapshot, recorded: str) -> tuple[bool, list[str]]:
    """Whether the rows hash the same; files that fail to decode are listed, not raised."""
    try:
        return rows_hash(snapshot) == recorded, []
    except (DataFileError, pa.ArrowException, OSError):
        pass
    unreadable = []  # find which: only on the failure path, so the happy path reads each file once
    for path in sorted(snapshot.files.column("path").to_pylist()):
        try:
            file_rows_digest(snapshot, path)
        except (DataFileError, pa.ArrowException, OSError):
            unreadable.append(path)
    return False, unreadable


__all__ = ["ROWS_HASH_SCHEME", "VerifyReport", "file_rows_digest", "rows_hash", "verify"]
