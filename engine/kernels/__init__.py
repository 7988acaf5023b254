"""Numba kernels. The only package that imports numba; every kernel has a NumPy fallback.

Set ``LAKEHOUSE_NO_NUMBA=1`` to force the fallbacks (used by tests to check both agree).
"""

from __future__ import annotations

import os

try:
    if os.environ.get("LAKEHOUSE_NO_NUMBA"):
        raise ImportError("disabled by LAKEHOUSE_NO_NUMBA")
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is a declared dependency
    HAVE_NUMBA = False
