"""luigi's ``retry_count`` read as luigid reads it: a task's own (its run's attempts, a failed step's end of its run)
and ``[scheduler] retry_count`` of the project's luigi.cfg, by one rule; and the luigi.cfg values ``serve`` and
``scheduler`` refuse in one line before anything starts (:func:`check_luigid_settings`).

luigid disables a task at the failure that brings its count to ``retry_count`` or beyond
(``Task.has_excessive_failures``: ``num_failures() >= retry_count``): so 0 or less is one attempt, as are ``False``
and ``True`` (1), and a fraction is the whole number above it (2.5: three). Imported by the supervisor, before luigi
is: nothing of luigi at the top.
"""

from __future__ import annotations

import configparser
import functools
import math
import os
import re
from pathlib import Path
from stat import S_ISREG
from typing import Any

from nectar.config import INTEGER_MOST, retry_value
from nectar.errors import InvalidSetting


def own_attribute(task: Any, name: str) -> object:
    """The policy attribute ``name`` of a task (a class or an instance; None when it sets none): of the class, where
    a luigi parameter named so is no policy; a ``@property`` read on the instance, as luigi reads its own
    (``Task.retry_count`` is one, None).

    luigi's ``Parameter`` is looked for only in a value that is neither None nor a property (a class that sets a
    number, or a parameter so named): a submission reads four of these (its policy), each None or luigi's
    ``retry_count`` property, and the import statement that found the class each time was ~3.4k instructions
    (callgrind), a quarter of the policy's cost."""
    cls = task if isinstance(task, type) else type(task)
    value = getattr(cls, name, None)
    if value is None:
        return None
    if isinstance(value, property):
        return None if task is cls else getattr(task, name)
    from luigi import Parameter  # in a process that has a task, luigi is imported

    return None if isinstance(value, Parameter) else value


def luigi_retry_count(task: Any) -> object:
    """A luigi task's own ``retry_count`` (a class or an instance; None when it sets none), read as luigi reads it: on
    the instance (a ``@property`` too; given a class alone, a property is none set), a luigi parameter so named
    being no policy."""
    return own_attribute(task, "retry_count")


def luigi_attempts(value: object, name: str) -> int | None:
    """How many attempts luigi gives a task whose ``retry_count`` is ``value`` (None: none set), or
    :class:`InvalidSetting` naming ``name`` where it has no number of them: a value it never reaches (``inf``,
    ``nan``), one the registry cannot hold (more than PostgreSQL's INTEGER), and anything luigid cannot compare with a
    count (a text) are refused by the rule of a retry setting (:func:`nectar.config.retry_value`)."""
    if value is None:
        return None
    if isinstance(value, int):  # a bool too, as luigid compares it; of any size (no float made of it)
        return int(retry_value("retry_count", max(1, value), name))
    if isinstance(value, float):
        return int(retry_value("retry_count", max(1, math.ceil(value)) if math.isfinite(value) else value, name))
    # not a number (a text of digits too: luigid's comparison with a count raises TypeError)
    raise InvalidSetting(f"{name} must be a whole number from 1 to {INTEGER_MOST}, not {value!r}")


def attempts_used_up(task: Any, attempt: int, luigi_config: Path | None = None) -> object:
    """The ``retry_count`` of ``task`` (a failed step; where it sets none, ``[scheduler] retry_count`` of the luigi.cfg
    at ``luigi_config``, which luigid gives it) where ``attempt`` used up the attempts luigi gives it (luigid disables
    it now: another attempt of its run would meet it disabled), else None; None too where luigi never disables it
    (``inf``, ``nan``, a text: no rule of the service's refused the step, only its run's task is read at
    submission)."""
    if task is None:
        return None
    value = luigi_retry_count(task)
    try:
        attempts = luigi_attempts(value, "retry_count")
        if attempts is None:
            value = attempts = scheduler_retry_count(luigi_config)
    except InvalidSetting:
        return None
    return value if attempts is not None and attempts <= attempt else None


@functools.lru_cache(maxsize=8)
def _configured(path: str, stamp: tuple[int, int]) -> int | None:
    """``[scheduler] retry_count`` of the luigi.cfg at ``path`` as attempts, or :class:`InvalidSetting` naming the
    file, the section and the key (a value refused is never cached: each reading tells it)."""
    found = luigi_setting(path, "scheduler", "retry_count")
    if found is None:
        return None
    name, text, value = found
    try:  # luigi's IntParameter: int(), on which luigid refuses to start where it raises
        return luigi_attempts(int(value), name)
    except (ValueError, InvalidSetting):
        raise InvalidSetting(f"{name} must be a whole number from 1 to {INTEGER_MOST}, not {text!r}") from None


