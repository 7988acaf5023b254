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
        # call_s3 rather than mkdir: s3fs would send LocationConstraint=us-east-1, which S3
        # (and moto) reject for the default region.
        self.filesystem().call_s3("create_bucket", Bucket=name)
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


class ResponseDroppingProxy:
    """A TCP proxy in front of the server that can swallow answers after they applied.

    For a request whose first line matches ``drop`` (a callable on ``(method, path)``), the
    request reaches the server and is applied, but the client never sees the final answer:
    the connection closes instead (an interim ``100 Continue`` still passes, or the client
    would never send the body). That is the "ambiguous commit": the PUT landed, and the
    writer cannot know. The server speaks HTTP/1.0 (one request per connection), which keeps
    the proxy this small.
    """

    def __init__(self, upstream_port: int, drop: Any) -> None:
        import socket

        self._upstream_port = upstream_port
        self._drop = drop
        self.dropped: list[str] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: Any) -> None:
        import socket

        upstream = socket.create_connection((HOST, self._upstream_port))
        try:
            head = b""
            while b"\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            method, path = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            drop = bool(self._drop(method, path))
            upstream.sendall(head)
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            if not drop:
                _pump(upstream, client)
                return
            answer = b""
            while True:  # pass interim 100 answers, swallow the final one
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                answer += chunk
                while answer.startswith(b"HTTP/1.1 100") and b"\r\n\r\n" in answer:
                    interim, answer = answer.split(b"\r\n\r\n", 1)
                    client.sendall(interim + b"\r\n\r\n")
            status = answer.split(b"\r\n", 1)[0].decode("latin-1")
            self.dropped.append(f"{method} {path} -> {status}")
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    # shutdown, not just close: the pump thread blocked in recv() keeps the
                    # socket open (no FIN) until it is woken.
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


def _pump(source: Any, sink: Any) -> None:
    """Copy bytes until ``source`` closes, then half-close ``sink``."""
    import socket

    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
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
