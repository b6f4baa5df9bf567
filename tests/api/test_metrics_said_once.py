"""An empty prometheus file a killed worker left is said once by the service, not once by each API worker."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

from harness import Processes
from nectar.config import Settings
from tests.conftest import wait_until


def timed_a_scrape(path: Path) -> bool:
    """Whether the worker of the latencies' file at ``path`` has timed an answer to ``/metrics``."""
    return any("/metrics" in key for key, _, _, _ in MmapedDict.read_all_values_from_file(str(path)))


def test_an_empty_metrics_file_is_said_once_by_a_service_of_two_api_workers(
    settings: Settings, processes: Processes, tmp_path: Path
) -> None:
    """Two API workers, scraped until each has answered a scrape (its latencies' file holds the route's: a worker
    times an answer after it read the folder): the empty file left is said once in the service's log. Before, each
    worker said it once (two lines). The file is made empty here, as the kill leaves it (round 65's test of the
    scrape says why)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    served = processes.nectar_api(settings, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    left = folder / "histogram_999999.db"
    left.touch()

    def both_scraped() -> bool:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=60)  # noqa: S310 - ours
        assert answer.status == 200
        answer.read()
        return len([path for path in folder.glob("histogram_*.db") if path != left and timed_a_scrape(path)]) == 2

    wait_until(both_scraped)
    said = [line for line in processes.logs.joinpath("api-0.log").read_text().splitlines() if str(left) in line]
    assert len(said) == 1 and "WARNING" in said[0], said
