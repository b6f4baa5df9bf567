"""The home page lists chains and tasks with links, escapes what chains say, links luigi when known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings


def test_the_page_lists_chains_and_tasks_escaped(client: FlaskClient, write_chain: Callable[[str, str], Path]) -> None:
    write_chain(
        "odd/tricky_chain",
        'from nectar import NectarTask\nclass TrickyTask(NectarTask):\n    """<script>alert(1)</script>"""\n',
    )
    write_chain("odd/broken_chain", "raise ValueError('<b>bad</b>')\n")
    answer = client.get("/")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    page = answer.get_data(as_text=True)
    assert 'href="http://localhost/api/chains/etl/sales_chain/AggregateSalesTask"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert 'href="/api/docs"' in page
    assert "visualiser" not in page


def test_the_page_links_the_luigi_visualiser(
    settings: Settings, luigid: str, client_for: Callable[[Settings], FlaskClient]
) -> None:
    page = client_for(settings.replace(scheduler_url=luigid)).get("/").get_data(as_text=True)
    assert f'href="{luigid}/static/visualiser/index.html"' in page
