"""The visualiser's link to a task (:meth:`nectar.luigid.SchedulerClient.task_url`), in every status answer."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from nectar.luigid import SchedulerClient

URL = "http://127.0.0.1:8082"
IDS = [
    "bench.ProbeTask_5_6cb1e0d3c5",
    "",
    *(f"Task_{chr(code)}_{chr(code)}x" for code in range(128)),
    "Täsk_é_☃",
    "a b+c&d=e#f?g%h",
]


@pytest.mark.parametrize("task_id", IDS)
def test_a_task_s_visualiser_url_quotes_its_id_as_quote_does(task_id: str) -> None:
    """Whatever its characters (every ASCII one, and others), the id is in the URL as ``quote`` writes it: as it is
    when ``quote`` leaves it so, which the link skips ``quote`` for."""
    expected = f"{URL}/static/visualiser/index.html#tab=graph&taskId={quote(task_id)}"
    assert SchedulerClient(URL).task_url(task_id) == expected
