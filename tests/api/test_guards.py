"""The app-wide hooks (api/guards.py): one before every view, one after; the checks in order, refusals timed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from nectar.config import Settings
from tests.api.conftest import build_app
from tests.api.test_auth import WRITER, bearer, entry

CHAINS = "/api/chains/testchains"
CHAINS_RULE = "/api/chains/<chain_type>"


@pytest.mark.parametrize("tokens", [False, True], ids=["no tokens", "tokens"])
def test_one_hook_runs_before_every_view_and_one_after(settings: Settings, tokens: bool) -> None:
    """Flask looks up and wraps each hook on every request: the checks are one hook each way, not one each."""
    app: Flask = build_app(settings.replace(api_tokens=entry(WRITER, "write", "ci")) if tokens else settings)

    assert {name: len(hooks) for name, hooks in app.before_request_funcs.items() if hooks} == {None: 1}
    assert len(app.after_request_funcs[None]) == 1


def test_the_checks_refuse_in_their_order_and_every_refusal_is_timed(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    """A foreign Host is refused before its token is asked for, a cross-site write before its token is looked at;
    the refusals are timed like any answer (the clock starts first)."""
    secured = client_for(settings.replace(api_tokens=entry(WRITER, "write", "ci")))

    foreign = secured.get(CHAINS, headers={"Host": "evil.example"})
    cross_site = secured.post(f"{CHAINS}/x/y", headers={"Origin": "http://evil.example", "Authorization": "Bearer x"})
    tokenless = secured.get(CHAINS)

    assert (foreign.status_code, cross_site.status_code, tokenless.status_code) == (421, 403, 401)
    metrics = secured.get("/metrics", headers=bearer(WRITER)).get_data(as_text=True)
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    samples = families["nectar_http_request_duration_seconds"].samples
    counts = {(s.labels["endpoint"], s.labels["status"]): s.value for s in samples if s.name.endswith("_count")}
    assert counts[(CHAINS_RULE, "421")] >= 1 and counts[(CHAINS_RULE, "401")] >= 1
