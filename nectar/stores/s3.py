"""The S3 store: targets in one bucket through ``luigi.contrib.s3`` on boto3, S3's errors named and sorted.

The S3 client is created lazily, once per store and process; boto3 is imported on first use only,
so a local-only process never loads it. A worker loads boto3's S3 models once (:func:`load_s3_models`),
before it forks the processes that execute attempts, and gunicorn's master before it forks the API's workers, so
that none of them parses them again; each resolves its own credentials when it makes its client.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from luigi.target import FileSystemTarget

from nectar.config import Settings
from nectar.errors import StoreUnavailable
from nectar.keys import TargetKey
from nectar.luigi_internals import s3_bucket_and_key
from nectar.stores.base import FencedTemporaryPath, TargetStore, causes, fenced_commit, served_type
from nectar.stores.local import ExclusiveAtomicFile, staged_beside

logger = logging.getLogger(__name__)

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


def s3_error_code(exc: BaseException) -> str | None:
    """The S3 error code behind ``exc`` (botocore's, or one it caused or happened during), None if none."""
    for current in causes(exc):
        if isinstance(current, StoreUnavailable):
            code = current.code
        else:  # botocore's ClientError (boto3's upload error is raised while handling one)
            response = getattr(current, "response", None)
            code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
        if code:
            return str(code)
    return None


def load_s3_models() -> None:
    """Load what making an S3 client reads (botocore's S3 models, endpoints and partitions, boto3's S3 resource
    model) into boto3's default session, where the clients of this process and of every process it forks then find
    it: about 0.3 s of CPU each otherwise, much more than a small task's work.

    Resolves no credentials and opens no connection: the client made to load them is unsigned (botocore then skips
    its credential chain) and sends nothing. A client resolving an instance or container role's credentials would
    fetch them over HTTP on a connection botocore keeps, and every process forked after would share that socket.

    A failure (boto3's configuration unreadable, an invalid endpoint URL) is logged, not raised: each client made
    later fails with the reason itself, where it is used.
    """
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        boto3.resource("s3", config=_client_config().merge(Config(signature_version=UNSIGNED)))
    except (BotoCoreError, ValueError, OSError):
        logger.warning("could not load boto3's S3 models ahead of the S3 clients", exc_info=True)


def _client_config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})


class S3Store(TargetStore):
    """Targets in one S3 bucket, through ``luigi.contrib.s3`` on boto3.

    Credentials, region and endpoint come the usual boto3 way (``AWS_*`` variables, profiles,
    instance roles; ``AWS_ENDPOINT_URL`` for any S3-compatible store).
    """

    kind = "s3"
    remote = True

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self._bucket_seen = False
        self._client: tuple[int, Any] = (0, None)

    @classmethod
    def arguments(cls, settings: Settings) -> tuple[str]:
        return (settings.bucket,)

    @classmethod
    def is_permanent(cls, exc: BaseException) -> bool:
        return s3_error_code(exc) in PERMANENT_S3_ERRORS

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def client(self) -> Any:
        """The luigi S3Client of this process, created on first use and kept (a forked process, a parallel step,
        makes its own: two processes must not share one pooled connection)."""
        pid, client = self._client
        if client is None or pid != os.getpid():
            from luigi.contrib.s3 import S3Client

            client = S3Client(config=_client_config())
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

    def _put(self, local_path: Path, key: TargetKey, move: bool) -> None:
        # upload_file streams from disk in multipart chunks: memory stays flat for big files
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

    class FencedS3File(ExclusiveAtomicFile, AtomicS3File):
        """luigi's ``AtomicS3File``, its local file a new one (every S3 key's are in one folder): luigi's
        ``__init__`` is replaced (:class:`~nectar.stores.local.ExclusiveAtomicFile`), which sets what it set."""

        def __init__(self, path: str, s3_client: Any, **kwargs: Any) -> None:
            self.s3_client, self.s3_options = s3_client, kwargs
            super().__init__(path, staged_beside(os.getpid()))  # its names: luigi-s3-<pid>-luigi-tmp-<n>

        def move_to_final_destination(self) -> None:
            fenced_commit(self, self._upload)

        def _upload(self) -> None:
            # upload_file reads each part from disk as it is sent (upload_fileobj, luigi's put_multipart,
            # holds every in-flight 8 MiB part in memory): the peak stays flat whatever the file's size
            from boto3.s3.transfer import TransferConfig

            bucket, key = s3_bucket_and_key(self.path)
            config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
            extra = {"ContentType": served_type(key.rpartition("/")[2]), **self.s3_options}
            self.s3_client.s3.meta.client.upload_file(self.tmp_path, bucket, key, Config=config, ExtraArgs=extra)

    class FencedS3Target(FencedTemporaryPath, S3Target):
        #: the store and key it was made for: its ``exists`` is theirs (one HEAD; a missing bucket raises)
        store_key: tuple[S3Store, TargetKey] | None = None

        def exists(self) -> bool:
            if self.store_key is None:
                return bool(super().exists())
            store, key = self.store_key
            return store.exists(key)

        def open(self, mode: str = "r") -> Any:
            """As a local target opens: ``'wb'``/``'rb'`` (``'t'`` too) are ``'w'``/``'r'``, the target's format
            deciding what is written (luigi's ``S3Target`` takes ``'r'`` and ``'w'`` only); another mode is refused
            by luigi, naming it."""
            plain = mode.replace("b", "").replace("t", "")
            if plain != "w":
                return super().open(plain if plain == "r" else mode)
            return self.format.pipe_writer(FencedS3File(self.path, self.fs, **self.s3_options))

    return FencedS3Target
