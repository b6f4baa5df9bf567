"""moto's S3 server with a bucket of many objects made in its own memory first: ``python -m benchmarks.seeded_moto``.

10,000 PUTs over HTTP take minutes on a busy machine (moto answers them one at a time under one GIL); put
straight into moto's S3 backend they take a second, and are then the same objects to every client
(key, ETag, size, LastModified). The server is moto's own, over HTTP, started once the objects are in.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seeded_moto", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--keys", required=True, help="the keys' format, given 0, 1, ... (e.g. landing/{:06d}.csv)")
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)

    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(args.bucket, "us-east-1")
    for n in range(args.count):
        key = args.keys.format(n)
        backend.put_object(args.bucket, key, key.encode())
    print(f"{args.count} objects in {args.bucket}", flush=True)

    stop = threading.Event()

    def request_stop(*_: Any) -> None:
        stop.set()

    def ended(raised: threading.ExceptHookArgs) -> None:
        threading.__excepthook__(raised)
        os._exit(1)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    # moto binds its port in a thread of its own, which only says so when the port is taken (werkzeug's SystemExit):
    # this process ends then, and its starter starts it on another port (harness.on_a_free_port), not waits for it
    threading.excepthook = ended
    server = ThreadedMotoServer("127.0.0.1", args.port, verbose=False)
    server.start()
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
