"""Table properties (``metaData.configuration``) that change how we read and write."""

from __future__ import annotations

import re
from typing import Mapping

from lakehouse.errors import LakehouseError

CHECKPOINT_INTERVAL = "delta.checkpointInterval"
TARGET_FILE_SIZE = "delta.targetFileSize"
APPEND_ONLY = "delta.appendOnly"
ENABLE_CDF = "delta.enableChangeDataFeed"
ISOLATION_LEVEL = "delta.isolationLevel"
DELETED_FILE_RETENTION = "delta.deletedFileRetentionDuration"
LOG_RETENTION = "delta.logRetentionDuration"

DEFAULT_CHECKPOINT_INTERVAL = 10
DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024
_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(\w+?)s?\s*$", re.IGNORECASE)
_UNIT_MS = {"millisecond": 1, "second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000,
            "week": 604_800_000}


class InvalidPropertyError(LakehouseError):
    """A table property holds a value that cannot be understood."""


def _int(config: Mapping[str, str], key: str, default: int) -> int:
    raw = config.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidPropertyError(f"table property '{key}' must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise InvalidPropertyError(f"table property '{key}' must be positive, got {value}")
    return value


def checkpoint_interval(config: Mapping[str, str]) -> int:
    return _int(config, CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_INTERVAL)


def target_file_size(config: Mapping[str, str]) -> int:
    return _int(config, TARGET_FILE_SIZE, DEFAULT_TARGET_FILE_SIZE)


def is_true(config: Mapping[str, str], key: str) -> bool:
    return str(config.get(key, "false")).strip().lower() == "true"


def interval_ms(config: Mapping[str, str], key: str, default_ms: int) -> int:
    """Parse a Delta ``interval N unit`` property into milliseconds."""
    raw = config.get(key)
    if raw is None:
        return default_ms
    match = _INTERVAL.match(raw)
    if not match or match.group(2).lower() not in _UNIT_MS:
        raise InvalidPropertyError(f"table property '{key}' must look like 'interval 7 days', got {raw!r}")
    return int(match.group(1)) * _UNIT_MS[match.group(2).lower()]


def isolation_level(config: Mapping[str, str]) -> str:
    level = config.get(ISOLATION_LEVEL, "Serializable")
    if level not in ("Serializable", "WriteSerializable", "SnapshotIsolation"):
        raise InvalidPropertyError(
            f"table property '{ISOLATION_LEVEL}' must be Serializable or WriteSerializable, got {level!r}")
    return level


def validate(config: Mapping[str, str]) -> None:
    """Check every property we interpret, so a bad value fails at create time."""
    checkpoint_interval(config)
    target_file_size(config)
    isolation_level(config)
    interval_ms(config, DELETED_FILE_RETENTION, 0)
    interval_ms(config, LOG_RETENTION, 0)
