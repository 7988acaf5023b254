"""Racing real processes: start them together behind a barrier and collect their reports."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable


def race(worker: Callable[..., None], make_args: Callable[[int, Any, Any], tuple], count: int,
         *, timeout: float) -> list[tuple]:
    """Spawn ``count`` processes of ``worker(*make_args(index, barrier, results))``.

    Each worker puts one ``(id, payload, error)`` tuple on ``results``; any error fails the
    caller's test. Processes still alive at the end are killed.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(count)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker, args=make_args(i, barrier, results)) for i in range(count)]
    for p in procs:
        p.start()
    try:
        reports = [results.get(timeout=timeout) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [err for _, _, err in reports if err]
    assert not errors, errors[0]
    return reports
