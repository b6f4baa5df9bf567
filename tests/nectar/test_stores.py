"""Target stores over a real folder and a real (moto) S3 server: atomic writes, URLs, failures."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from nectar.config import Settings
from nectar.errors import InvalidKey, StoreUnavailable
from nectar.keys import TargetKey
from nectar.stores import STORE_KINDS, TargetStore, get_store, local
from nectar.stores.local import LocalStore
from nectar.stores.s3 import S3Store
from nectar.stores.unlinked import UNLINKED
from tests.conftest import free_port
from tests.helpers.calls import file_calls

KEY = TargetKey.parse("chains/etl/sales_chain/AggregateSalesTask/0123456789abcdef0123456789abcdef/out.txt")
PAYLOAD = bytes(range(256)) * 300 + "é✓\n".encode()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, settings: Settings) -> TargetStore:
    if request.param == "s3":
        return get_store(request.getfixturevalue("s3_settings"))
    return get_store(settings)


def test_writes_are_atomic_and_read_back(store: TargetStore) -> None:
    assert not store.exists(KEY)
    with store.open(KEY, "w") as handle:
        handle.write("half")
        assert not store.exists(KEY)  # nothing visible until the write is complete
        handle.write(" and whole\n")
    assert store.exists(KEY)
    assert store.read_text(KEY) == "half and whole\n"
    assert store.describe(KEY).endswith(KEY.path)


def test_put_file_copies_exact_bytes(store: TargetStore, tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(PAYLOAD)
    store.put_file(source, KEY.with_file("blob.bin"))
    assert b"".join(store.iter_bytes(KEY.with_file("blob.bin"), chunk_size=1000)) == PAYLOAD
    with pytest.raises(FileNotFoundError):
        b"".join(store.iter_bytes(KEY.with_file("missing.bin")))


@pytest.mark.parametrize("where", ["same file system", "another file system"])
def test_put_files_moves_what_it_can_and_copies_the_rest(settings: Settings, tmp_path: Path, where: str) -> None:
    """A local store takes a moved file by a rename; from another file system (/dev/shm's tmpfs) it copies it and
    removes it: with ``move`` none is left where it was (its caller removes nothing)."""
    same = where == "same file system"
    folder = tmp_path if same else Path("/dev/shm")
    if not folder.is_dir() or (os.stat(folder).st_dev == os.stat(settings.local_targets_dir.parent).st_dev) != same:
        pytest.skip(f"no {where} here")
    source = folder / f"nectar-{os.getpid()}-{tmp_path.name}.log"
    source.write_bytes(PAYLOAD)
    store = get_store(settings)
    try:
        store.put_files([(source, KEY.with_file("log/stdout.log"))], move=True)
        assert b"".join(store.iter_bytes(KEY.with_file("log/stdout.log"))) == PAYLOAD
        assert not source.exists()
    finally:
        source.unlink(missing_ok=True)


@pytest.mark.parametrize("move", [False, True], ids=["copied", "moved from another file system"])
def test_a_file_copied_into_a_local_store_has_the_mode_of_one_written_there(
    settings: Settings, tmp_path: Path, move: bool
) -> None:
    """A file the local store copies in (``put_file``; a log moved from another file system) is made as the files it
    writes are (``write_text``, a target's ``open("w")``: mode 0666 less the umask), and as a moved one keeps its
    own: it was 0600 (``mkstemp``'s), a file no other user of the store's readers could read. Its temporary name is
    still hidden from listings while it is copied (a dot first)."""
    folder = Path("/dev/shm") if move else tmp_path
    if move and (not folder.is_dir() or os.stat(folder).st_dev == os.stat(settings.local_targets_dir.parent).st_dev):
        pytest.skip("no other file system here")
    source = folder / f"nectar-{os.getpid()}-{tmp_path.name}.log"
    source.write_bytes(PAYLOAD)
    store = get_store(settings)
    try:
        store.write_text(KEY.with_file("params.txt"), "{}\n")
        store.put_files([(source, KEY.with_file("blob.bin"))], move=move)
    finally:
        source.unlink(missing_ok=True)
    written, copied = (os.stat(store.path(KEY.with_file(name))).st_mode & 0o777 for name in ("params.txt", "blob.bin"))
    assert written & 0o044, "the umask leaves nothing for others to read: the two cannot differ here"
    assert copied == written, (oct(copied), oct(written))
    assert b"".join(store.iter_bytes(KEY.with_file("blob.bin"))) == PAYLOAD
    assert sorted(os.listdir(store.path(KEY.with_file("blob.bin")).parent)) == ["blob.bin", "params.txt"]


def test_a_local_step_folder_is_made_once_not_before_each_file(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's files (params.txt, out.txt, its logs moved in) go to folders made when they are missing, each once
    (``mkdir -p``), not made again before every file; a missing log file is no folder's fault: it is told."""
    store = get_store(settings)
    made: list[str] = []
    mkdir = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda path, *args: made.append(str(path)) or mkdir(path, *args))
    logs = [tmp_path / "stdout.log", tmp_path / "stderr.log"]
    for log in logs:
        log.write_text(log.name)

    store.write_text(KEY.with_file("params.txt"), "{}")
    store.write_text(KEY, "out")
    store.put_files([(log, KEY.with_file(f"log/{log.name}")) for log in logs], move=True)

    folder = f"{store.location}/{KEY.folder}"
    assert [path for path in made if path.startswith(folder)] == [folder, f"{folder}/log"]
    assert [store.read_text(key) for key in (KEY.with_file("params.txt"), KEY)] == ["{}", "out"]
    assert [store.read_text(KEY.with_file(f"log/{log.name}")) for log in logs] == ["stdout.log", "stderr.log"]
    with pytest.raises(FileNotFoundError):
        store.put_files([(tmp_path / "gone.log", KEY.with_file("log/gone.log"))], move=True)


def test_a_new_local_step_folder_gets_each_file_in_one_call(settings: Settings, tmp_path: Path) -> None:
    """A step of a new key: its folder made first (params.txt, ``new_folder``), then params.txt's temporary file
    opened once and renamed; its ``log/`` made before the two logs are moved in by one rename each. No call that
    fails first (an open or a rename into a missing folder, then a stat and a ``mkdir``), no removal."""
    store = get_store(settings)
    folder = f"{store.location}/{KEY.folder}"
    Path(folder).parent.mkdir(parents=True)  # its task's folder is there: a run of it ran before
    logs = [tmp_path / "stdout.log", tmp_path / "stderr.log"]
    for log in logs:
        log.write_text(log.name)
    with file_calls() as calls:
        store.write_text(KEY.with_file("params.txt"), "{}", new_folder=True)
        store.put_files([(log, KEY.with_file(f"log/{log.name}")) for log in logs], move=True)

    mine = [(event, path) for event, path in calls if path.startswith((folder, str(tmp_path)))]
    assert [event for event, _ in mine] == ["os.mkdir", "open", "os.rename", "os.mkdir", "os.rename", "os.rename"]
    assert [path for _, path in mine[::3]] == [folder, f"{folder}/log"]
    assert [store.read_text(KEY.with_file(f"log/{log.name}")) for log in logs] == ["stdout.log", "stderr.log"]
    assert not any(log.exists() for log in logs)


@pytest.mark.parametrize("fails", [False, True])
def test_a_local_atomic_write_leaves_no_temporary_file_and_looks_for_none_once_committed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    """A committed write's temporary file is gone by its rename: nothing looks for it afterwards (luigi's atomic file
    stats it as it is collected, twice for text); a write that failed has its temporary file removed."""
    store = get_store(settings)
    folder = Path(f"{store.location}/{KEY.folder}")
    folder.mkdir(parents=True)
    exists = os.path.exists
    looked: list[str] = []
    monkeypatch.setattr(os.path, "exists", lambda path: looked.append(str(path)) or exists(path))

    handle = store.open(KEY, "w")
    with contextlib.suppress(RuntimeError), handle:
        handle.write("out")
        if fails:
            raise RuntimeError("the task failed while writing")
    del handle
    gc.collect()

    assert [path.name for path in folder.iterdir()] == ([] if fails else [KEY.filename])
    temporary = [path for path in looked if "-luigi-tmp-" in path]
    assert len(set(temporary)) == 1 if fails else temporary == []


def test_write_text_writes_the_bytes_its_targets_open_writes(store: TargetStore) -> None:
    """``write_text`` (params.txt, ``write_file``) commits the bytes a target opened for writing commits for the same
    text, non-ASCII characters and line ends included, over a file already there too."""
    text = '{\n  "n": "é✓"\r\n}\n\ttab'
    with store.open(KEY, "w") as handle:
        handle.write(text)
    by_target = b"".join(store.iter_bytes(KEY))
    written = KEY.with_file("params.txt")
    store.write_text(written, "first, overwritten\n")

    store.write_text(written, text)

    assert b"".join(store.iter_bytes(written)) == by_target == text.encode()


def test_put_files_commits_files_of_one_folder(store: TargetStore, tmp_path: Path) -> None:
    source = tmp_path / "blob.bin"
    source.write_bytes(PAYLOAD)
    with pytest.raises(ValueError, match="one folder"):
        store.put_files([(source, KEY.with_file("log/stdout.log")), (source, KEY.with_file("blob.bin"))])
    assert not store.exists(KEY.with_file("log/stdout.log"))


def test_presigned_url_downloads_the_exact_bytes(s3_settings: Settings, tmp_path: Path, moto_server: str) -> None:
    store = get_store(s3_settings)
    assert isinstance(store, S3Store)
    source = tmp_path / "blob.bin"
    source.write_bytes(PAYLOAD)
    store.put_file(source, KEY)

    url = store.url(KEY, expires_in=60)

    assert url.startswith(moto_server) and "Signature" in url and "Expires" in url
    answer = requests.get(url, timeout=60)
    assert answer.status_code == 200 and answer.content == PAYLOAD


def test_local_store_has_no_url_and_stays_in_its_root(settings: Settings) -> None:
    store = get_store(settings)
    assert isinstance(store, LocalStore) and store.url(KEY, 60) is None
    assert store.path(KEY) == settings.local_targets_dir / KEY.path
    assert store.check() == f"local folder {settings.local_targets_dir}"


def test_missing_bucket_and_unreachable_s3_are_unavailable(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreUnavailable, match="head_bucket failed"):
        S3Store("no-such-bucket-here").check()
    assert get_store(s3_settings).check() == f"S3 bucket {s3_settings.bucket}"

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        S3Store(s3_settings.bucket).exists(KEY)


def test_unwritable_local_store_is_unavailable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("a file, not a folder")
        with pytest.raises(StoreUnavailable, match="cannot be created"):
            LocalStore(blocker / "targets").check()
    else:
        tmp_path.chmod(0o500)
        with pytest.raises(StoreUnavailable):
            LocalStore(tmp_path / "targets").check()


@pytest.mark.parametrize("link", ["file", "folder", "chain folder"])
def test_a_local_key_linking_out_of_the_store_is_refused(settings: Settings, tmp_path: Path, link: str) -> None:
    """However deep the link on the way to the file, exists() and path() refuse rather than follow it."""
    store = get_store(settings)
    outside = tmp_path / "outside"
    real = outside / KEY.path if link == "chain folder" else outside / "out.txt"
    real.parent.mkdir(parents=True)
    real.write_text("not ours\n")
    path = settings.local_targets_dir / KEY.path
    if link == "file":
        path.parent.mkdir(parents=True)
        path.symlink_to(real)
    elif link == "folder":
        path.parent.parent.mkdir(parents=True)
        path.parent.symlink_to(outside, target_is_directory=True)
    else:  # chains/<type>/<chain> itself leads out
        chain_folder = settings.local_targets_dir / "chains" / KEY.chain_type / KEY.chain
        chain_folder.parent.mkdir(parents=True)
        chain_folder.symlink_to(outside / "chains" / KEY.chain_type / KEY.chain, target_is_directory=True)

    with pytest.raises(InvalidKey, match="outside the local targets folder"):
        store.exists(KEY)
    with pytest.raises(InvalidKey, match="outside the local targets folder"):
        store.path(KEY)


def test_a_local_link_within_the_store_is_followed(settings: Settings) -> None:
    store = get_store(settings)
    other = KEY.with_file("other.txt")
    store.write_text(other, "the real one\n")
    (settings.local_targets_dir / KEY.path).symlink_to(settings.local_targets_dir / other.path)

    assert store.exists(KEY)
    assert store.path(KEY) == settings.local_targets_dir / other.path
    assert store.read_text(KEY) == "the real one\n"


@pytest.mark.skipif(not UNLINKED.available, reason="a kernel without openat2 (before Linux 5.6)")
def test_a_local_look_at_a_key_with_no_link_on_its_path_asks_proc_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status lookup's look at its output: one open that refuses a link anywhere on the path (openat2), not an open
    then a ``readlink`` of ``/proc/self/fd`` to name the file it reached (~4 us of CPU a lookup)."""
    store = get_store(settings)
    store.write_text(KEY, "made\n")
    named: list[str] = []
    readlink = os.readlink
    monkeypatch.setattr(
        os, "readlink", lambda path, *args, **kwargs: named.append(path) or readlink(path, *args, **kwargs)
    )

    assert store.exists(KEY) and not store.exists(KEY.with_file("other.txt"))
    assert store.path(KEY) == settings.local_targets_dir / KEY.path
    assert named == []


@pytest.mark.parametrize("link", ["none", "in the store", "out of it", "folder out of it", "missing"])
def test_a_local_key_is_answered_alike_by_a_kernel_without_openat2(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str
) -> None:
    """Where the kernel has no openat2 (before Linux 5.6, or a filter refusing it: ENOSYS), the look names the file
    the path reached through /proc: a file, a link within the store or out of it, a missing key answer as with it."""
    store = get_store(settings)
    other, outside = KEY.with_file("other.txt"), tmp_path / "outside"
    outside.mkdir()
    (outside / "out.txt").write_text("not ours\n")
    store.write_text(other, "the real one\n")
    path = settings.local_targets_dir / KEY.path
    if link == "none":
        store.write_text(KEY, "made\n")
    elif link == "in the store":
        path.symlink_to(settings.local_targets_dir / other.path)
    elif link == "out of it":
        path.symlink_to(outside / "out.txt")
    elif link == "folder out of it":
        key = KEY.with_file("log/out.txt")
        (settings.local_targets_dir / KEY.folder / "log").symlink_to(outside, target_is_directory=True)

    def answers(key: TargetKey = KEY) -> tuple[object, object]:
        found = []
        for look in (store.exists, store.path):
            try:
                found.append(look(key))
            except InvalidKey as exc:
                found.append(str(exc))
        return found[0], found[1]

    key = KEY.with_file("log/out.txt") if link == "folder out of it" else KEY
    with_it = answers(key)
    monkeypatch.setattr(UNLINKED, "syscall", lambda *args: -1)
    monkeypatch.setattr(ctypes, "get_errno", lambda: errno.ENOSYS)

    assert answers(key) == with_it
    assert not UNLINKED.available  # asked once, then not again
    assert (
        with_it
        == {
            "none": (True, path),
            "in the store": (True, settings.local_targets_dir / other.path),
            "out of it": (f"key {KEY.path!r} resolves outside the local targets folder",) * 2,
            "folder out of it": (f"key {key.path!r} resolves outside the local targets folder",) * 2,
            "missing": (False, path),
        }[link]
    )


def test_a_local_folder_or_a_missing_parent_is_no_output(settings: Settings) -> None:
    store = get_store(settings)
    assert not store.exists(KEY)  # nothing of the key's folders exists yet
    (settings.local_targets_dir / KEY.path).mkdir(parents=True)  # out.txt a folder
    assert not store.exists(KEY)
    assert store.path(KEY) == settings.local_targets_dir / KEY.path
    (settings.local_targets_dir / KEY.folder / "log").write_text("a file where a folder would be\n")
    assert not store.exists(KEY.with_file("log/stdout.log"))


def test_target_exists_answers_what_the_keys_target_answers(store: TargetStore, tmp_path: Path) -> None:
    """A submission asks the store whether a task's output exists (luigi's ``complete()``) without making its target:
    the same answer as the target's ``exists()``, missing, written, and (local) a folder, a link in or out of the store,
    a dangling one (luigi's ``os.path.exists`` follows links and refuses nothing)."""
    other = KEY.with_file("other.txt")

    def answers(key: TargetKey) -> tuple[bool, bool]:
        return store.target_exists(key), bool(store.target(key).exists())

    assert answers(KEY) == (False, False)
    store.write_text(other, "written\n")
    assert answers(other) == (True, True)
    if isinstance(store, LocalStore):
        path = Path(store.location) / KEY.path
        cases = {
            "a folder": lambda: path.mkdir(),
            "a link within the store": lambda: path.symlink_to(Path(store.location) / other.path),
            "a link out of it": lambda: path.symlink_to((tmp_path / "outside.txt").resolve()),
            "a dangling link": lambda: path.symlink_to(tmp_path / "nothing-here.txt"),
        }
        (tmp_path / "outside.txt").write_text("outside\n")
        found = {}
        for case, make in cases.items():
            make()
            found[case] = answers(KEY)
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        assert found == {
            "a folder": (True, True),
            "a link within the store": (True, True),
            "a link out of it": (True, True),
            "a dangling link": (False, False),
        }


def test_a_hard_link_is_refused_even_behind_a_link_within_the_store(settings: Settings, tmp_path: Path) -> None:
    """A symlink inside the store is followed, but not to a file with another name (maybe outside)."""
    store = get_store(settings)
    other = KEY.with_file("other.txt")
    store.write_text(other, "has a second name\n")
    os.link(settings.local_targets_dir / other.path, tmp_path / "second-name.txt")
    (settings.local_targets_dir / KEY.path).symlink_to(settings.local_targets_dir / other.path)

    for read in (store.exists, store.path, store.read_text):
        with pytest.raises(InvalidKey, match="is a hard link"):
            read(KEY)


def test_a_kind_of_store_is_one_class_and_one_entry_in_the_table(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FolderStore(LocalStore):
        kind = "folder"

        @classmethod
        def arguments(cls, settings: Settings) -> tuple[Path]:
            return (settings.data_dir / "folder",)

    monkeypatch.setitem(STORE_KINDS, FolderStore.kind, FolderStore)

    store = get_store(settings, "folder")
    assert isinstance(store, FolderStore) and store.root == settings.data_dir / "folder"
    assert get_store(settings, "folder") is store  # cached by kind and arguments, like the others
    with pytest.raises(ValueError, match=r"unknown store kind 'gcs' \(expected 'local' or 's3' or 'folder'\)"):
        get_store(settings, "gcs")


def test_a_local_step_folder_made_ahead_and_gone_by_its_logs_copy_is_made_again(
    settings: Settings, tmp_path: Path
) -> None:
    """A step's folder and its ``log/`` made ahead (``make_folder_of``: its logs are put without making them again)
    and removed before the logs are committed (the step's own code cleared its folder): a log copied in (a move from
    another file system is a copy) makes the folder again, as a rename into it does, rather than fail with the logs
    left unsaved."""
    store = get_store(settings)
    log_key = KEY.with_file("log/stdout.log")
    store.make_folder_of(KEY.with_file("params.txt"))
    store.make_folder_of(log_key)
    folder = Path(f"{store.location}/{KEY.folder}")
    assert (folder / "log").is_dir()
    source = tmp_path / "stdout.log"
    source.write_bytes(PAYLOAD)
    for n in range(2):  # the folder gone, then its log/ alone
        if n == 0:
            (folder / "log").rmdir()
            folder.rmdir()
        else:
            os.unlink(folder / "log" / "stdout.log")
            (folder / "log").rmdir()
        store.put_files([(source, log_key)], move=False, new_folder=False)
        assert b"".join(store.iter_bytes(log_key)) == PAYLOAD
        assert source.read_bytes() == PAYLOAD  # copied, not taken


def test_a_local_write_text_takes_another_temporary_name_when_one_is_left_there(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary file left beside a key (its writer killed between its open and its rename) whose name is drawn
    again (drawn from the process's ``random``, a task's code that seeded it drew it again at every start of that
    step): the write takes another name, and commits, rather than fail with FileExistsError. The names drawn are
    the test's (the kernel's draw is not one it can repeat)."""
    store = get_store(settings)
    key = KEY.with_file("params.txt")
    dest = Path(f"{store.location}/{key.path}")
    dest.parent.mkdir(parents=True)
    left = dest.with_name(f"{dest.name}-luigi-tmp-0000001234")
    left.write_text("half of what a killed writer wrote")
    names = iter([str(left), str(left), f"{dest}-luigi-tmp-0000005678"])
    monkeypatch.setattr(local, "temporary_name", lambda _: next(names))

    store.write_text(key, '{"n": 1}\n')

    assert store.read_text(key) == '{"n": 1}\n'
    assert left.read_text() == "half of what a killed writer wrote"  # not ours to remove: another may be writing it
    assert sorted(path.name for path in dest.parent.iterdir()) == sorted([dest.name, left.name])


@contextlib.contextmanager
def random_seeded_by_a_task() -> Iterator[None]:
    """The process's ``random`` seeded as a task seeds it, for the ``with``: what it draws after is what it drew right
    after the seed (checked), whatever the block wrote; the process's own restored after, for the tests after."""
    state = random.getstate()
    try:
        random.seed(1234)
        expected = [random.random() for _ in range(3)]
        random.seed(1234)
        yield
        drawn = [random.random() for _ in range(3)]
    finally:
        random.setstate(state)
    assert drawn == expected, "a write drew from the process's random"


@pytest.mark.parametrize("write", ["write_text", "open", "put_files"])
def test_a_local_write_leaves_the_processs_random_where_a_task_seeded_it(
    settings: Settings, tmp_path: Path, write: str
) -> None:
    """A task that seeds ``random`` draws the same numbers whatever the service writes meanwhile: its params.txt
    (``write_text``), a target it opens to write, its logs copied in (``put_files``) draw their temporary names
    elsewhere (they drew from ``random``, shifting the task's sequence by one per write)."""
    store = get_store(settings)
    key = KEY.with_file("params.txt")
    source = tmp_path / "stdout.log"
    source.write_bytes(PAYLOAD)
    with random_seeded_by_a_task():
        if write == "write_text":
            store.write_text(key, '{"n": 1}\n')
        elif write == "open":
            with store.open(key, "w") as handle:
                handle.write('{"n": 1}\n')
        else:
            store.put_files([(source, key)], move=False, new_folder=True)
    assert store.exists(key)


@pytest.mark.parametrize("write", ["temporary_path", "open"])
def test_a_targets_write_leaves_the_processs_random_where_a_task_seeded_it(store: TargetStore, write: str) -> None:
    """luigi's ``temporary_path()`` (a task writes a path its command fills, renamed into place) and its atomic file
    (``open("w")``: S3's is a local file, uploaded) drew their names from ``random``: a task that seeded it drew a
    shifted sequence after each. Their names drawn elsewhere, the path committed in place all the same, through the
    fence, on either kind of store."""
    target = store.target(KEY)
    with random_seeded_by_a_task():
        if write == "open":
            with target.open("w") as handle:
                handle.write("out")
        else:
            with target.temporary_path() as temporary:
                assert "-luigi-tmp-" in temporary and temporary != target.path
                if store.kind == "s3":
                    target.fs.put_string("out", temporary)
                else:
                    Path(temporary).write_text("out")
    assert store.read_text(KEY) == "out"


def test_a_write_whose_temporary_name_another_writer_holds_takes_another_and_leaves_that_one_whole(
    store: TargetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers of one key draw the same temporary name (for an S3 key, that of its local file: every S3 key's are
    in one folder): the second takes another name, and the first's file is not truncated under it (luigi's ``'w'``
    did that: the first then committed what the second had left of it). The names drawn are the test's (the kernel's
    draw is not one it can repeat); the clash is real: two files opened by the same name."""
    beside = f"{store.location}/{KEY.path}" if isinstance(store, LocalStore) else str(tmp_path / "luigi-s3")
    clash, other = f"{beside}-luigi-tmp-0000001234", f"{beside}-luigi-tmp-0000005678"
    names = iter([clash, clash, other])
    monkeypatch.setattr(local, "temporary_name", lambda _: next(names))

    first = store.open(KEY, "w")
    first.write("first writer's\n")
    first.flush()
    second = store.open(KEY, "w")  # the same name drawn: taken, so another
    second.write("second writer's\n")
    first.close()
    assert store.read_text(KEY) == "first writer's\n"
    second.close()
    assert store.read_text(KEY) == "second writer's\n"


@pytest.mark.parametrize(("write", "read"), [("wb", "rb"), ("w", "rb"), ("wb", "r")])
def test_a_target_opens_in_binary_modes_on_either_kind_of_store_as_a_local_one_does(
    store: TargetStore, write: str, read: str
) -> None:
    """luigi's ``LocalTarget`` takes ``'wb'`` and ``'rb'`` (the target's format decides what is written), its
    ``S3Target`` refused them (``ValueError``): a task moved from a local store to S3 failed. Both take them now,
    the write committed through the fence as ``'w'``'s is."""
    target = store.target(KEY)
    with target.open(write) as handle:
        handle.write("out\n")
    with target.open(read) as handle:
        assert handle.read() == "out\n"
    assert store.read_text(KEY) == "out\n"
