"""luigid behind a guard: its visualiser read-only to browsers, its state changed by our own processes only.

luigid has no authentication and answers every RPC to GET, so any web page could pause it
(``<img src="http://127.0.0.1:8082/api/pause">``) or read every task's parameters. ``nectar serve``
and ``nectar scheduler`` therefore run luigid with this guard in front of each of its handlers,
in luigid's own process (no extra hop on a worker's calls):

- a request carrying the scheduler secret (:data:`~nectar.luigid.SECRET_HEADER`, which our
  workers and API send) passes as it is;
- any other request is a browser's or a stranger's: it may only read (the static files of the
  visualiser and the RPCs in :data:`READ_RPCS`), through a ``Host`` of :data:`~nectar.hostnames.LOOPBACK_NAMES` or one
  configured (``--allowed-host``), from no foreign ``Origin`` and not ``Sec-Fetch-Site:
  cross-site``, and, when API tokens are configured and protect reads, with a read token:
  ``Authorization: Bearer <token>``, or HTTP Basic with the token as the password (what a browser
  asks for itself, so the visualiser's own requests carry it).

No answer names the server (``Server: TornadoServer/x.y`` is dropped).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tornado.httputil
import tornado.routing
import tornado.web

from nectar.auth import Forbidden, Scope, TokenChecker, Unauthenticated
from nectar.config import Settings
from nectar.hostnames import LOOPBACK_NAMES, host_name
from nectar.luigi_internals import wrap_luigid_app
from nectar.luigid import SECRET_HEADER, load_scheduler_secret
from nectar.luigid_server import LuigidRouter

#: the RPCs that only read luigid's state: the visualiser's reads (luigi/static/visualiser/js/luigi.js), and a
#: worker's; every other RPC (pause, update_resource, add_task, get_work, prune...) changes it
READ_RPCS = frozenset(
    {
        "task_list",
        "task_search",
        "dep_graph",
        "inverse_dep_graph",
        "graph",
        "worker_list",
        "resource_list",
        "fetch_error",
        "get_task_status_message",
        "get_task_progress_percentage",
        "get_running_task_resources",
        "get_scheduler_message_response",
        "is_pause_enabled",
        "is_paused",
        "has_task_history",
        "count_pending",
    }
)
#: luigid's route of RPCs (``luigi.server.app``'s), matched as tornado matches it (the path unquoted)
RPC_ROUTE = tornado.routing.PathMatches(r"/api/(.*)")
REALM = 'Basic realm="luigid visualiser: an API read token as the password", charset="UTF-8"'


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def origin_host(origin: str) -> str:
    """The host of an ``Origin`` header; empty for ``null`` or one that is not a URL."""
    try:
        return host_name(urlsplit(origin).netloc)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return ""


def bearer(authorization: str | None) -> str | None:
    """The ``Authorization`` header as the API's token checker reads it: Basic's password becomes a bearer token."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return f"Bearer {decoded.partition(':')[2]}"


class Guard:
    """Decides, from a request's method, path and headers alone, whether luigid may answer it."""

    def __init__(self, secret: bytes, tokens: TokenChecker, hosts: Iterable[str] = ()) -> None:
        if not secret:
            raise ValueError("luigid's guard needs a non-empty scheduler secret")
        self.secret = secret
        self.tokens = tokens
        self.hosts = frozenset(LOOPBACK_NAMES) | {host_name(host) for host in hosts if host.strip()}

    def ours(self, request: tornado.httputil.HTTPServerRequest) -> bool:
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogatepass")
        return bool(given) and hmac.compare_digest(given, self.secret)

    def refusal(self, request: tornado.httputil.HTTPServerRequest) -> Refusal | None:
        """Why ``request`` may not reach luigid, or None when it may."""
        if self.ours(request):
            return None
        host = host_name(request.headers.get("Host", ""))
        if host not in self.hosts:
            return Refusal(421, f"Host {host[:100]!r} is not one luigid is reached by (NECTAR_SCHEDULER_ALLOWED_HOSTS)")
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return Refusal(403, "luigid does not answer requests made by another site's page")
        origin = request.headers.get("Origin")
        if origin is not None and origin_host(origin) not in self.hosts:
            return Refusal(403, f"luigid does not answer requests from Origin {origin[:100]!r}")
        match = RPC_ROUTE.match(request)  # the RPC's name as luigid reads it: unquoted, then decoded
        rpc = match["path_args"][0].decode("utf-8", "replace") if match else None
        if rpc is not None and rpc not in READ_RPCS:
            return Refusal(403, f"luigid's {rpc[:60]!r} is not a read: only Datanectar's own processes may call it")
        try:
            self.tokens.authorize(bearer(request.headers.get("Authorization")), Scope.READ)
        except (Unauthenticated, Forbidden) as exc:
            return Refusal(401, f"{exc} (or HTTP Basic with the token as the password)")
        return None


class NoServerBanner(tornado.web.OutputTransform):
    """Drops the ``Server`` header tornado gives every answer."""

    def transform_first_chunk(
        self, status_code: int, headers: tornado.httputil.HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        return status_code, headers, chunk


class RefusedHandler(tornado.web.RequestHandler):
    """Answers a refused request with a JSON error, in the API's shape."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, refusal: Refusal) -> None:
        self.refusal = refusal

    def prepare(self) -> None:
        status = self.refusal.status
        self.set_status(status)
        if status == 401:
            self.set_header("WWW-Authenticate", REALM)
        self.set_header("Content-Type", "application/json")
        reason = tornado.httputil.responses.get(status, "Error")
        self.finish(json.dumps({"code": status, "status": reason, "message": self.refusal.message}))


class GuardedLuigid(tornado.routing.Router):
    """luigid's tornado application, each request first put to the :class:`Guard`."""

    def __init__(self, app: tornado.web.Application | LuigidRouter, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        app.add_transform(NoServerBanner)

    def find_handler(self, request: tornado.httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        refusal = self.guard.refusal(request)
        if refusal is None:
            return self.app.find_handler(request, **kwargs)
        return self.app.get_handler_delegate(request, RefusedHandler, {"refusal": refusal})


def main(argv: list[str] | None = None) -> None:
    """luigid (same arguments) behind the guard; ``--allowed-host`` (repeated) adds a Host browsers may use,
    ``--data-dir`` is where the scheduler secret is, unless ``NECTAR_SCHEDULER_SECRET`` is set."""
    parser = argparse.ArgumentParser(description="luigid behind Datanectar's guard")
    parser.add_argument("--allowed-host", action="append", default=[], help="a Host browsers reach luigid by")
    parser.add_argument("--data-dir", help="where the scheduler secret file is (default NECTAR_DATA_DIR)")
    ours, luigid_argv = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env(**({"data_dir": ours.data_dir} if ours.data_dir else {}))
    secret = load_scheduler_secret(settings)
    tokens = TokenChecker.from_config(settings.api_tokens, settings.api_tokens_file, settings.auth_reads)
    hosts = [host for value in ours.allowed_host for host in value.split(",")]
    if settings.scheduler_public_url:  # the name browsers reach it by, behind a proxy
        hosts.append(urlsplit(settings.scheduler_public_url).netloc)
    guard = Guard(secret, tokens, hosts)
    wrap_luigid_app(lambda app: GuardedLuigid(app, guard))  # every socket luigid serves
    from luigi.cmdline import luigid

    luigid(luigid_argv)


if __name__ == "__main__":
    main()
