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


# --- S3: one moto server process per session (tests marked ``s3``) ----------------------

import importlib.util  # noqa: E402 - this section was appended; keep it self-contained
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _s3server_module():
    """tests/s3server.py, imported by path so it works under any pytest import mode."""
    module = sys.modules.get("s3server")
    if module is None:
        spec = importlib.util.spec_from_file_location("s3server", Path(__file__).with_name("s3server.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["s3server"] = module
        spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class S3Target:
    """Where S3 tests write: a bucket on the session's server and the options to reach it."""

    bucket: str
    endpoint_url: str
    storage_options: dict[str, Any]  # for lakehouse.create_table/open_table (and s3fs via them)
    deltalake_options: dict[str, str]  # the same for deltalake (adds AWS_ALLOW_HTTP)
    secret: str  # the secret key, so tests can assert it never leaks

    def url(self, name: str | None = None) -> str:
        """A fresh ``s3://`` table URL in the bucket (unique unless ``name`` is given)."""
        return f"s3://{self.bucket}/{name or uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 served single-threaded by a separate process on 127.0.0.1 (free port)."""
    server = _s3server_module().S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(s3_server) -> S3Target:
    """A bucket on the session's S3 server; use ``s3.url()`` for a fresh table location."""
    module = _s3server_module()
    return S3Target(bucket=s3_server.create_bucket(), endpoint_url=s3_server.endpoint_url,
                    storage_options=dict(s3_server.storage_options),
                    deltalake_options=dict(s3_server.deltalake_options), secret=module.SECRET_KEY)


@pytest.fixture
def s3_lossy(s3_server):
    """Factory ``make(drop) -> proxy`` for a proxy that swallows the server's answers to the
    requests ``drop(method, path)`` selects, after the server applied them (ambiguous
    outcomes). Point ``AWS_ENDPOINT_URL`` at ``proxy.endpoint_url``."""
    proxies = []

    def make(drop):
        proxy = _s3server_module().ResponseDroppingProxy(s3_server.port, drop)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()
