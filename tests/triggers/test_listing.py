"""``list_objects`` on a real moto S3 server and on a local folder: the same assertions on both kinds."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nectar.errors import InvalidParameters, StoreUnavailable, TooLarge
from nectar.stores.listing import ListStats, Location, StoredObject, compile_glob, exists, list_objects
from tests.conftest import free_port
from tests.helpers.suiteapi_s3put import S3Puts

KINDS = ["local", "s3"]


class Landing:
    """A prefix to list (``location``), local or on S3, and a way to put objects under it and beside it."""

    def __init__(self, kind: str, root: str, write: Callable[[str, bytes], None], head: Callable[[str], Any]) -> None:
        self.kind, self.root, self._write, self._head = kind, root, write, head
        self.location = f"{root}sales/" if kind == "s3" else f"{root}sales"

    def put(self, *relatives: str, body: bytes = b"a,b\n1,2\n") -> None:
        """Objects (a path ending in ``/``: an empty folder, or S3's folder marker) below the prefix."""
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda relative: self._write(f"sales/{relative}", body), relatives))

    def put_beside(self, name: str) -> None:
        """An object beside the prefix, that shares its first letters (``sales_old/``)."""
        self._write(name, b"not mine\n")

    def uri(self, relative: str) -> str:
        return f"{self.location}{relative}" if self.kind == "s3" else f"{self.location}/{relative}"

    def key(self, relative: str) -> str:
        """The key :class:`StoredObject` gives the object (S3: the bucket's key; local: the path below the prefix)."""
        return f"landing/sales/{relative}" if self.kind == "s3" else relative

    def expected(self, relative: str) -> tuple[str, int, float]:
        """What the store says of an object: its version, size and modification time."""
        return self._head(relative)


@pytest.fixture(params=KINDS)
def landing(request: pytest.FixtureRequest, tmp_path: Path) -> Landing:
    if request.param == "local":
        root = tmp_path / "landing"
        root.mkdir()

        def write(name: str, body: bytes) -> None:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not name.endswith("/"):
                path.write_bytes(body)

        def stat(relative: str) -> tuple[str, int, float]:
            info = (root / "sales" / relative).stat()
            return str(info.st_mtime_ns), info.st_size, info.st_mtime

        return Landing("local", f"{root}/", write, stat)
    import boto3

    env = request.getfixturevalue("s3_env")
    bucket = f"{env['ENV']}.{env['PROJECT_BUCKET']}"
    client = boto3.client("s3")
    puts = S3Puts(env["AWS_ENDPOINT_URL"])  # 1,201 objects in one test: boto3's put_object was 4 s of its CPU
    request.addfinalizer(puts.close)

    def put(name: str, body: bytes) -> None:
        puts(bucket, f"landing/{name}", b"" if name.endswith("/") else body)

    def head(relative: str) -> tuple[str, int, float]:
        answer = client.head_object(Bucket=bucket, Key=f"landing/sales/{relative}")
        return answer["ETag"].strip('"'), answer["ContentLength"], answer["LastModified"].timestamp()

    return Landing("s3", f"s3://{bucket}/landing/", put, head)


def relatives(objects: Any) -> list[str]:
    return [item.relative for item in objects]


def test_objects_come_in_the_stores_key_order_with_what_the_store_says_of_them(landing: Landing) -> None:
    landing.put("b.csv", "é.csv", "a/x.csv", "sub/deep/z.json", "a.csv", "a-b.csv")
    landing.put_beside("sales_old/a.csv")
    landing.put_beside("salesman.csv")

    objects = list(list_objects(landing.location))

    # "-" < "." < "/" in UTF-8: S3's order, which a folder walked name by name would not give ("a/" before "a-b")
    assert relatives(objects) == ["a-b.csv", "a.csv", "a/x.csv", "b.csv", "sub/deep/z.json", "é.csv"]
    for item in objects:
        version, size, modified = landing.expected(item.relative)
        assert item == StoredObject(
            landing.uri(item.relative), landing.key(item.relative), version, size, modified, item.relative
        )
    assert objects[0].size == len(b"a,b\n1,2\n")


GLOB_FILES = ("a.csv", "b.txt", "f1.csv", "f10.csv", "f2.csv", "x/c.csv", "x/e.CSV", "x/y/d.csv")


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("*.csv", ["a.csv", "f1.csv", "f10.csv", "f2.csv"]),
        ("**/*.csv", ["a.csv", "f1.csv", "f10.csv", "f2.csv", "x/c.csv", "x/y/d.csv"]),
        ("**", list(GLOB_FILES)),
        ("x/*", ["x/c.csv", "x/e.CSV"]),
        ("x/**", ["x/c.csv", "x/e.CSV", "x/y/d.csv"]),
        ("x/**/d.csv", ["x/y/d.csv"]),
        ("**/d.csv", ["x/y/d.csv"]),
        ("f?.csv", ["f1.csv", "f2.csv"]),
        ("f[12].csv", ["f1.csv", "f2.csv"]),
        ("f[!1].csv", ["f2.csv"]),
        ("[a-b].*", ["a.csv", "b.txt"]),
        ("x?c.csv", []),  # ? does not cross "/"
        ("f1.csv", ["f1.csv"]),
    ],
)
def test_a_glob_matches_the_path_below_the_prefix(landing: Landing, glob: str, expected: list[str]) -> None:
    landing.put(*GLOB_FILES)

    assert relatives(list_objects(landing.location, glob=glob)) == expected


