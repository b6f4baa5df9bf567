"""Prometheus metrics of the run registry: runs by state, the queue's depth, run durations by task.

They are read from the registry at each scrape, so every process (and machine) sharing the
registry reports the same figures, whichever API process Prometheus reaches.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from nectar.registry import RunState, RunStore

#: upper bounds (seconds) of the run duration histogram's buckets
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


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
