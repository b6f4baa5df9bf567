"""The local store: targets under a folder (``local_targets/`` by default), written by luigi's atomic files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from stat import S_ISLNK, S_ISREG
from typing import Any, TypeVar

from luigi import LocalTarget
from luigi.local_target import atomic_file
from luigi.target import AtomicLocalFile, FileSystemTarget

from nectar import fence
from nectar.config import Settings
from nectar.errors import InvalidKey, StoreUnavailable
from nectar.keys import TargetKey
from nectar.stores.base import FencedTemporaryPath, TargetStore, causes, fenced_commit, temporary_name
from nectar.stores.unlinked import UNLINKED

T = TypeVar("T")


def is_hard_link(status: os.stat_result) -> bool:
    """Whether ``status`` is a regular file's with more than one name: a hard link, maybe to a file elsewhere.

    A hard link is the file itself, not a pointer to it: nothing tells the name inside a folder from
    one outside it, so a file that has another name anywhere is refused (a symbolic link is resolved
    and checked instead).
    """
    return stat.S_ISREG(status.st_mode) and status.st_nlink > 1


def hard_link_refused(what: str, status: os.stat_result, folder: str) -> InvalidKey:
    """The refusal of a hard link, said like that of a symbolic link out of ``folder``: ``what`` is the key or path."""
    names = status.st_nlink
    return InvalidKey(f"{what} is a hard link (a file with {names} names): one may be outside {folder}")


#: the free space (bytes) below which :meth:`LocalStore.check` (``/healthz``) calls the store's disk full: less than
#: a run's files (its ``params.txt``, its logs, a small output) take
ROOM_LEAST = 1 << 20
#: the errors of a full disk: no space left, the disk quota exceeded
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _met_here(error: BaseException) -> bool:
    """Whether ``error`` was raised through code of this module (its traceback passes through a frame of it)."""
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == __file__:
            return True
        trace = trace.tb_next
    return False


class ExclusiveAtomicFile(AtomicLocalFile):
    """luigi's atomic file (written to a temporary file, committed on close) whose temporary file is a new one.

    luigi opens its temporary file with ``'w'``: a name drawn again (by a writer of the same key, or of any S3 key:
    theirs are all in one folder) would truncate the file another writer is writing, and both would commit what was
    left. Here it is made new (``O_EXCL``), and a name taken is passed over for another, as
    :meth:`LocalStore.write_text` does; its folder made when it is missing. ``beside`` is where the names
    :meth:`generate_tmp_path` draws are (``path`` unless told). luigi's ``__init__`` is replaced, not called (it opens
    the file itself): it only names the file, opens it and wraps it, as this does, and its ``tmp_path`` is this one's.
    """

    #: its temporary file's path ("" until it is made: luigi's ``__del__`` looks for it)
    _temporary = ""
    #: a second descriptor of its temporary file, holding the writer's lock on it (:func:`_new_temporary`) until it is
    #: committed (its buffer's is closed before the rename) or dropped; -1: none
    _hold = -1

    def __init__(self, path: str, beside: str | None = None) -> None:
        fd, self._temporary = _new_temporary(beside or path, self.generate_tmp_path)
        self.path = path
        try:
            self._hold = os.dup(fd)
            raw = io.FileIO(fd, "w")
        except BaseException:
            os.close(fd)
            self._release()
            raise
        raw.name = self._temporary  # what luigi's has (opened by name): a writer's ``f.name``
        io.BufferedWriter.__init__(self, raw)

    @property
    def tmp_path(self) -> str:
        return self._temporary

    def generate_tmp_path(self, path: str) -> str:
        return temporary_name(path)  # not luigi's, from the process's ``random``

    def close(self) -> None:
        """luigi's: its buffer closed, then the file committed; the writer's lock held through both."""
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        if self._hold >= 0:
            os.close(self._hold)
            self._hold = -1

    def __del__(self) -> None:
        super().__del__()  # luigi's: its temporary file removed if it is there (not committed)
        self._release()


class _FencedLocalFile(ExclusiveAtomicFile, atomic_file):
    #: its temporary file was renamed into place: none is left to remove when it is collected (luigi's ``__del__``
    #: stats the temporary path, twice for a text file: its wrapper calls it too)
    _moved = False

    def move_to_final_destination(self) -> None:
        fenced_commit(self, super().move_to_final_destination)
        self._moved = True

    def __del__(self) -> None:
        if not self._moved:  # not committed (the write failed, or the fence refused): its temporary file is removed
            super().__del__()


class FencedLocalTarget(FencedTemporaryPath, LocalTarget):
    """luigi's ``LocalTarget`` whose atomic writes commit through the fence."""

    def open(self, mode: str = "r") -> Any:
        if mode.replace("b", "").replace("t", "") != "w":
            return super().open(mode)
        # its folder is made (``mkdir -p``) when it is missing, not before every file (:func:`_in_its_folder`)
        return self.format.pipe_writer(_FencedLocalFile(self.path))


