"""Shared fixtures. Storage is always real: local folders, memory://, or a local S3 server."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def table_path(tmp_path):
    """A fresh local path for a table (the folder does not exist yet)."""
    return str(tmp_path / "table")


@pytest.fixture
def memory_path():
    """A fresh memory:// table URL, unique per test."""
    return f"memory://tests/{uuid.uuid4().hex}"
