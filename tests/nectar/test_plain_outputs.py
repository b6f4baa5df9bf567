"""A task's outputs as a status lists them: each target where the task puts it, a URL only for a file
that exists where the service may serve it, else a note saying why."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3
import luigi
import pytest
from luigi.contrib.s3 import S3Target

from nectar.catalog.loader import load_chain_module
from nectar.config import Settings
from nectar.errors import InvalidKey, NotFound
from nectar.keys import TargetKey
from nectar.outputs import Output, has_store_output, resource_note, served_file, status_outputs
from nectar.registry import RetryPolicy, Run, RunState
from nectar.status import JobStatus
from nectar.stores import get_store
from nectar.task import NectarTask

KEY = TargetKey("plain", "outputs_chain", "SomeTask", "c" * 32)


def done(params: dict[str, str] | None = None, state: RunState = RunState.DONE) -> JobStatus:
    run = Run.new(KEY.path, "plain", "outputs_chain", "SomeTask", params or {}, "SomeTask__x", RetryPolicy(0, 0, 1))
    return JobStatus(KEY, state.value, run)


def outputs_of(task_cls: type[luigi.Task], settings: Settings, status: JobStatus | None = None) -> list[Output]:
    return status_outputs(status or done(), task_cls, get_store(settings), settings)


def local_task(*paths: Path) -> type[luigi.Task]:
    class LocalOutputs(luigi.Task):
        n = luigi.IntParameter(default=len(paths))

        def output(self) -> list[luigi.LocalTarget]:
            return [luigi.LocalTarget(str(path)) for path in paths[: self.n]]

    return LocalOutputs


def test_local_outputs_are_served_only_under_an_allowed_folder_and_when_they_exist(
    settings: Settings, tmp_path: Path
) -> None:
    inside = settings.local_targets_dir / "mine" / "a.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("a,b\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    link = settings.local_targets_dir / "mine" / "link.txt"  # under the folder, but leading out of it
    link.symlink_to(outside)
    missing = settings.local_targets_dir / "mine" / "later.txt"
    folder = settings.local_targets_dir / "mine"

    found = outputs_of(local_task(inside, outside, link, missing, folder), settings)
    assert [output.target for output in found] == [str(inside), str(outside), str(link), str(missing), str(folder)]
    assert found[0] == Output(str(inside), path=str(inside.resolve()))
    assert [output.note for output in found[1:]] == [
        "not under a folder the service serves (local_targets, NECTAR_OUTPUT_ROOTS)",
        "not under a folder the service serves (local_targets, NECTAR_OUTPUT_ROOTS)",
        "does not exist",
        "is a folder, not a file",
    ]
    assert resource_note(done(), found) is None

    wider = settings.replace(output_roots=str(tmp_path))
    assert outputs_of(local_task(outside), wider)[0].path == str(outside.resolve())


def test_served_file_refuses_what_is_no_longer_under_an_allowed_folder(settings: Settings, tmp_path: Path) -> None:
    served = settings.local_targets_dir / "x.txt"
    served.parent.mkdir(parents=True)
    served.write_text("x\n")
    assert served_file(str(served), settings) == served.resolve()
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    served.unlink()
    served.symlink_to(outside)  # swapped for a link out after its URL was signed
    for path, error in [
        (str(served), "resolves outside"),
        (f"{settings.local_targets_dir}/../outside.txt", "resolves outside"),
        ("outside.txt", "not absolute"),
    ]:
        with pytest.raises(InvalidKey, match=error):
            served_file(path, settings)
    with pytest.raises(NotFound):
        served_file(str(settings.local_targets_dir / "gone.txt"), settings)


def test_an_output_that_raises_is_named_and_not_retried_per_poll(settings: Settings) -> None:
    calls = []

    class Broken(luigi.Task):
        def output(self) -> luigi.Target:
            calls.append(1)
            raise FileNotFoundError("hadoop")

    status = done()
    for _ in range(3):
        found = outputs_of(Broken, settings, status)
        assert found == [Output("", note="output() raised FileNotFoundError: hadoop")]
    assert resource_note(status, found) == "output() raised FileNotFoundError: hadoop"
    assert len(calls) == 1  # cached by class and key


def test_outputs_of_a_task_not_done_have_no_url(settings: Settings) -> None:
    target = settings.local_targets_dir / "a.txt"
    target.parent.mkdir(parents=True)
    target.write_text("from an older run\n")
    found = outputs_of(local_task(target), settings, done(state=RunState.RUNNING))
    assert found == [Output(str(target), note="the task is RUNNING, not DONE")]


def test_a_task_without_output_or_run_says_so(settings: Settings) -> None:
    assert outputs_of(luigi.Task, settings) == []
    assert resource_note(done(), []) == "SomeTask has no output"
    assert resource_note(JobStatus(KEY, "UNKNOWN"), []) == "SomeTask has no run here: its outputs are unknown"


def test_a_nectar_task_keeps_its_md5_output_known_without_instantiating_it(
    settings: Settings, write_chain: Callable[[str, str], Path]
) -> None:
    path = write_chain(
        "plain/nectar_outputs_chain",
        "import luigi\nfrom nectar import NectarTask\n\n"
        "class KeyedTask(NectarTask):\n    needed = luigi.Parameter()\n\n"
        "class OwnOutputTask(NectarTask):\n    def output(self):\n        return luigi.LocalTarget('/nowhere/x')\n",
    )
    module = load_chain_module(path, "plain", "nectar_outputs_chain")
    keyed, own = module.KeyedTask, module.OwnOutputTask
    assert has_store_output(keyed) and not has_store_output(own) and has_store_output(None)
    key = TargetKey("plain", "nectar_outputs_chain", "KeyedTask", "d" * 32)
    stored = settings.local_targets_dir / key.path
    stored.parent.mkdir(parents=True)
    stored.write_text("done\n")
    status = JobStatus(key, "DONE", None, [], None, 600)  # as job_status answers it: no run, its params unknown
    assert status_outputs(status, keyed, get_store(settings), settings) == [Output(str(stored), key=key)]
    assert issubclass(keyed, NectarTask)


def test_s3_outputs_are_presigned_only_when_they_exist_in_a_reachable_bucket(s3_settings: Settings) -> None:
    bucket = s3_settings.bucket
    boto3.client("s3").put_object(Bucket=bucket, Key="plain/top.txt", Body=b"top 10\n")
    uris = [f"s3://{bucket}/plain/top.txt", f"s3://{bucket}/plain/later.txt", "s3://no-such-bucket-16/x.txt"]

    class S3Outputs(luigi.Task):
        def output(self) -> dict[str, S3Target]:
            return {name: S3Target(uri) for name, uri in zip("abc", uris, strict=True)}

    found = outputs_of(S3Outputs, s3_settings)
    assert [output.target for output in found] == uris
    assert found[0].url and found[0].note is None
    with urllib.request.urlopen(found[0].url, timeout=60) as answer:  # noqa: S310 - moto's presigned URL
        assert answer.read() == b"top 10\n"
    assert (found[1].url, found[1].note) == (None, "does not exist")
    assert found[2].url is None and found[2].note == "bucket no-such-bucket-16 is not reachable by the service"


def test_output_roots_must_be_absolute(settings: Settings, tmp_path: Path) -> None:
    extra = settings.replace(output_roots=os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert extra.output_root_paths == (settings.local_targets_dir, tmp_path / "a", tmp_path / "b")
    with pytest.raises(ValueError, match="NECTAR_OUTPUT_ROOTS must list absolute folders, not 'relative'"):
        settings.replace(output_roots=f"{tmp_path}{os.pathsep}relative")
    assert Settings.from_env({"NECTAR_OUTPUT_ROOTS": str(tmp_path)}).output_root_paths[1] == tmp_path


def test_a_status_without_run_lists_outputs_from_the_params_it_carries(settings: Settings) -> None:
    """A submission answered DONE knows its task's parameters, though no run of this registry made it."""
    target = settings.local_targets_dir / "two.txt"
    target.parent.mkdir(parents=True)
    target.write_text("2\n")
    status = JobStatus(KEY, "DONE", params={"n": "1"})
    found = outputs_of(local_task(target, settings.local_targets_dir / "other.txt"), settings, status)
    assert found == [Output(str(target), path=str(target.resolve()))]
