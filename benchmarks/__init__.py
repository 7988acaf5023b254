"""On-demand benchmarks: ``python -m benchmarks SUITE [options]``. Never run by pytest.

A suite is a module with ``TITLE``, ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(options, context) -> SuiteOutput`` (see ``benchmarks.harness``). Adding a suite is
one new module plus one line in ``SUITES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; modules are imported only when their suite runs.
SUITES: dict[str, str] = {
    "changes": "benchmarks.changes",
    "commits": "benchmarks.commits",
    "ml_read": "benchmarks.ml_read",
    "tpch": "benchmarks.tpch.suite",
}


def suite_names() -> list[str]:
    return sorted(SUITES)


def load_suite(name: str) -> ModuleType:
    """The module of suite ``name``; ``KeyError`` names the known suites."""
    try:
        module_name = SUITES[name]
    except KeyError:
        raise KeyError(f"unknown benchmark suite {name!r}; known suites: {', '.join(suite_names())}") from None
    return importlib.import_module(module_name)
