"""``memory://`` tables: fsspec's in-process filesystem, with a locked put-if-absent."""

from __future__ import annotations

import threading

import fsspec

from lakehouse.storage.fsspec_backed import FsspecStorage

# fsspec's memory filesystem is one store per process, so one lock per process makes the
# check-then-write below atomic for every thread that can see the same files.
_CREATE_LOCK = threading.Lock()


class MemoryStorage(FsspecStorage):
    """Tables that live in this process's memory (tests, scratch work)."""

    def __init__(self) -> None:
        super().__init__(fsspec.filesystem("memory"), "memory")

    def write_if_absent(self, path: str, data: bytes) -> None:
        with _CREATE_LOCK:
            if self._fs.exists(path):
                raise FileExistsError(path)
            self._fs.pipe_file(path, data)

    def write(self, path: str, data: bytes) -> None:
        with _CREATE_LOCK:
            self._fs.pipe_file(path, data)

    def to_url(self, path: str) -> str:
        return "memory://" + path

    def from_url(self, url: str) -> str | None:
        if url.startswith("memory://"):
            rest = url[len("memory://"):]
            return rest if rest.startswith("/") else "/" + rest
        return None
