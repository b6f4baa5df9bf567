"""What each API worker made for itself on its first requests, made once in gunicorn's master before it forks them.

The app is loaded in gunicorn's master and its workers are forked from it (``preload_app``): what the master holds,
every worker starts with, shared copy-on-write, a worker that replaces one recycled after ``max_requests`` too. What
the app makes lazily, on a request, each worker made again: a recycled worker's first status lookup went through
Flask (its links' URL bases were not built yet) after the path in front of it had looked the key up once already.

:func:`warm` makes it by calling the pieces a request calls, never by answering a request: nothing is routed, timed
or counted (``/metrics`` shows no request nobody made), nothing of a user's is read (neither the registry nor a
store), and nothing that must not cross a fork is opened (no connection, no descriptor: an S3 client, a luigid
connection and the registry's are each process's own, made on first use). Made here:

- the absolute URL bases a status's links start with (:mod:`api.links`), per scheme, Host and root: for the public
  URL when one is configured (the Host then does not matter), else for each Host gunicorn listens on by name (a client
  of ``127.0.0.1:5000`` sends that Host); a request by another Host builds its own, once per worker, as before;
- the Host allow-list's verdicts on those Hosts;
- the stores of the catalog's tasks (an S3 store makes its client later, in each process) and the luigid client, made
  without connecting; boto3's S3 models when a store is S3 (each worker's first S3 client loaded them, ~0.15-0.3 s of
  CPU), loaded by :func:`nectar.stores.s3.load_s3_models` without resolving credentials (an instance or container
  role's are fetched over HTTP, on a connection botocore keeps, which every worker would then share): each worker's
  first client resolves its own;
- what Flask, werkzeug and the standard library make on their first call: a request context, its query arguments,
  an answer's JSON and the WSGI response of it (their caches: abc's, typing's, the JSON encoder).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.test import EnvironBuilder

from api import links
from api.context import facade, signer
from api.envelope import dumped_answer
from api.hosts import HostAllowList
from nectar.keys import TargetKey
from nectar.outputs import Output
from nectar.service import Nectar
from nectar.stores.s3 import S3Store, load_s3_models

#: where the app keeps its :func:`warm` (``nectar.gunicorn_conf`` calls it, knowing nothing of Flask)
EXTENSION = "nectar_warm"
#: a key no run has: its links are built (strings only), never looked up
WARM_KEY = TargetKey("warm", "warm_chain", "WarmTask", "0" * 32)
WARM_RUN_ID = "0" * 32


def install(app: Flask) -> None:
    """Keep :func:`warm` for ``app`` where gunicorn's configuration finds it (:data:`EXTENSION`)."""
    app.extensions[EXTENSION] = functools.partial(warm, app)


def warm(app: Flask, hosts: Sequence[str], scheme: str = "http", root: str = "") -> None:
    """Make in this process what ``app``'s workers would each make on their first requests (see the module), for
    requests by ``hosts`` (``host:port``), ``scheme`` and ``root`` (their ``SCRIPT_NAME``)."""
    service: Nectar = app.extensions["nectar"]
    public = service.settings.public_url
    allowed: HostAllowList = app.extensions["nectar_hosts"]
    names = [urlsplit(public).netloc] if public else [host for host in hosts if allowed.allows(host)]
    for host in dict.fromkeys(names):
        _answer_parts(app, f"{scheme}://{host}{root}")
    stores = [service.store] + [  # cached: get_store's
        service.store_for(task.cls) for chain in service.catalog.held() for task in chain.tasks.values()
    ]
    service.scheduler  # noqa: B018 (a cached property: made once, its connections on first use, per thread)
    if any(isinstance(store, S3Store) for store in stores):
        load_s3_models()


def _answer_parts(app: Flask, base_url: str) -> None:
    """In a request context of ``base_url``: a status's links built, its query read, an answer made for WSGI. Its
    environ made by werkzeug's builder (imported with Flask), not Flask's ``test_request_context``, whose
    ``flask.testing`` imports click's test runner and pdb, ~0.5 MB in the master and every API worker."""
    query = {"chain": WARM_KEY.path}
    environ = EnvironBuilder("/api/chainstatus", base_url=base_url, query_string=query).get_environ()
    with app.request_context(environ):
        TargetKey.parse(request.args["chain"])
        links.status_url(WARM_KEY)
        links.log_urls(WARM_KEY)
        links.run_url(WARM_RUN_ID)
        links.output_url(Output(WARM_KEY.path, key=WARM_KEY), facade().settings.url_expiry, signer())
        response = dumped_answer({"key": WARM_KEY.path, "attempt": 1, "steps": [{"executed": True}], "run": None})
        body, _, _ = response.get_wsgi_response(request.environ)  # what its WSGI call returns, nothing sent
        for _ in body:
            pass
