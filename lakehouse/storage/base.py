"""The storage interface every table operation goes through.

A :class:`Storage` addresses files by *paths inside one filesystem* (no scheme: an
absolute local path, ``bucket/key`` on S3, ``/folder/file`` in memory). The one
operation that makes the Delta log safe is :meth:`Storage.write_if_absent`: publishing a
commit must either create the file with our complete bytes or fail because someone else
created it first. Each backend implements it with the strongest primitive it has.
"""

from __future__ import annotations

import abc
import posixpath
from dataclasses import dataclass
from typing import Iterator

import pyarrow.fs as pafs


@dataclass(frozen=True)
class FileInfo:
    """A file seen in a listing: its path in the filesystem, its size and its mtime (ms)."""

    path: str
    size: int
    modified_ms: int
    name: str = ""  # base name; derived from ``path`` when not given

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", posixpath.basename(self.path))


class Storage(abc.ABC):
    """Files on one filesystem. Implementations must be safe to use from several threads."""

    #: URL scheme this storage serves (``file``, ``memory``, ``s3``...).
    scheme: str = ""
    #: Whether many small reads gain from running concurrently (remote object stores).
    parallel_reads: bool = True

    # --- reading ------------------------------------------------------------------

    @abc.abstractmethod
    def list_dir(self, directory: str) -> list[FileInfo]:
        """Files directly inside ``directory``, sorted by name; ``[]`` if it does not exist."""

    def list_from(self, directory: str, start_name: str) -> list[FileInfo]:
        """Files in ``directory`` whose name sorts at or after ``start_name``."""
        return [info for info in self.list_dir(directory) if info.name >= start_name]

    @abc.abstractmethod
    def walk(self, directory: str) -> Iterator[FileInfo]:
        """Every file below ``directory``, recursively (used by vacuum and drop)."""

    @abc.abstractmethod
    def read(self, path: str) -> bytes:
        """The whole file. Raises ``FileNotFoundError`` if it does not exist."""

    @abc.abstractmethod
    def head(self, path: str) -> FileInfo | None:
        """Size and mtime of ``path``, or ``None`` if it does not exist."""

    def exists(self, path: str) -> bool:
        return self.head(path) is not None

    # --- writing ------------------------------------------------------------------

    @abc.abstractmethod
    def write(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` with ``data`` (for data files and hints only)."""

    @abc.abstractmethod
    def write_if_absent(self, path: str, data: bytes) -> None:
        """Create ``path`` holding exactly ``data``, atomically, only if it does not exist.

        Raises ``FileExistsError`` when the file already exists. Readers never observe a
        partially written file through this call.
        """

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove ``path``; a missing file is not an error."""

    # --- bridging -----------------------------------------------------------------

    @property
    @abc.abstractmethod
    def arrow_filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem over the same files, for Parquet reads and writes."""

    @abc.abstractmethod
    def to_url(self, path: str) -> str:
        """A fully qualified URL for ``path`` (used for absolute references in the log)."""

    def from_url(self, url: str) -> str | None:
        """The path inside this filesystem that ``url`` names, or ``None`` if it is elsewhere."""
        prefix = f"{self.scheme}://"
        if url.startswith(prefix):
            return url[len(prefix):]
        return None

    @staticmethod
    def join(*parts: str) -> str:
        return posixpath.join(*parts)

    def __repr__(self) -> str:
        # Never show options: they may hold credentials.
        return f"{type(self).__name__}()"
