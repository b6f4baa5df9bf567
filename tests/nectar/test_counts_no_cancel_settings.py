"""luigid_counts_no_cancel's check at luigid's start must not depend on the
operator's ``[scheduler]`` settings.

The check runs a probe scheduler made with luigid's configuration, overriding ``retry_count`` and ``disable_window``
but not ``disable_hard_timeout``, which ``configuration/luigi.cfg`` names as a setting of the operator's ("or failing
for disable_hard_timeout"). With ``disable_hard_timeout = 0`` luigi disables a task at its first counted failure, so
the probe's one counted failure leaves it DISABLED, not FAILED, and luigid's start fails saying that "luigi changed
how luigid counts a task's failures", though the luigi loaded is the one the patch relies on.

Nor may the probe report its made-up task to the operator's metrics: it is made with luigid's ``[scheduler]``
``metrics_collector`` (datadog, prometheus, a custom one), so each luigid start told it a task ``T`` started and failed.
"""

from __future__ import annotations

from collections.abc import Iterator

import luigi
import luigi.configuration
import luigi.metrics
import luigi.scheduler
import pytest

from nectar.luigi_internals import luigid_counts_no_cancel


def _scheduler_settings(**settings: str) -> Iterator[None]:
    """luigi's ``[scheduler]`` with ``settings`` set, as they were after."""
    config = luigi.configuration.get_config()
    added = not config.has_section("scheduler")
    if added:
        config.add_section("scheduler")
    before = {name: config.get("scheduler", name, None) for name in settings}
    for name, value in settings.items():
        config.set("scheduler", name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                config.remove_option("scheduler", name)
            else:
                config.set("scheduler", name, value)
        if added:
            config.remove_section("scheduler")


@pytest.fixture
def hard_timeout_zero() -> Iterator[None]:
    yield from _scheduler_settings(disable_hard_timeout="0")


#: what the operator's metrics were told (:class:`Recording`)
TOLD: list[str] = []


class Recording(luigi.metrics.MetricsCollector):
    """An operator's metrics collector (``metrics_collector = custom``): what it is told."""

    def __init__(self) -> None:
        pass

    def handle_task_started(self, task: luigi.scheduler.Task) -> None:
        TOLD.append(f"started {task.id}")

    def handle_task_failed(self, task: luigi.scheduler.Task) -> None:
        TOLD.append(f"failed {task.id}")

    def handle_task_disabled(self, task: luigi.scheduler.Task, config: object) -> None:
        TOLD.append(f"disabled {task.id}")

    def handle_task_done(self, task: luigi.scheduler.Task) -> None:
        TOLD.append(f"done {task.id}")


@pytest.fixture
def recorded_metrics() -> Iterator[None]:
    TOLD.clear()
    yield from _scheduler_settings(metrics_collector="custom", metrics_custom_import=f"{__name__}.Recording")


def test_luigid_counts_no_cancel_applies_whatever_the_operators_disable_hard_timeout(
    monkeypatch: pytest.MonkeyPatch, hard_timeout_zero: None
) -> None:
    monkeypatch.setattr(luigi.scheduler.Scheduler, "add_task", luigi.scheduler.Scheduler.add_task)  # put back after
    luigid_counts_no_cancel()  # the luigi loaded is the one it relies on: no RuntimeError


def test_luigid_counts_no_cancel_tells_the_operators_metrics_nothing(
    monkeypatch: pytest.MonkeyPatch, recorded_metrics: None
) -> None:
    monkeypatch.setattr(luigi.scheduler.Scheduler, "add_task", luigi.scheduler.Scheduler.add_task)  # put back after
    luigid_counts_no_cancel()
    assert TOLD == []
