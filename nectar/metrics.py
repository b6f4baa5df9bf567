"""Prometheus metrics of the run registry: runs by state, the queue's depth, run durations by task, and schedules.

They are read from the registry at each scrape, so every process (and machine) sharing the
registry reports the same figures, whichever API process Prometheus reaches.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nectar.registry import RunState, RunStore
from nectar.schedules.model import FIRE_STATES, SOURCES

#: upper bounds (seconds) of the run duration histogram's buckets
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
#: upper bounds (seconds) of the fire lag histogram's buckets (fire time -> run queued; the target is p99 <= 1 s)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0)


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
        yield GaugeMetricFamily(
            "nectar_queue_depth", "Runs queued and not yet claimed (PENDING).", value=counts[RunState.PENDING]
        )
        durations = HistogramMetricFamily(
            "nectar_run_duration_seconds",
            "Seconds from the start of a run's last attempt to its end, for DONE and FAILED runs, by task.",
            labels=["task"],
        )
        for task, seen in sorted(self.runs.durations(DURATION_BUCKETS).items()):
            buckets = [(str(bound), n) for bound, n in zip(DURATION_BUCKETS, seen.within, strict=True)]
            durations.add_metric([task], [*buckets, ("+Inf", seen.count)], sum_value=seen.total)
        yield durations


class SchedulesCollector(Collector):
    """Collects ``nectar_schedules``, ``nectar_schedule_fires`` and ``nectar_schedule_lag_seconds`` from a registry.

    Every label value is always present (0 when none), so a series does not vanish when its count drops to 0.
    """

    def __init__(self, runs: RunStore) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        schedules = GaugeMetricFamily(
            "nectar_schedules",
            "Schedules in the registry, by source (file or api) and paused.",
            labels=["source", "paused"],
        )
        counts = {(source, paused): 0 for source in SOURCES for paused in ("false", "true")}
        for record in self.runs.schedules():
            counts[record.source, "true" if record.paused else "false"] += 1
        for (source, paused), n in counts.items():
            schedules.add_metric([source, paused], n)
        yield schedules
        fires = GaugeMetricFamily(
            "nectar_schedule_fires",
            "Fires of every schedule, by state: queued (a run made), done (its output was there), skipped, held.",
            labels=["state"],
        )
        by_state = self.runs.fire_counts()
        for state in FIRE_STATES:
            fires.add_metric([state], by_state.get(state, 0))
        yield fires
        within, count, total = self.runs.fire_lags(LAG_BUCKETS)
        lags = HistogramMetricFamily(
            "nectar_schedule_lag_seconds",
            "Seconds from a fire time to the queueing of its run, for fires that queued one.",
        )
        buckets = [(str(bound), n) for bound, n in zip(LAG_BUCKETS, within, strict=True)]
        lags.add_metric([], [*buckets, ("+Inf", count)], sum_value=total)
        yield lags
