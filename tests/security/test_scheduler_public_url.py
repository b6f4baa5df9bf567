"""``NECTAR_SCHEDULER_PUBLIC_URL``: luigid's visualiser reached by browsers at another address than the one our
processes call (a proxy in front of it, another host). Through a real ``nectar serve``: a run's ``scheduler_url``
and the UI's visualiser link start with it, and luigid's guard answers its host name, not others. Before, the link
was built from luigid's internal address (``http://127.0.0.1:<port>``), a dead link for any remote client
(review17), and its name was refused 421 unless also listed in ``NECTAR_SCHEDULER_ALLOWED_HOSTS``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from nectar.config import Settings
from nectar.errors import InvalidSetting
from tests.conftest import wait_until
from tests.nectar.test_serve import HELLO, Served, _serve

PUBLIC = "http://luigid.nectar.example:8443"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("public-luigid"), {"NECTAR_SCHEDULER_PUBLIC_URL": f"{PUBLIC}/"})


def test_a_runs_visualiser_link_starts_with_the_schedulers_public_url(served: Served) -> None:
    answer = requests.post(f"{served.api}/api/chains/{HELLO}/TestS3Task", timeout=60)
    assert answer.status_code in (200, 202), answer.text
    status_url = answer.json()["data"]["status_url"]

    def done() -> dict[str, object] | None:
        status = requests.get(status_url, timeout=60).json()["data"]
        return status if status["job_status"] == "DONE" else None

    status = wait_until(done, timeout=60, interval=0.2)
    link = str(status["scheduler_url"])
    assert link.startswith(f"{PUBLIC}/static/visualiser/index.html#tab=graph&taskId="), link
    page = requests.get(f"{served.api}/", timeout=60)
    assert page.status_code == 200 and f'href="{PUBLIC}/static/visualiser/index.html"' in page.text


def test_luigids_guard_answers_the_public_name_and_no_other(served: Served) -> None:
    lists = f"{served.scheduler}/api/task_list?data={{}}"
    assert requests.get(lists, headers={"Host": "luigid.nectar.example:8443"}, timeout=60).status_code == 200
    assert requests.get(lists, headers={"Host": "luigid.nectar.example"}, timeout=60).status_code == 200
    assert requests.get(lists, headers={"Host": "other.nectar.example"}, timeout=60).status_code == 421


def test_a_scheduler_public_url_that_is_not_one_is_refused_naming_it() -> None:
    with pytest.raises(InvalidSetting, match="NECTAR_SCHEDULER_PUBLIC_URL must be an http"):
        Settings.from_env({"NECTAR_SCHEDULER_PUBLIC_URL": "luigid.nectar.example"})
