"""A stand-in for a container role's credentials endpoint (ECS's ``AWS_CONTAINER_CREDENTIALS_FULL_URI``), counting."""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness import bound_to_a_free_port

#: what the endpoint hands out; moto's server takes any credentials
ACCESS_KEY_ID = "ASIAFAKECONTAINERROLE"


class CredentialsEndpoint:
    """Answers every GET with credentials valid for an hour, the JSON botocore's container provider reads; counts
    the requests, the connections accepted and those still open (HTTP/1.1: a client may keep one)."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0
        self.open = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                endpoint._count(connections=1, still_open=1)

            def finish(self) -> None:
                super().finish()
                endpoint._count(still_open=-1)

            def do_GET(self) -> None:
                endpoint._count(requests=1)
                expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
                body = json.dumps(
                    {
                        "AccessKeyId": ACCESS_KEY_ID,
                        "SecretAccessKey": "fake-secret",
                        "Token": "fake-token",
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = bound_to_a_free_port(lambda address: ThreadingHTTPServer(address, Handler))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/credentials"

    def _count(self, requests: int = 0, connections: int = 0, still_open: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.connections += connections
            self.open += still_open

    @contextmanager
    def serving(self) -> Iterator[CredentialsEndpoint]:
        thread = threading.Thread(target=self._server.serve_forever, name="credentials-endpoint", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(60)


@contextmanager
def container_role(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CredentialsEndpoint]:
    """boto3 as in a container with a role: credentials from a :class:`CredentialsEndpoint` alone (no keys, no
    profile, no instance metadata), and a fresh default session, as in a process just started."""
    with CredentialsEndpoint().serving() as endpoint:
        _use_container_role(endpoint, monkeypatch, tmp_path)
        yield endpoint


def _use_container_role(endpoint: CredentialsEndpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def socket_inodes() -> set[str]:
    """The sockets this process holds (``socket:[inode]``, from /proc/self/fd)."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:  # the listing's own descriptor, closed since
            continue
        if str(target).startswith("socket:"):
            found.add(str(target))
    return found


def model_files_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The botocore and boto3 data files (models, endpoints) read from now on, in the order read."""
    from botocore.loaders import JSONFileLoader

    read: list[str] = []
    load_file = JSONFileLoader.load_file

    def recorded(self: JSONFileLoader, file_path: str) -> Any:
        read.append(file_path)
        return load_file(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", recorded)
    return read
