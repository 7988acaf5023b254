"""Where a table lives: its storage, root path, and which outside locations it may read."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Mapping

import pyarrow.fs as pafs

from lakehouse.log.paths import resolve_data_path
from lakehouse.storage import Storage, resolve


@dataclass(frozen=True)
class TableLocation:
    """A table's address. Holds no version state; every read lists the log afresh."""

    storage: Storage
    root: str
    allowed_roots: tuple[str, ...] = ()
    storage_options: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, location: str, *, storage_options: Mapping[str, Any] | None = None,
           allowed_roots: tuple[str, ...] = ()) -> TableLocation:
        storage, root = resolve(location, storage_options)
        return cls(storage, root, tuple(allowed_roots), storage_options)

    @property
    def name(self) -> str:
        return posixpath.basename(self.root.rstrip("/")) or self.root

    @property
    def url(self) -> str:
        return self.storage.to_url(self.root)

    def path(self, *parts: str) -> str:
        return self.storage.join(self.root, *parts)

    def data_file(self, raw: str) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and path for an ``add.path`` from the log (validated)."""
        storage, path = self.file_storage(raw)
        return storage.arrow_filesystem, path

    def file_storage(self, raw: str) -> tuple[Storage, str]:
        """The storage and path holding the file an ``add``/``remove``/``cdc`` path names (validated).

        Absolute URIs (a shallow clone's references into its source) must lie under this
        table or an allowed root.
        """
        path, url = resolve_data_path(self.root, raw, table=self.name, root_url=self.url,
                                      allowed_roots=self.allowed_roots)
        if url is None:
            return self.storage, path
        # ``url`` is already decoded: map it onto our own storage when it is the same
        # filesystem, since resolve() would decode a file:// URL a second time ('%3D' -> '=').
        same = self.storage.from_url(url)
        if same is not None:
            return self.storage, same
        return resolve(url, self.storage_options)
