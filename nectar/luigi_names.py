"""A chain task by its class name on luigi's command line: ``--module chains.etl.sales_chain CleanSalesTask``.

A chain task's luigi family is ``<type>.<chain>.<Class>`` (:func:`nectar.task.chain_namespace`):
unique in luigid, and the visualiser's folders are the chain types. luigi's command line finds a
task by its family in the registry of task classes; :func:`install` makes that registry also
answer a chain task's class name, and the aliases its chain file binds to it
(``Top10ArtistsTask = Top10Artists``, :mod:`nectar.exposure`), unless a task is named so already (that
one keeps the name) or two chain tasks loaded in the process share it (then luigi answers that the name
is ambiguous).
The short name serves the root task and its own flags (``--day``); luigi's flags and config
sections for the parameters of other tasks are named by family (``--etl.sales-chain.CleanSalesTask-rows``).

luigi's registry is extended through :func:`nectar.luigi_internals.extend_task_registry`.
"""

from __future__ import annotations

import sys
from typing import Any

from luigi.task_register import Register

from nectar.exposure import names_of
from nectar.luigi_internals import extend_task_registry


def with_short_names(reg: dict[str, Any], base: type) -> dict[str, Any]:
    """``reg`` (family -> class) and, for each subclass of ``base`` there, its class name and the other
    names its module binds to it -> it."""
    short: dict[str, Any] = {}
    bound: dict[str, dict[type, list[str]]] = {}  # module name -> class -> names, read once per module
    for family, cls in reg.items():
        if cls is Register.AMBIGUOUS_CLASS or not issubclass(cls, base):
            continue
        module = sys.modules.get(cls.__module__)
        if module is not None and cls.__module__ not in bound:
            bound[cls.__module__] = names_of(module)
        aliases = bound.get(cls.__module__, {}).get(cls, [])
        for name in dict.fromkeys([cls.__name__, *aliases]):
            if name == family:
                continue
            known = short.get(name)
            short[name] = cls if known is None or known is cls else Register.AMBIGUOUS_CLASS
    return {**short, **reg}


def install(base: type) -> None:
    """Make luigi's registry answer the class names of ``base``'s subclasses too (once per process)."""
    extend_task_registry(lambda reg: with_short_names(reg, base))
