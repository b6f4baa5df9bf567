"""Target stores: where task outputs live, local folder or S3 bucket, behind one small surface.

A store hands out luigi targets (whose writes are atomic: ``LocalTarget``'s atomic file,
``S3Target``'s temp file uploaded on close) and answers ``exists``, ``url`` and ``put_file``.
Every commit (the rename, the upload) first passes :func:`nectar.fence.check`, so an attempt
that lost its run never leaves an output behind. The S3 client is created lazily, once per
store, and stores are cached per settings.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import shutil
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, ClassVar

from luigi import LocalTarget
from luigi.local_target import atomic_file
from luigi.target import AtomicLocalFile, FileSystemTarget

from nectar import fence
from nectar.config import Settings, get_settings
from nectar.errors import InvalidKey, StoreUnavailable
from nectar.keys import TargetKey

#: the types a file is served as, by its name; anything else (HTML, SVG, scripts...) is served as bytes, so that an
#: output can never run as a page of the API's origin nor of a bucket's
SERVED_TYPES = ("text/plain", "text/csv", "application/json")
BINARY = "application/octet-stream"
#: S3 error codes that no retry can cure: the store is misconfigured (the bucket, the credentials, the rights)
PERMANENT_S3_ERRORS = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
    }
)


def served_type(filename: str) -> str:
    """The content type a file is served as, by its name: the local store's downloads and S3's uploads alike."""
    guessed = "text/plain" if filename.endswith(".log") else mimetypes.guess_type(filename)[0]
    return guessed if guessed in SERVED_TYPES else BINARY


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code behind ``exc`` (botocore's, or one it caused or happened during), None if none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StoreUnavailable):
            code = current.code
        else:  # botocore's ClientError (boto3's upload error is raised while handling one)
            response = getattr(current, "response", None)
            code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code:
            return str(code)
        current = current.__cause__ or current.__context__
    return None


def is_permanent(exc: BaseException) -> bool:
    """Whether ``exc`` is a store error that trying again cannot cure (a missing bucket, refused credentials)."""
    return s3_error_code(exc) in PERMANENT_S3_ERRORS


def _fenced_commit(atomic: AtomicLocalFile, commit: Any) -> None:
    """Commit an atomic file through the fence; a refused commit leaves no temporary file behind."""
    try:
        fence.check(atomic.path)
    except BaseException:
        Path(atomic.tmp_path).unlink(missing_ok=True)
        raise
    commit()


class _FencedLocalFile(atomic_file):
    def move_to_final_destination(self) -> None:
        _fenced_commit(self, super().move_to_final_destination)


class _FencedTemporaryPath:
    """``temporary_path()`` (a task writes a path, luigi renames it into place) that renames through the fence."""

    path: str
    fs: Any

    @contextmanager
    def temporary_path(self) -> Iterator[str]:
        with super().temporary_path() as temporary:  # type: ignore[misc]
            yield temporary
            try:
                fence.check(self.path)
            except BaseException:
                with suppress(Exception):
                    self.fs.remove(temporary)
                raise


class FencedLocalTarget(_FencedTemporaryPath, LocalTarget):
    """luigi's ``LocalTarget`` whose atomic writes commit through the fence."""

    def open(self, mode: str = "r") -> Any:
        if mode.replace("b", "").replace("t", "") != "w":
            return super().open(mode)
        self.makedirs()
        return self.format.pipe_writer(_FencedLocalFile(self.path))


