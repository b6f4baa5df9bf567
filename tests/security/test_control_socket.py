"""The API's gunicorn opens no control socket: nothing but HTTP reaches it, and two APIs on a machine share nothing."""

from __future__ import annotations

from pathlib import Path

from harness import Processes
from nectar.config import Settings


def test_the_api_listens_on_no_control_socket(settings: Settings, processes: Processes, tmp_path: Path) -> None:
    """gunicorn ≥ 25 would make ``$XDG_RUNTIME_DIR/gunicorn.ctl`` (gunicornc: change workers, reload, shut down)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    processes.nectar_api(settings, env={"XDG_RUNTIME_DIR": str(runtime)})
    assert list(runtime.iterdir()) == []
