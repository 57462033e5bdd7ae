"""Servers the CLI and transfer tests start on loopback as processes or threads: a free port, the repository's
tiny OpenAI-compatible streaming server (benchmarks/fast_sse_server.py, no model) as a process, and a real
S3-compatible server (moto's ThreadedMotoServer) with a bucket. Written once here instead of a copy in each
test file (issue 22)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.wait import answers, wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (bound, read, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def fast_sse_server(token_delay_ms: float | None = None) -> Iterator[str]:
    """benchmarks/fast_sse_server.py on a free loopback port (its --token-delay-ms when given, in ms between
    tokens); yields its base URL ("http://127.0.0.1:PORT") once GET /health answers 200, AssertionError
    after 30 s. The process is terminated after (waited for up to 10 s)."""
    port = free_port()
    delay = ["--token-delay-ms", f"{token_delay_ms:g}"] if token_delay_ms is not None else []
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_sse_server.py"), "--port", str(port),
                             *delay], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/health"), 30, "the SSE server to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


class MotoS3:
    """A real S3-compatible server (moto's ThreadedMotoServer) on a free loopback port. `env` holds the
    AWS_* variables that point a client at it (AWS_ENDPOINT_URL = `endpoint`); stop() and start() take it
    down and up again on the same port (moto's state is per process: buckets and objects survive)."""

    def __init__(self, secret: str = "testing"):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.endpoint}
        self.server = None

    def start(self) -> MotoS3:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)


def moto_s3(monkeypatch, *, bucket: str = "fleet", secret: str = "testing") -> MotoS3:
    """A started MotoS3 whose env is set in this process (monkeypatch.setenv), moto's state emptied (it is
    per process) and `bucket` created. The caller stops it."""
    import httpx

    s3 = MotoS3(secret).start()
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    httpx.post(f"{s3.endpoint}/moto-api/reset")
    s3.create_bucket(bucket)
    return s3
