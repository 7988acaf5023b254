"""Suite ``tpch``: the 22 TPC-H queries on our engine, beside DuckDB and Polars.

Data is generated once per scale factor with ``tpchgen-cli`` into
``benchmarks/data/tpch-sf<N>/parquet`` and loaded once into lakehouse tables under
``benchmarks/data/tpch-sf<N>/warehouse`` (``--data-dir`` to choose; the folder is
gitignored). Later runs at the same scale reuse both.

Engines, each in a fresh subprocess of its own, one after the other, so one engine's
caches cannot help another and each one's peak memory is its own:

- ``lakehouse``: ``engine.connect(warehouse).sql(q).to_arrow()`` on the lakehouse tables;
- ``duckdb``: views over ``read_parquet`` of the generated files, ``con.sql(q).to_arrow_table()``;
- ``polars``: ``polars.SQLContext`` over ``pl.scan_parquet`` frames,
  ``ctx.execute(q).collect().to_arrow()``.

Every query runs once cold (its first run in that process) and then ``--repeats`` times
warm; the warm median is the headline number. A run that takes longer than ``--timeout``
seconds is killed with its process and recorded as ``timeout``; the engine goes on with
the next query in a new process. Row counts (and the sums of the numeric columns) of our
answers are compared with DuckDB's outside the timed sections; a difference fails the run.

The worker side of this module runs as ``python -m benchmarks.tpch.suite worker SPEC.json``
and writes one JSON object per line to its standard output.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.harness import REPO_ROOT, Check, Row, RunContext, SuiteOutput, load_average

TITLE = "the 22 TPC-H queries: our engine beside DuckDB and Polars"
DESCRIPTION = __doc__.split("\n\n")[0] + (
    " Generates the data once per scale factor, runs each engine in its own subprocess "
    "(1 cold + --repeats warm runs per query), checks our row counts against DuckDB's, "
    "and draws a bar chart.")

ENGINES = ("lakehouse", "duckdb", "polars")
LABELS = {"lakehouse": "ours", "duckdb": "DuckDB", "polars": "Polars"}
DEFAULT_DATA_DIR = REPO_ROOT / "benchmarks" / "data"
DEFAULT_CHART = REPO_ROOT / "docs" / "benchmarks-tpch.png"

# The bar the issue sets for our engine.
BAR_MEMORY_BYTES = 8 * 2**30
BAR_TOTAL_RATIO = 2.5

# Polars: queries it cannot run, with the reason (shown as "n/a"), and rewrites it needs.
# Polars 2.1's SQL runs all 22 texts of ``benchmarks.tpch.queries`` unchanged; keep these
# tables rather than dropping a query if a later version disagrees.
POLARS_NOT_SUPPORTED: dict[int, str] = {}
POLARS_REWRITES: dict[int, str] = {}

REL_TOL = 1e-6  # relative tolerance for the numeric-column sums


# --- options ------------------------------------------------------------------------------

def _query_list(text: str) -> list[int]:
    """``"1-5,7,22"`` -> ``[1, 2, 3, 4, 5, 7, 22]``."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = (int(x) for x in part.split("-", 1))
            out.extend(range(low, high + 1))
        else:
            out.append(int(part))
    if not out or any(not 1 <= n <= 22 for n in out):
        raise argparse.ArgumentTypeError(f"queries are numbered 1..22, got {text!r}")
    return sorted(set(out))


def _engine_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENGINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"engines are {', '.join(ENGINES)}; got {text!r}")
    return [name for name in ENGINES if name in names]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sf", type=float, default=1.0, help="TPC-H scale factor (1 = about 1 GB of text data)")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per query and engine, after 1 cold run")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one run of one query may take before it is killed and recorded as timeout")
    parser.add_argument("--queries", type=_query_list, default="1-22",
                        help="queries to run, e.g. 1-22 or 1,6,14")
    parser.add_argument("--engines", type=_engine_list, default=",".join(ENGINES),
                        help="comma-separated subset of " + ",".join(ENGINES))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="cache of generated Parquet files and loaded lakehouse tables (tpch-sf<N>/ inside)")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="where the PNG bar chart goes")
    parser.add_argument("--no-chart", action="store_true", help="do not draw the chart")


