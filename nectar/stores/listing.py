"""Objects under a prefix of S3 or of a local folder, listed in key order: for triggers, batches and chain code.

:func:`list_objects` is the one listing over both kinds, as PypeLine's key generators (``glob``, ``offset``,
``limit``) with S3's ``StartAfter``: lazy, it asks S3 for a page of 1,000 keys only when the previous one is
used up, and never lists again from the start. Keys come in S3's order (UTF-8 byte order); a local folder is
walked in that same order, each folder read once, so a listing's ``start_after`` means the same on both.
Hidden names are skipped, Hadoop's and Spark's rule: an object any part of whose path below the prefix starts
with ``.`` or ``_`` (a file being written, a ``_SUCCESS`` marker, a ``_temporary/`` folder) is not listed, nor
are S3's folder markers (keys ending in ``/``) nor, locally, what symbolic links to folders lead to.

The S3 store's module (luigi's targets under it) is imported only where S3 is called: reading a trigger's or a
preload's prefix (:meth:`Location.parse`, what a registry does for each row it reads) imports no luigi.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from nectar.errors import InvalidParameters, StoreUnavailable, TooLarge
from nectar.stores.globs import compile_glob, literal_start

__all__ = ["ListStats", "Location", "StoredObject", "compile_glob", "exists", "list_objects"]

#: what a hidden name starts with (Hadoop's FileInputFormat skips these as files being written or markers)
HIDDEN = (".", "_")
#: the error codes of an S3 object that is not there (a HEAD answers a bare 404)
MISSING_KEY = frozenset({"404", "NoSuchKey", "NotFound"})
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_FORMS = "give s3://bucket/prefix/ or an absolute folder path (/data/landing)"


@dataclass(frozen=True)
class StoredObject:
    """One object: its full ``uri`` (``s3://bucket/key`` or an absolute path), ``key`` (the S3 key; locally, the
    path below the listed folder), ``version`` (the ETag; locally the mtime in ns), ``size`` in bytes,
    ``modified`` (unix seconds) and ``relative``, its path below the listed prefix."""

    uri: str
    key: str
    version: str
    size: int
    modified: float
    relative: str


@dataclass
class ListStats:
    """What listings cost: the store's requests (S3 ListObjectsV2 calls; locally, folders read) and the
    objects those returned (locally, the folders' entries), before any filtering."""

    requests: int = 0
    objects: int = 0
    #: the last key the listing read, whether or not it was given (hidden, or passed over by the glob): a
    #: trigger's cursor moves past what its glob leaves, so that a poll never reads it again
    last_key: str | None = None


@dataclass
class _Tally:
    """One listing's count of requests and of what they returned, into ``stats``, within ``max_listed``."""

    where: Location
    stats: ListStats
    max_listed: int | None
    returned: int = 0

    def listed(self, count: int) -> None:
        """One request made, that returned ``count`` objects (or folder entries)."""
        self.stats.requests += 1
        self.stats.objects += count
        self.returned += count
        if self.max_listed is not None and self.returned > self.max_listed:
            raise TooLarge(
                f"more than {self.max_listed} objects listed under {self.where}: narrow the prefix, or start the "
                "glob with a folder or the first letters of the names"
            )


@dataclass(frozen=True)
class Location:
    """A parsed prefix: ``kind`` "s3" (``bucket``, ``prefix`` a key prefix, "" or ending in ``/``) or "local"
    (``prefix`` an absolute folder); ``field`` is the request field it came from, that errors name."""

    kind: Literal["s3", "local"]
    bucket: str
    prefix: str
    field: str = field(default="prefix", compare=False)

    @classmethod
    def parse(cls, text: Any, field: str = "prefix") -> Location:
        """``s3://bucket/some/prefix/`` (a prefix is a folder: ``/`` is added) or an absolute folder;
        anything else is :class:`InvalidParameters` naming ``field``."""
        if isinstance(text, str) and "\x00" in text:
            raise InvalidParameters({field: ["has a NUL character: no store names objects with one"]})
        if isinstance(text, str) and any(char in text for char in "*?["):
            raise InvalidParameters({field: [f"{text!r} has a wildcard: a prefix is a folder, put patterns in glob"]})
        if isinstance(text, str) and text.startswith("s3://"):
            bucket, key = _s3_parts(text, field)
            return cls("s3", bucket, key if not key or key.endswith("/") else f"{key}/", field)
        if not isinstance(text, str) or not text.strip():
            raise InvalidParameters({field: [f"empty: {_FORMS}"]})
        if "://" in text or not os.path.isabs(text):
            raise InvalidParameters({field: [f"{text!r} is neither an S3 prefix nor an absolute path: {_FORMS}"]})
        return cls("local", "", os.path.normpath(text), field)

    def uri(self, key: str) -> str:
        """The full URI (S3) or absolute path (local) of the object of ``key``."""
        return f"s3://{self.bucket}/{key}" if self.kind == "s3" else os.path.join(self.prefix, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.kind == "s3" else self.prefix

    def check_allowed(self, roots: Sequence[Path]) -> None:
        """Raise :class:`InvalidParameters` naming the field if this is a local folder outside every one of ``roots``
        (symbolic links and ``..`` resolved first): what a request may have listed on this server. S3 is not
        bounded here: the credentials' rights are its bounds."""
        if self.kind != "local":
            return
        real = Path(os.path.realpath(self.prefix))
        if not any(real == root or root in real.parents for root in roots):
            shown = os.pathsep.join(map(str, roots))
            raise InvalidParameters(
                {
                    self.field: [
                        f"{self.prefix!r} is outside the folders the API may list ({shown}; NECTAR_LANDING_ROOTS)"
                    ]
                }
            )

    def check(self) -> None:
        """Raise :class:`InvalidParameters` naming the bucket or folder and the store's own error if it cannot be
        listed (one ListObjectsV2 of one key); :class:`StoreUnavailable` if S3 cannot be reached or fails."""
        if self.kind == "local":
            try:
                with os.scandir(self.prefix):
                    return
            except OSError as exc:
                raise InvalidParameters({self.field: [_folder_error(self.prefix, exc)]}) from None
        from nectar.stores.s3 import PERMANENT_S3_ERRORS  # see the module's docstring: no luigi before a listing

        try:
            _s3_call(self.bucket, "ListObjectsV2", _client().list_objects_v2, Bucket=self.bucket, MaxKeys=1)
        except StoreUnavailable as exc:
            if exc.code in PERMANENT_S3_ERRORS:
                raise InvalidParameters({self.field: [str(exc)]}) from None
            raise


def list_objects(
    location: Location | str,
    glob: str | None = None,
    offset: int = 0,
    limit: int | None = None,
    start_after: str | None = None,
    stats: ListStats | None = None,
    max_listed: int | None = None,
) -> Iterator[StoredObject]:
    """The objects under ``location`` (a :class:`Location` or its text) in key order, lazily.

    ``glob`` filters on the path below the prefix (:func:`compile_glob`); then ``offset`` objects are skipped
    and at most ``limit`` given. ``start_after`` is a key (as :attr:`StoredObject.key`): only later ones come,
    and S3 is asked from there on (``StartAfter``). Bad arguments raise :class:`InvalidParameters` at once;
    the store's failures (:class:`StoreUnavailable`, with S3's code) as the objects are read. ``stats`` counts
    the requests made. ``max_listed`` bounds what the store may return (:class:`TooLarge` beyond): a glob that
    matches little under a huge prefix then cannot make one listing read the whole bucket or disk.
    """
    where = location if isinstance(location, Location) else Location.parse(location)
    pattern = compile_glob(glob) if glob is not None else None
    bad = {
        name: ["must be a whole number ≥ 0"]
        for name, value in (("offset", offset), ("limit", limit))
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0)
    }
    if bad:
        raise InvalidParameters(bad)
    walk = _s3_objects if where.kind == "s3" else _local_objects
    tally = _Tally(where, stats if stats is not None else ListStats(), max_listed)
    found = walk(where, literal_start(glob), start_after or "", tally)
    shown = found if pattern is None else (item for item in found if pattern.fullmatch(item.relative))
    return islice(shown, offset, None if limit is None else offset + limit)


def exists(uri: str, field: str = "uri") -> bool:
    """Whether the object at ``uri`` (``s3://bucket/key`` or an absolute path) is there; an S3 bucket that is not,
    or any other failure of S3, is :class:`StoreUnavailable` naming S3's error, not a missing object."""
    if not uri.startswith("s3://"):
        if "\x00" in uri or not os.path.isabs(uri):
            raise InvalidParameters({field: [f"{uri!r} is neither s3://bucket/key nor an absolute path"]})
        return os.path.exists(uri)
    bucket, key = _s3_parts(uri, field)
    if not key:
        raise InvalidParameters({field: [f"{uri!r} names a bucket, not an object"]})
    try:
        _s3_call(bucket, "HeadObject", _client().head_object, Bucket=bucket, Key=key)
    except StoreUnavailable as exc:
        if exc.code not in MISSING_KEY:
            raise
        _confirm_bucket(bucket)  # a HEAD answers the same bare 404 for a missing bucket
        return False
    return True


# --- S3 ---


def _s3_parts(text: str, field: str) -> tuple[str, str]:
    bucket, _, key = text[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        shown = f"{bucket!r} is not a bucket name" if bucket else "no bucket"
        raise InvalidParameters({field: [f"{shown} in {text!r}: {_FORMS}"]})
    return bucket, key


@functools.lru_cache(maxsize=4)
def _cached_client(pid: int, endpoint: str | None) -> Any:
    import boto3

    from nectar.stores.s3 import _client_config

    return boto3.client("s3", config=_client_config())


def _client() -> Any:
    """This process's S3 client (the project's S3 settings: ``AWS_*``, ``AWS_ENDPOINT_URL``), made on first use;
    a forked process, or one whose endpoint changed, makes its own."""
    return _cached_client(os.getpid(), os.environ.get("AWS_ENDPOINT_URL"))


_BUCKETS_SEEN: set[str] = set()


def _confirm_bucket(bucket: str) -> None:
    """Raise :class:`StoreUnavailable` if ``bucket`` does not exist (asked once a process: one seen is kept)."""
    if bucket not in _BUCKETS_SEEN:
        _s3_call(bucket, "HeadBucket", _client().head_bucket, Bucket=bucket)
        _BUCKETS_SEEN.add(bucket)


def _s3_call(bucket: str, what: str, call: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``call(**kwargs)``; S3's errors are :class:`StoreUnavailable` naming the bucket and S3's code and message."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        if code in MISSING_KEY and "Key" not in kwargs:  # a HEAD of a bucket has no body: its 404 is NoSuchBucket
            code, error = "NoSuchBucket", {"Message": "The specified bucket does not exist"}
        failure = StoreUnavailable(f"bucket {bucket!r}: {what} failed: {code}: {error.get('Message') or exc}", code)
    except BotoCoreError as exc:
        failure = StoreUnavailable(f"bucket {bucket!r}: S3 cannot be reached: {exc}")
    raise failure from None


def _hidden(relative: str) -> bool:
    return any(part.startswith(HIDDEN) for part in relative.split("/"))


def _s3_objects(where: Location, literal: str, start_after: str, tally: _Tally) -> Iterator[StoredObject]:
    """Every object under the prefix (narrowed to the glob's literal start), a page of 1,000 at a time."""
    client = _client()
    request: dict[str, Any] = {"Bucket": where.bucket, "Prefix": where.prefix + literal}
    if start_after:
        request["StartAfter"] = start_after
    while True:
        page = _s3_call(where.bucket, "ListObjectsV2", client.list_objects_v2, **request)
        contents = page.get("Contents", ())
        tally.listed(len(contents))
        for item in contents:
            key, relative = item["Key"], item["Key"][len(where.prefix) :]
            tally.stats.last_key = key
            if key.endswith("/") or _hidden(relative):  # a folder marker, or a hidden name
                continue
            version, modified = item["ETag"].strip('"'), item["LastModified"].timestamp()
            yield StoredObject(where.uri(key), key, version, int(item["Size"]), modified, relative)
        if not page.get("IsTruncated"):
            return
        request = {
            "Bucket": where.bucket,
            "Prefix": request["Prefix"],
            "ContinuationToken": page["NextContinuationToken"],
        }


# --- local folders ---


def _folder_error(folder: str, exc: OSError) -> str:
    return f"folder {folder!r} cannot be listed: {exc.strerror or exc} ({type(exc).__name__})"


def _local_objects(where: Location, literal: str, start_after: str, tally: _Tally) -> Iterator[StoredObject]:
    yield from _walk(where, where.prefix, "", literal, start_after, tally)


def _walk(
    where: Location, folder: str, below: str, literal: str, start_after: str, tally: _Tally
) -> Iterator[StoredObject]:
    """The files of ``folder`` (``below`` the listed one, ending in ``/``) and of its folders, in S3's order: a
    folder sorts as its name and a ``/``, so that its files come exactly where S3 would list their keys."""
    try:
        with os.scandir(folder) as reading:
            entries = list(reading)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if not below:
            raise StoreUnavailable(_folder_error(folder, exc), type(exc).__name__) from None
        return  # a folder removed while the listing walked
    except OSError as exc:
        raise StoreUnavailable(_folder_error(folder, exc), type(exc).__name__) from None
    tally.listed(len(entries))
    named = []
    for entry in entries:
        if entry.name.startswith(HIDDEN):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                named.append((f"{below}{entry.name}/", entry))
            elif entry.is_file():
                named.append((f"{below}{entry.name}", entry))
        except OSError:  # gone since it was read
            continue
    for key, entry in sorted(named, key=lambda pair: pair[0]):
        if key.endswith("/"):
            before_start = start_after and key < start_after and not start_after.startswith(key)
            if not before_start and (literal.startswith(key) or key.startswith(literal)):
                yield from _walk(where, entry.path, key, literal, start_after, tally)
            continue
        if (start_after and key <= start_after) or not key.startswith(literal):
            continue
        tally.stats.last_key = key
        try:
            stat = entry.stat()
        except OSError:
            continue
        yield StoredObject(where.uri(key), key, str(stat.st_mtime_ns), stat.st_size, stat.st_mtime, key)
