"""Optional dependencies (pandas, polars, torch, ray, mlflow), imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

from lakehouse.errors import MissingDependencyError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``MissingDependencyError`` naming the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"this needs the optional package '{module}': pip install 'lakehouse[{extra}]'") from None
