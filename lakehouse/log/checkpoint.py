"""Classic single-file Parquet checkpoints: reading (also multi-part) and writing."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakehouse.errors import CorruptLogError
from lakehouse.log.actions import DomainMetadata, Metadata, Protocol, RemoveFile, Txn
from lakehouse.log.filelist import DV_TYPE, FILES_SCHEMA, STRING_MAP, conform_files, stats_from_parsed
from lakehouse.log.paths import LAST_CHECKPOINT, LOG_DIR, checkpoint_name
from lakehouse.storage.base import FileInfo, Storage

TXN_TYPE = pa.struct([("appId", pa.string()), ("version", pa.int64()), ("lastUpdated", pa.int64())])
REMOVE_TYPE = pa.struct([
    ("path", pa.string()), ("deletionTimestamp", pa.int64()), ("dataChange", pa.bool_()),
    ("extendedFileMetadata", pa.bool_()), ("partitionValues", STRING_MAP), ("size", pa.int64()),
    ("deletionVector", DV_TYPE),
])
METADATA_TYPE = pa.struct([
    ("id", pa.string()), ("name", pa.string()), ("description", pa.string()),
    ("format", pa.struct([("provider", pa.string()), ("options", STRING_MAP)])),
    ("schemaString", pa.string()), ("partitionColumns", pa.list_(pa.string())),
    ("configuration", STRING_MAP), ("createdTime", pa.int64()),
])
PROTOCOL_TYPE = pa.struct([
    ("minReaderVersion", pa.int32()), ("minWriterVersion", pa.int32()),
    ("readerFeatures", pa.list_(pa.string())), ("writerFeatures", pa.list_(pa.string())),
])
DOMAIN_TYPE = pa.struct([("domain", pa.string()), ("configuration", pa.string()), ("removed", pa.bool_())])
# Add rows in the order Spark writes them; deletionVector only when a file has one.
ADD_FIELDS = ["path", "partitionValues", "size", "modificationTime", "dataChange", "tags", "stats"]


@dataclass(frozen=True)
class CheckpointContents:
    protocol: Protocol | None
    metadata: Metadata | None
    files: pa.Table  # FILES_SCHEMA
    tombstones: list[RemoveFile]
    txns: dict[str, Txn]
    domains: dict[str, DomainMetadata]


def _rows(table: pa.Table, column: str) -> list[dict[str, Any]]:
    if column not in table.column_names:
        return []
    array = table.column(column)
    return [row for row in array.filter(pc.is_valid(array)).to_pylist()]


def read_checkpoint(storage: Storage, parts: tuple[FileInfo, ...], *, table: str) -> CheckpointContents:
    """Read a classic or multi-part checkpoint; raises ``CorruptLogError`` naming the file."""
    tables = []
    for info in parts:
        try:
            tables.append(pq.read_table(io.BytesIO(storage.read(info.path))))
        except FileNotFoundError:
            raise CorruptLogError(f"table '{table}': checkpoint '{info.name}' disappeared while reading") from None
        except (pa.ArrowException, OSError) as exc:
            raise CorruptLogError(f"table '{table}': checkpoint '{info.name}' is not readable Parquet ({exc})") from None
    data = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    where = f"table '{table}' checkpoint '{parts[0].name}'"

    protocol = metadata = None
    for row in _rows(data, "protocol"):
        protocol = Protocol.from_json(row, where)
    for row in _rows(data, "metaData"):
        row = dict(row)
        row["configuration"] = dict(row.get("configuration") or [])
        fmt = row.get("format") or {}
        row["format"] = {"provider": fmt.get("provider") or "parquet", "options": dict(fmt.get("options") or [])}
        metadata = Metadata.from_json(row, where)
    txns = {t.app_id: t for t in (Txn.from_json(r, where) for r in _rows(data, "txn"))}
    domains = {d.domain: d for d in (DomainMetadata.from_json(r, where) for r in _rows(data, "domainMetadata"))}
    tombstones = []
    for row in _rows(data, "remove"):
        row = dict(row)
        row["partitionValues"] = dict(row["partitionValues"]) if row.get("partitionValues") is not None else None
        tombstones.append(RemoveFile.from_json(row, where))

    if "add" in data.column_names:
        adds = data.column("add").combine_chunks()
        adds = adds.filter(pc.is_valid(adds))
        names = [adds.type.field(i).name for i in range(adds.type.num_fields)]
        flat = pa.Table.from_arrays([adds.field(i) for i in range(len(names))], names=names)
        if "stats_parsed" in names:
            parsed = stats_from_parsed(flat.column("stats_parsed").combine_chunks())
            stats = flat.column("stats").combine_chunks() if "stats" in names else pa.nulls(len(flat), pa.string())
            flat = flat.drop_columns([c for c in ("stats",) if c in names]).append_column(
                "stats", pc.coalesce(stats, parsed))
        files = conform_files(flat)
        if files.column("path").null_count:
            raise CorruptLogError(f"{where}: an add row has no path")
    else:
        files = FILES_SCHEMA.empty_table()
    return CheckpointContents(protocol, metadata, files, tombstones, txns, domains)


def _section(column: str, array: pa.Array, columns: dict[str, pa.DataType]) -> pa.Table:
    n = len(array)
    return pa.Table.from_arrays(
        [array if name == column else pa.nulls(n, dtype) for name, dtype in columns.items()],
        names=list(columns))


def build_checkpoint(*, protocol: Protocol, metadata: Metadata, files: pa.Table, tombstones: list[RemoveFile],
                     txns: dict[str, Txn], domains: dict[str, DomainMetadata]) -> tuple[bytes, int]:
    """Parquet bytes of a classic checkpoint and the number of actions in it."""
    has_dv = files.column("deletionVector").null_count < files.num_rows
    add_fields = ADD_FIELDS + (["deletionVector"] if has_dv else [])
    add_type = pa.struct([FILES_SCHEMA.field(name) for name in add_fields])
    columns: dict[str, pa.DataType] = {
        "txn": TXN_TYPE, "add": add_type, "remove": REMOVE_TYPE,
        "metaData": METADATA_TYPE, "protocol": PROTOCOL_TYPE,
    }
    if domains:
        columns["domainMetadata"] = DOMAIN_TYPE

    meta_row = metadata.to_json()
    meta_row["configuration"] = list(meta_row["configuration"].items())
    meta_row["format"] = {"provider": metadata.format_provider, "options": list(metadata.format_options.items())}
    sections = [
        _section("protocol", pa.array([protocol.to_json()], PROTOCOL_TYPE), columns),
        _section("metaData", pa.array([meta_row], METADATA_TYPE), columns),
    ]
    if txns:
        sections.append(_section("txn", pa.array([t.to_json() for t in txns.values()], TXN_TYPE), columns))
    if domains:
        sections.append(_section("domainMetadata", pa.array([d.to_json() for d in domains.values()], DOMAIN_TYPE), columns))
    if tombstones:
        rows = []
        for t in tombstones:
            row = t.to_json()
            row["partitionValues"] = list((t.partition_values or {}).items())
            row.setdefault("extendedFileMetadata", True)
            rows.append(row)
        sections.append(_section("remove", pa.array(rows, REMOVE_TYPE), columns))
    if files.num_rows:
        adds = pa.StructArray.from_arrays([files.column(n).combine_chunks() for n in add_fields], fields=list(add_type))
        sections.append(_section("add", adds, columns))
    checkpoint = pa.concat_tables(sections)
    sink = io.BytesIO()
    pq.write_table(checkpoint, sink, compression="snappy")
    return sink.getvalue(), checkpoint.num_rows


def write_checkpoint(storage: Storage, root: str, version: int, **contents: Any) -> None:
    """Publish checkpoint ``version`` and then point ``_last_checkpoint`` at it.

    The checkpoint is published put-if-absent (a concurrent writer may produce the same
    checkpoint; either copy is valid), and the hint is written only afterwards, so a crash
    in between leaves a valid table whose hint merely lags.
    """
    data, size = build_checkpoint(**contents)
    log_dir = storage.join(root, LOG_DIR)
    try:
        storage.write_if_absent(storage.join(log_dir, checkpoint_name(version)), data)
    except FileExistsError:
        return
    hint = {"version": version, "size": size, "sizeInBytes": len(data),
            "numOfAddFiles": contents["files"].num_rows}
    storage.write(storage.join(log_dir, LAST_CHECKPOINT), json.dumps(hint).encode())
