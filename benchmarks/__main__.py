"""Runner: ``python -m benchmarks SUITE [options]``; ``--list`` names the suites.

Each run writes ``benchmarks/results/<suite>-<UTC timestamp>.json`` and rewrites that
suite's section of ``docs/benchmarks.md``. Exit status 1 when a correctness check failed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks import SUITES, load_suite, suite_names
from benchmarks.harness import (
    DEFAULT_DOC, DEFAULT_RESULTS_DIR, Progress, RunContext, RunRecord, load_average, machine_info, update_doc,
    utc_now, write_result,
)


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runner options")
    group.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR,
                       help="where the JSON record goes (default: %(default)s)")
    group.add_argument("--doc", type=Path, default=DEFAULT_DOC,
                       help="markdown file whose section for this suite is rewritten (default: %(default)s)")
    group.add_argument("--no-doc", action="store_true", help="do not touch the markdown file")
    group.add_argument("--workdir", type=Path, default=None,
                       help="parent folder for the scratch tables (default: the system temp folder)")
    group.add_argument("--keep", action="store_true", help="keep the scratch tables after the run")
    group.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def build_parser(suite: str) -> argparse.ArgumentParser:
    """The parser of one suite: its own options plus the runner's."""
    module = load_suite(suite)
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {suite}", description=module.DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(parser)
    _add_common(parser)
    return parser


def _usage() -> str:
    lines = ["usage: python -m benchmarks SUITE [options]   (python -m benchmarks SUITE --help for options)",
             "", "suites:"]
    lines += [f"  {name:12} {load_suite(name).TITLE}" for name in suite_names()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(_usage(), file=sys.stderr)
        return 2
    if argv[0] in ("--list", "-l", "--help", "-h"):
        print(_usage())
        return 0
    suite = argv[0]
    if suite not in SUITES:
        print(f"unknown suite {suite!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    options = build_parser(suite).parse_args(argv[1:])

    module = load_suite(suite)
    progress = Progress(quiet=options.quiet)
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"lakehouse-bench-{suite}-", dir=options.workdir))
    started = utc_now()
    machine = machine_info()
    machine["load_average_at_start"] = load_average()
    progress(f"suite {suite}: scratch tables in {workdir}")
    busy = machine["load_average_at_start"]
    if busy is not None and busy > 0.5:
        progress(f"warning: the 1-minute load average is {busy}; other work on this machine will skew the times")
    try:
        output = module.run(options, RunContext(workdir=workdir, progress=progress))
    finally:
        if options.keep:
            progress(f"kept scratch tables in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    record = RunRecord(
        suite=suite, title=module.TITLE, command=shlex.join(["python", "-m", "benchmarks", *argv]),
        argv=argv, started_at=started, finished_at=utc_now(), machine=machine, output=output)
    machine["load_average_at_end"] = load_average()

    path = write_result(record, options.results_dir)
    progress(f"wrote {path}")
    if not options.no_doc:
        update_doc(options.doc, record)
        progress(f"updated the '{suite}' section of {options.doc}")
    for check in output.checks:
        if not check.ok:
            progress(f"CHECK FAILED: {check.name}: expected {check.expected!r}, observed {check.observed!r}")
    return 0 if record.ok else 1


if __name__ == "__main__":
    sys.exit(main())
