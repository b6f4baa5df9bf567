"""A chain file's code: compiled once per content in a process, and again whenever its bytes change; a chain file
executed ahead taken only while its bytes are those it ran."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nectar.catalog import loader
from nectar.catalog.loader import chain_code, fresh_chain_module, load_ahead, load_chain_module
from nectar.catalog.stamps import Stamp

CHAIN = "VALUE = {value!r}\n"


def write(path: Path, value: str) -> None:
    path.write_text(CHAIN.format(value=value))


def recorded_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The chain files the loader reads from now on (their paths, in order)."""
    reads: list[Path] = []
    source_of = loader._source_of

    def recorded(path: Path) -> tuple[bytes, loader.Seen | None, Stamp]:
        reads.append(path)
        return source_of(path)

    monkeypatch.setattr(loader, "_source_of", recorded)
    return reads


def test_a_chain_file_is_compiled_once_per_content(tmp_path: Path) -> None:
    path = tmp_path / "code_chain.py"
    write(path, "a")
    assert chain_code(path, "code", "code_chain") is chain_code(path, "code", "code_chain")


def test_a_changed_chain_file_is_compiled_again_even_with_its_size_and_mtime_kept(tmp_path: Path) -> None:
    path = tmp_path / "code_chain.py"
    write(path, "a")
    assert load_chain_module(path, "code", "code_chain").VALUE == "a"
    stat = path.stat()
    write(path, "b")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the bytes tell
    assert load_chain_module(path, "code", "code_chain").VALUE == "b"


def test_a_chain_file_rewritten_after_it_was_executed_ahead_runs_as_it_is_now_even_with_its_size_and_mtime_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "code_chain.py"
    write(path, "a")
    assert load_ahead(path, "code", "code_chain", budget=60)
    stat = path.stat()
    write(path, "b")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: a rewrite within one tick of its clock
    assert fresh_chain_module(path, "code", "code_chain").VALUE == "b"


def test_a_settled_chain_file_is_not_read_again_while_its_stat_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settled (its last change older than :data:`~nectar.catalog.loader.SETTLED`: here every file is), its stat
    vouches for its bytes: read once, then neither compiled nor read again, executed ahead or not."""
    monkeypatch.setattr(loader, "SETTLED", -3600.0)
    reads = recorded_reads(monkeypatch)
    path = tmp_path / "code_chain.py"
    write(path, "a")
    code = chain_code(path, "code", "code_chain")
    assert load_ahead(path, "code", "code_chain", budget=60)
    assert fresh_chain_module(path, "code", "code_chain").VALUE == "a"
    assert chain_code(path, "code", "code_chain") is code
    assert reads == [path]


def test_a_settled_chain_file_replaced_by_one_of_the_same_size_and_mtime_runs_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another file renamed over it (another inode, its size and mtime those of the first) is read again, executed
    ahead or not, though every file's stat is taken as settled here."""
    monkeypatch.setattr(loader, "SETTLED", -3600.0)
    path, other = tmp_path / "code_chain.py", tmp_path / "other.py"
    write(path, "a")
    assert load_ahead(path, "code", "code_chain", budget=60)
    stat = path.stat()
    write(other, "b")  # same size
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    other.rename(path)
    assert fresh_chain_module(path, "code", "code_chain").VALUE == "b"
    write(other, "c")
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    other.rename(path)
    assert load_chain_module(path, "code", "code_chain").VALUE == "c"


@pytest.mark.parametrize(("chain_type", "chain"), [("../x", "code_chain"), ("code", "code-chain")])
def test_a_chain_named_outside_the_rules_is_not_compiled(tmp_path: Path, chain_type: str, chain: str) -> None:
    path = tmp_path / "code_chain.py"
    write(path, "a")
    with pytest.raises(ValueError, match="names must be"):
        chain_code(path, chain_type, chain)
