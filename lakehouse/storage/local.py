"""Local folders, with a put-if-absent that is atomic and never shows partial files."""

from __future__ import annotations

import errno
import os
import uuid
from typing import Iterator

import pyarrow.fs as pafs

from lakehouse.errors import StorageError
from lakehouse.storage.base import FileInfo, Storage


def _info(path: str, stat: os.stat_result, name: str = "") -> FileInfo:
    return FileInfo(path, stat.st_size, stat.st_mtime_ns // 1_000_000, name)


class LocalStorage(Storage):
    """Plain files under an absolute path.

    ``write_if_absent`` writes a hidden temp file, fsyncs it, then publishes it with
    ``os.link``: the link fails with ``EEXIST`` when the name is taken, and the name only
    ever points at complete, synced bytes. ``os.rename`` is never used because it silently
    replaces an existing file on POSIX.
    """

    scheme = "file"
    parallel_reads = False  # local reads are fast; a thread pool costs more than it saves

    def __init__(self) -> None:
        self._arrow_fs = pafs.LocalFileSystem()

    def list_dir(self, directory: str) -> list[FileInfo]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            return []
        infos = []
        for entry in entries:
            if entry.is_file():
                try:
                    infos.append(_info(entry.path, entry.stat(), entry.name))
                except FileNotFoundError:  # deleted between scandir and stat
                    continue
        infos.sort(key=lambda info: info.name)
        return infos

    def walk(self, directory: str) -> Iterator[FileInfo]:
        for dirpath, _dirs, files in os.walk(directory):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    yield _info(path, os.stat(path))
                except FileNotFoundError:
                    continue

    def read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(path) from None
        except PermissionError as exc:
            raise StorageError(f"permission denied reading '{path}': check the folder's permissions") from exc

    def head(self, path: str) -> FileInfo | None:
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _info(path, stat) if os.path.isfile(path) else None

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = self._temp_name(path)
        try:
            self._write_synced(tmp, data)
            os.replace(tmp, path)  # a whole-file swap, fine for data files and hints
        finally:
            self._discard(tmp)

    def write_if_absent(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = self._temp_name(path)
        try:
            self._write_synced(tmp, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise StorageError(f"could not publish '{path}': {exc.strerror}") from exc
                # Filesystems without hard links (FUSE, SMB): O_EXCL still gives
                # exactly one winner, though the name appears before the bytes do.
                with open(path, "xb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            self._fsync_dir(directory)
        finally:
            self._discard(tmp)

    def delete(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    @property
    def arrow_filesystem(self) -> pafs.FileSystem:
        return self._arrow_fs

    def to_url(self, path: str) -> str:
        return "file://" + path

    def from_url(self, url: str) -> str | None:
        if url.startswith("file://"):
            rest = url[len("file://"):]
            return rest if rest.startswith("/") else None
        if url.startswith("file:/"):
            return url[len("file:"):]
        return None

    @staticmethod
    def join(*parts: str) -> str:
        return os.path.join(*parts)

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def _temp_name(path: str) -> str:
        directory, name = os.path.split(path)
        return os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")

    @staticmethod
    def _write_synced(path: str, data: bytes) -> None:
        with open(path, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the link itself is durable enough there
        finally:
            os.close(fd)

    @staticmethod
    def _discard(path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
