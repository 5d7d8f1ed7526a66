"""A real S3-compatible server on 127.0.0.1 for tests: moto's standalone server in a child process.

The server runs moto's ThreadedMotoServer, but in its own process: it keeps every object in memory,
and tests that measure the client's memory (tracemalloc) must not count the server's. Closing the
child's standard input stops it cleanly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
REGION = "eu-west-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

_CHILD = """
import sys
from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address=sys.argv[1], port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


class S3TestServer:
    """Start with `with S3TestServer() as s3:`; `s3.endpoint_url` and `s3.client()` reach it."""

    def __init__(self, timeout: float = 30) -> None:
        self.timeout = timeout
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint_url(self) -> str:
        """The server's URL."""
        return f"http://{HOST}:{self.port}"

    def credentials(self) -> dict[str, str]:
        """Dummy credentials, as environment variables for code that builds its own client."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}

    def client(self) -> Any:
        """A boto3 S3 client for this server with dummy credentials."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def new_bucket(self) -> str:
        """A fresh, empty bucket with a unique name."""
        name = f"test-{uuid.uuid4().hex}"
        self.client().create_bucket(Bucket=name,
                                    CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    def start(self) -> None:
        """Start the child and wait until it reports the port it bound."""
        env = {**os.environ, **self.credentials()}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"moto server did not start (said {line!r})")
        self.port = int(line)

    def stop(self) -> None:
        """Stop the child: closing its standard input ends it; kill it if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()

    def __enter__(self) -> S3TestServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
