"""What every target store answers (:class:`TargetStore`), how files are served, and commits through the fence."""

from __future__ import annotations

import mimetypes
import os
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, ClassVar

from luigi.target import AtomicLocalFile, FileSystemTarget

from nectar import fence
from nectar.config import Settings
from nectar.keys import TargetKey

#: the types a file is served as, by its name; anything else (HTML, SVG, scripts...) is served as bytes, so that an
#: output can never run as a page of the API's origin nor of a bucket's
SERVED_TYPES = ("text/plain", "text/csv", "application/json")
BINARY = "application/octet-stream"


def served_type(filename: str) -> str:
    """The content type a file is served as, by its name: the local store's downloads and S3's uploads alike."""
    guessed = "text/plain" if filename.endswith(".log") else mimetypes.guess_type(filename)[0]
    return guessed if guessed in SERVED_TYPES else BINARY


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, and so on (each once: a chain may loop)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def fenced_commit(atomic: AtomicLocalFile, commit: Any) -> None:
    """Commit an atomic file through the fence; a refused commit leaves no temporary file behind."""
    try:
        fence.check(atomic.path)
    except BaseException:
        Path(atomic.tmp_path).unlink(missing_ok=True)
        raise
    commit()


def temporary_name(path: str) -> str:
    """A temporary name beside ``path`` (``<path>-luigi-tmp-<n>``, as luigi names its atomic files), ``n`` drawn from
    the kernel (``os.urandom``), not from the process's ``random``: a task's code may seed that one, and each name
    the service or luigi drew for a target of the task shifted the sequence the task then drew."""
    return f"{path}-luigi-tmp-{int.from_bytes(os.urandom(5), 'big') % 10_000_000_000:010d}"


class FencedTemporaryPath:
    """``temporary_path()`` (a task writes a path, luigi renames it into place) that renames through the fence."""

    path: str
    fs: Any

    @contextmanager
    def temporary_path(self) -> Iterator[str]:
        """luigi's ``FileSystemTarget.temporary_path`` (its folder made, the path renamed into place once the
        ``with`` ends without an error), its name drawn by :func:`temporary_name`, and the rename through the fence:
        a refused one leaves no temporary file behind."""
        slashless = self.path.rstrip("/").rstrip("\\")
        slash = self.path[-1:] if self.path[-1:] in ("/", "\\") else ""  # a folder's trailing slash, kept
        temporary = temporary_name(slashless) + slash
        folder = os.path.dirname(slashless)
        if folder:
            self.fs.mkdir(folder, parents=True, raise_if_exists=False)
        yield temporary
        try:
            fence.check(self.path)
        except BaseException:
            with suppress(Exception):
                self.fs.remove(temporary)
            raise
        self.fs.rename_dont_move(temporary, self.path)


