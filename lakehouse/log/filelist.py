"""The live file list as an Arrow table: one row per ``add``, columns as in the protocol.

Keeping files columnar lets skipping evaluate a predicate over every file at once and lets
checkpoints be read without turning each row into a Python object.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.log.actions import AddFile

STRING_MAP = pa.map_(pa.string(), pa.string())
DV_TYPE = pa.struct([
    ("storageType", pa.string()),
    ("pathOrInlineDv", pa.string()),
    ("offset", pa.int32()),
    ("sizeInBytes", pa.int32()),
    ("cardinality", pa.int64()),
])
FILES_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("partitionValues", STRING_MAP),
    ("size", pa.int64()),
    ("modificationTime", pa.int64()),
    ("dataChange", pa.bool_()),
    ("stats", pa.string()),
    ("tags", STRING_MAP),
    ("deletionVector", DV_TYPE),
    ("baseRowId", pa.int64()),
    ("defaultRowCommitVersion", pa.int64()),
])


def _map_items(mapping: Any) -> list[tuple[str, str | None]] | None:
    if mapping is None:
        return None
    return list(mapping.items())


def files_from_adds(adds: Iterable[AddFile]) -> pa.Table:
    rows = [{
        "path": a.path,
        "partitionValues": _map_items(a.partition_values) or [],
        "size": a.size,
        "modificationTime": a.modification_time,
        "dataChange": a.data_change,
        "stats": a.stats,
        "tags": _map_items(a.tags),
        "deletionVector": dict(a.deletion_vector) if a.deletion_vector else None,
        "baseRowId": a.base_row_id,
        "defaultRowCommitVersion": a.default_row_commit_version,
    } for a in adds]
    return pa.Table.from_pylist(rows, schema=FILES_SCHEMA)


def conform_files(table: pa.Table) -> pa.Table:
    """Give a table of add rows read elsewhere (a checkpoint) exactly ``FILES_SCHEMA``."""
    columns = []
    for f in FILES_SCHEMA:
        if f.name in table.column_names:
            column = table.column(f.name)
            if column.type != f.type:
                column = _cast_loose(column, f.type)
            columns.append(column)
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=FILES_SCHEMA)


def _cast_loose(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Cast, tolerating struct fields present on one side only (checkpoint dialects differ)."""
    if pa.types.is_struct(target) and pa.types.is_struct(column.type):
        column = column.combine_chunks()
        children = []
        for i in range(target.num_fields):
            f = target.field(i)
            idx = column.type.get_field_index(f.name)
            child = column.field(idx) if idx >= 0 else pa.nulls(len(column), f.type)
            children.append(child.cast(f.type) if child.type != f.type else child)
        return pa.chunked_array([pa.StructArray.from_arrays(children, fields=list(target), mask=column.is_null())])
    return column.cast(target)


def file_keys(files: pa.Table) -> pa.Array:
    """The logical key of each file: its path, plus ``#`` and the DV id when it has one."""
    paths = files.column("path").combine_chunks()
    dv = files.column("deletionVector").combine_chunks()
    if dv.null_count == len(dv):
        return paths
    offset = pc.cast(dv.field("offset"), pa.string())
    dv_id = pc.binary_join_element_wise(
        dv.field("storageType"), dv.field("pathOrInlineDv"),
        pc.if_else(pc.is_null(offset), "", pc.binary_join_element_wise("@", offset, "")), "")
    keyed = pc.binary_join_element_wise(paths, "#", dv_id, "")
    return pc.if_else(pc.is_null(dv), paths, keyed)


def add_key(path: str, dv_id: str | None) -> str:
    return path if dv_id is None else f"{path}#{dv_id}"


def adds_from_files(files: pa.Table) -> list[AddFile]:
    """Python ``AddFile`` objects for (usually few) rows of the file list."""
    out = []
    for row in files.to_pylist():
        out.append(AddFile(
            path=row["path"],
            partition_values=dict(row["partitionValues"] or []),
            size=row["size"],
            modification_time=row["modificationTime"] or 0,
            data_change=bool(row["dataChange"]) if row["dataChange"] is not None else True,
            stats=row["stats"],
            tags=dict(row["tags"]) if row["tags"] else None,
            deletion_vector=row["deletionVector"],
            base_row_id=row["baseRowId"],
            default_row_commit_version=row["defaultRowCommitVersion"],
        ))
    return out


def stats_from_parsed(parsed: pa.Array) -> pa.Array:
    """JSON stats strings from a checkpoint's ``stats_parsed`` struct column."""
    def default(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    return pa.array([None if row is None else json.dumps(row, default=default) for row in parsed.to_pylist()],
                    pa.string())
