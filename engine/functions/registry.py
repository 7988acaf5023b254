"""The function registry: how each SQL function types its arguments and computes.

A :class:`ScalarFunction` has a *signature* step (argument types in -> the types to cast
the arguments to, and the result type) used by the binder, and an *implementation* over
Arrow arrays/scalars used by the executor. Keeping both in one place means a function's
typing and its behaviour can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pyarrow as pa

from engine.errors import PlanError, UnsupportedSQLError

Value = pa.Array | pa.ChunkedArray | pa.Scalar
Signature = Callable[[Sequence[pa.DataType], str], tuple[Sequence[pa.DataType | None], pa.DataType]]
Implementation = Callable[..., Value]


@dataclass(frozen=True)
class ScalarFunction:
    name: str
    signature: Signature
    implementation: Implementation
    min_args: int = 0
    max_args: int | None = None
    null_propagating: bool = True  # NULL in any argument -> NULL result (enables folding)


_REGISTRY: dict[str, ScalarFunction] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, signature: Signature, *, min_args: int = 0, max_args: int | None = None,
             aliases: Sequence[str] = (), null_propagating: bool = True) -> Callable[[Implementation], Implementation]:
    def decorate(impl: Implementation) -> Implementation:
        _REGISTRY[name] = ScalarFunction(name, signature, impl, min_args, max_args, null_propagating)
        for alias in aliases:
            _ALIASES[alias] = name
        return impl

    return decorate


def lookup(name: str) -> ScalarFunction:
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(key, list(_REGISTRY) + list(_ALIASES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnsupportedSQLError(f"function '{name}' does not exist{hint}")
    return _REGISTRY[key]


def exists(name: str) -> bool:
    key = name.lower()
    return key in _REGISTRY or key in _ALIASES


def check_arity(fn: ScalarFunction, count: int) -> None:
    if count < fn.min_args or (fn.max_args is not None and count > fn.max_args):
        expected = str(fn.min_args) if fn.max_args == fn.min_args else (
            f"{fn.min_args} or more" if fn.max_args is None else f"{fn.min_args} to {fn.max_args}")
        raise PlanError(f"function {fn.name}() takes {expected} argument(s), got {count}")
