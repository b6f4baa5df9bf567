"""What Datanectar adds to gunicorn: an access log that keeps credentials out, text logs that cannot be forged.

This is the one module that touches gunicorn's insides (here its logger's atoms); ``nectar.gunicorn_conf`` names
its classes, and tests/security/test_logs_and_metrics.py fails if gunicorn changes under them (it is pinned to the
minor version they passed on).

- :class:`RedactingLogger`: the access log writes ``[redacted]`` for the values of credentials in URLs (a token
  sent in the query string, a download URL's signature); in the text format every gunicorn record is escaped and
  kept on one line as the other processes' are (:class:`nectar.eventlog.TextFormatter`).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from gunicorn import glogging

from nectar.eventlog import TextFormatter, configure_logging

#: query parameters whose values never reach a log
SECRET_PARAMS = frozenset({"token", "access_token", "signature"})
REDACTED = "[redacted]"
#: a ``name=value`` pair of a query string (or of a URL's path parameters)
_PAIR = re.compile(r"(?:^|(?<=[?&;]))([^=&;#?/\s]+)=([^&;#\s]*)")
#: request headers that are credentials, as the access log's ``%({name}i)s`` atoms name them
_SECRET_HEADERS = frozenset({"{authorization}i", "{cookie}i", "{proxy-authorization}i"})


def redact(text: str) -> str:
    """``text`` (a URL, a request line, a query string) with the values of :data:`SECRET_PARAMS` replaced."""

    def pair(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={REDACTED}" if unquote_plus(name).lower() in SECRET_PARAMS else match.group(0)

    return _PAIR.sub(pair, text)


class RedactingLogger(glogging.Logger):
    """gunicorn's logger, keeping credentials out of the access log and control characters out of text logs."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for name, value in atoms.items():
            if name.lower() in _SECRET_HEADERS:
                atoms[name] = REDACTED
            elif isinstance(value, str):
                atoms[name] = redact(value)
        return atoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if cfg.logconfig_dict or cfg.logconfig_json or cfg.logconfig:
            return  # the configuration's formatters (NECTAR_LOG_FORMAT=json: nectar.eventlog.JsonFormatter)
        # text: gunicorn's formats, escaped; the app's own records (Flask's too) like every other process's
        formats = {
            self.error_log: TextFormatter(self.error_fmt, self.datefmt),
            self.access_log: TextFormatter(self.access_fmt),
        }
        for log, text in formats.items():
            for handler in log.handlers:
                if getattr(handler, "_gunicorn", False):
                    handler.setFormatter(text)
        configure_logging("text", logging.WARNING)
