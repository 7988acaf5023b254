"""Log file names, Hive partition folders, URI-encoded log paths, and the path safety policy."""

from __future__ import annotations

import glob
import json
import os
from urllib.parse import unquote

import pyarrow as pa
import pytest

import lakehouse
from lakehouse import UnsafePathError
from lakehouse.log.paths import (
    HIVE_NULL, LogFileName, check_relative_path, checkpoint_name, commit_name, encode_relative_path, hive_escape,
    is_absolute_uri, parse_log_name, partition_dir, resolve_data_path,
)

DAT = "/work/shared/dat/multi_partitioned/delta"


# --- _delta_log file names ------------------------------------------------------------


def test_commit_and_checkpoint_names_are_zero_padded():
    assert commit_name(0) == "00000000000000000000.json"
    assert commit_name(12345) == "00000000000000012345.json"
    assert checkpoint_name(10) == "00000000000000000010.checkpoint.parquet"
    assert len(commit_name(10**19)) == len("x" * 20 + ".json")


@pytest.mark.parametrize("name, expected", [
    ("00000000000000000007.json", LogFileName("commit", 7)),
    ("00000000000000000010.checkpoint.parquet", LogFileName("checkpoint", 10)),
    ("00000000000000000010.checkpoint.0000000002.0000000003.parquet", LogFileName("multipart", 10, 2, 3)),
    ("00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json", LogFileName("v2checkpoint", 10)),
    ("00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.parquet", LogFileName("v2checkpoint", 10)),
    ("00000000000000000007.crc", None),
    ("00000000000000000001.00000000000000000005.compacted.json", None),
    ("_last_checkpoint", None),
    (".00000000000000000007.json.1234.tmp", None),
    ("7.json", None),
    ("00000000000000000007.json.bak", None),
    ("0000000000000000000a.json", None),
])
def test_log_names_are_classified(name, expected):
    assert parse_log_name(name) == expected


# --- partition folders and log paths (Spark's form) -----------------------------------


def test_hive_escape_and_uri_encoding_match_spark():
    # The DAT case written by Spark: value "/%20%f".
    assert hive_escape("/%20%f") == "%2F%2520%25f"
    assert encode_relative_path("letter=%2F%2520%25f/x.parquet") == "letter=%252F%252520%2525f/x.parquet"
    # The protocol's timestamp example: ':' is Hive-escaped, then '%' is URI-encoded.
    assert hive_escape("2025-03-31T15:30:00Z") == "2025-03-31T15%3A30%3A00Z"
    assert encode_relative_path("ts=2025-03-31T15%3A30%3A00Z/p") == "ts=2025-03-31T15%253A30%253A00Z/p"
    # A space is not Hive-escaped, but is URI-encoded as %20.
    assert hive_escape("a b") == "a b"
    assert encode_relative_path("s=a b/p") == "s=a%20b/p"


def test_hive_escape_covers_special_and_control_characters():
    for ch in '"#%\'*/:=?\\{[]^\x00\x01\n\x7f':
        assert hive_escape(ch) == f"%{ord(ch):02X}"
    assert hive_escape("plain-value_1.2") == "plain-value_1.2"
    assert hive_escape("\u00e9\U0001f608") == "\u00e9\U0001f608"  # non-ASCII stays on disk


def test_null_and_empty_partition_values_use_the_hive_default():
    assert partition_dir(["a", "b"], {"a": None, "b": ""}) == f"a={HIVE_NULL}/b={HIVE_NULL}"
    assert partition_dir(["k=v"], {"k=v": "x"}) == "k%3Dv=x"  # names are escaped too


@pytest.mark.skipif(not os.path.isdir(DAT), reason="shared DAT tables not available")
def test_spark_written_paths_are_reproduced():
    """For every add Spark wrote, our folder name (from the partition values) and our log
    path match Spark's; both decode to a folder that exists on disk."""
    columns = ["letter", "date", "data"]
    adds = [json.loads(line)["add"] for path in sorted(glob.glob(f"{DAT}/_delta_log/*.json"))
            for line in open(path) if '"add"' in line]
    assert any("%25" in a["path"] for a in adds)
    for add in adds:
        folder, name = add["path"].rsplit("/", 1)
        ours = partition_dir(columns, add["partitionValues"])
        assert ours == unquote(folder)
        assert os.path.isdir(os.path.join(DAT, ours))
        if ours.isascii():
            # Spark leaves non-ASCII characters raw in the log; we percent-encode them
            # (both decode to the same folder), so exact equality is checked for ASCII.
            assert encode_relative_path(f"{ours}/{name}") == add["path"]
        assert check_relative_path(add["path"], table="dat") == f"{ours}/{name}"


