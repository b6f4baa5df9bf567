"""Objects put to a moto S3 server by a test in their hundreds, as S3's own PUT over HTTP: boto3 spent ~3.3 ms of the
test's CPU a ``put_object`` (signing, its event hooks, the answer parsed), a PUT on a kept connection ~0.6 ms."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import quote, urlsplit


class S3Puts:
    """PUT ``body`` at ``s3://<bucket>/<key>`` on the S3 endpoint ``endpoint`` (moto's: it checks no signature), a
    connection kept a thread; an answer other than 200 is an ``AssertionError`` naming the object and what S3 said.
    What lands is the object a producer's ``put_object`` makes: its key, body, ETag and modification time."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"an S3 endpoint is http://<host>:<port>, not {endpoint!r}")
        self.host, self.port = parts.hostname, parts.port
        self._local = threading.local()
        self._made: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def __call__(self, bucket: str, key: str, body: bytes) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            with self._lock:
                self._made.append(conn)
        conn.request("PUT", f"/{bucket}/{quote(key, safe='/')}", body=body)
        answer = conn.getresponse()
        said = answer.read()
        if answer.status != 200:
            raise AssertionError(f"PUT s3://{bucket}/{key}: {answer.status} {said[:300]!r}")

    def close(self) -> None:
        with self._lock:
            for conn in self._made:
                conn.close()
            self._made.clear()