class TargetStore(ABC):
    """Where the targets of one kind live.

    A store hands out luigi targets (whose writes are atomic: ``LocalTarget``'s atomic file,
    ``S3Target``'s temp file uploaded on close) and answers ``exists``, ``url`` and ``put_file``.
    Every commit (the rename, the upload) first passes :func:`nectar.fence.check`, so an attempt
    that lost its run never leaves an output behind.
    """

    #: the name settings and task classes choose this kind by (its entry in :data:`nectar.stores.STORE_KINDS`)
    kind: ClassVar[str]
    #: whether the store is off this machine (an API elsewhere reads it): a running task's logs are copied
    #: there as they grow, not only when it ends
    remote: ClassVar[bool] = False
    #: whether :meth:`put_files` with ``move`` always takes the local files (none is left where it was)
    takes_moved: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def arguments(cls, settings: Settings) -> tuple[Hashable, ...]:
        """What ``cls(*arguments)`` builds the store of ``settings`` from (stores are cached by them)."""

    @classmethod
    def is_permanent(cls, exc: BaseException) -> bool:
        """Whether ``exc`` is an error of this kind that trying again cannot cure (a missing bucket)."""
        return False

    @abstractmethod
    def target(self, key: TargetKey) -> FileSystemTarget:
        """A luigi target for ``key``; its ``open('w')`` is atomic."""

    @abstractmethod
    def exists(self, key: TargetKey) -> bool: ...

    def target_exists(self, key: TargetKey) -> bool:
        """What :meth:`target`'s ``exists()`` answers for ``key`` (luigi's ``complete()`` of a task whose output it
        is), where a store may answer it without making the target."""
        return bool(self.target(key).exists())

    def put_file(self, local_path: Path, key: TargetKey) -> None:
        """Copy a local file to ``key`` atomically."""
        self.put_files([(local_path, key)])

    def put_files(self, files: Sequence[tuple[Path, TargetKey]], move: bool = False, new_folder: bool = True) -> None:
        """Copy local files to keys of one folder (a step's logs), each atomically, through the fence once for them
        all: the window a lost attempt has is their commits, one after the other. With ``move``, a store on this
        machine may take a file instead of copying it (its local path is then gone). ``new_folder``: their folder
        may not be made yet (not made ahead: :meth:`make_folder_of`)."""
        if not files:
            return
        folders = {key.folder + "/" + key.filename.rpartition("/")[0] for _, key in files}
        if len(folders) > 1:
            raise ValueError(f"put_files commits files of one folder, not of {', '.join(sorted(folders))}")
        fence.check(self.describe(files[0][1]))
        if new_folder:
            self._make_folder_of(files[0][1])
        for local_path, key in files:
            self._put(local_path, key, move)

    def make_folder_of(self, key: TargetKey) -> bool:
        """Make ``key``'s folder (``mkdir -p``) ahead of the files to come in it, where a store has folders; a file
        written there later makes it again if it is gone by then. Whether it is new (nothing can be left in it)."""
        return self._make_folder_of(key)

    def _make_folder_of(self, key: TargetKey) -> bool:
        """Make ``key``'s folder ahead of files committed into it, where a store has folders (none by default);
        whether it is new."""
        return False

    def remove_leftovers(self, key: TargetKey) -> list[str]:
        """Remove what writers killed between the open and the commit of a file left in ``key``'s folder, and say
        what: called where no live writer can hold any of it (the step of the folder starting in an attempt that
        owns its run: :class:`nectar.task._Recording`). Nothing where a store leaves nothing (the default)."""
        return []

    @abstractmethod
    def _put(self, local_path: Path, key: TargetKey, move: bool) -> None:
        """Commit a local file to ``key`` atomically (the fence passed); with ``move``, take it if this store can."""

    @abstractmethod
    def url(self, key: TargetKey, expires_in: int) -> str | None:
        """A URL anyone can GET for ``expires_in`` seconds, or None if the store has none."""

    @abstractmethod
    def iter_bytes(self, key: TargetKey, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        """Stream the object's bytes (raises FileNotFoundError when absent)."""

    @abstractmethod
    def check(self) -> str:
        """Raise :class:`StoreUnavailable` if the store cannot be used; else describe it."""

    def no_room(self) -> str | None:
        """What to say of the store's disk if it is full now (naming the store and its free space), else None."""
        return None

    def disk_full(self, exc: BaseException) -> str | None:
        """If ``exc`` is this store's disk (or quota) full, what to say of it (the store and its free space): an
        outage the worker waits out, not the task's failure; else None (a store with no disk of its own: S3)."""
        return None

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for people: a folder or ``s3://bucket``."""

    def open(self, key: TargetKey, mode: str = "r") -> IO[Any]:
        return self.target(key).open(mode)

    def write_text(self, key: TargetKey, text: str, new_folder: bool = False) -> None:
        """Write ``key`` atomically; ``new_folder``: its folder is likely not made yet (a step's first file)."""
        if new_folder:
            self._make_folder_of(key)
        with self.open(key, "w") as handle:
            handle.write(text)

    def read_text(self, key: TargetKey) -> str:
        return b"".join(self.iter_bytes(key)).decode("utf-8")

    def describe(self, key: TargetKey) -> str:
        """Where ``key`` is, for people."""
        return f"{self.location}/{key.path}"