def test_written_partition_folders_use_spark_escaping(table_path):
    values = ["/%20%f", "a b", "15:30", "\U0001f608", None, "plain"]
    table = lakehouse.create_table(table_path, pa.schema([("letter", pa.string()), ("n", pa.int64())]),
                                   partition_by=["letter"])
    table.append(pa.table({"letter": values, "n": list(range(len(values)))}))
    with open(os.path.join(table_path, "_delta_log", commit_name(1))) as handle:
        adds = [json.loads(line)["add"] for line in handle if '"add"' in line]
    by_value = {a["partitionValues"]["letter"]: a["path"].rsplit("/", 1)[0] for a in adds}
    assert by_value["/%20%f"] == "letter=%252F%252520%2525f"
    assert by_value["a b"] == "letter=a%20b"
    assert by_value["15:30"] == "letter=15%253A30"
    assert by_value[None] == f"letter={HIVE_NULL}"
    assert by_value["plain"] == "letter=plain"
    on_disk = sorted(d for d in os.listdir(table_path) if d.startswith("letter="))
    assert on_disk == sorted(["letter=%2F%2520%25f", "letter=a b", "letter=15%3A30", "letter=\U0001f608",
                              f"letter={HIVE_NULL}", "letter=plain"])
    rows = table.to_arrow().sort_by("n")
    assert rows.column("letter").to_pylist() == values  # values come back from the log, not the folder


# --- the path policy ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "../x.parquet", "a/../../x.parquet", "a/..", "%2e%2e/x.parquet", "%2E%2e/x.parquet", "%2e%2e%2fx.parquet",
    "%252e%252e/x.parquet", "%25252e%25252e%25252fx.parquet", "/etc/passwd", "%2fetc/passwd",
    "a\\b.parquet", "a%5cb.parquet", "a\x00b", "a%00b", "a\nb", "a%0Ab", "a\x7fb", "",
])
def test_unsafe_relative_paths(raw):
    with pytest.raises(UnsafePathError) as info:
        check_relative_path(raw, table="t")
    assert "table 't'" in str(info.value)


@pytest.mark.parametrize("raw, decoded", [
    ("part-0.parquet", "part-0.parquet"),
    ("a%20b/c.parquet", "a b/c.parquet"),
    ("letter=%252F%252520%2525f/p.parquet", "letter=%2F%2520%25f/p.parquet"),  # decoded exactly once
    ("x=..a/p.parquet", "x=..a/p.parquet"),
    ("dots.../p..parquet", "dots.../p..parquet"),
    ("deep/er/./p.parquet", "deep/er/./p.parquet"),
])
def test_safe_relative_paths_decode_once(raw, decoded):
    assert check_relative_path(raw, table="t") == decoded


def test_absolute_uris():
    assert is_absolute_uri("s3://bucket/key") and is_absolute_uri("file:///tmp/x")
    assert not is_absolute_uri("part-0.parquet") and not is_absolute_uri("a=b:c/p")
    root, url = "/data/t", "file:///data/t"
    # Inside the table's own root: mapped back to a plain path.
    assert resolve_data_path(root, "file:///data/t/p%20q.parquet", table="t", root_url=url) == ("/data/t/p q.parquet", None)
    # Outside: refused unless allowed, and then returned as a URL for the caller to open.
    with pytest.raises(UnsafePathError, match="allowed_roots"):
        resolve_data_path(root, "s3://other/x.parquet", table="t", root_url=url)
    assert resolve_data_path(root, "s3://other/x.parquet", table="t", root_url=url,
                             allowed_roots=("s3://other",)) == ("", "s3://other/x.parquet")
    # A prefix-sharing neighbour is not inside the root ("/data/t" vs "/data/t-evil").
    with pytest.raises(UnsafePathError):
        resolve_data_path(root, "file:///data/t-evil/x.parquet", table="t", root_url=url)
    with pytest.raises(UnsafePathError):
        resolve_data_path(root, "s3://other-evil/x.parquet", table="t", root_url=url, allowed_roots=("s3://other",))
    # '..' inside an allowed URI, however encoded, is still refused.
    for raw in ("file:///data/t/../u/x.parquet", "file:///data/t/%2e%2e/u/x.parquet",
                "s3://other/%252e%252e/secret", "file:///data/t/a%00b"):
        with pytest.raises(UnsafePathError):
            resolve_data_path(root, raw, table="t", root_url=url, allowed_roots=("s3://other",))
