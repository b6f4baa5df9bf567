"""A chain task by its class name on luigi's command line: ``--module chains.etl.sales_chain CleanSalesTask``.

A chain task's luigi family is ``<type>.<chain>.<Class>`` (:func:`nectar.task.chain_namespace`):
unique in luigid, and the visualiser's folders are the chain types. luigi's command line finds a
task by its family in the registry of task classes; :func:`install` makes that registry also
answer a chain task's class name, unless a task is named so already (that one keeps the name) or
two chain tasks loaded in the process share it (then luigi answers that the name is ambiguous).
The short name serves the root task and its own flags (``--day``); luigi's flags and config
sections for the parameters of other tasks are named by family (``--etl.sales-chain.CleanSalesTask-rows``).

This is the one place that touches luigi's private ``Register._get_reg``.
"""

from __future__ import annotations

from typing import Any

from luigi.task_register import Register

_MARK = "_nectar_short_names"


def with_short_names(reg: dict[str, Any], base: type) -> dict[str, Any]:
    """``reg`` (family -> class) and, for each subclass of ``base`` there, its class name -> it."""
    short: dict[str, Any] = {}
    for family, cls in reg.items():
        if cls is Register.AMBIGUOUS_CLASS or not issubclass(cls, base) or cls.__name__ == family:
            continue
        known = short.get(cls.__name__)
        short[cls.__name__] = cls if known is None or known is cls else Register.AMBIGUOUS_CLASS
    return {**short, **reg}


def install(base: type) -> None:
    """Make luigi's registry answer the class names of ``base``'s subclasses too (once per process)."""
    if getattr(Register._get_reg, _MARK, False):
        return
    families = Register.__dict__["_get_reg"].__func__

    def _get_reg(cls: type) -> dict[str, Any]:
        return with_short_names(families(cls), base)

    setattr(_get_reg, _MARK, True)
    Register._get_reg = classmethod(_get_reg)  # type: ignore[method-assign,assignment]
