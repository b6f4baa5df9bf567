"""A condition that holds poll after poll is said again when what it says changes: a watched folder gone, then
there again as a file (another reason it cannot be listed), is two WARNINGs, each naming its own reason."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from nectar.service import Nectar
from nectar.triggers.loop import TriggerLoop
from tests.clock import Clock
from tests.triggers.test_core import api_trigger, declared, landing, nectar  # noqa: F401  (fixtures)
from tests.triggers.test_held_conditions_logged import passes


def test_a_folder_that_cannot_be_listed_for_another_reason_is_said_again(
    nectar: Nectar,  # noqa: F811
    landing: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The watched folder gone for two polls: one WARNING; a file put in its place for two polls: one WARNING more,
    with the file's own error; the folder back: one INFO. Before, the condition was tracked by its kind ("cannot
    list") alone: the second reason was never said, the log still telling the user the folder did not exist."""
    clock = Clock(2_000_000_000.0)
    trigger_id = api_trigger(nectar, landing, existing="all")
    loop = TriggerLoop(nectar.triggers, clock=clock.time)
    assert passes(loop, clock, caplog, 1) == []
    away = landing.with_name("landing-away")
    os.rename(landing, away)
    gone = passes(loop, clock, caplog, 2)
    assert [level for level, _ in gone] == [logging.WARNING], gone
    landing.write_text("not a folder")
    other = passes(loop, clock, caplog, 2)
    assert [level for level, _ in other] == [logging.WARNING], other
    assert trigger_id in other[0][1] and "cannot list" in other[0][1] and other[0][1] != gone[0][1], (gone, other)
    landing.unlink()
    os.rename(away, landing)
    assert passes(loop, clock, caplog, 2) == [(logging.INFO, f"trigger {trigger_id}: lists again")]
