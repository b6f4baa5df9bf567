"""review21 (on main): the README's single-container deploy (*Deploying*, "Docker": ``docker run -p
127.0.0.1:5000:5000 datanectar``, "Mount your own ``chains/`` at ``/srv/datanectar/chains`` and a volume at
``/srv/datanectar/nectar_data``") keeps the run registry on the volume but the outputs off it: the image sets no
``ENV`` (so ``local``) and no ``NECTAR_LOCAL_TARGETS``, so every ``out.txt``, ``params.txt`` and step log goes to
``/srv/datanectar/local_targets``, the container's own layer. The README's upgrade (stop, new image, start: a new
container) then keeps every run ``DONE`` in the registry and loses what they made: each such status reads
``MISSING``, a chain that failed at step 3 starts again at step 1, and the logs the statuses link to are gone. The
image should keep its outputs under what the README says to mount (or declare the folder a volume, or the README
say to mount it)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from harness import REPO
from nectar.config import Settings


def test_the_images_local_outputs_are_kept_where_the_readme_says_to_mount_a_volume() -> None:
    """The image's settings read from its ``ENV`` lines in its ``WORKDIR``; every folder of state must be under a
    mounted folder the README's Docker paragraph names, or a ``VOLUME`` of the image. Fails on main: local_targets
    is ``/srv/datanectar/local_targets``, the mounts are ``/srv/datanectar/chains`` and
    ``/srv/datanectar/nectar_data``, and the image declares no ``VOLUME``."""
    dockerfile = (REPO / "Dockerfile").read_text()
    environ = dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=(\S+?)\s*\\?$", dockerfile, re.MULTILINE))
    workdir = PurePosixPath(re.findall(r"^WORKDIR\s+(\S+)", dockerfile, re.MULTILINE)[-1])
    defaults = Settings()  # its folders as given, relative to the working folder (from_env resolves them here)
    assert environ.get("ENV", defaults.env) == "local", environ  # the README's `docker run`: the local store
    paragraph = next(part for part in (REPO / "README.md").read_text().split("\n\n") if "**Docker.**" in part)
    kept = {PurePosixPath(path) for path in re.findall(r"(/srv/datanectar/[\w/]+)", paragraph)}
    kept |= {PurePosixPath(path) for path in re.findall(r"^VOLUME\s+\[?\"?([^\"\]\s]+)", dockerfile, re.MULTILINE)}
    state = {
        "data": environ.get("NECTAR_DATA_DIR", str(defaults.data_dir)),
        "local targets": environ.get("NECTAR_LOCAL_TARGETS", str(defaults.local_targets_dir)),
    }
    lost = {
        name: workdir / folder
        for name, folder in state.items()
        if not any((workdir / folder).is_relative_to(mount) for mount in kept)
    }
    assert not lost, (lost, kept)