def _replace(source: Path, dest: str) -> None:
    """Rename ``source`` to ``dest``, making ``dest``'s folder (``mkdir -p``) only if it is missing."""
    try:
        os.replace(source, dest)
    except FileNotFoundError:
        if not source.exists():
            raise
        _make_folder(os.path.dirname(dest))
        os.replace(source, dest)


def _make_folder(folder: str) -> bool:
    """``mkdir -p folder``: one ``mkdir`` when its parent is there (``os.makedirs`` stats the parent first); whether
    it was made (False: it was there)."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return False
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    return True


#: a temporary file a writer of a file beside it makes (:func:`_new_temporary`): ``<name>-luigi-tmp-<n>``, as
#: :func:`~nectar.stores.base.temporary_name` draws it, or hidden (:func:`_hidden_temporary_name`)
_TEMPORARY = re.compile(r"(?:[^.].*-luigi-tmp-\d{10}|\..+-luigi-tmp-\d{10}\.tmp)", re.DOTALL)


def _held(fd: int) -> bool:
    """Lock the new temporary file ``fd`` as its writer's, and whether it is still there to write (a step's start may
    have locked and removed it between its create and this lock: :func:`remove_temporaries`)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a remover holds it, about to unlink it
        return False
    return os.fstat(fd).st_nlink > 0


def remove_temporaries(folder: str, named: re.Pattern[str] = _TEMPORARY) -> list[str]:
    """Remove the temporary files in ``folder`` (not below it) that writers killed between their open and their
    rename left there (their names ``named``: :data:`_TEMPORARY` unless told; a folder, a link: not), and name them
    (nothing if there is no such folder). A file a live writer holds (its lock, :func:`_new_temporary`: a writer
    frozen, or of another run's attempt of the same step where no luigid grants it to one worker at a time) is passed
    over: each is locked before it is removed, and the lock of a writer that died is released by the kernel."""
    removed = []
    try:
        with os.scandir(folder) as entries:
            found = [
                entry.path for entry in entries if named.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for path in found:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:  # committed or removed since the listing
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(path)
        except BlockingIOError:  # a live writer holds it
            continue
        finally:
            os.close(fd)
    return removed


def staged_beside(pid: int) -> str:
    """What an S3 writer in the process ``pid`` names its local file after, before it uploads it: its names are
    ``<temporary folder>/luigi-s3-<pid>-luigi-tmp-<n>`` (:func:`~nectar.stores.base.temporary_name`), each telling
    which process made it (:func:`remove_staged`)."""
    return os.path.join(tempfile.gettempdir(), f"luigi-s3-{pid}")


def remove_staged(pid: int) -> list[str]:
    """Remove the local files S3 writers of the process ``pid`` made and never uploaded (it was killed between a
    file's open and its upload), and name them: called once that process is dead and not yet reaped, its pid no
    other process's (:meth:`nectar.executor.Executor._reap`)."""
    folder, name = os.path.split(staged_beside(pid))
    return remove_temporaries(folder, re.compile(re.escape(name) + r"-luigi-tmp-\d{10}"))


#: how :meth:`LocalStore.write_text` makes its temporary file: a new one, written only
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


#: names :func:`_new_temporary` tries before it gives up (each taken: files left there by writers that were killed)
_TEMPORARY_TRIES = 100


def _in_its_folder(dest: str, make: Callable[[], T]) -> T:
    """``make()``, which makes a new file in ``dest``'s folder; that folder made (``mkdir -p``) and ``make()`` again
    if it is missing: made when missing, not before every file, and made again if it was made ahead and is gone
    since (the step's own code cleared it), as a rename into it makes it."""
    try:
        return make()
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dest), exist_ok=True)  # its parent too, likely: a step's new key
        return make()


def _hidden_temporary_name(dest: str) -> str:
    """A temporary name beside ``dest`` that listings pass over while it is written (a dot first:
    :data:`~nectar.stores.listing.HIDDEN`), drawn as :func:`~nectar.stores.base.temporary_name` draws its own."""
    folder, name = os.path.split(dest)
    return os.path.join(folder, f".{temporary_name(name)}.tmp")


