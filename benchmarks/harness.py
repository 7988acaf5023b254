"""Pieces every benchmark suite shares: timing, summaries, result records, markdown.

A suite measures and returns a :class:`SuiteOutput` (rows, correctness checks, raw
samples). The runner wraps it in a :class:`RunRecord` with the command line, the machine
and the clock, writes the record as JSON under ``benchmarks/results/`` and rewrites the
suite's own section of ``docs/benchmarks.md``. Nothing here decides what is fast; it only
measures and reports.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

RESULT_SCHEMA_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
DEFAULT_DOC = REPO_ROOT / "docs" / "benchmarks.md"

DOC_INTRO = """\
# Benchmarks

Benchmarks run on demand, never under pytest: `python -m benchmarks SUITE [options]`
(`python -m benchmarks --list` names the suites, `python -m benchmarks SUITE --help` their
options). Each run measures lakehouse and its peer library side by side in the same process
on the same machine, checks that both produced the right answer, writes the full record
(raw samples, machine, command line) to `benchmarks/results/<suite>-<UTC time>.json`, and
rewrites that suite's section below; the other sections are left as they were.

**Reading the ratio**: ratio = lakehouse time / peer time, from the same run. Below 1.00
lakehouse is faster, above 1.00 it is slower (2.00 = twice as slow). Compare ratios, not
absolute times, across machines; absolute times only mean something next to the machine
line of their own section.
"""


# --- timing -------------------------------------------------------------------------------

def clock() -> float:
    """The clock every measurement uses (monotonic, high resolution, seconds)."""
    return time.perf_counter()


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return (seconds, its result)."""
    start = clock()
    value = fn()
    return clock() - start, value


def time_repeated(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds for each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [time_once(fn)[0] for _ in range(repeats)]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks (NumPy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


STATS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": lambda s: percentile(s, 50),
    "p95": lambda s: percentile(s, 95),
    "min": min,
    "max": max,
    "mean": lambda s: sum(s) / len(s),
    "total": sum,
}

UNITS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6}


def summarize(samples: Sequence[float], stat: str) -> float:
    """One statistic (a key of ``STATS``) of samples in seconds."""
    try:
        return STATS[stat](samples)
    except KeyError:
        raise ValueError(f"unknown statistic {stat!r}; use one of {', '.join(STATS)}") from None


# --- what a suite returns -----------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One line of a result table: the same measure for lakehouse and one peer.

    Values are in ``unit``; ``ratio`` is lakehouse / peer (lower is better for us).
    """

    measure: str
    setup: str
    stat: str
    unit: str
    lakehouse: float | None
    peer: str
    peer_value: float | None

    @property
    def ratio(self) -> float | None:
        if self.lakehouse is None or not self.peer_value:
            return None
        return self.lakehouse / self.peer_value

    @classmethod
    def from_samples(cls, measure: str, setup: str, stat: str, *, lakehouse: Sequence[float] | None,
                     peer: str, peer_samples: Sequence[float] | None, unit: str = "ms") -> Row:
        """Summarize two sample lists (seconds) with the same statistic, in ``unit``."""
        scale = UNITS[unit]

        def value(samples: Sequence[float] | None) -> float | None:
            return None if not samples else summarize(samples, stat) * scale

        return cls(measure, setup, stat, unit, value(lakehouse), peer, value(peer_samples))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        for key in ("lakehouse", "peer_value", "ratio"):
            if out[key] is not None:
                out[key] = round(out[key], 4)
        return out


@dataclass(frozen=True)
class Check:
    """A correctness check: every observed value must equal ``expected``."""

    name: str
    expected: Any
    observed: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.observed) and all(value == self.expected for value in self.observed.values())

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "expected": self.expected, "observed": dict(self.observed), "ok": self.ok}


@dataclass
class SuiteOutput:
    """What a suite's ``run`` returns; the runner adds the command, machine and clock."""

    parameters: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)  # raw samples, seconds
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Progress:
    """Progress lines on stderr, each stamped with the time since the run started."""

    def __init__(self, stream: Any = None, *, quiet: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._start = clock()

    def __call__(self, message: str) -> None:
        if self._quiet:
            return
        elapsed = clock() - self._start
        print(f"[{elapsed:7.1f}s] {message}", file=self._stream, flush=True)


@dataclass(frozen=True)
class RunContext:
    """What the runner hands a suite: a scratch folder it may fill, and a progress sink."""

    workdir: Path
    progress: Callable[[str], None]


class Suite(Protocol):
    """The interface of a suite module (see ``benchmarks/commits.py``)."""

    TITLE: str
    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, options: argparse.Namespace, context: RunContext) -> SuiteOutput: ...


