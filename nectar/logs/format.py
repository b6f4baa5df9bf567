"""How Datanectar's processes log: plain text, or one JSON object a line (``NECTAR_LOG_FORMAT=json``).

In the text format a record is one line, whatever its message holds: control characters (CR, LF, ESC...)
are written escaped (``\\n``, ``\\x1b``), so a task parameter cannot forge a line nor drive the terminal; a
traceback follows on lines indented by :data:`CONTINUATION`, which no record's own line starts with.

Every record about a run carries its ``run_id``: passed as ``extra={"run_id": ...}``, or taken
from :data:`current_run`, which the process executing an attempt sets, so that luigi's own
messages about the run's tasks carry it too.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from typing import Any

#: the run the current context works for (set while an attempt executes)
current_run: contextvars.ContextVar[str | None] = contextvars.ContextVar("nectar_run", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: what starts each line of a text record after its first (a traceback's, a stack's)
CONTINUATION = "    | "
#: C0 and C1 control characters, DEL, and the characters some readers take for a line break
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: attributes every LogRecord has: anything else on a record came from ``extra``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "run_id"}


class RunIdFilter(logging.Filter):
    """Gives every record a ``run_id`` (None when it is about no run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = current_run.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, run_id, process, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "pid": record.process,
        }
        event.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape: ``\\n``, ``\\r``, ``\\t``, ``\\x1b``, ``\\u2028``."""

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROL.sub(escaped, text)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, one line a record: its message and arguments escaped, a traceback's lines indented."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        head, *rest = super().format(record).split("\n")  # the escaped line, then the traceback's own lines
        return "\n".join([head, *(CONTINUATION + escape_controls(line) for line in rest)])


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (expected one of {', '.join(FORMATS)})")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: str = "text", level: int | str = logging.INFO) -> None:
    """Send this process's logs to stderr in ``log_format``, each record with its run id."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RunIdFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_nectar", False)]:
        root.removeHandler(old)
    handler._nectar = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warnings become records too, in the same format
