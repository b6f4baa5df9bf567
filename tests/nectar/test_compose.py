"""docker-compose.yml's luigid keeps its state across a new container and has the time to save it as it stops."""

from __future__ import annotations

import re

import yaml

from harness import REPO
from nectar.config import Settings


def test_composes_luigid_saves_its_state_on_a_volume_given_the_time_serve_gives_it() -> None:
    """luigid saves its tasks in its data folder (the image's ``NECTAR_DATA_DIR``) as it stops: the folder is a
    volume, and Docker waits for the save at least as long as ``serve`` gives luigid before it kills it
    (``NECTAR_STOP_TIMEOUT``'s default), not its own default 10 s (before: no volume, 10 s)."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    luigid = compose["services"]["luigid"]
    found = re.search(r"NECTAR_DATA_DIR=(\S+)", (REPO / "Dockerfile").read_text())
    assert found is not None
    volumes = {volume.split(":")[0]: volume.split(":")[1] for volume in luigid.get("volumes", [])}
    assert found.group(1) in volumes.values(), volumes
    assert set(volumes) <= set(compose["volumes"])  # named volumes, kept by docker compose down
    grace = re.fullmatch(r"(\d+)s", luigid.get("stop_grace_period", "10s"))
    assert grace is not None and int(grace.group(1)) >= Settings.stop_timeout