def test_offset_and_limit_count_what_the_glob_kept(landing: Landing) -> None:
    landing.put(*GLOB_FILES)

    assert relatives(list_objects(landing.location, glob="**/*.csv", offset=1, limit=3)) == [
        "f1.csv",
        "f10.csv",
        "f2.csv",
    ]
    assert relatives(list_objects(landing.location, offset=7)) == ["x/y/d.csv"]
    assert relatives(list_objects(landing.location, offset=8)) == []
    stats = ListStats()
    assert relatives(list_objects(landing.location, limit=0, stats=stats)) == []
    assert stats.requests == 0  # nothing wanted, nothing asked


def test_start_after_gives_only_later_keys(landing: Landing) -> None:
    landing.put(*GLOB_FILES)
    every = list(list_objects(landing.location))

    for index, item in enumerate(every):
        assert list(list_objects(landing.location, start_after=item.key)) == every[index + 1 :]
    assert relatives(list_objects(landing.location, start_after=landing.key("x/d"))) == ["x/e.CSV", "x/y/d.csv"]
    assert relatives(list_objects(landing.location, glob="x/**", start_after=landing.key("x/c.csv"))) == [
        "x/e.CSV",
        "x/y/d.csv",
    ]


def test_hidden_names_and_folders_are_not_listed(landing: Landing) -> None:
    landing.put(".part-0.csv", "_SUCCESS", "_temporary/0/part-0.csv", ".hidden/a.csv", "ok/_x.csv", "ok/.y.csv")
    landing.put("ok/y.csv", "empty/", "a_b.csv", "ok/", "z.csv")

    assert relatives(list_objects(landing.location)) == ["a_b.csv", "ok/y.csv", "z.csv"]
    assert relatives(list_objects(landing.location, glob="_*")) == []


def test_a_listing_pages_through_the_store_and_starts_where_it_is_told(landing: Landing) -> None:
    names = [f"day-{n:05d}.csv" for n in range(1_201)]  # two pages of S3's 1,000, the second a short one
    landing.put(*names, body=b"1\n")

    stats = ListStats()
    assert relatives(list_objects(landing.location, stats=stats)) == names
    assert (stats.requests, stats.objects) == ((2, 1_201) if landing.kind == "s3" else (1, 1_201))  # 1,000 a page

    stats = ListStats()
    assert list(list_objects(landing.location, start_after=landing.key(names[-1]), stats=stats)) == []
    assert (stats.requests, stats.objects) == (1, 0 if landing.kind == "s3" else 1_201)  # a folder is read whole

    stats = ListStats()
    assert relatives(list_objects(landing.location, limit=2, stats=stats)) == names[:2]
    assert stats.requests == 1  # no page is asked for beyond what is used

    stats = ListStats()
    assert relatives(list_objects(landing.location, glob="day-01*", stats=stats)) == names[1_000:1_201]
    if landing.kind == "s3":
        assert (stats.requests, stats.objects) == (1, 201)  # the glob's literal start narrows the prefix asked


def test_a_listing_that_would_read_more_than_max_listed_objects_stops(landing: Landing) -> None:
    landing.put(*(f"{n}.json" for n in range(12)))

    with pytest.raises(TooLarge) as refused:
        list(list_objects(landing.location, glob="*.csv", max_listed=10))

    assert "more than 10 objects listed under" in str(refused.value)
    assert len(list(list_objects(landing.location, glob="1*.json", max_listed=12))) == 3  # 1, 10, 11


def test_a_missing_bucket_or_folder_is_named_with_the_stores_error(landing: Landing) -> None:
    missing = landing.location.replace("landing", "no-such-landing").replace("s3://test.", "s3://gone.")

    with pytest.raises(InvalidParameters) as refused:
        Location.parse(missing, field="from_prefix").check()

    [message] = refused.value.errors["from_prefix"]
    if landing.kind == "s3":
        assert "'gone." in message and "NoSuchBucket" in message, message
    else:
        assert missing in message and "No such file or directory" in message, message
    with pytest.raises(StoreUnavailable) as failed:
        list(list_objects(missing))
    assert failed.value.code == ("NoSuchBucket" if landing.kind == "s3" else "FileNotFoundError")
    landing.put("x.csv")
    Location.parse(landing.location).check()


def test_a_file_is_no_folder_to_list(tmp_path: Path) -> None:
    (tmp_path / "file.csv").write_text("x\n")

    with pytest.raises(InvalidParameters) as refused:
        Location.parse(str(tmp_path / "file.csv")).check()

    assert "Not a directory" in refused.value.errors["prefix"][0]


