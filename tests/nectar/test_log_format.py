"""The text log format: the same bytes as logging's own formatter with controls escaped, made at luigi's cost."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nectar.logs.format import CONTINUATION, TEXT_FORMAT, LineHandler, TextFormatter, escape_controls

#: the escaping as first written: every character of this class escaped, whatever else the text holds
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escaped(text: str) -> str:
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return _CONTROL.sub(
        lambda m: (
            named.get(m.group())
            or (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}")
        ),
        text,
    )


class FirstTextFormatter(logging.Formatter):
    """The text format as first written, on logging's own steps: the line escaped, a traceback's lines indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escaped(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        head, *rest = super().format(record).split("\n")
        return "\n".join([head, *(CONTINUATION + escaped(line) for line in rest)])


def expected(record: logging.LogRecord) -> str:
    """What the text format writes for a copy of ``record``."""
    return FirstTextFormatter(TEXT_FORMAT).format(logging.makeLogRecord(vars(record)))


def made(message: str, *args: object, created: float | None = None, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("luigi-interface", logging.INFO, __file__, 1, message, args or None, None)
    if created is not None:
        record.created, record.msecs = created, (created - int(created)) * 1000
    record.__dict__.update(fields)
    return record


def failure() -> logging.LogRecord:
    try:
        raise ValueError("bad\x1b[31m value\nsecond line")
    except ValueError:
        return made("step %s failed", "A\nB", exc_info=sys.exc_info())


@pytest.mark.parametrize(
    "record",
    [
        made("Informed scheduler that task   %s   has status   %s", "Part(i=1)", "PENDING"),
        made("Asking scheduler for work..."),
        made("forged\nline\r\x1b[2J\x00\x7f\x85 and\u2028\u2029 end\t."),
        made("printable or not, but no control: \xa0\u00ad\u200b\U0001f600 é"),
        made("args with controls: %s %r", "a\nb", "c\x1bd"),
        made("at a second's end", created=1_700_000_000.9996),
        made("at a second's start", created=1_700_000_001.0004),
        failure(),
        made("with a stack", stack_info="Stack (most recent call last):\n  File x\x1b, line 1"),
    ],
)
def test_a_text_line_is_loggings_line_with_its_controls_escaped(record: logging.LogRecord) -> None:
    want = expected(record)

    assert TextFormatter().format(record) == want


def test_records_of_one_second_keep_its_time_and_each_its_milliseconds() -> None:
    formatter = TextFormatter()
    second = 1_700_000_000
    for created in (second + 0.001, second + 0.5, second + 0.999, second + 1.0, second + 0.25, second + 2.0):
        record = made("tick", created=created)
        assert formatter.format(record) == expected(record)


def test_a_date_format_of_its_own_is_kept() -> None:
    record = made("tick", created=1_700_000_000.25)
    want = FirstTextFormatter(TEXT_FORMAT, "%d/%m %H:%M:%S").format(logging.makeLogRecord(vars(record)))

    assert TextFormatter(datefmt="%d/%m %H:%M:%S").format(record) == want


def test_the_time_is_made_once_a_second_not_once_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    strftime = time.strftime

    def counted(fmt: str, *args: time.struct_time) -> str:
        calls.append(fmt)
        return strftime(fmt, *args)

    monkeypatch.setattr(time, "strftime", counted)
    formatter = TextFormatter()
    lines = {formatter.format(made("record %s", n, created=1_700_000_000 + n / 1000)) for n in range(100)}

    assert len(lines) == 100 and len(calls) == 1, f"strftime called {len(calls)} times for 100 records of one second"


def test_escaping_leaves_a_printable_text_as_it_is() -> None:
    text = "Worker Worker(salt=1, workers=1) done      Part(size=1000, i=17) \xa0é"

    assert escape_controls(text) == text and escape_controls("a\nb\u2028") == "a\\nb\\u2028"


class CountedFlushes(io.TextIOWrapper):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def line_buffered(path: Path) -> CountedFlushes:
    return CountedFlushes(path.open("wb"), encoding="utf-8", line_buffering=True)


def unbuffered(path: Path) -> CountedFlushes:  # sys.stderr under PYTHONUNBUFFERED
    return CountedFlushes(path.open("wb", buffering=0), encoding="utf-8", write_through=True)


def buffered(path: Path) -> CountedFlushes:
    return CountedFlushes(path.open("wb"), encoding="utf-8")


@pytest.mark.parametrize(("opened", "flushes"), [(line_buffered, 0), (unbuffered, 0), (buffered, 3)])
def test_a_stream_that_writes_lines_through_is_not_flushed_after_each_record(
    tmp_path: Path, opened: Callable[[Path], CountedFlushes], flushes: int
) -> None:
    path = tmp_path / "log"
    stream = opened(path)
    handler = LineHandler(stream)
    handler.setFormatter(TextFormatter("%(message)s"))
    try:
        for n in range(3):
            handler.handle(made("record %s", n))
            # in the file as soon as it is logged, read by another reader
            assert path.read_bytes().endswith(f"record {n}\n".encode()), f"record {n} not in the file"
        assert stream.flushes == flushes
    finally:
        stream.close()


#: a process logging as an attempt does (its stderr a file), that says when it logged and then waits to be killed
LOG_THEN_WAIT = """
import logging, sys
from nectar.logs.format import configure_logging
configure_logging("text")
logging.getLogger("luigi-interface").info("step %s done", "Part(i=1)")
print("logged", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_record_is_in_the_file_before_the_process_is_killed(tmp_path: Path, unbuffered: str) -> None:
    stderr = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}  # empty: unset for Python, stderr line-buffered
    with stderr.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", LOG_THEN_WAIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env
        )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"logged\n", "the child never logged its record"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # the child is gone, nothing of it flushed at exit: what it logged was in the file when it said so
    assert stderr.read_bytes().endswith(b" INFO luigi-interface: step Part(i=1) done\n"), stderr.read_text()


def test_a_stream_set_anew_is_asked_anew(tmp_path: Path) -> None:
    first, second = line_buffered(tmp_path / "first"), buffered(tmp_path / "second")
    handler = LineHandler(first)
    try:
        handler.handle(made("to the first"))
        handler.setStream(second)
        handler.handle(made("to the second"))
        # the first flushed once by setStream, as logging does when it lets a stream go; the second per record
        assert (first.flushes, second.flushes) == (1, 1)
        assert (tmp_path / "second").read_bytes().endswith(b"to the second\n")
    finally:
        first.close()
        second.close()


#: a process that logs as a worker's loop does (its claim line, in JSON), counting its records' getpid system calls
#: and walks of the stack (where the call was made: kept, for a task's own format that shows it)
LOG_COUNTED = """
import json, logging, os, sys
from nectar.logs.format import configure_logging
configure_logging("json")
counted = {"getpid": 0, "frames": 0}
getpid, frame = os.getpid, logging.currentframe
def counted_getpid():
    counted["getpid"] += 1
    return getpid()
def counted_frame():
    counted["frames"] += 1
    return frame()
os.getpid, logging.currentframe = counted_getpid, counted_frame
log = logging.getLogger("nectar.executor")
for n in range(3):
    log.info("run %s of %s: attempt %d claimed", "r1", "t/c/T", n, extra={"run_id": "r1"})
print(json.dumps(counted), getpid())
"""


def test_a_record_is_made_without_a_system_call_and_names_its_process() -> None:
    done = subprocess.run([sys.executable, "-c", LOG_COUNTED], capture_output=True, text=True, check=True)
    counts, _, pid = done.stdout.strip().rpartition(" ")
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["message"], line["run_id"], line["pid"]) for line in lines] == [
        (f"run r1 of t/c/T: attempt {n} claimed", "r1", int(pid)) for n in range(3)
    ]
    assert json.loads(counts) == {"getpid": 0, "frames": 3}, "a record made a system call, or lost where it was made"


#: a process whose task's code logs through a handler of its own, in a format that asks for its process and thread
OWN_FORMAT = """
import logging, os, sys
from nectar.logs.format import configure_logging
configure_logging("text")
own = logging.StreamHandler(sys.stdout)
own.setFormatter(logging.Formatter("%(process)d %(thread)d %(lineno)d %(funcName)s %(processName)s %(message)s"))
logging.getLogger("task").addHandler(own)
logging.getLogger("task").warning("hello")
print(os.getpid())
"""


def test_a_format_of_a_tasks_own_still_gets_its_process_thread_and_where_the_call_was_made() -> None:
    done = subprocess.run([sys.executable, "-c", OWN_FORMAT], capture_output=True, text=True, check=True)
    line, pid = done.stdout.splitlines()
    assert "Logging error" not in done.stderr, done.stderr
    process, thread, lineno, function, name, _ = line.split()
    assert (process, lineno, function, name) == (pid, "8", "<module>", "MainProcess") and thread.isdigit(), line
