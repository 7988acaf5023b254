"""Use both cores: evaluate independent batches on a small thread pool.

Arrow and NumPy kernels release the GIL, so two threads evaluating two batches run truly
in parallel. Results come back in input order, and at most ``workers * 2`` batches are in
flight, so memory stays bounded by batches.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="lakehouse-eval") if WORKERS > 1 else None


def ordered_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(fn, items)`` evaluated concurrently, yielding results in order."""
    if _POOL is None:
        yield from map(fn, items)
        return
    pending: deque[Future[R]] = deque()
    limit = WORKERS * 2
    for item in items:
        pending.append(_POOL.submit(fn, item))
        while len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
