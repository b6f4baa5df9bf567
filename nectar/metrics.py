"""Prometheus metrics of the run registry: runs by state, the queue's depth, run durations by task, schedules, triggers.

They are read from the registry at each scrape, so every process (and machine) sharing the
registry reports the same figures, whichever API process Prometheus reaches; from the counts the
database keeps (runs by state and their durations: :mod:`nectar.registry.counts`; fires and claimed
objects by state, their lags and the triggers' runs: :mod:`nectar.registry.fire_counts`), not a scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nectar.registry import RunState, RunStore
from nectar.registry.counts import DURATION_BOUNDS
from nectar.registry.fire_counts import DETECTION_BOUNDS, LAG_BOUNDS
from nectar.schedules.model import FIRE_STATES, SOURCES
from nectar.triggers.model import OBJECT_STATES

#: upper bounds (seconds) of the run duration histogram's buckets: those the registry counts within
DURATION_BUCKETS = DURATION_BOUNDS
#: upper bounds (seconds) of the fire lag histogram's buckets (fire time -> run queued): those the registry counts
LAG_BUCKETS = LAG_BOUNDS
#: upper bounds (seconds) of the detection lag histogram's buckets (object changed -> claimed with its run): likewise
DETECTION_BUCKETS = DETECTION_BOUNDS


class RunsCollector(Collector):
    """Collects ``nectar_runs``, ``nectar_queue_depth`` and ``nectar_run_duration_seconds`` from a registry."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        counts = self.runs.count_by_state()
        runs = GaugeMetricFamily("nectar_runs", "Runs in the registry, by state.", labels=["state"])
        for state, n in counts.items():
            runs.add_metric([state.value], n)
        yield runs
        # the row the queue's bound reads (NECTAR_MAX_QUEUE): one count of runs by state (nectar.registry.counts)
        yield GaugeMetricFamily(
            "nectar_queue_depth", "Runs queued and not yet claimed (PENDING).", value=counts[RunState.PENDING]
        )
        durations = HistogramMetricFamily(
            "nectar_run_duration_seconds",
            "Seconds from the start of a run's last attempt to its end, for DONE and FAILED runs, by task.",
            labels=["task"],
        )
        for task, seen in sorted(self.runs.durations().items()):
            buckets = [(str(bound), n) for bound, n in zip(DURATION_BUCKETS, seen.within, strict=True)]
            durations.add_metric([task], [*buckets, ("+Inf", seen.count)], sum_value=seen.total)
        yield durations


class Sourced(Protocol):
    """A schedule's or a trigger's record: where it comes from, and whether it is paused."""

    @property
    def source(self) -> str: ...

    @property
    def paused(self) -> bool: ...


def by_source(name: str, documentation: str, records: Iterable[Sourced]) -> GaugeMetricFamily:
    """A gauge of ``records`` by source (file or api) and paused, each pair present (0 when none)."""
    gauge = GaugeMetricFamily(name, documentation, labels=["source", "paused"])
    counts = {(source, paused): 0 for source in SOURCES for paused in ("false", "true")}
    for record in records:
        counts[record.source, "true" if record.paused else "false"] += 1
    for (source, paused), n in counts.items():
        gauge.add_metric([source, paused], n)
    return gauge


def by_state(name: str, documentation: str, states: Iterable[str], counts: Mapping[str, int]) -> GaugeMetricFamily:
    """A gauge of ``counts`` by state, each of ``states`` present (0 when none)."""
    gauge = GaugeMetricFamily(name, documentation, labels=["state"])
    for state in states:
        gauge.add_metric([state], counts.get(state, 0))
    return gauge


def lag_histogram(
    name: str, documentation: str, bounds: tuple[float, ...], seen: tuple[tuple[int, ...], int, float]
) -> HistogramMetricFamily:
    """A histogram without labels from the registry's counts within each bound, in all, and their total."""
    within, count, total = seen
    histogram = HistogramMetricFamily(name, documentation)
    buckets = [(str(bound), n) for bound, n in zip(bounds, within, strict=True)]
    histogram.add_metric([], [*buckets, ("+Inf", count)], sum_value=total)
    return histogram


class SchedulesCollector(Collector):
    """Collects ``nectar_schedules``, ``nectar_schedule_fires`` and ``nectar_schedule_lag_seconds`` from a registry.

    Every label value is always present (0 when none), so a series does not vanish when its count drops to 0.
    """

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        yield by_source(
            "nectar_schedules", "Schedules in the registry, by source (file or api) and paused.", self.runs.schedules()
        )
        yield by_state(
            "nectar_schedule_fires",
            "Fires of every schedule, by state: queued (a run made), done (its output was there), skipped, held.",
            FIRE_STATES,
            self.runs.fire_counts(),
        )
        yield lag_histogram(
            "nectar_schedule_lag_seconds",
            "Seconds from a fire time to the queueing of its run, for fires that queued one.",
            LAG_BUCKETS,
            self.runs.fire_lags(),
        )


class TriggersCollector(Collector):
    """Collects ``nectar_triggers``, ``nectar_trigger_objects``, ``nectar_trigger_runs`` and
    ``nectar_trigger_detection_lag_seconds`` from a registry (every label value always present, 0 when none)."""

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        yield by_source(
            "nectar_triggers", "Triggers in the registry, by source (file or api) and paused.", self.runs.triggers()
        )
        yield by_state(
            "nectar_trigger_objects",
            "Objects claimed by every trigger, by state: queued (a run made or joined), done (its output was there), "
            "skipped (the task could not be made for it).",
            OBJECT_STATES,
            self.runs.object_counts(),
        )
        yield GaugeMetricFamily(
            "nectar_trigger_runs",
            "Runs made by every trigger (an object or a group of objects each).",
            value=self.runs.trigger_runs(),
        )
        yield lag_histogram(
            "nectar_trigger_detection_lag_seconds",
            "Seconds from an object's last change (the store's time) to its claim with its run, for objects that "
            "queued one.",
            DETECTION_BUCKETS,
            self.runs.object_lags(),
        )