# --- the run record -----------------------------------------------------------------------

def _package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _git(*args: str) -> str | None:
    """Read-only git queries (``--no-optional-locks`` so nothing under .git is touched)."""
    try:
        done = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def load_average() -> float | None:
    """The 1-minute load average (other work on the machine skews every number)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: hardware, interpreter, library versions, code revision."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {name: _package_version(name) for name in ("lakehouse", "pyarrow", "deltalake")},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
    }


def machine_line(machine: dict[str, Any]) -> str:
    """The machine on one markdown line."""
    parts = [f"{machine.get('cpu_count')} CPUs"]
    if machine.get("cpu_model"):
        parts[0] += f" ({machine['cpu_model']})"
    if machine.get("memory_bytes"):
        parts.append(f"{machine['memory_bytes'] / 2**30:.1f} GiB RAM")
    parts.append(machine.get("platform") or "unknown OS")
    parts.append(f"Python {machine.get('python')}")
    for name, version in (machine.get("packages") or {}).items():
        parts.append(f"{name} {version or 'not installed'}")
    commit = machine.get("git_commit")
    if commit:
        parts.append(f"git {commit[:10]}{' + local changes' if machine.get('git_dirty') else ''}")
    start, end = machine.get("load_average_at_start"), machine.get("load_average_at_end")
    if start is not None:
        parts.append(f"1-min load average {start} at start" + (f", {end} at end" if end is not None else ""))
    return " · ".join(parts)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class RunRecord:
    """One run of one suite, as written to JSON and rendered to markdown."""

    suite: str
    title: str
    command: str
    argv: list[str]
    started_at: dt.datetime
    finished_at: dt.datetime
    machine: dict[str, Any]
    output: SuiteOutput

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.output.checks)

    def to_json(self) -> dict[str, Any]:
        out = self.output
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "suite": self.suite,
            "title": self.title,
            "command": self.command,
            "argv": list(self.argv),
            "python_executable": sys.executable,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "machine": self.machine,
            "parameters": out.parameters,
            "ratio_definition": "lakehouse / peer, same statistic, same run; lower is better for lakehouse",
            "rows": [row.to_json() for row in out.rows],
            "checks": [check.to_json() for check in out.checks],
            "all_checks_passed": self.ok,
            "info": out.info,
            "notes": list(out.notes),
            "series_unit": "s",
            "series": out.series,
        }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def result_filename(suite: str, moment: dt.datetime) -> str:
    return f"{suite}-{moment.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"


def write_result(record: RunRecord, results_dir: Path) -> Path:
    """Write the record as ``<suite>-<UTC timestamp>.json``; never overwrites an older one."""
    results_dir.mkdir(parents=True, exist_ok=True)
    base = result_filename(record.suite, record.started_at)
    text = json.dumps(record.to_json(), indent=2, sort_keys=False, default=str) + "\n"
    for n in range(1000):
        path = results_dir / (base if n == 0 else base.replace(".json", f"-{n}.json"))
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(text)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many results named like {results_dir / base}")


# --- markdown -----------------------------------------------------------------------------

def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def render_rows(rows: Sequence[Row]) -> str:
    """A markdown table of rows; one peer column when every row has the same peer."""
    if not rows:
        return "_No measurements._\n"
    peers = {row.peer for row in rows}
    single = len(peers) == 1
    peer_header = next(iter(peers)) if single else "peer"
    header = ["Measure", "Setup", "Stat", "lakehouse", peer_header, "ratio"]
    if not single:
        header.insert(5, "peer time")
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    if not single:
        lines[1] = "|" + "|".join(["---"] * 3 + ["---:", "---", "---:", "---:"]) + "|"
    for row in rows:
        lh = f"{_number(row.lakehouse)} {row.unit}" if row.lakehouse is not None else "—"
        pv = f"{_number(row.peer_value)} {row.unit}" if row.peer_value is not None else "—"
        cells = [row.measure, row.setup, row.stat, lh] + ([pv] if single else [row.peer, pv]) + [_ratio(row.ratio)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_checks(checks: Sequence[Check]) -> str:
    if not checks:
        return ""
    lines = ["| Check | Expected | Result |", "|---|---:|---|"]
    for check in checks:
        if check.ok:
            verdict = f"ok ({len(check.observed)} of {len(check.observed)} match)"
        else:
            wrong = ", ".join(f"{k} = {v!r}" for k, v in check.observed.items() if v != check.expected)
            verdict = f"**FAILED**: {wrong or 'nothing observed'}"
        lines.append(f"| {_cell(check.name)} | {_cell(check.expected)} | {_cell(verdict)} |")
    return "\n".join(lines) + "\n"


def render_section(record: RunRecord) -> str:
    """The markdown body of one suite's section (without the markers)."""
    out = record.output
    params = ", ".join(f"`{k}={v}`" for k, v in out.parameters.items())
    parts = [
        f"## `{record.suite}` — {record.title}\n",
        f"- Command: `{record.command}`",
        f"- Date: {record.started_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(took {_duration(record.duration_s)})",
        f"- Machine: {machine_line(record.machine)}",
        f"- Parameters: {params}" if params else None,
        "",
    ]
    text = "\n".join(p for p in parts if p is not None) + "\n"
    if not record.ok:
        text += "**Some correctness checks FAILED: the times below may measure a wrong answer.**\n\n"
    text += render_rows(out.rows)
    if out.checks:
        text += "\nCorrectness checks (outside the timed sections):\n\n" + render_checks(out.checks)
    if out.notes:
        text += "\nNotes:\n\n" + "".join(f"- {note}\n" for note in out.notes)
    return text


