"""Where an attempt's records go: the worker's log at its own level, a step's stderr log once each, luigi's at
luigi.cfg's level there (luigi's defaults: DEBUG)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: an attempt's process as a worker forks it (its stderr the worker's log), luigi at its default level (DEBUG), a
#: step's output captured in between; luigi's loggers set as ``luigi.build`` sets them
ATTEMPT = """
import logging, sys
from pathlib import Path
from nectar.attempt import quiet_luigi
from nectar.logs.capture import open_log, redirect_output
from nectar.logs.format import configure_logging

configure_logging("text")
for name in ("luigi", "luigi-interface"):
    logging.getLogger(name).setLevel(logging.DEBUG)
luigi_log, chain_log = logging.getLogger("luigi-interface"), logging.getLogger("chain")
quiet_luigi()
luigi_log.debug("Checking if Leaf(i=1) is complete")
luigi_log.info("Informed scheduler that task Leaf_1 has status PENDING")
out, err = open_log(Path(sys.argv[1])), open_log(Path(sys.argv[2]))
with redirect_output(out, err):
    chain_log.info("the step says")
    chain_log.debug("below the level")
    luigi_log.debug("Path s3://bucket/key does not exist")
    logging.getLogger("luigi").debug("luigi's own logger")
    luigi_log.info("a luigi line in the step")
    for handler in logging.getLogger().handlers:  # the step's code quiets every handler it finds: its own step only
        handler.setLevel(logging.CRITICAL)
out.close(), err.close()
quiet_luigi()  # the next attempt of the same process (``nectar run``)
luigi_log.debug("Asking scheduler for work...")
luigi_log.info("Informed scheduler that task Leaf_1 has status DONE")
with redirect_output(open_log(Path(sys.argv[1])), open_log(Path(sys.argv[3]))):
    luigi_log.debug("again in a step")
with redirect_output(open_log(Path(sys.argv[1])), open_log(Path(sys.argv[4]))):
    chain_log.warning("a third step")
"""


def messages(text: str) -> list[str]:
    """Each line's level, logger and message (its time left out)."""
    return [line.split(" ", 2)[2] for line in text.splitlines()]


def test_luigis_debug_records_reach_a_steps_log_once_each_and_the_workers_log_only_at_its_level(
    tmp_path: Path,
) -> None:
    step_err, again, third = tmp_path / "stderr.log", tmp_path / "again.log", tmp_path / "third.log"
    result = subprocess.run(
        [sys.executable, "-c", ATTEMPT, str(tmp_path / "stdout.log"), str(step_err), str(again), str(third)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    # the step's log: each record once (the worker's own handler writes to descriptor 2 too), luigi's at its level
    assert messages(step_err.read_text()) == [
        "INFO chain: the step says",
        "DEBUG luigi-interface: Path s3://bucket/key does not exist",
        "DEBUG luigi: luigi's own logger",
        "INFO luigi-interface: a luigi line in the step",
    ]
    assert messages(again.read_text()) == ["DEBUG luigi-interface: again in a step"]
    assert messages(third.read_text()) == ["WARNING chain: a third step"]  # each step's records in its own log
    # the worker's log: at its level (INFO), luigi's records too; none of the step's
    assert messages(result.stderr) == [
        "INFO luigi-interface: Informed scheduler that task Leaf_1 has status PENDING",
        "INFO luigi-interface: Informed scheduler that task Leaf_1 has status DONE",
    ]
