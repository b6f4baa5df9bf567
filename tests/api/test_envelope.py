"""The answer envelope: an answer sent without a schema dump is written as Flask's ``jsonify`` writes it."""

from __future__ import annotations

import datetime
import uuid

import pytest
from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from api.envelope import compact_envelope, compact_provider, dumped_answer

#: what a status may hold: nested mappings (keys sorted), non-ASCII text, floats, None, and what Flask's ``default``
#: turns into JSON (a date, a UUID)
DATA = {
    "z": [1, 2.5, None, True],
    "key": "chains/t/c/Tâche/0/out.txt",
    "nested": {"b": {"y": 1, "x": "é\u2028"}, "a": []},
    "when": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "id": uuid.UUID(int=7),
}


#: ASCII text the encoders escape alike (a quote, a backslash, control characters), and text only ``ensure_ascii``
#: escapes: non-ASCII, and DEL (0x7f, ASCII itself)
ASCII = {"key": "chains/t/c/Task/0/out.txt", "error": 'a "quoted"\\path\n\t\x00\x1f~', "n": [1, 2.5, None]}
WITH_DEL = {"error": "before\x7fafter", "n": 1}


@pytest.mark.parametrize("data", [DATA, ASCII, WITH_DEL], ids=["non-ascii", "ascii", "del"])
@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("compact", [None, True, False])
def test_an_answer_sent_as_is_is_byte_for_byte_what_jsonify_writes(
    debug: bool, compact: bool | None, ensure_ascii: bool, data: dict[str, object]
) -> None:
    app = Flask(__name__)
    app.debug = debug
    assert isinstance(app.json, DefaultJSONProvider)  # a new app's: Flask's own, which these settings are of
    app.json.compact = compact
    app.json.ensure_ascii = ensure_ascii
    with app.app_context():
        expected = jsonify({"data": data, "message": "made", "status": 201})
        sent = dumped_answer(data, 201, "made")
    assert (sent.status_code, sent.mimetype, sent.get_data()) == (201, expected.mimetype, expected.get_data())


#: data whose every object has its keys in sorted order (as a status answer's), with text each encoder escapes
IN_ORDER = {"a": {"b": [{"c": 1, "d": "é"}], "e": None}, "f": 'a "quoted"\\path\x7f', "g": 2.5}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_an_answer_in_order_is_what_jsonify_writes_and_is_written_as_its_objects_go(ensure_ascii: bool) -> None:
    """``in_order``: the caller's objects have their keys in order already, so the sorted dump (jsonify's) is written
    without sorting them again: in the order they go (which, for objects out of order, would not be sorted)."""
    app = Flask(__name__)
    provider = compact_provider(app)
    assert provider is not None  # a new app's, out of debug: Flask's own, compact
    provider.ensure_ascii = ensure_ascii
    with app.app_context():
        expected = jsonify({"data": IN_ORDER, "message": "made", "status": 201}).get_data(as_text=True)

    assert compact_envelope(provider, IN_ORDER, 201, "made", in_order=True) == expected
    assert compact_envelope(provider, {"b": 1, "a": {"d": 2, "c": 3}}, 200, "ok", in_order=True) == (
        '{"data":{"b":1,"a":{"d":2,"c":3}},"message":"ok","status":200}\n'
    )
    assert compact_envelope(provider, {"b": 1, "a": {"d": 2, "c": 3}}, 200, "ok") == (
        '{"data":{"a":{"c":3,"d":2},"b":1},"message":"ok","status":200}\n'
    )
