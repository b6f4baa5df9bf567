"""A chain that fails to import says where, over HTTP: the catalog, the 404 of its tasks and the UI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

WriteChain = Callable[[str, str], Path]

COUNTER = (
    "import luigi\nfrom nectar import NectarTask\n\n\nclass CounterTask(NectarTask)\n    n = luigi.IntParameter()\n"
)
#: the error is raised in a helper the module calls: the innermost frame of the chain file is the helper's line
CALLING = "import json\n\n\ndef settings():\n    return json.loads('{not json')\n\n\nSETTINGS = settings()\n"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (COUNTER, "SyntaxError: expected ':' (counter_chain.py, line 5)"),
        (
            CALLING,
            "JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) "
            "(counter_chain.py, line 5)",
        ),
    ],
    ids=["syntax", "raised"],
)
def test_an_import_error_names_the_file_and_line(
    client: FlaskClient, write_chain: WriteChain, source: str, error: str
) -> None:
    write_chain("broken/counter_chain", source)

    catalog = client.get("/api/chains").get_json()["data"]
    chain = next(c for t in catalog if t["name"] == "broken" for c in t["chains"])
    assert chain["error"].endswith(error), chain
    answer = client.post("/api/chains/broken/counter_chain/CounterTask", json={"n": 1})
    assert answer.status_code == 404, answer.get_json()
    assert answer.get_json()["message"].endswith(f"failed to import: {chain['error']}")
    page = client.get("/").get_data(as_text=True)
    assert error.replace("'", "&#39;") in page
