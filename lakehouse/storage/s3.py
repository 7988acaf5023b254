"""``s3://`` tables through s3fs, publishing commits with a conditional PUT."""

from __future__ import annotations

import errno
from typing import Any, Mapping

from lakehouse.errors import MissingDependencyError, StorageError
from lakehouse.storage.fsspec_backed import FsspecStorage

# delta-rs style option names, so users can pass the same dict to both libraries.
_DELTA_RS_ALIASES = {
    "aws_access_key_id": "key",
    "aws_secret_access_key": "secret",
    "aws_session_token": "token",
    "aws_endpoint_url": "endpoint_url",
    "aws_endpoint": "endpoint_url",
    "endpoint": "endpoint_url",
}
_IGNORED = {"aws_allow_http", "allow_http", "aws_conditional_put", "aws_s3_allow_unsafe_rename"}


def s3fs_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Translate user options (s3fs names or delta-rs ``AWS_*`` names) into s3fs kwargs."""
    options: dict[str, Any] = {}
    region = None
    for raw_key, value in (storage_options or {}).items():
        key = raw_key.lower()
        if key in _DELTA_RS_ALIASES:
            options[_DELTA_RS_ALIASES[key]] = value
        elif key in ("aws_region", "region", "region_name"):
            region = value
        elif key in _IGNORED:
            continue
        else:
            options[raw_key] = value
    if region is not None:
        client_kwargs = dict(options.get("client_kwargs") or {})
        client_kwargs.setdefault("region_name", region)
        options["client_kwargs"] = client_kwargs
    # Listings must always be fresh: the log is discovered by listing.
    options.setdefault("use_listings_cache", False)
    return options


def _is_precondition_failure(exc: BaseException) -> bool:
    """True for a 412 however the client surfaced it (FileExistsError, EINVAL, ClientError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FileExistsError):
            return True
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.get("Code") in ("PreconditionFailed", "412") or status == 412:
                return True
        if isinstance(current, OSError) and current.errno == errno.EINVAL and "Precondition" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class S3Storage(FsspecStorage):
    """Amazon S3 and S3-compatible servers.

    ``write_if_absent`` is a single ``PutObject`` with ``If-None-Match: *``; S3 answers
    412 when the key exists. Any 412 counts as "exists", including one received after a
    transport-level retry of our own request: the commit layer then reads the file back
    and recognises its own transaction id.
    """

    def __init__(self, storage_options: Mapping[str, Any] | None = None) -> None:
        try:
            import s3fs
        except ImportError as exc:  # pragma: no cover - s3fs is a core dependency
            raise MissingDependencyError("s3:// tables need s3fs: pip install s3fs") from exc
        super().__init__(s3fs.S3FileSystem(**s3fs_options(storage_options)), "s3")

    def write_if_absent(self, path: str, data: bytes) -> None:
        try:
            self._fs.pipe_file(path, data, mode="create")
        except Exception as exc:  # noqa: BLE001 - classify, then re-raise as ours
            if _is_precondition_failure(exc):
                raise FileExistsError(path) from None
            raise StorageError(f"could not write '{self.to_url(path)}': {exc}") from exc

    def from_url(self, url: str) -> str | None:
        for prefix in ("s3://", "s3a://"):
            if url.startswith(prefix):
                return url[len(prefix):]
        return None
