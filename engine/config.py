"""Session settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _default_memory_limit() -> int:
    """80% of physical memory, as DuckDB does."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return int(pages * size * 0.8)
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


@dataclass
class Config:
    """``memory_limit`` (bytes) caps any single materialization (join build, sort, aggregation)."""

    memory_limit: int = field(default_factory=_default_memory_limit)
    batch_size: int = 1 << 17
    max_nesting: int = 200  # parentheses / subqueries deeper than this are refused before parsing
    # VACUUM refuses a retention shorter than the table's (7 days by default) unless this is
    # off: `SET retention_check = false` (or Spark's retentionDurationCheck.enabled setting).
    retention_check: bool = True
