"""A chain file's code: compiled once per content in a process, and again whenever its bytes change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nectar.catalog.loader import chain_code, load_chain_module

CHAIN = "VALUE = {value!r}\n"


def write(path: Path, value: str) -> None:
    path.write_text(CHAIN.format(value=value))


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


@pytest.mark.parametrize(("chain_type", "chain"), [("../x", "code_chain"), ("code", "code-chain")])
def test_a_chain_named_outside_the_rules_is_not_compiled(tmp_path: Path, chain_type: str, chain: str) -> None:
    path = tmp_path / "code_chain.py"
    write(path, "a")
    with pytest.raises(ValueError, match="names must be"):
        chain_code(path, chain_type, chain)
