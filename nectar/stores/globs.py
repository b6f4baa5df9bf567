"""Globs on the paths below a listed prefix: ``*`` and ``?`` within a folder, ``**`` across folders, classes."""

from __future__ import annotations

import re
from typing import Any

from nectar.errors import InvalidParameters


def compile_glob(text: Any, field: str = "glob") -> re.Pattern[str]:
    """The pattern of a glob on paths below the prefix: ``*`` and ``?`` do not cross ``/``, ``**`` does
    (``**/`` also matches no folder at all), ``[abc]``, ``[a-z]`` and ``[!abc]`` are classes of one character.
    A glob that is empty or does not parse (an unbalanced ``[``, a bad range) is InvalidParameters naming
    ``field``; match it with ``fullmatch``."""
    if not isinstance(text, str) or not text:
        raise InvalidParameters({field: ["empty: give a pattern such as *.csv or **/*.csv"]})
    if text.startswith("/"):
        raise InvalidParameters({field: [f"{text!r} starts with '/': a glob matches paths below the prefix"]})
    parts, i = [], 0
    while i < len(text):
        char = text[i]
        if char == "*":
            end = i
            while end < len(text) and text[end] == "*":
                end += 1
            if end - i == 1:
                parts.append("[^/]*")
            elif text[end : end + 1] == "/" and (i == 0 or text[i - 1] == "/"):
                parts.append("(?:.*/)?")
                end += 1
            else:
                parts.append(".*")
            i = end
        elif char == "?":
            parts.append("[^/]")
            i += 1
        elif char == "[":
            body_start = i + 2 if text[i + 1 : i + 2] in ("!", "^") else i + 1
            close = text.find("]", body_start + 1)  # a "]" first in the class is one of its characters
            if close < 0:
                raise InvalidParameters({field: [f"unbalanced '[' at character {i + 1} of {text!r}"]})
            body = "".join(f"\\{c}" if c in "\\[]^&~|" else c for c in text[body_start:close])
            parts.append(f"[^/{body}]" if body_start > i + 1 else f"[{body}]")
            i = close + 1
        else:
            parts.append(re.escape(char))
            i += 1
    try:
        return re.compile("".join(parts))
    except re.error as exc:
        raise InvalidParameters({field: [f"not a glob: {exc.msg} in {text!r}"]}) from None


def literal_start(glob: str | None) -> str:
    """What every path a glob matches starts with (the part before its first wildcard), "" without one."""
    return re.split(r"[*?[]", glob, maxsplit=1)[0] if glob else ""