def luigi_setting(path: str, section: str, key: str) -> tuple[str, str, str] | None:
    """``[section] key`` of the luigi.cfg at ``path`` (or its dashed spelling, which luigi reads too): the name a
    refusal gives it (the file, the section, the key as written), its text as written and its value as luigi reads it
    (:func:`luigi_value`); None where it is not set. :class:`InvalidSetting` where luigi cannot read the file."""
    parser = _AsWritten()
    try:
        parser.read(path)
    except configparser.Error as exc:  # as luigi's parser (strict too) refuses it, and luigid does not start
        raise InvalidSetting(f"{path} cannot be read as luigi reads it: {exc}") from None
    for spelling in (key, key.replace("_", "-")):
        text = parser.get(section, spelling, fallback=None)
        if text is not None:
            name = f"{path} [{section}] {spelling}"
            value = text if "$" not in text and "%" not in text else luigi_value(path, text, name, section, key)
            return name, text, value
    return None


def kept_count(value: str, name: str) -> int:
    """``[nectar_scheduler] finished_tasks_kept`` (named ``name``) as luigid reads it: a whole number from 0, else
    :class:`InvalidSetting` naming it."""
    value = value.strip()
    if not value.isdigit() or not value.isascii():
        raise InvalidSetting(f"{name} must be a whole number from 0, not {value!r}")
    return int(value)


def check_luigid_settings(luigi_config: Path | None) -> None:
    """Refuse, in one line naming it (:class:`InvalidSetting`), a luigi.cfg at ``luigi_config`` that luigid would
    refuse to start on: ``[scheduler] retry_count`` (:func:`scheduler_retry_count`) and ``[nectar_scheduler]
    finished_tasks_kept``."""
    scheduler_retry_count(luigi_config)
    path = os.fspath(luigi_config) if luigi_config is not None and os.path.isfile(luigi_config) else None
    kept = luigi_setting(path, "nectar_scheduler", "finished_tasks_kept") if path is not None else None
    if kept is not None:
        kept_count(kept[2], kept[0])


class _AsWritten(configparser.ConfigParser):
    """A luigi.cfg's values as written (no interpolation), its keys as luigi's parser keeps them (case kept)."""

    def __init__(self) -> None:
        super().__init__(interpolation=None)

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def luigi_value(path: str, text: str, name: str, section: str = "scheduler", key: str = "retry_count") -> str:
    """``[section] key`` of the luigi.cfg at ``path`` (``text`` as written) as luigi reads it: through its
    own parser's interpolations, ``%(key)s`` and ``${VAR}`` of the environment (luigid's, which it inherits from this
    process), or :class:`InvalidSetting` naming the variables that are not set; ``text`` where luigi's interpolation
    refuses it (luigid refuses to start then, and so does the rule). luigi is imported here alone, for a value
    written so: a plain number costs the supervisor no import of luigi."""
    from luigi.configuration.cfg_parser import InterpolationMissingEnvvarError, LuigiConfigParser

    parser = LuigiConfigParser()  # not luigi's process-wide instance: this file alone
    parser.read(path)
    try:
        return str(parser.get(section, key))
    except InterpolationMissingEnvvarError:
        unset = [f"${{{v}}}" for v in re.findall(r"\$\{([^}]+)\}", text) if v not in os.environ]
        raise InvalidSetting(f"{name} is {text!r}: {', '.join(unset)} not set in the environment") from None
    except configparser.Error:
        return text


def scheduler_retry_count(luigi_config: Path | None) -> int | None:
    """The attempts luigi's ``[scheduler] retry_count`` gives a task when the luigi.cfg at ``luigi_config`` sets it,
    else None (:class:`InvalidSetting` for a value luigi has no number of attempts for, as luigid refuses to start
    on it): read again when the file changes, which one stat per call tells (a submission's hot path)."""
    if luigi_config is None:
        return None
    path = os.fspath(luigi_config)
    try:
        found = os.stat(path)
    except OSError:
        return None
    if not S_ISREG(found.st_mode):
        return None
    return _configured(path, (found.st_mtime_ns, found.st_size))
