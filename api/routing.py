"""URL rules whose builders are compiled on first use.

werkzeug compiles two URL builders for every rule as it is added to an app's map (``Rule.compile``: Python code made
from an AST and ``compile()``d, one for ``url_for`` with the rule's own values and one that appends unknown ones as a
query string): ~60 % of the CPU of making the app (~25 of ~42 ms here, for ~40 rules), paid by every process that
makes one (gunicorn's master, ``nectar api``, each test's app), while the service builds URLs for a handful of its
endpoints (a status's links, a run's cancel URL). :class:`LazyBuildRule` compiles a builder the first time it builds
a URL; matching (the rule's regular expression and converters) is made as werkzeug makes it.

werkzeug's seam (STYLE.md "Seams"): ``Rule._compile_builder``, the one private name of werkzeug the service reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import Rule


class LazyBuildRule(Rule):
    """A werkzeug :class:`~werkzeug.routing.Rule` whose two URL builders are compiled when first called (Flask's
    ``url_rule_class``); a URL it builds is the same as werkzeug's."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compiled: Callable[..., tuple[str, str]] | None = None

        def build(rule: Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            nonlocal compiled
            if compiled is None:  # two threads may both compile it: the same code, either kept
                compiled = Rule._compile_builder(rule, append_unknown)
            return compiled(rule, *args, **kwargs)

        return build
