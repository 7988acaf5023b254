"""Delta log actions as frozen dataclasses, with their exact JSON wire form.

Each class reads the camelCase JSON object of its action (``from_json``) and writes it
back (``to_json``). Unknown fields written by other engines are tolerated on read; unknown
*actions* are skipped by :func:`parse_action`, as the protocol requires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from lakehouse.errors import CorruptLogError


def _req(obj: Mapping[str, Any], key: str, action: str, where: str) -> Any:
    if key not in obj:
        raise CorruptLogError(f"{where}: '{action}' action is missing its required field '{key}'")
    return obj[key]


def _int(value: Any, key: str, action: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise CorruptLogError(f"{where}: '{action}.{key}' must be an integer, got {value!r}") from None
    return value


def _str_map(value: Any, key: str, action: str, where: str) -> dict[str, str | None]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CorruptLogError(f"{where}: '{action}.{key}' must be an object, got {type(value).__name__}")
    return {str(k): (None if v is None else str(v)) for k, v in value.items()}


@dataclass(frozen=True)
class Protocol:
    min_reader_version: int
    min_writer_version: int
    reader_features: tuple[str, ...] | None = None
    writer_features: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> Protocol:
        rf, wf = obj.get("readerFeatures"), obj.get("writerFeatures")
        return cls(
            _int(_req(obj, "minReaderVersion", "protocol", where), "minReaderVersion", "protocol", where),
            _int(_req(obj, "minWriterVersion", "protocol", where), "minWriterVersion", "protocol", where),
            tuple(rf) if rf is not None else None,
            tuple(wf) if wf is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"minReaderVersion": self.min_reader_version, "minWriterVersion": self.min_writer_version}
        if self.reader_features is not None:
            out["readerFeatures"] = list(self.reader_features)
        if self.writer_features is not None:
            out["writerFeatures"] = list(self.writer_features)
        return out


@dataclass(frozen=True)
class Metadata:
    id: str
    schema_string: str
    partition_columns: tuple[str, ...] = ()
    configuration: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    description: str | None = None
    format_provider: str = "parquet"
    format_options: Mapping[str, str] = field(default_factory=dict)
    created_time: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> Metadata:
        fmt = obj.get("format") or {}
        return cls(
            id=str(_req(obj, "id", "metaData", where)),
            schema_string=str(_req(obj, "schemaString", "metaData", where)),
            partition_columns=tuple(obj.get("partitionColumns") or ()),
            configuration={k: v for k, v in _str_map(obj.get("configuration"), "configuration", "metaData", where).items() if v is not None},
            name=obj.get("name"),
            description=obj.get("description"),
            format_provider=fmt.get("provider", "parquet"),
            format_options=dict(fmt.get("options") or {}),
            created_time=obj.get("createdTime"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            out["name"] = self.name
        if self.description is not None:
            out["description"] = self.description
        out["format"] = {"provider": self.format_provider, "options": dict(self.format_options)}
        out["schemaString"] = self.schema_string
        out["partitionColumns"] = list(self.partition_columns)
        out["configuration"] = dict(self.configuration)
        if self.created_time is not None:
            out["createdTime"] = self.created_time
        return out


@dataclass(frozen=True)
class AddFile:
    path: str
    partition_values: Mapping[str, str | None]
    size: int
    modification_time: int
    data_change: bool = True
    stats: str | None = None
    tags: Mapping[str, str] | None = None
    deletion_vector: Mapping[str, Any] | None = None
    base_row_id: int | None = None
    default_row_commit_version: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> AddFile:
        path = _req(obj, "path", "add", where)
        if not isinstance(path, str):
            raise CorruptLogError(f"{where}: 'add.path' must be a string, got {path!r}")
        stats = obj.get("stats")
        return cls(
            path=path,
            partition_values=_str_map(obj.get("partitionValues"), "partitionValues", "add", where),
            size=_int(_req(obj, "size", "add", where), "size", "add", where),
            modification_time=_int(obj.get("modificationTime", 0), "modificationTime", "add", where),
            data_change=bool(obj.get("dataChange", True)),
            stats=stats if isinstance(stats, str) else (json.dumps(stats) if stats is not None else None),
            tags=obj.get("tags"),
            deletion_vector=obj.get("deletionVector"),
            base_row_id=obj.get("baseRowId"),
            default_row_commit_version=obj.get("defaultRowCommitVersion"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "partitionValues": dict(self.partition_values),
            "size": self.size,
            "modificationTime": self.modification_time,
            "dataChange": self.data_change,
        }
        if self.stats is not None:
            out["stats"] = self.stats
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.deletion_vector is not None:
            out["deletionVector"] = dict(self.deletion_vector)
        if self.base_row_id is not None:
            out["baseRowId"] = self.base_row_id
        if self.default_row_commit_version is not None:
            out["defaultRowCommitVersion"] = self.default_row_commit_version
        return out

    @property
    def dv_id(self) -> str | None:
        return deletion_vector_id(self.deletion_vector)

    def remove(self, deletion_timestamp: int, *, data_change: bool = True) -> RemoveFile:
        """The ``remove`` action that logically deletes this file."""
        return RemoveFile(
            path=self.path,
            data_change=data_change,
            deletion_timestamp=deletion_timestamp,
            extended_file_metadata=True,
            partition_values=self.partition_values,
            size=self.size,
            stats=self.stats,
            tags=self.tags,
            deletion_vector=self.deletion_vector,
        )


def deletion_vector_id(dv: Mapping[str, Any] | None) -> str | None:
    """The protocol's unique id of a deletion vector (storage type + path + offset)."""
    if not dv:
        return None
    uid = f"{dv.get('storageType', '')}{dv.get('pathOrInlineDv', '')}"
    if dv.get("offset") is not None:
        uid += f"@{dv['offset']}"
    return uid


