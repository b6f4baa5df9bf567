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