class TargetStore(ABC):
    """Where the targets of one kind live."""

    kind: ClassVar[str]

    @abstractmethod
    def target(self, key: TargetKey) -> FileSystemTarget:
        """A luigi target for ``key``; its ``open('w')`` is atomic."""

    @abstractmethod
    def exists(self, key: TargetKey) -> bool: ...

    @abstractmethod
    def put_file(self, local_path: Path, key: TargetKey) -> None:
        """Copy a local file to ``key`` atomically."""

    @abstractmethod
    def url(self, key: TargetKey, expires_in: int) -> str | None:
        """A URL anyone can GET for ``expires_in`` seconds, or None if the store has none."""

    @abstractmethod
    def iter_bytes(self, key: TargetKey, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """Stream the object's bytes (raises FileNotFoundError when absent)."""

    @abstractmethod
    def check(self) -> str:
        """Raise :class:`StoreUnavailable` if the store cannot be used; else describe it."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for people: a folder or ``s3://bucket``."""

    def open(self, key: TargetKey, mode: str = "r") -> IO[Any]:
        return self.target(key).open(mode)

    def write_text(self, key: TargetKey, text: str) -> None:
        with self.open(key, "w") as handle:
            handle.write(text)

    def read_text(self, key: TargetKey) -> str:
        return b"".join(self.iter_bytes(key)).decode("utf-8")

    def describe(self, key: TargetKey) -> str:
        """Where ``key`` is, for people."""
        return f"{self.location}/{key.path}"


class LocalStore(TargetStore):
    """Targets under a local folder (``local_targets/`` by default)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._prefix = str(self.root).rstrip("/")  # "" for "/": every path is prefix + "/" + key

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: TargetKey) -> Path:
        """The file for ``key``; refuses anything that would resolve outside the root."""
        return Path(self._locate(key)[0])

    def _locate(self, key: TargetKey) -> tuple[str, bool]:
        """``key``'s real path and whether it is a regular file; :class:`InvalidKey` if it resolves outside the root.

        A key is names and a plain file name (:class:`TargetKey` refuses '..', '.' and empty segments),
        so its path under the (resolved) root can only lead out of it through a symbolic link. The
        key's own components are lstat'ed, one call each (``Path.resolve`` lstats every component
        from '/', in a lot of Python); only a path with a link on it is resolved in full and checked.
        """
        path = self._prefix
        mode = 0
        for part in key.path.split("/"):
            path = f"{path}/{part}"
            try:
                mode = os.lstat(path).st_mode
            except OSError:  # missing (or not searchable): nothing below it can be opened, links included
                return f"{self._prefix}/{key.path}", False
            if stat.S_ISLNK(mode):
                return self._resolve(key)
        return path, stat.S_ISREG(mode)

    def _resolve(self, key: TargetKey) -> tuple[str, bool]:
        resolved = (self.root / key.path).resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidKey(f"key {key.path!r} resolves outside the local targets folder")
        return str(resolved), resolved.is_file()

    def target(self, key: TargetKey) -> FileSystemTarget:
        return FencedLocalTarget(str(self.root / key.path))

    def exists(self, key: TargetKey) -> bool:
        return self._locate(key)[1]

    def put_file(self, local_path: Path, key: TargetKey) -> None:
        dest = self.root / key.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, open(local_path, "rb") as src:
                shutil.copyfileobj(src, out)
            fence.check(str(dest))
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def url(self, key: TargetKey, expires_in: int) -> str | None:
        return None

    def iter_bytes(self, key: TargetKey, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.path(key).open("rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"local store {self.root} cannot be created: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"local store {self.root} is not writable")
        return f"local folder {self.root}"


class S3Store(TargetStore):
    """Targets in one S3 bucket, through ``luigi.contrib.s3`` on boto3.

    Credentials, region and endpoint come the usual boto3 way (``AWS_*`` variables, profiles,
    instance roles; ``AWS_ENDPOINT_URL`` for any S3-compatible store).
    """

    kind = "s3"

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._bucket_seen = False
        self._client: tuple[int, Any] = (0, None)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def client(self) -> Any:
        """The luigi S3Client of this process, created on first use and kept (a forked process, a parallel step,
        makes its own: two processes must not share one pooled connection)."""
        pid, client = self._client
        if client is None or pid != os.getpid():
            from botocore.config import Config
            from luigi.contrib.s3 import S3Client

            config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
            client = S3Client(config=config)
            self._client = (os.getpid(), client)
        return client

    @property
    def boto(self) -> Any:
        """The boto3 low-level client under :attr:`client`."""
        return self.client.s3.meta.client

    def s3_path(self, key: TargetKey) -> str:
        return f"s3://{self.bucket}/{key.path}"

    def target(self, key: TargetKey) -> FileSystemTarget:
        target = _fenced_s3_target_class()(self.s3_path(key), client=self.client)
        target.store_key = (self, key)
        return target

    def _call(self, what: str, fn: Any, /, **kwargs: Any) -> Any:
        """``fn(**kwargs)``; S3's errors become :class:`StoreUnavailable` naming the bucket and S3's own code.

        A missing key is :class:`FileNotFoundError`. The botocore error is not chained: its code and
        message are in ours, so that a traceback shows the store's error once.
        """
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except S3UploadFailedError as exc:  # upload_file's wrapper of the ClientError it met
            failure = StoreUnavailable(f"S3 store {self.location}: {what} failed: {exc}", code=s3_error_code(exc))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"} and "Key" in kwargs:  # a missing bucket is no missing file
                raise FileNotFoundError(kwargs.get("Key", what)) from None
            if code in {"404", "NotFound"}:  # a HEAD of a bucket has no body, hence no code: its 404 is NoSuchBucket
                code, error = "NoSuchBucket", {"Message": "The specified bucket does not exist"}
            message = error.get("Message") or str(exc)
            failure = StoreUnavailable(f"S3 store {self.location}: {what} failed: {code}: {message}", code=code)
        except BotoCoreError as exc:
            failure = StoreUnavailable(f"S3 store {self.location} unreachable: {exc}")
        raise failure from None

    def exists(self, key: TargetKey) -> bool:
        """Whether ``key`` is there; a missing bucket is :class:`StoreUnavailable`, not a missing key."""
        try:
            self._call("head_object", self.boto.head_object, Bucket=self.bucket, Key=key.path)
        except FileNotFoundError:
            self._confirm_bucket()  # a HEAD answers 404 for a missing bucket as for a missing key
            return False
        return True

    def _confirm_bucket(self) -> None:
        """Raise :class:`StoreUnavailable` if the bucket does not exist (asked once; a bucket seen is remembered)."""
        if not self._bucket_seen:
            self.check()
            self._bucket_seen = True

    def put_file(self, local_path: Path, key: TargetKey) -> None:
        # upload_file streams from disk in multipart chunks: memory stays flat for big files
        fence.check(self.s3_path(key))
        self._call(
            "upload",
            self.boto.upload_file,
            Filename=str(local_path),
            Bucket=self.bucket,
            Key=key.path,
            ExtraArgs={"ContentType": served_type(key.filename)},
        )

    def url(self, key: TargetKey, expires_in: int) -> str:
        return str(
            self.boto.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key.path}, ExpiresIn=expires_in
            )
        )

    def iter_bytes(self, key: TargetKey, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        answer = self._call("get_object", self.boto.get_object, Bucket=self.bucket, Key=key.path)
        yield from answer["Body"].iter_chunks(chunk_size)

    def check(self) -> str:
        self._call("head_bucket", self.boto.head_bucket, Bucket=self.bucket)
        return f"S3 bucket {self.bucket}"


@functools.cache
def _fenced_s3_target_class() -> Any:
    """luigi's ``S3Target`` whose writes (a temp file, uploaded on close) commit through the fence.

    Built on first use: ``luigi.contrib.s3`` imports boto3, which a local-only process never needs.
    """
    from luigi.contrib.s3 import AtomicS3File, S3Target

    class FencedS3File(AtomicS3File):
        def move_to_final_destination(self) -> None:
            _fenced_commit(self, self._upload)

        def _upload(self) -> None:
            # upload_file reads each part from disk as it is sent (upload_fileobj, luigi's put_multipart,
            # holds every in-flight 8 MiB part in memory): the peak stays flat whatever the file's size
            from boto3.s3.transfer import TransferConfig

            bucket, key = self.s3_client._path_to_bucket_and_key(self.path)
            config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
            extra = {"ContentType": served_type(key.rpartition("/")[2]), **self.s3_options}
            self.s3_client.s3.meta.client.upload_file(self.tmp_path, bucket, key, Config=config, ExtraArgs=extra)

    class FencedS3Target(_FencedTemporaryPath, S3Target):
        #: the store and key it was made for: its ``exists`` is theirs (one HEAD; a missing bucket raises)
        store_key: tuple[S3Store, TargetKey] | None = None

        def exists(self) -> bool:
            if self.store_key is None:
                return bool(super().exists())
            store, key = self.store_key
            return store.exists(key)

        def open(self, mode: str = "r") -> Any:
            if mode != "w":
                return super().open(mode)
            return self.format.pipe_writer(FencedS3File(self.path, self.fs, **self.s3_options))

    return FencedS3Target


@functools.lru_cache(maxsize=16)
def _store(kind: str, local_root: Path, bucket: str) -> TargetStore:
    if kind == "local":
        return LocalStore(local_root)
    if kind == "s3":
        return S3Store(bucket)
    raise ValueError(f"unknown store kind {kind!r} (expected 'local' or 's3')")


def get_store(settings: Settings | None = None, kind: str | None = None) -> TargetStore:
    """The (cached) store of ``kind``, or the one ``settings`` choose (local when ENV=local)."""
    settings = settings or get_settings()
    return _store(kind or settings.store_kind, settings.local_targets_dir, settings.bucket)
