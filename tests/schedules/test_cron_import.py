"""croniter is imported when a process first reads a cron expression, not when it starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from harness.processes import base_env, settings_env
from nectar.config import Settings


def test_croniter_and_its_file_subprocess_wait_for_the_first_cron_expression(settings: Settings) -> None:
    """Importing croniter runs ``file`` on the interpreter (``platform.architecture()``) and costs ~30 ms: the API,
    luigid's guard and the workers start without it, and the first cron read (or a refused one) imports it."""
    program = textwrap.dedent(
        """
        import sys

        started = []
        sys.addaudithook(lambda event, args: started.append(args) if event == "subprocess.Popen" else None)
        import app

        app.create_app()
        import nectar.schedules.times as times

        assert "croniter" not in sys.modules, "croniter imported at start"
        assert not started, started
        try:
            times.Timing(cron="61 * * * *")
        except times.InvalidTiming as refused:
            print(refused)
        assert "croniter" in sys.modules
        assert times.Timing(cron="0 3 * * *").next_after(0.0) == 3 * 3600.0
        """
    )
    env = base_env() | settings_env(settings)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert "61" in done.stdout  # croniter's own reason for refusing the minute, through the lazily imported module