# --- data ---------------------------------------------------------------------------------

def _scale_label(scale: float) -> str:
    return f"{scale:g}"


def prepare_data(scale: float, data_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Generate Parquet and load lakehouse tables once per scale; return paths and facts.

    Each step leaves a ``*.complete`` marker beside its folder; a folder without one
    (an interrupted earlier run) is removed and rebuilt.
    """
    import pyarrow.parquet as pq

    from benchmarks.tpch.data import generate_parquet, load_warehouse

    root = data_dir / f"tpch-sf{_scale_label(scale)}"
    parquet_dir, warehouse = root / "parquet", root / "warehouse"
    parquet_done, warehouse_done = root / "parquet.complete", root / "warehouse.complete"
    root.mkdir(parents=True, exist_ok=True)
    facts: dict[str, Any] = {"data_root": str(root)}

    if not parquet_done.exists():
        shutil.rmtree(parquet_dir, ignore_errors=True)
        shutil.rmtree(warehouse, ignore_errors=True)
        warehouse_done.unlink(missing_ok=True)
        say(f"generating TPC-H SF {_scale_label(scale)} with tpchgen-cli into {parquet_dir}")
        start = time.perf_counter()
        generate_parquet(scale, str(parquet_dir))
        facts["generate_s"] = round(time.perf_counter() - start, 2)
        parquet_done.write_text(json.dumps({"seconds": facts["generate_s"]}) + "\n", encoding="utf-8")
    else:
        say(f"reusing TPC-H SF {_scale_label(scale)} Parquet files in {parquet_dir}")
    paths = generate_parquet(scale, str(parquet_dir))  # returns at once: the files exist

    if not warehouse_done.exists():
        shutil.rmtree(warehouse, ignore_errors=True)
        say(f"loading {len(paths)} tables into lakehouse tables under {warehouse}")
        start = time.perf_counter()
        load_warehouse(paths, str(warehouse))
        facts["load_s"] = round(time.perf_counter() - start, 2)
        warehouse_done.write_text(json.dumps({"seconds": facts["load_s"]}) + "\n", encoding="utf-8")
    else:
        say(f"reusing lakehouse tables under {warehouse}")

    import lakehouse

    tables: dict[str, Any] = {}
    for name, path in paths.items():
        snapshot = lakehouse.open_table(str(warehouse / name)).snapshot()
        tables[name] = {
            "parquet_rows": pq.ParquetFile(path).metadata.num_rows,
            "parquet_bytes": os.path.getsize(path),
            "lakehouse_rows": snapshot.num_records,
            "lakehouse_files": snapshot.num_files,
            "lakehouse_bytes": snapshot.size_bytes,
        }
    facts["tables"] = tables
    return {"parquet": paths, "warehouse": str(warehouse), "facts": facts}


# --- worker (runs in a subprocess) --------------------------------------------------------

def _peak_rss_bytes() -> int:
    """This process's peak resident set (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _vm_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the peak-RSS counter (Linux >= 4.0), so the next reading is one query's peak."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def fingerprint(table: Any) -> list[float | None]:
    """Per column: the sum of a numeric column as a float, None for other columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out: list[float | None] = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            total = pc.sum(column.cast(pa.float64())).as_py()
            out.append(None if total is None else float(total))
        else:
            out.append(None)
    return out


def compare_fingerprints(ours: list[float | None], reference: list[float | None]) -> str:
    """``"same"`` or what differs between two fingerprints (positions, not names)."""
    if len(ours) != len(reference):
        return f"{len(ours)} columns, DuckDB {len(reference)}"
    for position, (a, b) in enumerate(zip(ours, reference), start=1):
        if (a is None) != (b is None):
            return f"column {position}: numeric in one answer only"
        if a is not None and b is not None and not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-6):
            return f"column {position}: sum {a!r}, DuckDB {b!r}"
    return "same"


def _make_runner(spec: dict[str, Any]) -> tuple[Callable[[str], Any], dict[str, Any]]:
    """(run(sql) -> Arrow table, facts about the engine) for the engine in ``spec``."""
    engine_name = spec["engine"]
    if engine_name == "lakehouse":
        import engine

        session = engine.connect(spec["warehouse"])
        return (lambda sql: session.sql(sql).to_arrow()), {"memory_limit_bytes": session.config.memory_limit}
    if engine_name == "duckdb":
        import duckdb

        con = duckdb.connect()
        for name, path in spec["parquet"].items():
            con.execute(f"create view {name} as select * from read_parquet('{path}')")
        threads = con.sql("select current_setting('threads')").fetchall()[0][0]
        return (lambda sql: con.sql(sql).to_arrow_table()), {"version": duckdb.__version__, "threads": threads}
    if engine_name == "polars":
        import polars as pl

        ctx = pl.SQLContext(frames={name: pl.scan_parquet(path) for name, path in spec["parquet"].items()})
        return (lambda sql: ctx.execute(sql).collect().to_arrow()), {
            "version": pl.__version__, "threads": pl.thread_pool_size()}
    raise ValueError(f"unknown engine {engine_name!r}")


def _query_text(engine_name: str, number: int) -> str:
    from benchmarks.tpch.queries import QUERIES

    if engine_name == "polars" and number in POLARS_REWRITES:
        return POLARS_REWRITES[number]
    return QUERIES[number]


def worker_main(spec_path: str) -> int:
    # Our protocol owns the real stdout; anything else printed goes to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**event: Any) -> None:
        channel.write(json.dumps(event) + "\n")
        channel.flush()

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    engine_name = spec["engine"]
    start = time.perf_counter()
    run, facts = _make_runner(spec)
    emit(event="ready", setup_s=time.perf_counter() - start, facts=facts, setup_peak_rss_bytes=_peak_rss_bytes())
    running_peak = _peak_rss_bytes()
    for number in spec["queries"]:
        if engine_name == "polars" and number in POLARS_NOT_SUPPORTED:
            emit(event="skip", query=number, reason=POLARS_NOT_SUPPORTED[number])
            continue
        sql = _query_text(engine_name, number)
        gc.collect()
        per_query = _reset_hwm()
        for attempt in range(1 + spec["repeats"]):
            emit(event="begin", query=number, run=attempt)  # the parent's timeout clock starts here
            try:
                began = time.perf_counter()
                table = run(sql)
                seconds = time.perf_counter() - began
            except Exception as error:  # noqa: BLE001 - any failure is recorded, the next query runs
                emit(event="error", query=number, run=attempt, error=f"{type(error).__name__}: {error}"[:500])
                break
            event: dict[str, Any] = {"event": "run", "query": number, "run": attempt, "seconds": seconds,
                                     "rows": table.num_rows}
            if attempt == 0:
                event["fingerprint"] = fingerprint(table)
            del table
            if attempt == spec["repeats"]:
                peak = _vm_hwm_bytes() if per_query else None
                if peak is not None:
                    running_peak = max(running_peak, peak)
                event["query_peak_rss_bytes"] = peak
            emit(**event)
        gc.collect()
    # clear_refs also resets ru_maxrss on Linux: the engine's peak is the largest reading.
    emit(event="done", peak_rss_bytes=max(running_peak, _peak_rss_bytes()))
    return 0


# --- parent: one engine's subprocesses ----------------------------------------------------

class _Worker:
    """One worker subprocess and a thread that queues its protocol lines."""

    def __init__(self, spec: dict[str, Any], workdir: Path, serial: int) -> None:
        spec_path = workdir / f"spec-{spec['engine']}-{serial}.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self.log_path = workdir / f"worker-{spec['engine']}-{serial}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.tpch.suite", "worker", str(spec_path)],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next event; None at end of output; raises ``queue.Empty`` after ``timeout`` s."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                return None
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        self._reader.join(timeout=5)
        self._log.close()
        return code

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " / ".join(text[-lines:])


def _new_result() -> dict[str, Any]:
    return {"status": "pending", "cold_s": None, "warm_s": [], "rows": None, "fingerprint": None,
            "peak_rss_bytes": None, "detail": None}


def run_engine(engine_name: str, data: dict[str, Any], options: argparse.Namespace, workdir: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    """Run every query on one engine; restart its process after a timeout or a crash."""
    results = {n: _new_result() for n in options.queries}
    remaining = list(options.queries)
    facts: dict[str, Any] = {}
    peaks: list[int] = []
    processes = 0
    loads = [load_average()]
    started = time.perf_counter()
    setup_timeout = max(options.timeout, 120.0)
    while remaining:
        processes += 1
        spec = {"engine": engine_name, "queries": remaining, "repeats": options.repeats,
                "parquet": data["parquet"], "warehouse": data["warehouse"]}
        worker = _Worker(spec, workdir, processes)
        current: int | None = None
        try:
            try:
                event = worker.next_event(setup_timeout)
            except queue.Empty:
                event = None
            if event is None or event.get("event") != "ready":
                code = worker.stop()
                reason = f"worker did not start within {setup_timeout:g} s (exit {code}): {worker.log_tail()}"
                for n in remaining:
                    results[n].update(status="error", detail=reason)
                say(f"  {engine_name}: {reason}")
                break
            facts.update(event.get("facts") or {})
            facts.setdefault("setup_s", round(event["setup_s"], 3))
            peaks.append(int(event.get("setup_peak_rss_bytes") or 0))
            while True:
                current = remaining[0] if remaining else None
                event = worker.next_event(options.timeout)
                loads.append(load_average())
                if event is None:  # the process ended without saying done
                    code = worker.stop()
                    if current is not None:
                        results[current].update(status="crashed",
                                                detail=f"process exited with {code}: {worker.log_tail()}")
                        say(f"  {engine_name} Q{current}: CRASHED (exit {code})")
                        remaining.pop(0)
                    break
                kind = event["event"]
                if kind == "done":
                    peaks.append(int(event["peak_rss_bytes"]))
                    worker.stop()
                    remaining = []
                    break
                number = event["query"]
                result = results[number]
                if kind == "begin":
                    continue
                if kind == "skip":
                    result.update(status="n/a", detail=event["reason"])
                    remaining.remove(number)
                    say(f"  {engine_name} Q{number}: n/a ({event['reason']})")
                elif kind == "error":
                    result.update(status="error", detail=event["error"])
                    remaining.remove(number)
                    say(f"  {engine_name} Q{number}: ERROR {event['error'][:200]}")
                elif kind == "run":
                    if event["run"] == 0:
                        result.update(cold_s=event["seconds"], rows=event["rows"],
                                      fingerprint=event.get("fingerprint"))
                    else:
                        result["warm_s"].append(event["seconds"])
                    if event["run"] == options.repeats:
                        result.update(status="ok", peak_rss_bytes=event.get("query_peak_rss_bytes"))
                        remaining.remove(number)
                        median = statistics.median(result["warm_s"]) if result["warm_s"] else result["cold_s"]
                        say(f"  {engine_name} Q{number:<2} warm median {median:8.3f} s, cold {result['cold_s']:8.3f} s, "
                            f"{result['rows']} rows")
        except queue.Empty:
            worker.stop()
            if current is not None:
                results[current].update(status="timeout", detail=f"a run took longer than {options.timeout:g} s")
                remaining.remove(current)
                say(f"  {engine_name} Q{current}: TIMEOUT after {options.timeout:g} s; restarting the engine")
        finally:
            if worker.process.poll() is None:
                worker.stop()
    loads.append(load_average())
    seen = [x for x in loads if x is not None]
    return {
        "queries": {str(n): r for n, r in results.items()},
        "facts": facts,
        "peak_rss_bytes": max(peaks) if peaks else None,
        "processes": processes,
        "wall_s": round(time.perf_counter() - started, 2),
        "load_average": {"start": loads[0], "end": loads[-1], "max": max(seen) if seen else None},
    }


# --- summaries ----------------------------------------------------------------------------

def warm_median(result: dict[str, Any]) -> float | None:
    if result["status"] != "ok":
        return None
    return statistics.median(result["warm_s"]) if result["warm_s"] else result["cold_s"]


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f} GiB"


def _status_cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "not run"
    status = result["status"]
    if status == "ok":
        return _seconds(warm_median(result))
    if status == "timeout":
        return "**timeout**"
    if status == "n/a":
        return "n/a"
    return f"**{status}**"


def _per_query_table(queries: list[int], runs: dict[str, dict[str, Any]], row_verdicts: dict[int, str],
                     repeats: int) -> str:
    engines = [e for e in ENGINES if e in runs]
    header = ["Query"] + [f"{LABELS[e]} (s)" for e in engines]
    ours = "lakehouse" in runs
    peers = [e for e in ("duckdb", "polars") if e in runs] if ours else []
    header += [f"ours/{LABELS[p]}" for p in peers]
    if ours:
        header += ["ours cold (s)", "ours peak RSS"]
    header += ["rows", "rows vs DuckDB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 2) + ["---"]) + "|"]
    for n in queries:
        results = {e: runs[e]["queries"][str(n)] for e in engines}
        cells = [f"Q{n}"] + [_status_cell(results[e]) for e in engines]
        for peer in peers:
            a, b = warm_median(results["lakehouse"]), warm_median(results[peer])
            cells.append(_times(a / b) if a is not None and b else "—")
        if ours:
            cells.append(_seconds(results["lakehouse"]["cold_s"]))
            cells.append(_gib(results["lakehouse"]["peak_rss_bytes"]))
        reference = results.get("duckdb") or results.get("lakehouse")
        cells.append("—" if reference is None or reference["rows"] is None else f"{reference['rows']:,}")
        cells.append(row_verdicts.get(n, "—"))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    problems = []
    for e in engines:
        for n in queries:
            r = runs[e]["queries"][str(n)]
            if r["status"] not in ("ok",) and r["detail"]:
                problems.append(f"{LABELS[e]} Q{n} {r['status']}: {r['detail']}")
    text = (f"Per query — warm median of {repeats} run{'s' if repeats != 1 else ''} in seconds "
            f"(cold = the query's first run in its engine process):\n\n" + "\n".join(lines) + "\n")
    if problems:
        text += "\n" + "\n".join(f"  - {p}" for p in problems) + "\n"
    return text


def _row_verdict(ours: dict[str, Any], duck: dict[str, Any], polars: dict[str, Any] | None) -> str:
    if ours["status"] != "ok":
        verdict = f"not checked (ours: {ours['status']})"
    elif duck["status"] != "ok":
        verdict = f"not checked (DuckDB: {duck['status']})"
    elif ours["rows"] != duck["rows"]:
        verdict = f"**MISMATCH: ours {ours['rows']}, DuckDB {duck['rows']}**"
    else:
        sums = compare_fingerprints(ours["fingerprint"] or [], duck["fingerprint"] or [])
        verdict = "same" if sums == "same" else f"**VALUES DIFFER: {sums}**"
    if polars is not None and polars["status"] == "ok" and duck["status"] == "ok" and polars["rows"] != duck["rows"]:
        verdict += f" (Polars: {polars['rows']} rows)"
    return verdict


# --- the suite ----------------------------------------------------------------------------

def run(options: argparse.Namespace, context: RunContext) -> SuiteOutput:
    if options.repeats < 1 or options.timeout <= 0 or options.sf <= 0:
        raise SystemExit("--repeats must be >= 1, --timeout and --sf positive")
    say = context.progress
    data = prepare_data(options.sf, options.data_dir, say)
    params = {"sf": _scale_label(options.sf), "repeats": options.repeats, "timeout_s": options.timeout,
              "queries": _compact(options.queries), "engines": ",".join(options.engines)}
    out = SuiteOutput(parameters=params)
    out.info["data"] = data["facts"]

    runs: dict[str, dict[str, Any]] = {}
    for engine_name in options.engines:
        say(f"engine {engine_name}: {len(options.queries)} queries, 1 cold + {options.repeats} warm runs each, "
            f"in a fresh process (1-min load average {load_average()})")
        runs[engine_name] = run_engine(engine_name, data, options, context.workdir, say)
        say(f"engine {engine_name}: done in {runs[engine_name]['wall_s']:.0f} s, "
            f"peak RSS {_gib(runs[engine_name]['peak_rss_bytes'])}")
    out.info["engines"] = runs
    for engine_name, record in runs.items():
        for n, result in record["queries"].items():
            if result["cold_s"] is not None:
                out.series[f"{engine_name}/q{int(n):02d}/cold"] = [round(result["cold_s"], 6)]
            if result["warm_s"]:
                out.series[f"{engine_name}/q{int(n):02d}/warm"] = [round(s, 6) for s in result["warm_s"]]

    # correctness: the tables, then our answers against DuckDB's
    tables = data["facts"]["tables"]
    out.checks.append(Check(
        "lakehouse tables hold as many rows as the generated Parquet files", "same",
        {name: "same" if t["lakehouse_rows"] == t["parquet_rows"] else f"{t['lakehouse_rows']} vs {t['parquet_rows']}"
         for name, t in tables.items()}))
    row_verdicts: dict[int, str] = {}
    if "lakehouse" in runs and "duckdb" in runs:
        rows_observed: dict[str, Any] = {}
        sums_observed: dict[str, Any] = {}
        for n in options.queries:
            ours = runs["lakehouse"]["queries"][str(n)]
            duck = runs["duckdb"]["queries"][str(n)]
            polars = runs["polars"]["queries"][str(n)] if "polars" in runs else None
            row_verdicts[n] = _row_verdict(ours, duck, polars)
            if "timeout" in (ours["status"], duck["status"]):
                continue  # no answer in time: listed in the table and in the bar, not a wrong answer
            key = f"Q{n}"
            if ours["status"] != "ok" or duck["status"] != "ok":
                rows_observed[key] = f"no answer to compare (ours: {ours['status']}, DuckDB: {duck['status']})"
                continue
            rows_observed[key] = "same" if ours["rows"] == duck["rows"] else f"ours {ours['rows']}, DuckDB {duck['rows']}"
            if ours["rows"] == duck["rows"]:
                sums_observed[key] = compare_fingerprints(ours["fingerprint"] or [], duck["fingerprint"] or [])
        if rows_observed:
            out.checks.append(Check("row count of our answer equals DuckDB's", "same", rows_observed))
        if sums_observed:
            out.checks.append(Check(f"sum of every numeric column equals DuckDB's (relative tolerance {REL_TOL:g})",
                                    "same", sums_observed))
        for check in out.checks:
            for key, value in check.observed.items():
                if value != check.expected:
                    say(f"MISMATCH {check.name}: {key}: {value}")

    # summary rows, bar verdict, chart, notes
    _summary_rows(out, options.queries, runs)
    bar = _bar_verdict(options.queries, runs)
    out.info["bar"] = bar
    if bar is not None:
        out.notes.append(bar["text"])
    if not options.no_chart:
        chart_note = _draw_chart(options, runs, say)
        if chart_note:
            out.notes.append(chart_note)
    out.notes.append(_per_query_table(options.queries, runs, row_verdicts, options.repeats))
    out.notes += _notes(options, runs, data)
    return out


def _compact(numbers: list[int]) -> str:
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    return ",".join(map(str, numbers))


def _summary_rows(out: SuiteOutput, queries: list[int], runs: dict[str, dict[str, Any]]) -> None:
    if "lakehouse" not in runs:
        return
    ours = runs["lakehouse"]["queries"]
    for peer in ("duckdb", "polars"):
        if peer not in runs:
            continue
        theirs = runs[peer]["queries"]
        both = [n for n in queries if warm_median(ours[str(n)]) is not None and warm_median(theirs[str(n)]) is not None]
        if not both:
            continue
        scope = f"{len(both)} of {len(queries)} queries" if len(both) < len(queries) else f"all {len(queries)} queries"
        a = [warm_median(ours[str(n)]) for n in both]
        b = [warm_median(theirs[str(n)]) for n in both]
        out.rows.append(Row("total time, warm medians", scope, "sum", "s", sum(a), peer, sum(b)))
        out.rows.append(Row("total time, cold runs", scope, "sum", "s",
                            sum(ours[str(n)]["cold_s"] for n in both), peer,
                            sum(theirs[str(n)]["cold_s"] for n in both)))
        out.rows.append(Row("geometric mean of warm medians (ratio = geomean of per-query ratios)", scope,
                            "geomean", "s", _geomean(a), peer, _geomean(b)))
    for peer in ("duckdb", "polars"):
        if peer in runs and runs[peer]["peak_rss_bytes"] and runs["lakehouse"]["peak_rss_bytes"]:
            out.rows.append(Row("peak RSS of the engine process", "whole run", "max", "GiB",
                                runs["lakehouse"]["peak_rss_bytes"] / 2**30, peer,
                                runs[peer]["peak_rss_bytes"] / 2**30))


def _bar_verdict(queries: list[int], runs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The issue's bar: every query within 8 GiB; total at most 2.5x DuckDB's."""
    if "lakehouse" not in runs or "duckdb" not in runs:
        return None
    ours, duck = runs["lakehouse"]["queries"], runs["duckdb"]["queries"]
    unfinished = [f"Q{n} ({ours[str(n)]['status']})" for n in queries if ours[str(n)]["status"] != "ok"]
    per_query = {n: ours[str(n)]["peak_rss_bytes"] for n in queries if ours[str(n)]["peak_rss_bytes"] is not None}
    if len(per_query) == len(queries):
        worst = max(per_query, key=per_query.get)
        peak, where = per_query[worst], f"largest at Q{worst}"
    else:
        peak, where = runs["lakehouse"]["peak_rss_bytes"], "whole-process peak"
    memory_ok = peak is not None and peak <= BAR_MEMORY_BYTES
    both = [n for n in queries if warm_median(ours[str(n)]) is not None and warm_median(duck[str(n)]) is not None]
    total_ours = sum(warm_median(ours[str(n)]) for n in both)
    total_duck = sum(warm_median(duck[str(n)]) for n in both)
    ratio = total_ours / total_duck if total_duck else None
    time_ok = ratio is not None and ratio <= BAR_TOTAL_RATIO and not unfinished and len(both) == len(queries)
    met = memory_ok and time_ok and not unfinished
    text = (f"**Bar from the issue: every query within 8 GiB; total at most {BAR_TOTAL_RATIO}× DuckDB's. "
            f"This run: {'MET' if met else 'NOT MET'}** — memory {'ok' if memory_ok else 'not ok'}: "
            f"peak RSS {_gib(peak)} ({where}{', finished queries only' if unfinished else ''}); time {'ok' if time_ok else 'not ok'}: total of warm medians "
            f"{_seconds(total_ours)} s vs DuckDB {_seconds(total_duck)} s = {_times(ratio)}"
            + (f" over {len(both)} of {len(queries)} queries" if len(both) < len(queries) else "")
            + (f"; unfinished: {', '.join(unfinished)}" if unfinished else "") + ".")
    return {"met": met, "memory_ok": memory_ok, "time_ok": time_ok, "peak_rss_bytes": peak,
            "total_ratio": ratio, "unfinished": unfinished, "text": text}


def _draw_chart(options: argparse.Namespace, runs: dict[str, dict[str, Any]], say: Callable[[str], None]) -> str | None:
    try:
        from benchmarks.tpch.chart import draw
    except ImportError as error:  # matplotlib missing
        say(f"chart skipped: {error}")
        return f"Chart skipped: {error} (`pip install -e .[bench]`)."
    series = {LABELS[e]: [runs[e]["queries"][str(n)] for n in options.queries] for e in ENGINES if e in runs}
    draw(options.chart, options.queries, {name: [warm_median(r) for r in rs] for name, rs in series.items()},
         {name: [r["status"] for r in rs] for name, rs in series.items()},
         title=f"TPC-H SF {_scale_label(options.sf)}: warm median per query (log scale, lower is better)",
         timeout=options.timeout)
    say(f"wrote {options.chart}")
    doc_dir = Path(options.doc).resolve().parent
    link = os.path.relpath(Path(options.chart).resolve(), doc_dir).replace(os.sep, "/")
    return f"Chart (warm medians, log scale): ![TPC-H SF {_scale_label(options.sf)} per query]({link})"


def _notes(options: argparse.Namespace, runs: dict[str, dict[str, Any]], data: dict[str, Any]) -> list[str]:
    notes = []
    engines = []
    for e, record in runs.items():
        facts = record["facts"]
        bits = [f"setup {facts.get('setup_s', '?')} s", f"peak RSS {_gib(record['peak_rss_bytes'])}",
                f"wall {record['wall_s']:.0f} s"]
        if facts.get("version"):
            bits.insert(0, f"version {facts['version']}")
        if facts.get("threads") is not None:
            bits.insert(1, f"threads {facts['threads']}")
        if record["processes"] > 1:
            bits.append(f"{record['processes']} processes (restarted after timeouts or crashes)")
        load = record["load_average"]
        bits.append(f"1-min load average {load['start']} → {load['end']} (max {load['max']})")
        engines.append(f"{LABELS[e]} ({e}): " + ", ".join(bits))
    notes.append("Engines, each in a fresh subprocess, one after the other: " + "; ".join(engines) + ".")
    notes.append(
        "What is timed: ours `engine.connect(warehouse).sql(q).to_arrow()` on lakehouse tables; DuckDB "
        "`con.sql(q).to_arrow_table()` over views on `read_parquet`; Polars `SQLContext` over `pl.scan_parquet` "
        "frames, `ctx.execute(q).collect().to_arrow()`. Parsing, planning, execution and the Arrow result are "
        "all inside the time. Every engine uses its default thread count. The OS file cache is not dropped, so "
        "\"cold\" means the first run in the process (it includes first-use costs such as JIT compilation), not "
        "a cold disk.")
    notes.append(
        "Peak RSS per query: the process's resident-set high-water mark (`VmHWM`, reset through "
        "`/proc/self/clear_refs` before each query, so it includes the process's baseline). Peak per engine: the "
        "largest of those and `getrusage(RUSAGE_SELF).ru_maxrss` at the end.")
    tables = data["facts"]["tables"]
    lineitem = tables.get("lineitem", {})
    notes.append(
        f"Data: TPC-H SF {_scale_label(options.sf)} from `tpchgen-cli`, one Parquet file per table "
        f"(lineitem {lineitem.get('parquet_rows', 0):,} rows, {lineitem.get('parquet_bytes', 0) / 2**20:.0f} MiB); "
        f"the lakehouse copy holds lineitem in {lineitem.get('lakehouse_files')} file(s), "
        f"{lineitem.get('lakehouse_bytes', 0) / 2**20:.0f} MiB. Cached in `{_display_path(data['facts']['data_root'])}`.")
    notes.append(
        "Correctness, outside the timings: per query, our row count and the sum of every numeric column "
        "(by position) must equal DuckDB's; a difference fails the run (exit 1). A query on which ours timed out "
        "is not compared (it is listed in the table).")
    if POLARS_NOT_SUPPORTED or POLARS_REWRITES:
        notes.append("Polars: " + "; ".join(
            [f"Q{n} n/a ({why})" for n, why in sorted(POLARS_NOT_SUPPORTED.items())]
            + [f"Q{n} rewritten" for n in sorted(POLARS_REWRITES)]) + ".")
    else:
        notes.append("Polars ran the same 22 query texts unchanged.")
    return notes


def _display_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return path


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(worker_main(sys.argv[2]))
    print("usage: python -m benchmarks.tpch.suite worker SPEC.json (internal; run `python -m benchmarks tpch`)",
          file=sys.stderr)
    sys.exit(2)
