"""Delta table commands that sqlglot has no grammar for, recognized by small patterns.

Each pattern matches a whole statement (case-insensitive, any whitespace, optional trailing
``;``). Table names are identifiers, ``"quoted identifiers"`` or ``'quoted/paths'``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa

import lakehouse
from engine.errors import PlanError
from engine.statements.ddl import NOTHING, open_target
from lakehouse.errors import RetentionCheckError

if TYPE_CHECKING:
    from engine.session import Session

_NAME = r"""(?P<{0}>[A-Za-z_][\w$]*|"[^"]+"|'[^']+'|`[^`]+`)"""
_TRAVEL = r"(?:\s+(?:VERSION\s+AS\s+OF\s+(?P<version>\d+)|TIMESTAMP\s+AS\s+OF\s+'(?P<timestamp>[^']+)'))?"


def _unquote(name: str) -> str:
    return name[1:-1] if name[:1] in "\"'`" else name


@dataclass
class Command:
    """A recognized command: what to run, with the pattern's named groups."""

    handler: Callable[[Session, dict[str, Any]], pa.Table]
    groups: dict[str, Any]

    def run(self, session: Session) -> pa.Table:
        return self.handler(session, self.groups)


def _history(session: Session, g: dict[str, Any]) -> pa.Table:
    table = open_target(session, _unquote(g["table"]))
    entries = table.history(limit=int(g["limit"]) if g.get("limit") else None)
    return pa.table({
        "version": pa.array([e["version"] for e in entries], pa.int64()),
        "timestamp": pa.array([e["timestamp"] * 1000 for e in entries], pa.timestamp("us", tz="UTC")),
        "operation": pa.array([e.get("operation") for e in entries], pa.string()),
        "operationParameters": pa.array([json.dumps(e.get("operationParameters") or {}, sort_keys=True)
                                         for e in entries], pa.string()),
        "operationMetrics": pa.array([json.dumps(e.get("operationMetrics") or {}, sort_keys=True)
                                      for e in entries], pa.string()),
    })


def _detail(session: Session, g: dict[str, Any]) -> pa.Table:
    table = open_target(session, _unquote(g["table"]))
    snapshot = table.snapshot()
    metadata = snapshot.metadata
    return pa.table({
        "name": [table.name], "location": [table.uri], "id": [snapshot.table_id],
        "version": pa.array([snapshot.version], pa.int64()),
        "numFiles": pa.array([snapshot.num_files], pa.int64()),
        "sizeInBytes": pa.array([snapshot.size_bytes], pa.int64()),
        "numRecords": pa.array([snapshot.num_records], pa.int64()),
        "partitionColumns": [list(snapshot.partition_columns)],
        "properties": [json.dumps(dict(snapshot.properties), sort_keys=True)],
        "minReaderVersion": pa.array([snapshot.protocol.min_reader_version], pa.int32()),
        "minWriterVersion": pa.array([snapshot.protocol.min_writer_version], pa.int32()),
        "description": [getattr(metadata, "description", None)],
    })


def _travel(g: dict[str, Any]) -> dict[str, Any]:
    if g.get("version"):
        return {"version": int(g["version"])}
    if g.get("timestamp"):
        return {"timestamp": g["timestamp"]}
    return {}


def _report(values: dict[str, Any]) -> pa.Table:
    """A one-row table of a maintenance report's scalar values (lists become counts)."""
    row = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple, set)):
            continue
        row[key] = [json.dumps(value, sort_keys=True) if isinstance(value, dict) else value]
    return pa.table(row) if row else NOTHING


def _clone(session: Session, g: dict[str, Any]) -> pa.Table:
    source = open_target(session, _unquote(g["source"]))
    location = session.catalog.table_location(_unquote(g["target"]))
    travel = _travel(g)
    if "timestamp" in travel:
        travel = {"version": source.snapshot(timestamp=travel["timestamp"]).version}
    lakehouse.shallow_clone(source, location, storage_options=session.catalog.storage_options, **travel)
    return NOTHING


def _restore(session: Session, g: dict[str, Any]) -> pa.Table:
    table = open_target(session, _unquote(g["table"]))
    travel = _travel(g)
    if not travel:
        raise PlanError("RESTORE needs TO VERSION AS OF n or TO TIMESTAMP AS OF 'timestamp'")
    return _report(table.restore(**travel))


def _vacuum(session: Session, g: dict[str, Any]) -> pa.Table:
    """VACUUM: one report row; with DRY RUN, one row per file (``path, action, reason``).

    ``action`` is ``delete`` for files the real run would delete, ``keep`` for files that
    would go but a tag or a shallow clone still needs (``reason`` names them).
    """
    table = open_target(session, _unquote(g["table"]))
    try:
        report = table.vacuum(float(g["hours"]) if g.get("hours") else None, dry_run=bool(g.get("dry")),
                              enforce_retention=session.config.retention_check)
    except RetentionCheckError as exc:
        # The table format's message names the Python switch; SQL users have a setting.
        raise RetentionCheckError(str(exc).replace("pass enforce_retention=False to do it anyway",
                                                   "run SET retention_check = false to do it anyway")) from None
    if not report.get("dry_run"):
        return _report({k: v for k, v in report.items() if k != "delete_reasons"})
    reasons = report.get("delete_reasons") or {}
    rows = [(str(f), "delete", reasons.get(f, "")) for f in report.get("files") or []]
    rows += [(str(f), "keep", "; ".join(why)) for f, why in (report.get("kept_by_pins") or {}).items()]
    rows.sort()
    return pa.table({"path": pa.array([r[0] for r in rows], pa.string()),
                     "action": pa.array([r[1] for r in rows], pa.string()),
                     "reason": pa.array([r[2] for r in rows], pa.string())})


