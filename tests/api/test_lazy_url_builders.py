"""The app's URL builders are compiled when first used (:mod:`api.routing`), and build what werkzeug's build."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from werkzeug.routing import Rule

from api.routing import LazyBuildRule
from nectar.config import Settings
from tests.api.conftest import build_app


def test_making_the_app_compiles_no_url_builder(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: two builders compiled for each of the app's ~40 rules as it was made, ~60 % of its CPU."""
    compiled: list[str] = []
    real = Rule._compile_builder

    def counted(rule: Rule, append_unknown: bool = True):  # type: ignore[no-untyped-def]
        compiled.append(rule.rule)
        return real(rule, append_unknown)

    monkeypatch.setattr(Rule, "_compile_builder", counted)
    app = build_app(settings)
    assert len(list(app.url_map.iter_rules())) > 10
    assert compiled == []
    with app.test_request_context():
        from flask import url_for

        assert url_for("runs.RunById", run_id="abc") == "/api/runs/abc"
    assert compiled == ["/api/runs/<run_id>"]  # the one builder url_for needs, once


def test_every_rule_builds_what_werkzeugs_own_rule_builds(settings: Settings) -> None:
    """Each of the app's rules, its values and an unknown one (a query string), built by a lazy rule and by
    werkzeug's own, in a map of each kind: the same URL."""
    app = build_app(settings)
    plain = Flask("plain")
    plain.url_map.strict_slashes = False
    lazy = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    assert all(isinstance(rule, LazyBuildRule) for rule in lazy.values())
    for endpoint, rule in lazy.items():
        plain.add_url_rule(rule.rule, endpoint=endpoint, methods=rule.methods)
    for endpoint, rule in lazy.items():
        values = {
            name: f"v{index}/x y" if "path" in rule.rule else f"v{index}"
            for index, name in enumerate(sorted(rule.arguments))
        }
        for extra in ({}, {"extra": "a b&c"}):
            with app.test_request_context(), plain.test_request_context():
                ours = app.url_map.bind("localhost").build(endpoint, {**values, **extra})
                theirs = plain.url_map.bind("localhost").build(endpoint, {**values, **extra})
            assert ours == theirs, (endpoint, ours, theirs)
            assert not re.search(r"<\w+>", ours), ours