def test_exists_says_whether_an_object_is_there(landing: Landing) -> None:
    landing.put("done.ack", "_SUCCESS", "x[1]*.ack")

    assert exists(landing.uri("done.ack")) and exists(landing.uri("_SUCCESS"))
    assert exists(landing.uri("x[1]*.ack"))  # an object's name is no pattern
    assert not exists(landing.uri("later.ack"))
    with pytest.raises(InvalidParameters) as refused:
        exists("relative/done.ack")
    assert "neither s3://bucket/key nor an absolute path" in refused.value.errors["uri"][0]
    if landing.kind == "s3":
        with pytest.raises(StoreUnavailable) as failed:
            exists(landing.uri("x.ack").replace("s3://test.", "s3://gone."))
        assert failed.value.code == "NoSuchBucket" and "'gone." in str(failed.value)


@pytest.mark.parametrize(
    ("glob", "says"),
    [
        ("", "empty"),
        ("[abc", "unbalanced '[' at character 1"),
        ("x/*[!", "unbalanced '['"),
        ("[z-a].csv", "not a glob: bad character range"),
        ("/abs/*.csv", "starts with '/'"),
    ],
)
def test_a_glob_that_does_not_parse_names_its_field(glob: str, says: str) -> None:
    with pytest.raises(InvalidParameters) as refused:
        compile_glob(glob, field="glob")

    assert list(refused.value.errors) == ["glob"] and says in refused.value.errors["glob"][0]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("landing/sales", "neither an S3 prefix nor an absolute path"),
        ("http://example.com/x/", "neither an S3 prefix nor an absolute path"),
        ("s3://", "no bucket"),
        ("s3:///landing/", "no bucket"),
        ("s3://a/landing/", "'a' is not a bucket name"),
        ("s3://bucket/landing/*.csv", "put patterns in glob"),
        ("/data/landing/[ab]", "put patterns in glob"),
        (None, "empty"),
        ("/data/\x00/", "NUL"),
    ],
)
def test_a_prefix_that_is_no_location_names_its_field(text: Any, says: str) -> None:
    with pytest.raises(InvalidParameters) as refused:
        Location.parse(text, field="from_prefix")

    assert list(refused.value.errors) == ["from_prefix"] and says in refused.value.errors["from_prefix"][0]


@pytest.mark.parametrize(
    ("text", "kind", "bucket", "prefix", "uri"),
    [
        ("s3://bucket/landing/sales", "s3", "bucket", "landing/sales/", "s3://bucket/landing/sales/k"),
        ("s3://bucket/landing/sales/", "s3", "bucket", "landing/sales/", "s3://bucket/landing/sales/k"),
        ("s3://bucket", "s3", "bucket", "", "s3://bucket/landing/sales/k"),
        ("/data/landing/../landing/sales/", "local", "", "/data/landing/sales", "/data/landing/sales/k"),
    ],
)
def test_a_location_is_a_folder_of_a_bucket_or_of_this_machine(
    text: str, kind: str, bucket: str, prefix: str, uri: str
) -> None:
    location = Location.parse(text)

    assert (location.kind, location.bucket, location.prefix) == (kind, bucket, prefix)
    assert location.uri("landing/sales/k" if kind == "s3" else "k") == uri


def test_offset_and_limit_are_whole_numbers(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameters) as refused:
        list_objects(str(tmp_path), offset=-1, limit=True)

    assert set(refused.value.errors) == {"offset", "limit"}


def test_a_folder_removed_while_a_listing_walks_is_skipped(tmp_path: Path) -> None:
    for name in ("a/1.csv", "b/2.csv", "c/3.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    walking = list_objects(str(tmp_path))

    first = next(walking)
    (tmp_path / "b" / "2.csv").unlink()
    os.rmdir(tmp_path / "b")

    assert [first.relative, *relatives(walking)] == ["a/1.csv", "c/3.csv"]


def test_an_s3_endpoint_that_does_not_answer_is_unavailable_not_a_bad_prefix(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    with pytest.raises(StoreUnavailable) as failed:
        Location.parse("s3://some-bucket/landing/").check()

    assert "bucket 'some-bucket': S3 cannot be reached" in str(failed.value)
    with pytest.raises(StoreUnavailable):
        exists("s3://some-bucket/landing/x.ack")


def test_last_key_is_the_last_key_read_given_or_passed_over(landing: Landing) -> None:
    landing.put("a.csv", "b.txt", "c.txt")

    stats = ListStats()
    assert relatives(list_objects(landing.location, glob="*.csv", stats=stats)) == ["a.csv"]
    assert stats.last_key == landing.key("c.txt")  # passed over by the glob: a cursor moves past it

    stats = ListStats()
    assert relatives(list_objects(landing.location, limit=1, stats=stats)) == ["a.csv"]
    assert stats.last_key == landing.key("a.csv")  # what was not read yet is not passed
