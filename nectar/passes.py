"""The one way a loop off every worker runs (schedules' fires, triggers' polls, WAITING runs' checks): pass after
pass until stopped, a failed pass logged and the next one trying again, whatever it raised but KeyboardInterrupt."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from nectar.errors import NectarError


def run_passes(
    what: str, tick: Callable[[], Any], pause: Callable[[], float], stop: threading.Event, logger: logging.Logger
) -> None:
    """Call ``tick`` until ``stop`` is set, waiting ``pause()`` seconds after each pass (less if stopped); a pass that
    fails is logged (a known failure, the registry or a store down, in a line; anything else with its traceback)
    and the next one tries again. A chain's code the pass runs (a task's ``complete()``, ``output()``) may raise any
    BaseException: a ``SystemExit`` ended the loop's thread without a word; only ``KeyboardInterrupt`` (the process's
    own stop) goes up. ``what`` names the loop's work in its logs."""
    logger.info("%s", what)
    while not stop.is_set():
        try:
            tick()
        except NectarError as exc:
            logger.warning("%s: %s; trying again", what, exc)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a chain's SystemExit, GeneratorExit...: said, and the loop goes on
            logger.exception("%s: the pass failed; trying again", what)
        stop.wait(pause())


def pause_until(due: float | None, now: float, longest: float = 0.5) -> float:
    """Seconds to wait before the next pass: until ``due`` (None: nothing due), at most ``longest`` (how soon a change
    made anywhere is seen), never below 0."""
    return longest if due is None else min(longest, max(0.0, due - now))


class Failures:
    """What a loop says of one item (a schedule, a trigger) that fails pass after pass, tried again every ``retry``
    seconds: its first failure with its traceback (a known one, :class:`NectarError`: the registry or a store down,
    in a line); the same failure again (its type and message) in a line at its 2nd, 4th, 8th... time in a row,
    counting them, not a traceback every few seconds for as long as it lasts; a different failure, or one after the
    item succeeded (:meth:`cleared`), as a first. ``what`` names the item (``schedule``), ``again`` what its retry
    does (``trying again``)."""

    def __init__(self, logger: logging.Logger, what: str, again: str, retry: float) -> None:
        self.logger, self.what, self.again, self.retry = logger, what, again, retry
        #: by item: (its failure's type and message, how many times in a row)
        self._last: dict[str, tuple[str, int]] = {}

    def failed(self, item: str, exc: BaseException) -> None:
        said = f"{type(exc).__name__}: {exc}"
        last, times = self._last.get(item, ("", 0))
        times = times + 1 if last == said else 1
        self._last[item] = (said, times)
        if times == 1:
            if isinstance(exc, NectarError):
                self.logger.warning("%s %s: %s; %s in %gs", self.what, item, exc, self.again, self.retry)
            else:
                self.logger.error("%s %s failed; %s in %gs", self.what, item, self.again, self.retry, exc_info=exc)
        elif times & (times - 1) == 0:  # a power of two
            self.logger.warning(
                "%s %s failed %d times in a row: %s; %s in %gs", self.what, item, times, said, self.again, self.retry
            )

    def cleared(self, item: str) -> None:
        """``item`` did its work: a failure of it is said as new."""
        self._last.pop(item, None)
