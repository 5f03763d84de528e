"""Real servers on 127.0.0.1 for the remote-shard tests: an S3-compatible ``moto_server`` and ``http.server``.

Both are started by the test session on a free loopback port and stopped after it; waits are bounded.
The HTTP server serves a folder with byte ranges (as S3, nginx and the Hugging Face hub do) and can inject
faults per file: drop the connection mid-body N times, or answer 403/404. It counts the requests per file.
The engine tests (ingest, curate) share ``local_ray``: a real local Ray instance, one per test module.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    endpoint: str
    options: dict  # fsspec/s3fs storage options that reach this server

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def upload(self, folder: Path, bucket: str, prefix: str) -> str:
        """Put every file of ``folder`` under ``s3://bucket/prefix/``; return that URL."""
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                client.upload_file(str(path), bucket, f"{prefix}/{path.name}")
        return f"s3://{bucket}/{prefix}/"


@pytest.fixture(scope="session")
def moto_s3() -> S3Server:
    """A moto S3 server on a free loopback port (started in ~3 s), killed after the session."""
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if exe is None:
        raise RuntimeError("moto_server not found: install the dev extras (moto[server])")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to ~30 s
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}")
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not answer within 30 s")
        yield S3Server(endpoint, {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
                                  "client_kwargs": {"region_name": "us-east-1"}})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Faults:
    """Faults to inject, by file name; ``requests`` counts the GET and HEAD requests each file received."""

    drop: dict[str, int] = field(default_factory=dict)  # name -> how many more times to cut the body halfway
    status: dict[str, int] = field(default_factory=dict)  # name -> HTTP status to answer instead
    requests: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(root: Path, faults: Faults):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:  # quiet
            pass

        def _fault(self) -> bool:
            name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            code = faults.status.get(name)
            if code is not None:
                self.send_error(code)
                return True
            return False

        def do_HEAD(self) -> None:
            self._count()
            if not self._fault():
                super().do_HEAD()

        def _count(self) -> None:
            name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            with faults.lock:
                faults.requests[name] = faults.requests.get(name, 0) + 1

        def do_GET(self) -> None:
            self._count()
            name = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            if self._fault():
                return
            path = root / self.path.split("?", 1)[0].lstrip("/")
            if not path.is_file():
                return super().do_GET()  # folder listings and 404s as http.server does them
            data = path.read_bytes()
            start, end = 0, len(data) - 1
            ranged = self.headers.get("Range", "").startswith("bytes=")
            if ranged:  # byte ranges, which http.server lacks and every object store has
                first, _, last = self.headers["Range"][6:].partition("-")
                start = int(first or 0)
                end = min(int(last), len(data) - 1) if last else len(data) - 1
            body = data[start:end + 1]
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Type", "application/x-tar")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            with faults.lock:
                cut = faults.drop.get(name, 0) > 0
                if cut:
                    faults.drop[name] -= 1
            if cut:  # half the promised body, then the connection goes
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@dataclass
class HttpServer:
    url: str
    root: Path
    faults: Faults


@pytest.fixture
def http_server(tmp_path: Path):
    """A threaded http.server on 127.0.0.1 serving ``tmp_path/www`` with byte ranges and injectable faults."""
    root = tmp_path / "www"
    root.mkdir()
    faults = Faults()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, faults))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HttpServer(f"http://127.0.0.1:{server.server_address[1]}", root, faults)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def no_aws_settings(monkeypatch):
    """The remote tests never read the machine's own AWS settings."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray instance of 2 CPUs for the engine tests of one module (ingest, curate), shut down after it."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