def _new_temporary(dest: str, named: Callable[[str], str] = temporary_name) -> tuple[int, str]:
    """A new temporary file beside ``dest`` (named by ``named``: :func:`~nectar.stores.base.temporary_name`'s
    ``<name>-luigi-tmp-<n>`` unless told), opened to write, and its path; mode 0666 less the umask, as luigi's atomic
    files are made (``mkstemp``'s 0600 left a copied file unreadable to other users); its folder made when it is
    missing (:func:`_in_its_folder`). A name taken (a writer killed between its open and its rename left it) is
    passed over for another: the file is not ours to remove here, another writer may hold it (a step's next start
    removes those in its folder that no live writer holds: :meth:`LocalStore.remove_leftovers`). The file is locked
    as its writer's (``flock``, which the kernel releases as the writer dies, killed or not), the caller holding the
    descriptor (or one made of it) until the file is renamed into place or removed: :func:`remove_temporaries`
    passes over a file so held."""
    for _ in range(_TEMPORARY_TRIES):
        tmp = named(dest)
        try:
            fd = _in_its_folder(dest, partial(os.open, tmp, _NEW_FILE, 0o666))
        except FileExistsError:
            continue
        if _held(fd):
            return fd, tmp
        os.close(fd)  # removed as a leftover between its create and its lock: another name
    raise FileExistsError(errno.EEXIST, f"no free temporary name beside {dest} in {_TEMPORARY_TRIES} tries")


#: what a key that leads out of the store is refused as leaving, for people
FOLDER = "the local targets folder"
#: how :meth:`LocalStore._locate` opens a key's path: to name and stat what it reaches (nothing is read, a FIFO is not
#: waited on), a link at its end as itself; 0 where there is no ``O_PATH`` (not Linux): every key is walked
_REACH = getattr(os, "O_PATH", 0) and os.O_PATH | os.O_NOFOLLOW


