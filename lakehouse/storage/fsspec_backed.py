"""Storage over any fsspec filesystem; memory and S3 refine ``write_if_absent``."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import fsspec
import pyarrow.fs as pafs

from lakehouse.errors import StorageError
from lakehouse.storage.base import FileInfo, Storage


def _mtime_ms(info: dict[str, Any]) -> int:
    for key in ("LastModified", "mtime", "created", "last_modified"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            return int(value.timestamp() * 1000)
        if isinstance(value, (int, float)):
            return int(value * 1000)
    return 0


class FsspecStorage(Storage):
    """Files on an fsspec filesystem.

    The generic ``write_if_absent`` checks then writes, which is *not* atomic; it is only
    used for schemes without a better primitive and subclasses override it.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, scheme: str) -> None:
        self._fs = fs
        self.scheme = scheme
        self._arrow_fs: pafs.FileSystem | None = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs

    def _to_info(self, info: dict[str, Any]) -> FileInfo:
        return FileInfo(path=self._fs._strip_protocol(info["name"]), size=int(info.get("size") or 0),
                        modified_ms=_mtime_ms(info))

    def list_dir(self, directory: str) -> list[FileInfo]:
        try:
            entries = self._fs.ls(directory, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        except TypeError:  # filesystems whose ls takes no refresh keyword
            try:
                entries = self._fs.ls(directory, detail=True)
            except FileNotFoundError:
                return []
        except Exception as exc:  # noqa: BLE001 - client errors (botocore, aiohttp) are not OSErrors
            raise StorageError(f"could not list '{self.to_url(directory)}': {exc}") from exc
        infos = [self._to_info(e) for e in entries if e.get("type") == "file"]
        infos.sort(key=lambda info: info.name)
        return infos

    def walk(self, directory: str) -> Iterator[FileInfo]:
        try:
            found = self._fs.find(directory, detail=True)
        except FileNotFoundError:
            return
        for info in found.values():
            if info.get("type") == "file":
                yield self._to_info(info)

    def read(self, path: str) -> bytes:
        try:
            return self._fs.cat_file(path)
        except FileNotFoundError:
            raise FileNotFoundError(path) from None
        except Exception as exc:  # noqa: BLE001 - client errors (botocore, aiohttp) are not OSErrors
            raise StorageError(f"could not read '{self.to_url(path)}': {exc}") from exc

    def head(self, path: str) -> FileInfo | None:
        try:
            info = self._fs.info(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - client errors (botocore, aiohttp) are not OSErrors
            raise StorageError(f"could not stat '{self.to_url(path)}': {exc}") from exc
        if info.get("type") != "file":
            return None
        return self._to_info(info)

    def write(self, path: str, data: bytes) -> None:
        try:
            self._fs.pipe_file(path, data)
        except Exception as exc:  # noqa: BLE001 - client errors (botocore, aiohttp) are not OSErrors
            raise StorageError(f"could not write '{self.to_url(path)}': {exc}") from exc

    def write_if_absent(self, path: str, data: bytes) -> None:
        if self._fs.exists(path):
            raise FileExistsError(path)
        self.write(path, data)

    def delete(self, path: str) -> None:
        try:
            self._fs.rm_file(path)
        except FileNotFoundError:
            pass

    @property
    def arrow_filesystem(self) -> pafs.FileSystem:
        if self._arrow_fs is None:
            self._arrow_fs = pafs.PyFileSystem(pafs.FSSpecHandler(self._fs))
        return self._arrow_fs

    def to_url(self, path: str) -> str:
        return f"{self.scheme}://{path.lstrip('/') if self.scheme == 's3' else path}"
