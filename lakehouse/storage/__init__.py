"""Storage backends and the factory that picks one from a table URL."""

from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import unquote

from lakehouse.errors import StorageError
from lakehouse.storage.base import FileInfo, Storage
from lakehouse.storage.local import LocalStorage

StorageOptions = Mapping[str, Any]


def resolve(location: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> tuple[Storage, str]:
    """Pick the storage for ``location`` and return it with the table root path inside it.

    Accepts a local path, ``file://``, ``memory://``, ``s3://``/``s3a://``, or any other
    fsspec URL (whose put-if-absent is check-then-write and therefore not race-safe).
    """
    text = os.fspath(location)
    if "://" not in text:
        return LocalStorage(), os.path.abspath(os.path.expanduser(text)).rstrip(os.sep) or os.sep
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        return LocalStorage(), os.path.abspath(unquote(rest)).rstrip(os.sep) or os.sep
    if scheme == "memory":
        from lakehouse.storage.memory import MemoryStorage

        return MemoryStorage(), "/" + rest.strip("/")
    if scheme in ("s3", "s3a"):
        from lakehouse.storage.s3 import S3Storage

        root = rest.strip("/")
        if not root:
            raise StorageError(f"'{text}' names no bucket: use s3://bucket/path/to/table")
        return S3Storage(storage_options), root
    try:
        import fsspec

        from lakehouse.storage.fsspec_backed import FsspecStorage

        fs = fsspec.filesystem(scheme, **dict(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise StorageError(f"no storage backend for '{scheme}://' URLs: {exc}") from exc
    return FsspecStorage(fs, scheme), fs._strip_protocol(text).rstrip("/")


__all__ = ["FileInfo", "Storage", "StorageOptions", "resolve"]
