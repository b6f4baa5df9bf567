"""A cluster for :func:`benchmarks.throughput.scaling_rounds` where its batches and samples are replaced."""

from __future__ import annotations

from pathlib import Path
from typing import cast


class RoundsCluster:
    """What :func:`benchmarks.throughput.scaling_rounds` asks of its cluster, where its batches and samples are
    replaced: workers started (their slots stand for the process) and stopped, as :meth:`started` and :meth:`stopped`
    are told, and a registry's path that is never opened."""

    class settings:  # noqa: N801 - the cluster's settings, only where a registry would be
        registry_path = Path("/nonexistent")

    def __init__(self) -> None:
        self.procs = self

    def start_workers(self, slots: int) -> int:
        self.started(slots)
        return slots

    def stop(self, proc: object) -> None:
        self.stopped(cast(int, proc))

    def started(self, slots: int) -> None:
        pass

    def stopped(self, workers: int) -> None:
        pass
