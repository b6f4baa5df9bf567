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
import io
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, TextIO

from nectar import forks

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
    if text.isprintable():  # no control character is printable: most records end here, unscanned
        return text

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROL.sub(escaped, text)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, one line a record: its message and arguments escaped, a traceback's lines indented."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._uses_time = self.usesTime()
        #: the last second formatted, in which format, and its text: records come many a second, strftime once
        self._second: tuple[int, str | None, str] = (-1, None, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's time, its strftime made once per second (the text holds no part of a second but the
        milliseconds added here, as logging adds them)."""
        second, cached_datefmt, text = self._second
        if second != int(record.created) or cached_datefmt != datefmt:
            second = int(record.created)
            text = time.strftime(datefmt or self.default_time_format, self.converter(record.created))
            self._second = (second, datefmt, text)
        if datefmt or not self.default_msec_format:
            return text
        return self.default_msec_format % (text, record.msecs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info or record.exc_text or record.stack_info):  # one line, as logging makes it
            record.message = record.getMessage()
            if self._uses_time:
                record.asctime = self.formatTime(record, self.datefmt)
            return self.formatMessage(record)
        head, *rest = super().format(record).split("\n")  # the escaped line, then the traceback's own lines
        return "\n".join([head, *(CONTINUATION + escape_controls(line) for line in rest)])


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (expected one of {', '.join(FORMATS)})")
    return JsonFormatter() if log_format == "json" else TextFormatter()


class LineHandler(logging.StreamHandler[TextIO]):
    """A :class:`logging.StreamHandler` that flushes no stream which writes a record's line through by itself: a
    line-buffered one (``sys.stderr``), or one over an unbuffered file (``sys.stderr`` under ``PYTHONUNBUFFERED``,
    as in the image). A process killed (kill -9) right after a record loses none of its lines either way; any
    other stream is flushed after each record, as logging does."""

    #: the stream last asked about and its answer (an ABC's isinstance is dear enough to show in a profile)
    _asked: tuple[object, bool] = (None, False)

    def emit(self, record: logging.LogRecord) -> None:
        stream = self.stream
        asked, through = self._asked
        if asked is not stream:
            through = writes_lines_through(stream)
            self._asked = (stream, through)
        if self.terminator != "\n" or not through:
            super().emit(record)
            return
        try:
            stream.write(self.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def writes_lines_through(stream: object) -> bool:
    """Whether each line written to ``stream`` reaches its file descriptor without a flush."""
    if getattr(stream, "line_buffering", False):
        return True
    return bool(getattr(stream, "write_through", False)) and isinstance(getattr(stream, "buffer", None), io.RawIOBase)


def process_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers of ``logger`` that :func:`configure_logging` added: the process's own log."""
    return [handler for handler in logger.handlers if getattr(handler, "_nectar", False)]


def lean_records() -> None:
    """Records made with their process's id without a system call (:func:`nectar.forks.pid`, not ``os.getpid``).
    What the Python logging HOWTO's "Optimization" would also drop, where the call was made (a walk of the stack)
    and the process's name, is kept: a task's own format may show them, and they show as they would under luigi."""
    global _made
    if _made is None:
        _made = logging.getLogRecordFactory()
        logging.logProcesses = False
        logging.setLogRecordFactory(_record)


#: the record factory :func:`lean_records` found (None until it replaced it): it makes each record, then its pid is set
_made: Callable[..., logging.LogRecord] | None = None


def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _made is not None
    record = _made(*args, **kwargs)
    record.process = forks.pid()
    return record


def configure_logging(log_format: str = "text", level: int | str = logging.INFO) -> None:
    """Send this process's logs to stderr in ``log_format``, each record with its run id (:func:`lean_records`)."""
    lean_records()
    handler = LineHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RunIdFilter())
    root = logging.getLogger()
    for old in process_handlers(root):
        root.removeHandler(old)
    handler._nectar = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warnings become records too, in the same format
