"""review16 (round 62): the outputs a status lists for a plain luigi task (``nectar/outputs.py``: its ``output()``,
made again from the run's parameters) are the targets luigi's task names, the files its run made. They are made
from the run's ``to_str_params`` text, defaults included, read back by ``from_str_params`` (``outputs.py:111``): a
default whose text reads back as another value names another file (``ratio-<n>-1.0`` for ``FloatParameter(default=1)``,
where luigi's task and, with wt62-plain's ``as_given_to_luigi``, the worker's make ``ratio-<n>-1``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nectar.keys import TargetKey
from nectar.outputs import status_outputs
from nectar.registry import RunState
from tests.nectar.test_review15_luigid_view import Served, module_served, served_alike  # noqa: F401 (fixtures)
from tests.nectar.test_review16_defaults import SHARED_CHAIN  # noqa: F401 (module_served's chain file)
from tests.nectar.test_review16_none_default import under_luigi
from tests.nectar.test_spare import ended


@pytest.mark.parametrize("task", ["RatioTask", "SizeTask"])
def test_a_status_lists_the_targets_luigis_task_names(
    served_alike: Served,  # noqa: F811 (the fixture: the module's worker, each case its own n)
    task: str,
) -> None:
    served, base, out = served_alike, {"RatioTask": 500, "SizeTask": 600}[task], Path(os.environ["REVIEW15_OUT"])
    chain = served.nectar.settings.chains_dir / "review15" / "default_chain.py"
    said = under_luigi(chain, served.luigid, task, {"n": str(base)})
    named = sorted(path.name.replace(str(base), "<n>") for path in out.glob(f"*-{base}-*"))
    assert len(named) == 1, said
    submission = served.nectar.submit("review15", "default_chain", task, {"n": base + 1})
    assert submission.run is not None
    run = ended(served.nectar, submission.run.id)
    assert run.state == RunState.DONE, run.error
    status = served.nectar.status(TargetKey.parse(run.key))
    cls = served.nectar.task("review15", "default_chain", task).cls
    listed = status_outputs(status, cls, served.nectar.store, served.nectar.settings)
    assert [Path(output.target).name.replace(str(base + 1), "<n>") for output in listed] == named, listed
