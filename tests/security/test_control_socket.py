"""The API's gunicorn opens no control socket: nothing but HTTP reaches it, and two APIs on a machine share nothing."""

from __future__ import annotations

from pathlib import Path

from harness import Processes, base_env, free_port, settings_env
from nectar.config import Settings


def test_the_api_listens_on_no_control_socket(settings: Settings, tmp_path: Path) -> None:
    """gunicorn ≥ 25 would make ``$XDG_RUNTIME_DIR/gunicorn.ctl`` (gunicornc: change workers, reload, shut down)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    processes = Processes(tmp_path / "logs")
    try:
        processes.api(free_port(), base_env() | settings_env(settings) | {"XDG_RUNTIME_DIR": str(runtime)}, workers=1)
        assert list(runtime.iterdir()) == []
    finally:
        processes.close()
