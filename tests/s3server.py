"""A real S3-compatible server (moto) in its own process, for the ``s3`` tests.

The server is moto's WSGI app served by werkzeug **single-threaded**: moto checks
``If-None-Match`` and then writes without a lock, so a threaded server can let two
conditional PUTs both win (see ../shared/reliability-notes.md). With one request at a
time, the server side of a race is linearizable and any double winner is our bug.

Run as a script, it binds 127.0.0.1 on a free port, prints ``PORT <n>`` on stdout and
serves until its stdin closes (so it dies with the test session even if pytest is killed).

    server = S3Server.start()
    server.storage_options   # endpoint/key/secret/region for lakehouse and s3fs
    server.stop()
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"  # never any other address
ACCESS_KEY = "lakehouse-test-key"
# Distinctive so tests can assert it never leaks into reprs or error messages.
SECRET_KEY = "lakehouse-SECRET-do-not-print-7f3a9c"
REGION = "us-east-1"
_START_TIMEOUT_S = 30.0


def _serve() -> None:
    """Child process body: serve moto's S3 on a free port, one request at a time."""
    from werkzeug.serving import make_server

    from moto.server import DomainDispatcherApplication, create_backend_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    # make_server(threaded=False) is what run_simple(threaded=False) builds; calling it
    # directly lets us bind port 0 and report the port the kernel picked (no race for it).
    server = make_server(HOST, 0, app, threaded=False, processes=1)
    port = server.socket.getsockname()[1]
    os.environ["MOTO_PORT"] = str(port)

    def exit_when_parent_goes() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    print(f"PORT {port}", flush=True)
    server.serve_forever()


@dataclass
class S3Server:
    """A running server process and the options to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: str
    _buckets: list[str] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Options for ``lakehouse`` / s3fs (delta-rs style names, which we translate)."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    @property
    def deltalake_options(self) -> dict[str, str]:
        """The same endpoint for ``deltalake`` (object_store needs plain HTTP allowed)."""
        return {**self.storage_options, "AWS_ALLOW_HTTP": "true"}

    @classmethod
    def start(cls) -> S3Server:
        log = tempfile.NamedTemporaryFile(prefix="moto-s3-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        port = _read_port(process, log.name)
        server = cls(process, port, log.name)
        server._wait_until_answering()
        return server

    def _wait_until_answering(self) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it serves
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"moto S3 server did not answer; see {self.log_path}") from None
                time.sleep(0.05)

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem on this server (no instance cache, no listing cache)."""
        import s3fs

        return s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint_url,
                                 client_kwargs={"region_name": REGION}, use_listings_cache=False,
                                 skip_instance_cache=True)

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"lakehouse-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        self._buckets.append(name)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                if self.process.stdin is not None:
                    self.process.stdin.close()  # the child exits at EOF
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        try:
            os.remove(self.log_path)
        except OSError:
            pass


def _read_port(process: subprocess.Popen[bytes], log_path: str) -> int:
    """The port the child printed; fails (and kills the child) if it never says."""
    assert process.stdout is not None
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(_START_TIMEOUT_S)
    line = result[0].decode() if result else ""
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        with open(log_path, errors="replace") as handle:
            detail = handle.read()[-2000:]
        raise RuntimeError(f"moto S3 server failed to start: {detail or 'no output'}")
    return int(line.split()[1])


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
