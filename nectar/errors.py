"""The exceptions Datanectar raises, all under one root.

NectarError
├── NotFound
│   ├── ChainNotFound      unknown chain type or chain
│   ├── TaskNotFound       unknown task in a known chain
│   ├── RunNotFound        no run and no target for a key
│   ├── ScheduleNotFound   no schedule of that id
│   └── TriggerNotFound    no data trigger of that id
├── InvalidParameters      bad or missing task parameters (``errors`` per field)
├── InvalidKey             a target key outside the key grammar
├── InvalidSetting         a setting (an environment variable) with a value it cannot take (also a ValueError)
│   └── InvalidTask        a task class whose own setting (its retry policy) breaks the setting's rule
├── ChainImportError       a chain module failed to import
├── InvalidSignature       a signed download URL that is tampered with or expired
├── RunFinished            a run that has already ended (it cannot be cancelled)
├── ScheduleConflict       a change a schedule cannot take (one declared in a chain file is edited there)
│   └── TriggerConflict    the same, of a data trigger
├── TooLarge               a request beyond the configured limits (too many parameters)
├── LeaseLost              an attempt no longer owns its run (cancelled or reclaimed): it may not commit
├── RegistryTooNew         a run registry upgraded by a newer release (also a RuntimeError)
└── Unavailable
    ├── StoreUnavailable     the target store (S3) cannot be reached
    ├── RegistryUnavailable  the run registry (PostgreSQL) cannot be reached
    ├── SchedulerUnavailable luigid cannot be reached
    ├── QueueFull            too many runs queued: try again after ``retry_after`` seconds
    └── ChainNotReady        a chain file still being executed in a probe first: ask again

Interrupted (a BaseException, like KeyboardInterrupt) stops an attempt's task when its run is cancelled or reclaimed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class NectarError(Exception):
    """Root of every error Datanectar raises on purpose."""


class NotFound(NectarError):
    pass


class ChainNotFound(NotFound):
    pass


class TaskNotFound(NotFound):
    pass


class RunNotFound(NotFound):
    pass


class ScheduleNotFound(NotFound):
    pass


class TriggerNotFound(NotFound):
    pass


class InvalidParameters(NectarError):
    """Parameters that do not fit the task; ``errors`` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(invalid_fields(errors))


def invalid_fields(errors: Mapping[Any, Any], what: str = "invalid parameters") -> str:
    """The one line that names each bad field and what was wrong with it (``errors``: field -> its messages, as
    :class:`InvalidParameters` and marshmallow give them; a field's messages may nest, by item or key:
    ``tags.0: Not a valid string.``), after ``what`` was wrong."""
    return f"{what}: {'; '.join(_said(errors))}"


def _said(messages: object, name: str = "") -> Iterator[str]:
    if isinstance(messages, Mapping):
        for key, inner in sorted(messages.items(), key=lambda item: str(item[0])):
            yield from _said(inner, f"{name}.{key}" if name else str(key))
    elif isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        yield f"{name}: {', '.join(messages)}"
    elif isinstance(messages, list | tuple):
        for inner in messages:
            yield from _said(inner, name)
    else:
        yield f"{name}: {messages}"


class InvalidSetting(NectarError, ValueError):
    """A setting with a value it cannot take; the message names its variable (``NECTAR_MAX_QUEUE must be a whole
    number, not 'abc'``). A ValueError too: what a bad value raised before it had a class of its own."""


class InvalidTask(InvalidSetting):
    """A task class that sets one of the settings itself (``retries``, ``retry_delay``, ``retry_backoff``, luigi's
    ``retry_count``) to a value the setting's rule refuses; the message names the class, the attribute and the rule.
    Its runs are refused (422), as the chain's code, not the request, must change."""


class InvalidKey(NectarError):
    pass


class ChainImportError(NectarError):
    pass


class InvalidSignature(NectarError):
    pass


class RunFinished(NectarError):
    pass


class ScheduleConflict(NectarError):
    pass


class TriggerConflict(ScheduleConflict):
    pass


class TooLarge(NectarError):
    pass


class LeaseLost(NectarError):
    """The attempt writing an output no longer owns its run: the write is discarded, not committed."""


class RegistryTooNew(NectarError, RuntimeError):
    """A run registry whose schema a newer release wrote: this release refuses to open it."""


class Interrupted(BaseException):  # noqa: N818  (like KeyboardInterrupt: what happened to the task, not its fault)
    """Raised inside an attempt's process to stop its task (a BaseException, so task code does not swallow it)."""


class Unavailable(NectarError):
    """A dependency (``service``) could not be reached; worth trying again after ``retry_after`` seconds."""

    service = "dependency"
    retry_after: int | None = None


class StoreUnavailable(Unavailable):
    """The store failed; ``code`` is its own error code when it gave one (S3's ``NoSuchBucket``, ``AccessDenied``)."""

    service = "store"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RegistryUnavailable(Unavailable):
    service = "registry"
    retry_after = 2


class SchedulerUnavailable(Unavailable):
    service = "scheduler"


class QueueFull(Unavailable):
    service = "queue"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChainNotReady(Unavailable):
    """A chain file (new or changed) whose import has not ended yet in the catalog's probe (``nectar.catalog``): its
    tasks exist once it ends, so a client is told to ask again (a 503 with ``Retry-After``), not that there are none
    (a 404). One whose import never ends is told so at every ask, its message saying how long it has been."""

    service = "catalog"
    retry_after = 2
