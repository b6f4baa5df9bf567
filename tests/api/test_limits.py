"""Request limits: body size (413), parameter count (413), parameter length (422 per field)."""

from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient

from nectar.config import Settings

DEP = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"


def test_a_body_beyond_the_limit_is_413(settings: Settings, client_for: Callable[[Settings], FlaskClient]) -> None:
    client = client_for(settings.replace(max_body=1000))
    answer = client.post(DEP, json={"aparam": "x" * 2000})
    assert answer.status_code == 413
    assert answer.get_json()["message"].startswith("Request Entity Too Large")
    assert client.post(DEP, json={"aparam": "small"}).status_code == 202


def test_too_many_parameters_is_413(settings: Settings, client_for: Callable[[Settings], FlaskClient]) -> None:
    client = client_for(settings.replace(max_params=3))
    answer = client.post(DEP, query_string={f"p{n}": "1" for n in range(4)})
    assert answer.status_code == 413
    assert answer.get_json()["message"] == "4 parameters sent; at most 3 are accepted"


def test_an_overlong_value_is_422_naming_the_field(
    settings: Settings, client_for: Callable[[Settings], FlaskClient]
) -> None:
    client = client_for(settings.replace(max_param_length=10))
    for answer in (client.post(DEP, query_string={"aparam": "x" * 11}), client.post(DEP, json={"aparam": ["y"] * 5})):
        assert answer.status_code == 422
        assert answer.get_json()["errors"] == {"aparam": ["longer than 10 characters"]}
    assert client.post(DEP, query_string={"aparam": "x" * 10}).status_code == 202