class LocalStore(TargetStore):
    """Targets under a local folder (``local_targets/`` by default)."""

    kind = "local"
    takes_moved = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        #: :attr:`location`, made once (a status lookup describes its key: ``str`` of a Path is a Python call)
        self._location = str(self.root)
        self._prefix = self._location.rstrip("/")  # "" for "/": every path is prefix + "/" + key

    @classmethod
    def arguments(cls, settings: Settings) -> tuple[Path]:
        return (settings.local_targets_dir,)

    @property
    def location(self) -> str:
        return self._location

    def describe(self, key: TargetKey) -> str:
        """As :meth:`TargetStore.describe`: ``location/key``, without the property's call."""
        return f"{self._location}/{key.path}"

    def path(self, key: TargetKey) -> Path:
        """The file for ``key``; refuses anything that would resolve outside the root."""
        return Path(self._locate(key)[0])

    def _locate(self, key: TargetKey) -> tuple[str, bool]:
        """``key``'s real path and whether it is a regular file; :class:`InvalidKey` if it resolves outside the root.

        A key is names and a plain file name (:class:`TargetKey` refuses '..', '.' and empty segments),
        so its path under the (resolved) root can only lead out of it through a symbolic link. The path is
        opened once (``O_PATH``: nothing is read) by a call that refuses any link on the way or at its end
        (:mod:`nectar.stores.unlinked`, openat2): the file opened is the path's own. Where the kernel has no such
        call, the path is opened without following a link at its end and the kernel names the file it reached
        (:meth:`_reached`). Anything else (a link, a missing component, no ``/proc``) is found by :meth:`_walk`.
        A regular file with another name (:func:`is_hard_link`) is :class:`InvalidKey` too.
        """
        path = f"{self._prefix}/{key.path}"
        if not _REACH:
            return self._walk(key)
        try:  # opened only if no link is on the way or at the end (ELOOP otherwise): see nectar.stores.unlinked
            fd = UNLINKED.open(path)
        except OSError:  # a link, a missing component, or one not searchable: the walk says which, link by link
            return self._walk(key)
        if fd is None:  # a kernel without openat2: the path opened, then the file it reached named by /proc
            return self._reached(key, path)
        try:
            status = os.fstat(fd)
        finally:
            os.close(fd)
        return self._own(key, path, status)

    def _reached(self, key: TargetKey, path: str) -> tuple[str, bool]:
        """:meth:`_locate` without openat2: ``path`` opened without following a link at its end, and the file it
        reached named by the kernel (``/proc/self/fd``), which is the path itself only when no link was on the way."""
        try:
            fd = os.open(path, _REACH)
        except OSError:  # missing, or not searchable: the walk says which, link by link
            return self._walk(key)
        try:
            reached = os.readlink(f"/proc/self/fd/{fd}")
            status = os.fstat(fd)
        except OSError:  # no /proc
            return self._walk(key)
        finally:
            os.close(fd)
        if reached != path or S_ISLNK(status.st_mode):  # a link on the way or at the end
            return self._walk(key)
        return self._own(key, path, status)

    def _own(self, key: TargetKey, path: str, status: os.stat_result) -> tuple[str, bool]:
        """What :meth:`_locate` answers of ``path``, reached with no link on the way: ``status`` its file's (a hard
        link refused)."""
        if status.st_nlink > 1:  # a file with one name is no hard link: no call made for it (a status lookup's path)
            self._refuse_hard_link(key, status)
        return path, S_ISREG(status.st_mode)

    def _walk(self, key: TargetKey) -> tuple[str, bool]:
        """:meth:`_locate`, the key's own components lstat'ed one call each (``Path.resolve`` lstats every component
        from '/', in a lot of Python); only a path with a link on it is resolved in full and checked."""
        path = self._prefix
        status: os.stat_result | None = None
        for part in key.path.split("/"):
            path = f"{path}/{part}"
            try:
                status = os.lstat(path)
            except OSError:  # missing (or not searchable): nothing below it can be opened, links included
                return f"{self._prefix}/{key.path}", False
            if stat.S_ISLNK(status.st_mode):
                return self._resolve(key)
        assert status is not None  # a key has segments
        self._refuse_hard_link(key, status)
        return path, stat.S_ISREG(status.st_mode)

    def _resolve(self, key: TargetKey) -> tuple[str, bool]:
        resolved = (self.root / key.path).resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidKey(f"key {key.path!r} resolves outside {FOLDER}")
        try:
            status = resolved.stat()
        except OSError:
            return str(resolved), False
        self._refuse_hard_link(key, status)
        return str(resolved), stat.S_ISREG(status.st_mode)

    @staticmethod
    def _refuse_hard_link(key: TargetKey, status: os.stat_result) -> None:
        if is_hard_link(status):
            raise hard_link_refused(f"key {key.path!r}", status, FOLDER)

    def _make_folder_of(self, key: TargetKey) -> bool:
        """One ``mkdir`` of the folder about to get files, not a failed create or rename before it, then the folder
        made and the call made again: a step's folder and its ``log/`` are new in a run of a new key."""
        return _make_folder(os.path.dirname(f"{self._prefix}/{key.path}"))

    def remove_leftovers(self, key: TargetKey) -> list[str]:
        """:meth:`TargetStore.remove_leftovers`: the temporary files (:func:`remove_temporaries`) in ``key``'s
        folder and in its ``log/``, where its files are written beside their place."""
        folder = f"{self._prefix}/{key.folder}"
        return remove_temporaries(folder) + remove_temporaries(f"{folder}/log")

    def target(self, key: TargetKey) -> FileSystemTarget:
        return FencedLocalTarget(f"{self._prefix}/{key.path}")  # a key is plain names: no Path needed to join it

    def exists(self, key: TargetKey) -> bool:
        return self._locate(key)[1]

    def target_exists(self, key: TargetKey) -> bool:
        """As its target's ``exists()`` (luigi's ``LocalFileSystem.exists``: ``os.path.exists`` of its path, links
        followed), without making the target, a ``LocalTarget`` (a submission's check of its task's output: 4.6 ->
        3.2 µs with its stat); a store whose targets are another's asks them."""
        if type(self).target is not LocalStore.target:
            return super().target_exists(key)
        return os.path.exists(f"{self._prefix}/{key.path}")

    def write_text(self, key: TargetKey, text: str, new_folder: bool = False) -> None:
        """Write ``key`` atomically, as its target's ``open("w")`` writes it: the same bytes (UTF-8, line ends as
        given) in a temporary file beside it (``<name>-luigi-tmp-<n>``, mode 0666 less the umask), renamed into place
        through the fence, removed if anything fails first. Written with ``os`` calls: no luigi file objects (three
        of them per text file), nor the ``fstat`` and two ``lseek`` of opening one, 17 µs of CPU instead of 46-83
        for a step's params.txt, on its way from luigid's grant to ``run()``."""
        dest = f"{self._prefix}/{key.path}"
        if new_folder:
            self._make_folder_of(key)
        fd, tmp = _new_temporary(dest)
        try:
            try:
                data = memoryview(text.encode())
                while data:  # a write may take less than it is given
                    data = data[os.write(fd, data) :]
                fence.check(dest)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            os.close(fd)  # the writer's lock held until it is committed or removed

    def _put(self, local_path: Path, key: TargetKey, move: bool) -> None:
        dest = f"{self._prefix}/{key.path}"  # a string: a Path made of it was ~25 µs of a step's log, twice a step
        if move:
            try:  # a rename: the file is committed whole, and nothing is copied
                _replace(local_path, dest)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # on another file system than the store: copied below
                    raise
        fd, tmp = _new_temporary(dest, _hidden_temporary_name)  # its folder made by put_files, or ahead
        with os.fdopen(fd, "wb") as out:  # closed, the writer's lock released, once committed or removed
            try:
                with open(local_path, "rb") as src:
                    shutil.copyfileobj(src, out)
                out.flush()
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        if move:  # taken, as a rename would have: the caller has nothing left to remove
            local_path.unlink(missing_ok=True)

    def url(self, key: TargetKey, expires_in: int) -> str | None:
        return None

    def iter_bytes(self, key: TargetKey, chunk_size: int = 1 << 16) -> Iterator[bytes]:
        with self.path(key).open("rb") as handle:
            self._refuse_hard_link(key, os.fstat(handle.fileno()))  # the file opened: no link made since the check
            while chunk := handle.read(chunk_size):
                yield chunk

    def check(self) -> str:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"local store {self.root} cannot be created: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StoreUnavailable(f"local store {self.root} is not writable")
        full = self.no_room()
        if full is not None:  # a run's params.txt, its logs, its output cannot be written (review23)
            raise StoreUnavailable(full)
        return f"local folder {self.root}"

    def no_room(self) -> str | None:
        free = self._free()
        return self._no_room(free) if free < ROOM_LEAST else None

    def _free(self) -> int:
        room = os.statvfs(self.root)
        return room.f_bavail * room.f_frsize

    def _no_room(self, free: int) -> str:
        return f"local store {self.root} has no room: its disk is full ({free:,} bytes free)"

    def disk_full(self, exc: BaseException) -> str | None:
        """``exc`` (or an error it was raised from) is ENOSPC or EDQUOT met by this module's code (a run's
        ``params.txt``, its logs, an output's commit: the disk freed since then changes nothing), or of a file in this
        store, or naming no file while the store's disk has under :data:`ROOM_LEAST` free (the measure of
        ``/healthz``): a task's write to an output opened earlier names none. But a task's write whose attempt holds
        (nearly) the whole disk uncommitted is the task's: its output is larger than the disk itself, no room an
        operator makes lets it end, and waiting would requeue it for good (review24). One of a file elsewhere (the
        task's own files) is the task's."""
        error = next((e for e in causes(exc) if isinstance(e, OSError) and e.errno in FULL_ERRNOS), None)
        if error is None:
            return None
        try:
            room = os.statvfs(self.root)
        except OSError:
            return None
        free, capacity = room.f_bavail * room.f_frsize, room.f_blocks * room.f_frsize
        named = [Path(os.fsdecode(f)) for f in (error.filename, error.filename2) if isinstance(f, str | bytes)]
        if _met_here(error):
            return self._no_room(free)
        if named and not any(path.absolute().is_relative_to(self.root) for path in named):
            return None
        # the task's own write to the store: not an outage where what this attempt holds there uncommitted is (nearly)
        # the whole disk: an output larger than the disk itself fits in no room an operator can make (review24)
        if self._held_here() + ROOM_LEAST > capacity:
            return None
        return self._no_room(free) if named or free < ROOM_LEAST else None

    def _held_here(self) -> int:
        """The bytes of this store's temporary files (:data:`_TEMPORARY`) this process holds open: its attempt's
        outputs and logs being written, uncommitted (0 where ``/proc/self/fd`` cannot be read)."""
        held = 0
        with contextlib.suppress(OSError), os.scandir("/proc/self/fd") as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    path = os.readlink(entry.path)
                    if path.startswith(self._prefix + "/") and _TEMPORARY.fullmatch(os.path.basename(path)):
                        held += os.stat(entry.path).st_size
        return held