def _markers(suite: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9_]+", suite):
        raise ValueError(f"suite names are lowercase letters, digits and underscores, got {suite!r}")
    return f"<!-- suite:{suite} -->", f"<!-- /suite:{suite} -->"


def replace_section(document: str, suite: str, body: str) -> str:
    """``document`` with the section of ``suite`` replaced by ``body`` (appended if absent).

    Everything outside that suite's markers is kept byte for byte.
    """
    start, end = _markers(suite)
    block = f"{start}\n{body.rstrip()}\n{end}"
    i = document.find(start)
    j = document.find(end)
    if i == -1 and j == -1:
        if not document.strip():
            document = DOC_INTRO
        return document.rstrip("\n") + "\n\n" + block + "\n"
    if i == -1 or j == -1 or j < i or document.count(start) > 1 or document.count(end) > 1:
        raise ValueError(f"the markers of suite '{suite}' are unbalanced in the document; fix them by hand "
                         f"(expected one '{start}' followed by one '{end}')")
    return document[:i] + block + document[j + len(end):]


def update_doc(doc_path: Path, record: RunRecord) -> None:
    """Rewrite this suite's section of the benchmarks document, keeping all others."""
    existing = doc_path.read_text(encoding="utf-8") if doc_path.exists() else ""
    updated = replace_section(existing, record.suite, render_section(record))
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc_path.with_name(f".{doc_path.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, doc_path)