@dataclass(frozen=True)
class RemoveFile:
    path: str
    data_change: bool = True
    deletion_timestamp: int | None = None
    extended_file_metadata: bool | None = None
    partition_values: Mapping[str, str | None] | None = None
    size: int | None = None
    stats: str | None = None
    tags: Mapping[str, str] | None = None
    deletion_vector: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> RemoveFile:
        path = _req(obj, "path", "remove", where)
        if not isinstance(path, str):
            raise CorruptLogError(f"{where}: 'remove.path' must be a string, got {path!r}")
        size = obj.get("size")
        return cls(
            path=path,
            data_change=bool(obj.get("dataChange", True)),
            deletion_timestamp=obj.get("deletionTimestamp"),
            extended_file_metadata=obj.get("extendedFileMetadata"),
            partition_values=_str_map(obj.get("partitionValues"), "partitionValues", "remove", where)
            if obj.get("partitionValues") is not None else None,
            size=_int(size, "size", "remove", where) if size is not None else None,
            stats=obj.get("stats") if isinstance(obj.get("stats"), str) else None,
            tags=obj.get("tags"),
            deletion_vector=obj.get("deletionVector"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "dataChange": self.data_change}
        if self.deletion_timestamp is not None:
            out["deletionTimestamp"] = self.deletion_timestamp
        if self.extended_file_metadata is not None:
            out["extendedFileMetadata"] = self.extended_file_metadata
        if self.partition_values is not None:
            out["partitionValues"] = dict(self.partition_values)
        if self.size is not None:
            out["size"] = self.size
        if self.stats is not None:
            out["stats"] = self.stats
        if self.tags:
            out["tags"] = dict(self.tags)
        if self.deletion_vector is not None:
            out["deletionVector"] = dict(self.deletion_vector)
        return out

    @property
    def dv_id(self) -> str | None:
        return deletion_vector_id(self.deletion_vector)


@dataclass(frozen=True)
class AddCDCFile:
    path: str
    partition_values: Mapping[str, str | None]
    size: int
    data_change: bool = False
    tags: Mapping[str, str] | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> AddCDCFile:
        return cls(
            path=str(_req(obj, "path", "cdc", where)),
            partition_values=_str_map(obj.get("partitionValues"), "partitionValues", "cdc", where),
            size=_int(obj.get("size", 0), "size", "cdc", where),
            data_change=bool(obj.get("dataChange", False)),
            tags=obj.get("tags"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "partitionValues": dict(self.partition_values),
            "size": self.size,
            "dataChange": self.data_change,
        }
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


@dataclass(frozen=True)
class Txn:
    app_id: str
    version: int
    last_updated: int | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> Txn:
        return cls(
            app_id=str(_req(obj, "appId", "txn", where)),
            version=_int(_req(obj, "version", "txn", where), "version", "txn", where),
            last_updated=obj.get("lastUpdated"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"appId": self.app_id, "version": self.version}
        if self.last_updated is not None:
            out["lastUpdated"] = self.last_updated
        return out


@dataclass(frozen=True)
class DomainMetadata:
    domain: str
    configuration: str
    removed: bool = False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> DomainMetadata:
        return cls(
            domain=str(_req(obj, "domain", "domainMetadata", where)),
            configuration=str(obj.get("configuration", "")),
            removed=bool(obj.get("removed", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "configuration": self.configuration, "removed": self.removed}


@dataclass(frozen=True)
class CommitInfo:
    """Free-form provenance of a commit; kept as the raw JSON object."""

    values: Mapping[str, Any]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str = "log") -> CommitInfo:
        return cls(dict(obj))

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def txn_id(self) -> str | None:
        return self.values.get("txnId")

    @property
    def operation(self) -> str | None:
        return self.values.get("operation")

    @property
    def timestamp(self) -> int | None:
        ts = self.values.get("timestamp")
        return ts if isinstance(ts, int) else None

    @property
    def is_blind_append(self) -> bool:
        return bool(self.values.get("isBlindAppend", False))


Action = Protocol | Metadata | AddFile | RemoveFile | AddCDCFile | Txn | DomainMetadata | CommitInfo

_KEYS: dict[str, Any] = {
    "protocol": Protocol,
    "metaData": Metadata,
    "add": AddFile,
    "remove": RemoveFile,
    "cdc": AddCDCFile,
    "txn": Txn,
    "domainMetadata": DomainMetadata,
    "commitInfo": CommitInfo,
}
_NAMES = {cls: key for key, cls in _KEYS.items()}


def parse_action(obj: Any, where: str = "log") -> Action | None:
    """One decoded NDJSON line -> action; ``None`` for actions we do not know (skipped)."""
    if not isinstance(obj, dict):
        raise CorruptLogError(f"{where}: a log line must be a JSON object, got {type(obj).__name__}")
    for key, value in obj.items():
        cls = _KEYS.get(key)
        if cls is not None:
            if not isinstance(value, dict):
                raise CorruptLogError(f"{where}: '{key}' action must be a JSON object")
            return cls.from_json(value, where)
    return None


def parse_commit(data: bytes, where: str) -> list[Action]:
    """All actions of one commit file. A line that is not JSON names the file and line."""
    actions: list[Action] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptLogError(f"{where}: commit file is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorruptLogError(
                f"{where}: line {number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                "the commit file is corrupt or truncated"
            ) from None
        action = parse_action(obj, f"{where} line {number}")
        if action is not None:
            actions.append(action)
    return actions


def serialize_commit(actions: list[Action]) -> bytes:
    """NDJSON bytes for a commit, ``commitInfo`` first as delta-rs and ICT expect."""
    ordered = sorted(actions, key=lambda a: 0 if isinstance(a, CommitInfo) else 1)
    lines = [json.dumps({_NAMES[type(a)]: a.to_json()}, separators=(",", ":"), ensure_ascii=False) for a in ordered]
    return ("\n".join(lines) + "\n").encode("utf-8")
