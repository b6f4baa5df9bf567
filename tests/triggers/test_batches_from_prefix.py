"""``POST /api/batches``: a run per object (or group) under a local folder or a moto S3 prefix, as batches are."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from harness import STOP_TIMEOUT, Processes, base_env, settings_env
from nectar.config import Settings
from nectar.registry.sqlite import SQLiteRunStore
from tests.api.conftest import build_app, finished
from tests.helpers.module_api import local_settings
from tests.helpers.registries import closed_at_end

#: a chain whose tasks read the objects they are given: one, or a list of them
LANDING_CHAIN = '''"""Loads the files of a landing folder or bucket."""

import boto3
import luigi

from nectar import NectarTask


def read(uri):
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    with open(uri) as handle:
        return handle.read()


class LoadFileTask(NectarTask):
    """Copy one file."""

    path = luigi.Parameter()
    day = luigi.Parameter(default="any")

    def run(self):
        with self.output().open("w") as out:
            out.write(read(self.path))


class LoadFilesTask(NectarTask):
    """Copy many files, one after the other."""

    paths = luigi.ListParameter()

    def run(self):
        with self.output().open("w") as out:
            out.write("".join(read(path) for path in self.paths))
'''
LOAD_FILE = "landing/files_chain/LoadFileTask"
LOAD_FILES = "landing/files_chain/LoadFilesTask"


class Landing:
    """A folder of this machine or a prefix of a moto bucket, and a way to put files in it."""

    def __init__(self, kind: str, prefix: str, put: Callable[[str, str], None]) -> None:
        self.kind, self.prefix, self.put = kind, prefix, put

    def uri(self, relative: str) -> str:
        return f"{self.prefix}{relative}"


@pytest.fixture(params=["local", "s3"])
def landing(request: pytest.FixtureRequest, tmp_path: Path) -> Landing:
    if request.param == "local":
        root = tmp_path / "landing"

        def write(relative: str, text: str) -> None:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(text)

        return Landing("local", f"{root}/", write)
    import boto3

    env = request.getfixturevalue("s3_env")
    bucket = f"{env['ENV']}.{env['PROJECT_BUCKET']}"
    client = boto3.client("s3")
    return Landing(
        "s3",
        f"s3://{bucket}/landing/",
        lambda relative, text: client.put_object(Bucket=bucket, Key=f"landing/{relative}", Body=text.encode()),
    )


@pytest.fixture
def client(settings: Settings, write_chain: Callable[[str, str], Path]) -> FlaskClient:
    write_chain("landing/files_chain", LANDING_CHAIN)
    return build_app(settings).test_client()


def batch(client: FlaskClient, body: dict[str, Any], query: str = "") -> tuple[int, dict[str, Any]]:
    answer = client.post(f"/api/batches{query}", json=body)
    return answer.status_code, answer.get_json()


def run_params(client: FlaskClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [client.get(f"/api/runs/{row['run_id']}").get_json()["data"]["params"] for row in rows]


def test_a_run_per_object_given_its_uri_reads_it_to_done_and_again_queues_nothing(
    client: FlaskClient, settings: Settings, landing: Landing, start_worker: Callable[..., object]
) -> None:
    for name in ("b.csv", "a.csv", "2024/c.csv"):
        landing.put(name, f"{name} rows\n")
    landing.put("notes.txt", "not a csv\n")
    landing.put("_SUCCESS", "")
    body = {"task": LOAD_FILE, "from_prefix": landing.prefix, "param": "path", "glob": "**/*.csv"}

    status, answer = batch(client, {**body, "params": {"day": "2024-01-31"}})

    assert status == 200, answer
    data = answer["data"]
    assert (data["objects"], data["counts"]) == (3, {"queued": 3, "done": 0, "invalid": 0, "unavailable": 0})
    uris = [landing.uri(name) for name in ("2024/c.csv", "a.csv", "b.csv")]  # in key order
    assert [(row["row"], row["status"], row["params"]) for row in data["rows"]] == [
        (number, 202, {"day": "2024-01-31", "path": uri}) for number, uri in enumerate(uris, start=1)
    ]
    assert run_params(client, data["rows"]) == [{"path": uri, "day": "2024-01-31"} for uri in uris]
    start_worker(settings, workers=2)
    for row, name in zip(data["rows"], ("2024/c.csv", "a.csv", "b.csv"), strict=True):
        done = finished(client, row["status_url"])
        assert done["job_status"] == "DONE", done
        assert client.get(done["resource_url"]).data == f"{name} rows\n".encode()

    status, again = batch(client, {**body, "params": {"day": "2024-01-31"}})

    assert status == 200 and again["data"]["counts"]["done"] == 3, again
    assert closed_at_end(SQLiteRunStore(settings.registry_path)).count() == 3


def test_a_run_per_group_gives_a_list_parameter_up_to_batch_size_objects(
    client: FlaskClient, settings: Settings, landing: Landing
) -> None:
    names = [f"part-{n}.csv" for n in range(5)]
    for name in names:
        landing.put(name, f"{name}\n")

    status, answer = batch(
        client, {"task": LOAD_FILES, "from_prefix": landing.prefix, "param": "paths", "batch_size": 2}
    )

    assert status == 200, answer
    rows = answer["data"]["rows"]
    groups = [[landing.uri(name) for name in names[start : start + 2]] for start in (0, 2, 4)]
    assert [row["params"] for row in rows] == [{"paths": group} for group in groups]
    assert [row["status"] for row in rows] == [202, 202, 202] and answer["data"]["objects"] == 5
    assert [params["paths"] for params in run_params(client, rows)] == [json.dumps(group) for group in groups]


def test_relative_gives_the_path_below_the_prefix_and_offset_limit_choose_the_objects(
    client: FlaskClient, landing: Landing
) -> None:
    for name in ("a.csv", "b.csv", "c/d.csv", "e.csv"):
        landing.put(name, "x\n")

    status, answer = batch(
        client,
        {"task": LOAD_FILE, "from_prefix": landing.prefix, "param": "path", "relative": True, "offset": 1, "limit": 2},
    )

    assert status == 200, answer
    assert [row["params"]["path"] for row in answer["data"]["rows"]] == ["b.csv", "c/d.csv"]


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"task": "landing/files_chain/Nope"}, "task", "Nope"),
        ({"task": "LoadFileTask"}, "task", "is not <type>/<chain>/<Task>"),
        ({"from_prefix": "landing/"}, "from_prefix", "neither an S3 prefix nor an absolute path"),
        ({"from_prefix": "s3:///x/"}, "from_prefix", "no bucket"),
        (
            {"param": "nope"},
            "param",
            "'nope' is not a parameter of landing/files_chain/LoadFileTask (known: path, day)",
        ),
        ({"params": {"path": "/x"}}, "params", "leave it out of params"),
        ({"batch_size": 2}, "batch_size", "'path' is a str parameter: a group of objects needs a list parameter"),
        ({"task": LOAD_FILES, "param": "paths"}, "batch_size", "give batch_size"),
        ({"glob": "[ab"}, "glob", "unbalanced '['"),
        ({"glob": "*.none"}, "from_prefix", "no objects under"),
        ({"offset": -1}, "offset", "greater than or equal to 0"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"limit": "3"}, "limit", "Not a valid integer"),
        ({"colour": "red"}, "colour", "Unknown field"),
        ({"param": None}, "param", "Field may not be null"),
    ],
)
def test_each_bad_field_is_a_422_naming_it(
    client: FlaskClient, settings: Settings, tmp_path: Path, change: dict[str, Any], field: str, says: str
) -> None:
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "a.csv").write_text("x\n")
    body = {"task": LOAD_FILE, "from_prefix": str(tmp_path / "landing"), "param": "path", **change}

    status, answer = batch(client, body)

    assert status == 422, answer
    assert says in " ".join(answer["errors"][field]), answer
    assert closed_at_end(SQLiteRunStore(settings.registry_path)).count() == 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Settings, Path]]:
    """The API under gunicorn (one worker) on the landing chain, with ``in/a.csv`` in its landing root: its port, its
    settings, the folder. One for the module: its tests are refused and leave it as they found it (a gunicorn start,
    ~1 s of CPU, was each case's)."""
    root = tmp_path_factory.mktemp("batches_http")
    settings = local_settings(root).replace(landing_roots=str(root))
    (settings.chains_dir / "landing").mkdir()
    (settings.chains_dir / "landing" / "files_chain.py").write_text(LANDING_CHAIN)
    (root / "in").mkdir()
    (root / "in" / "a.csv").write_text("x\n")
    processes = Processes(root / "logs")
    try:
        yield processes.api(None, base_env() | settings_env(settings), workers=1).port, settings, root / "in"
    finally:
        processes.close(grace=STOP_TIMEOUT)


@pytest.mark.parametrize(
    ("change", "field", "least"),
    [
        ({"offset": 2**63}, "offset", 0),  # past sys.maxsize: islice refused it
        ({"offset": 2**31}, "offset", 0),
        ({"task": LOAD_FILES, "param": "paths", "batch_size": 2**62}, "batch_size", 1),  # x 1,000 rows: past maxsize
    ],
)
def test_an_offset_or_batch_size_past_its_most_is_a_422_naming_it_over_http(
    served: tuple[int, Settings, Path], change: dict[str, Any], field: str, least: int
) -> None:
    """The objects a batch lists end at ``offset + rows x batch_size``: past ``sys.maxsize`` the listing's
    ``islice`` raised ValueError, a 500. Each is at most 2**31-1 (as NECTAR_MAX_BATCH), which keeps that sum in it."""
    port, settings, folder = served
    body = {"task": LOAD_FILE, "from_prefix": str(folder), "param": "path", **change}

    answer = requests.post(f"http://127.0.0.1:{port}/api/batches", json=body, timeout=60)

    assert answer.status_code == 422, answer.text
    most = f"Must be greater than or equal to {least} and less than or equal to 2147483647."
    assert answer.json()["errors"] == {field: [most]}, answer.text
    assert closed_at_end(SQLiteRunStore(settings.registry_path)).count() == 0


def test_a_bucket_or_folder_that_cannot_be_listed_is_named_with_the_stores_error(
    client: FlaskClient, s3_env: dict[str, str], tmp_path: Path
) -> None:
    gone = f"gone-{uuid.uuid4().hex[:8]}"

    status, answer = batch(client, {"task": LOAD_FILE, "from_prefix": f"s3://{gone}/landing/", "param": "path"})

    assert status == 422, answer
    [message] = answer["errors"]["from_prefix"]
    assert f"'{gone}'" in message and "NoSuchBucket" in message

    status, answer = batch(client, {"task": LOAD_FILE, "from_prefix": str(tmp_path / "nowhere"), "param": "path"})

    assert status == 422 and "No such file or directory" in answer["errors"]["from_prefix"][0], answer


def test_bad_rows_are_answered_each_or_refuse_all_with_atomic(
    client: FlaskClient, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("x\n")
    body = {"task": LOAD_FILE, "from_prefix": str(tmp_path / "in"), "param": "path", "params": {"colour": "red"}}

    status, answer = batch(client, body)
    assert status == 200 and answer["data"]["rows"][0]["status"] == 422, answer
    assert answer["data"]["rows"][0]["errors"] == {"colour": ["unknown parameter (known: path, day)"]}

    status, answer = batch(client, body, "?atomic=true")
    assert status == 422 and list(answer["errors"]) == ["1.colour"], answer
    assert closed_at_end(SQLiteRunStore(settings.registry_path)).count() == 0


def test_more_rows_than_a_batch_takes_is_413(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    write_chain("landing/files_chain", LANDING_CHAIN)
    client = build_app(settings.replace(max_batch=2)).test_client()
    (tmp_path / "in").mkdir()
    for n in range(5):
        (tmp_path / "in" / f"{n}.csv").write_text("x\n")

    status, answer = batch(client, {"task": LOAD_FILE, "from_prefix": str(tmp_path / "in"), "param": "path"})
    assert status == 413 and "at most 2" in answer["message"], answer

    status, answer = batch(
        client, {"task": LOAD_FILES, "from_prefix": str(tmp_path / "in"), "param": "paths", "batch_size": 3}
    )
    assert status == 200 and len(answer["data"]["rows"]) == 2, answer  # 5 objects in 2 groups


def test_the_openapi_document_describes_the_body_and_the_rows(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()

    operation = spec["paths"]["/api/batches"]["post"]
    body = spec["components"]["schemas"]["PrefixBatchBody"]
    assert set(body["required"]) == {"task", "from_prefix", "param"}
    assert {"glob", "offset", "limit", "batch_size", "relative", "params"} <= set(body["properties"])
    assert {"200", "413", "422", "503"} <= set(operation["responses"])


def test_a_folder_outside_the_landing_roots_is_refused_and_the_default_root_is_listed(
    settings: Settings, write_chain: Callable[[str, str], Path], tmp_path: Path
) -> None:
    """Over HTTP only the landing roots are listed (a write token must not read the server's folder names)."""
    write_chain("landing/files_chain", LANDING_CHAIN)
    client = build_app(settings.replace(landing_roots=None)).test_client()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "a.csv").write_text("x\n")
    for prefix in (str(outside), f"{settings.data_dir}/landing/../../elsewhere", "/etc"):
        status, answer = batch(client, {"task": LOAD_FILE, "from_prefix": prefix, "param": "path"})
        assert status == 422, answer
        assert "outside the folders the API may list" in answer["errors"]["from_prefix"][0], answer
    inside = settings.data_dir / "landing"
    inside.mkdir(parents=True)
    (inside / "a.csv").write_text("x\n")
    status, answer = batch(client, {"task": LOAD_FILE, "from_prefix": str(inside), "param": "path"})
    assert status == 200 and answer["data"]["objects"] == 1, answer
