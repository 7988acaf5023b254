"""``lakehouse features run JOB [--once] [--poll SECONDS]``: run a feature job.

``JOB`` is a Python file that defines ``job = FeatureJob(...)`` (``path/to/job.py``, or
``path/to/file.py:name`` for another variable) or an importable ``module:attribute``.
Without ``--once`` the job follows the source until interrupted (Ctrl+C or SIGTERM);
killing it at any moment is safe, the next run resumes exactly once. Errors print one line
(``--debug`` adds the traceback, e.g. of an exception raised in the job's ``transform``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import signal
import sys
from typing import Any

from lakehouse.errors import LakehouseError


class JobLoadError(LakehouseError):
    """The JOB argument names no feature job."""


def add_features_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``features run`` under the CLI's sub-commands."""
    features = commands.add_parser("features", parents=[common], help="run feature jobs",
                                   description="Keep feature tables up to date from their source's changes.")
    features.set_defaults(warehouse=None)
    actions = features.add_subparsers(dest="features_command", required=True, metavar="{run}")
    run = actions.add_parser("run", parents=[common], help="run a feature job",
                             description="Run a feature job: a Python file defining `job = FeatureJob(...)` "
                                         "or module:attribute.")
    run.add_argument("job", help="path/to/job.py[:name] or module:attribute")
    run.add_argument("--once", action="store_true", help="process the available versions, then exit")
    run.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                     help="seconds between checks for new versions when following (default: %(default)s)")
    run.add_argument("--quiet", action="store_true", help="no line per batch")


def load_job(spec: str) -> Any:
    """The ``FeatureJob`` that ``spec`` names."""
    from engine.features import FeatureJob

    path, _, name = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
    if path.endswith(".py") or os.path.exists(path):
        if not os.path.isfile(path):
            raise JobLoadError(f"feature job file '{path}' does not exist; pass path/to/job.py or module:attribute")
        directory = os.path.dirname(os.path.abspath(path))
        sys.path.insert(0, directory)  # let the job import its neighbours
        try:
            namespace = runpy.run_path(path, run_name="__lakehouse_job__")
        finally:
            sys.path.remove(directory)
        name = name or "job"
        where = f"file '{path}'"
    else:
        if not name:
            raise JobLoadError(f"'{spec}' is neither a .py file nor module:attribute")
        try:
            namespace = vars(importlib.import_module(path))
        except ImportError as exc:
            raise JobLoadError(f"cannot import feature job module '{path}': {exc}") from None
        where = f"module '{path}'"
    if name not in namespace:
        raise JobLoadError(f"feature job {where} defines no '{name}'; define {name} = FeatureJob(...)")
    job = namespace[name]
    if not isinstance(job, FeatureJob):
        raise JobLoadError(f"'{name}' in feature job {where} is a {type(job).__name__}, not a FeatureJob")
    return job


def batch_line(stats: dict[str, Any]) -> str:
    """The progress line of one batch (or input refresh) of a feature job."""
    sink = f", sink version {stats['sink_version']}" if stats.get("sink_version") is not None else ""
    if stats.get("refresh"):
        return (f"inputs changed: {stats['inputs_changed']}: recomputed every key at source version "
                f"{stats['end_version']}: {stats['keys']} keys -> {stats['feature_rows']} feature rows{sink}")
    what = "skipped (already in the sink)" if stats["skipped"] else \
        f"{stats['change_rows']} change rows, {stats['keys']} keys -> {stats['feature_rows']} feature rows"
    changed = stats.get("inputs_changed")
    inputs = f" (inputs changed: {changed}: recomputed every key)" if changed else ""
    return f"batch {stats['batch_id']}: versions {stats['start_version']}..{stats['end_version']}: {what}{inputs}{sink}"


def run_features_command(args: argparse.Namespace) -> int:
    """Run ``features run``; errors propagate to the CLI's one-line reporter."""
    from engine.features import FeatureJobError

    if args.poll <= 0:
        raise LakehouseError(f"--poll must be a positive number of seconds, got {args.poll}")
    job = load_job(args.job)

    def line(stats: dict[str, Any]) -> None:
        if args.quiet:
            return
        print(batch_line(stats), file=sys.stderr, flush=True)

    stopping = {"now": False}
    if not args.once:
        def on_term(signum: int, frame: Any) -> None:  # noqa: ARG001
            stopping["now"] = True
        signal.signal(signal.SIGTERM, on_term)
    try:
        totals = job.run(follow=not args.once, poll_interval=args.poll, stop=lambda: stopping["now"], on_batch=line)
    except FeatureJobError as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, LakehouseError) and not getattr(args, "debug", False):
            # the user's transform raised: the one line says where, --debug shows their traceback
            raise FeatureJobError(f"{exc} (run with --debug for the traceback)") from cause
        raise
    refreshes = f", {totals['refreshes']} input refresh(es)" if totals.get("refreshes") else ""
    print(f"{totals['batches']} batch(es){refreshes}, {totals['change_rows']} change rows, "
          f"{totals['feature_rows']} feature rows written; source processed through version "
          f"{job.stream.committed_version}")
    return 0
