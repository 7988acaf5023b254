"""Which Delta protocol versions and table features we can read and write."""

from __future__ import annotations

from typing import Mapping

from lakehouse.errors import UnsupportedFeatureError
from lakehouse.log.actions import Metadata, Protocol

MAX_READER_VERSION = 3
MAX_WRITER_VERSION = 7
# typeWidening reads because older files are cast to the widened type when scanned;
# vacuumProtocolCheck only restricts vacuum, which checks the writer protocol anyway.
SUPPORTED_READER_FEATURES = frozenset({"timestampNtz", "typeWidening", "vacuumProtocolCheck"})
SUPPORTED_WRITER_FEATURES = frozenset({"appendOnly", "changeDataFeed", "checkConstraints", "timestampNtz",
                                       "vacuumProtocolCheck"})
# Legacy writer versions 2..4 bring these features; we can honour them when no data uses
# invariants or generated columns (checked per table below). CHECK constraints are
# enforced by lakehouse.constraints on every write.
LEGACY_WRITER_LIMIT = 4


def default_protocol(configuration: Mapping[str, str]) -> Protocol:
    """(1, 2) for plain tables; (1, 4) once change data feed or CHECK constraints are on (design §3)."""
    cdf = str(configuration.get("delta.enableChangeDataFeed", "false")).lower() == "true"
    # CHECK constraints need writer 3; at writer 2 other engines would ignore them.
    checks = any(key.startswith("delta.constraints.") for key in configuration)
    return Protocol(1, 4 if cdf or checks else 2)


def upgraded(protocol: Protocol, configuration: Mapping[str, str]) -> Protocol:
    """The protocol a table needs once ``configuration`` is its configuration (never a downgrade).

    Legacy versions rise to the feature's minimum writer version (CHECK 3, CDF 4); a table
    already on writer 7 lists the feature instead.
    """
    cdf = str(configuration.get("delta.enableChangeDataFeed", "false")).lower() == "true"
    checks = any(key.startswith("delta.constraints.") for key in configuration)
    if protocol.min_writer_version == 7:
        wanted = set(protocol.writer_features or ())
        wanted |= ({"changeDataFeed"} if cdf else set()) | ({"checkConstraints"} if checks else set())
        if wanted == set(protocol.writer_features or ()):
            return protocol
        return Protocol(protocol.min_reader_version, 7, protocol.reader_features, tuple(sorted(wanted)))
    needed = max(protocol.min_writer_version, 4 if cdf else 3 if checks else 0)
    if needed == protocol.min_writer_version:
        return protocol
    return Protocol(protocol.min_reader_version, needed, protocol.reader_features, protocol.writer_features)


def check_readable(protocol: Protocol, *, table: str) -> None:
    """Refuse tables whose reader protocol we do not implement, naming what is missing."""
    if protocol.min_reader_version > MAX_READER_VERSION:
        raise UnsupportedFeatureError(
            f"table '{table}' needs Delta reader version {protocol.min_reader_version}; "
            f"lakehouse reads up to version {MAX_READER_VERSION}")
    if protocol.min_reader_version == 2:
        raise UnsupportedFeatureError(
            f"table '{table}' uses column mapping (reader version 2), which lakehouse cannot read yet")
    if protocol.min_reader_version == 3:
        unknown = sorted(set(protocol.reader_features or ()) - SUPPORTED_READER_FEATURES)
        if unknown:
            raise UnsupportedFeatureError(
                f"table '{table}' needs reader feature(s) {', '.join(unknown)}, which lakehouse does not support; "
                f"supported: {', '.join(sorted(SUPPORTED_READER_FEATURES))}")


def check_writable(protocol: Protocol, metadata: Metadata, *, table: str) -> None:
    """Refuse writes to tables whose writer features we could not honour."""
    check_readable(protocol, table=table)
    if protocol.min_writer_version == 7:
        unknown = sorted(set(protocol.writer_features or ()) - SUPPORTED_WRITER_FEATURES)
        if unknown:
            raise UnsupportedFeatureError(
                f"table '{table}' needs writer feature(s) {', '.join(unknown)}, which lakehouse cannot write")
    elif protocol.min_writer_version > LEGACY_WRITER_LIMIT:
        raise UnsupportedFeatureError(
            f"table '{table}' needs Delta writer version {protocol.min_writer_version}; "
            f"lakehouse writes tables up to version {LEGACY_WRITER_LIMIT}")
    schema = metadata.schema_string
    for marker, what in (("delta.invariants", "column invariants"), ("delta.generationExpression", "generated columns"),
                         ("delta.identity", "identity columns")):
        if marker in schema:
            raise UnsupportedFeatureError(
                f"table '{table}' uses {what}, which this version of lakehouse cannot enforce on write")
