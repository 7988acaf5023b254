"""Names of files in ``_delta_log`` and the rules for paths stored in the log.

Paths in the log are untrusted input: a table written by someone else may hold an
``add.path`` that tries to escape the table root (``../``, percent-encoded or not). Every
path that becomes a filesystem path goes through :func:`resolve_data_path`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from lakehouse.errors import UnsafePathError

LOG_DIR = "_delta_log"
LAST_CHECKPOINT = "_last_checkpoint"

_COMMIT = re.compile(r"^(\d{20})\.json$")
_CLASSIC_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_MULTIPART_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$")
_V2_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.([0-9a-fA-F-]{36})\.(json|parquet)$")
_URI_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def commit_name(version: int) -> str:
    return f"{version:020d}.json"


def checkpoint_name(version: int) -> str:
    return f"{version:020d}.checkpoint.parquet"


@dataclass(frozen=True)
class LogFileName:
    """What a file name in ``_delta_log`` means."""

    kind: str  # "commit" | "checkpoint" | "multipart" | "v2checkpoint"
    version: int
    part: int = 1
    parts: int = 1


def parse_log_name(name: str) -> LogFileName | None:
    """Classify a ``_delta_log`` file name; ``None`` for files that play no role in replay."""
    if match := _COMMIT.match(name):
        return LogFileName("commit", int(match.group(1)))
    if match := _CLASSIC_CHECKPOINT.match(name):
        return LogFileName("checkpoint", int(match.group(1)))
    if match := _MULTIPART_CHECKPOINT.match(name):
        return LogFileName("multipart", int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if match := _V2_CHECKPOINT.match(name):
        return LogFileName("v2checkpoint", int(match.group(1)))
    return None


# --- partition folders --------------------------------------------------------------

# Characters Hive/Spark escape in partition directory names (plus all control chars).
_HIVE_ESCAPE = set('"#%\'*/:=?\\{[]^') | {chr(i) for i in range(0x20)} | {"\x7f"}
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def hive_escape(value: str) -> str:
    """Escape a partition value for use as a directory name (``/`` -> ``%2F``...)."""
    return "".join(f"%{ord(ch):02X}" if ch in _HIVE_ESCAPE else ch for ch in value)


def partition_dir(columns: list[str], values: dict[str, str | None]) -> str:
    """Relative ``col=value/...`` directory for one partition (on-disk form, unencoded)."""
    parts = []
    for name in columns:
        value = values.get(name)
        parts.append(f"{hive_escape(name)}={HIVE_NULL if value is None else hive_escape(value) or HIVE_NULL}")
    return "/".join(parts)


def encode_relative_path(path: str) -> str:
    """The log form of a relative on-disk path: URI-encoded, ``/`` kept (``%`` -> ``%25``)."""
    return quote(path, safe="/=+-_.~!$&',;:@()*")


def is_absolute_uri(path: str) -> bool:
    return bool(_URI_SCHEME.match(path))


def _fully_decoded(text: str) -> str:
    """Percent-decode until stable, so ``%252e%252e`` cannot hide a ``..``."""
    for _ in range(8):
        decoded = unquote(text)
        if decoded == text:
            return decoded
        text = decoded
    return text


def check_relative_path(raw: str, *, table: str) -> str:
    """Validate a relative log path and return its on-disk form (decoded once).

    Refuses ``..`` segments (however deeply percent-encoded), backslashes, NUL and control
    characters, and leading slashes: nothing outside the table root is ever addressed
    through a relative path.
    """
    if not raw:
        raise UnsafePathError(f"table '{table}': the log holds an empty file path")
    decoded_once = unquote(raw)
    for candidate in (raw, decoded_once, _fully_decoded(raw)):
        if "\\" in candidate or _CONTROL.search(candidate):
            raise UnsafePathError(
                f"table '{table}': refusing log path {raw!r}: it holds a backslash or control character"
            )
        if candidate.startswith("/") or ".." in candidate.split("/"):
            raise UnsafePathError(
                f"table '{table}': refusing log path {raw!r}: it would resolve outside the table root"
            )
    return decoded_once


def resolve_data_path(
    root: str,
    raw: str,
    *,
    table: str,
    root_url: str,
    allowed_roots: tuple[str, ...] = (),
) -> tuple[str, str | None]:
    """Turn an ``add``/``remove`` path from the log into ``(path, url)``.

    Relative paths resolve under ``root`` and ``url`` is ``None``. Absolute URIs (shallow
    clones reference their source's files this way) are accepted only when they start with
    ``root_url + '/'`` or one of ``allowed_roots``; they come back as ``("", url)`` for the
    caller to open through the right storage.
    """
    if is_absolute_uri(raw):
        url = unquote(raw)
        if ".." in _fully_decoded(raw).split("/") or _CONTROL.search(url):
            raise UnsafePathError(f"table '{table}': refusing log path {raw!r}: it holds '..' or control characters")
        for allowed in (root_url, *allowed_roots):
            prefix = allowed.rstrip("/") + "/"
            if url.startswith(prefix):
                if allowed == root_url:
                    return f"{root}/{url[len(prefix):]}", None
                return "", url
        raise UnsafePathError(
            f"table '{table}': the log references {url!r}, outside the table; "
            "pass allowed_roots=[...] to open_table to trust that location"
        )
    relative = check_relative_path(raw, table=table)
    return f"{root}/{relative}", None