def _optimize(session: Session, g: dict[str, Any]) -> pa.Table:
    table = open_target(session, _unquote(g["table"]))
    zorder = [c.strip().strip('"`') for c in g["zorder"].split(",")] if g.get("zorder") else None
    return _report(table.optimize(g.get("where"), zorder_by=zorder))


def _create_tag(session: Session, g: dict[str, Any]) -> pa.Table:
    table = open_target(session, _unquote(g["table"]))
    table.tag(_unquote(g["tag"]), version=int(g["version"]) if g.get("version") else None)
    return NOTHING


def _drop_tag(session: Session, g: dict[str, Any]) -> pa.Table:
    open_target(session, _unquote(g["table"])).drop_tag(_unquote(g["tag"]))
    return NOTHING


def _show_tags(session: Session, g: dict[str, Any]) -> pa.Table:
    tags = open_target(session, _unquote(g["table"])).tags()
    names = sorted(tags)
    return pa.table({"tag": pa.array(names, pa.string()),
                     "version": pa.array([tags[n].version for n in names], pa.int64()),
                     "created": pa.array([tags[n].created_ms * 1000 for n in names], pa.timestamp("us", tz="UTC")),
                     "note": pa.array([tags[n].note for n in names], pa.string())})


_SIZE_UNITS = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
               "tb": 1000**4, "tib": 1024**4}
_SETTINGS = {"retention_check": "retention_check", "spark.databricks.delta.retentionDurationCheck.enabled":
             "retention_check", "memory_limit": "memory_limit", "max_memory": "memory_limit"}


def _setting_value(name: str, raw: str) -> Any:
    text = raw.strip().strip("'\"")
    if name == "retention_check":
        if text.lower() in ("true", "on", "1"):
            return True
        if text.lower() in ("false", "off", "0"):
            return False
        raise PlanError(f"SET {name}: expected true or false, got {raw!r}")
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.lower())
    if not found or found.group(2) not in {**_SIZE_UNITS, "": 1}:
        raise PlanError(f"SET {name}: expected a size such as '4GB', got {raw!r}")
    return int(float(found.group(1)) * _SIZE_UNITS.get(found.group(2) or "b", 1))


def _set(session: Session, g: dict[str, Any]) -> pa.Table:
    key = _SETTINGS.get(g["name"]) or _SETTINGS.get(g["name"].lower())
    if key is None:
        raise PlanError(f"unknown setting '{g['name']}'; settings: {', '.join(sorted(_SETTINGS))}")
    setattr(session.config, key, _setting_value(key, g["value"]))
    return NOTHING


_PATTERNS: list[tuple[re.Pattern[str], Callable[[Session, dict[str, Any]], pa.Table]]] = [
    (re.compile(r"DESCRIBE\s+HISTORY\s+" + _NAME.format("table") + r"(?:\s+LIMIT\s+(?P<limit>\d+))?"), _history),
    (re.compile(r"DESCRIBE\s+DETAIL\s+" + _NAME.format("table")), _detail),
    (re.compile(r"CREATE\s+TABLE\s+" + _NAME.format("target") + r"\s+SHALLOW\s+CLONE\s+" + _NAME.format("source")
                + _TRAVEL), _clone),
    (re.compile(r"RESTORE\s+(?:TABLE\s+)?" + _NAME.format("table") + r"\s+TO" + _TRAVEL), _restore),
    (re.compile(r"VACUUM\s+" + _NAME.format("table") + r"(?:\s+RETAIN\s+(?P<hours>[-+]?\d+(?:\.\d+)?)\s+HOURS)?"
                r"(?P<dry>\s+DRY\s+RUN)?"), _vacuum),
    (re.compile(r"OPTIMIZE\s+" + _NAME.format("table") + r"(?:\s+WHERE\s+(?P<where>.+?))?"
                r"(?:\s+ZORDER\s+BY\s*\((?P<zorder>[^)]*)\))?"), _optimize),
    (re.compile(r"ALTER\s+TABLE\s+" + _NAME.format("table") + r"\s+CREATE\s+TAG\s+" + _NAME.format("tag")
                + r"(?:\s+VERSION\s+AS\s+OF\s+(?P<version>\d+))?"), _create_tag),
    (re.compile(r"ALTER\s+TABLE\s+" + _NAME.format("table") + r"\s+DROP\s+TAG\s+" + _NAME.format("tag")), _drop_tag),
    (re.compile(r"SET\s+(?:SESSION\s+|GLOBAL\s+)?(?P<name>[A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+)\s*(?P<value>.+)"), _set),
    (re.compile(r"SHOW\s+TAGS\s+(?:(?:IN|FROM)\s+)?" + _NAME.format("table")), _show_tags),
]


def match(sql: str) -> Command | None:
    """The command ``sql`` states, or None when it is not one of these commands."""
    text = sql.strip().rstrip(";").strip()
    for pattern, handler in _PATTERNS:
        found = re.fullmatch(pattern.pattern, text, flags=re.IGNORECASE | re.DOTALL)
        if found:
            return Command(handler, found.groupdict())
    return None
