"""Target keys: the one place where (chain type, chain, task, parameters) becomes a path.

A key is ``chains/<type>/<chain>/<Task>/<md5>/<file>``; ``<md5>`` is the full hex MD5 of the
canonical JSON luigi hashes for its ``task_id`` (see ``luigi.task.task_id_str``), so a key maps
to exactly one luigi task.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING

from nectar.errors import InvalidKey

if TYPE_CHECKING:
    import luigi

NAME_RE = re.compile(r"[A-Za-z0-9_]{1,128}")
DIGEST_RE = re.compile(r"[0-9a-f]{32}")
#: a file beside out.txt: one plain name, or one under log/
FILE_RE = re.compile(r"(?:log/)?[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
#: a whole key each of whose parts is valid (a file name with '..' in it aside): the usual key is checked, and
#: parsed, by this one match; any other is checked part by part, which says what is wrong
KEY_RE = re.compile(
    rf"chains/({NAME_RE.pattern})/({NAME_RE.pattern})/({NAME_RE.pattern})/({DIGEST_RE.pattern})/({FILE_RE.pattern})"
)
MAX_KEY_LENGTH = 1024
OUTPUT_FILE = "out.txt"
PARAMS_FILE = "params.txt"
STDOUT_FILE = "log/stdout.log"
STDERR_FILE = "log/stderr.log"
#: the files the service writes in a task's folder: valid file names of a key (:meth:`TargetKey.with_file`)
SERVICE_FILES = frozenset({OUTPUT_FILE, PARAMS_FILE, STDOUT_FILE, STDERR_FILE})


#: ``json.dumps(..., separators=(",", ":"), sort_keys=True)``, luigi's arguments, as an encoder made once: json.dumps
#: builds a new encoder per call when given arguments (more than half the cost of a short mapping's JSON)
CANONICAL_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def strings_object(items: Iterable[tuple[str, str]], comma: str, colon: str) -> str:
    """The JSON object of ``items`` (names and values, in that order) as json's encoder writes it with ``comma`` and
    ``colon`` as separators when every name and value is a string (its ``ensure_ascii`` escapes, its own C function);
    TypeError for any other. The encoder's own call makes a C encoder of its settings first: 2x the cost for the few
    parameters of a task."""
    quoted = encode_basestring_ascii
    return "{" + comma.join([quoted(name) + colon + quoted(value) for name, value in items]) + "}"


def canonical_params(str_params: Mapping[str, str]) -> str:
    """The JSON luigi hashes for a task_id: names and serialized values, sorted, compact."""
    try:
        return strings_object(sorted(str_params.items()), ",", ":")
    except TypeError:  # a name or value not a string: as the encoder writes it (or refuses it)
        return CANONICAL_ENCODER.encode(dict(str_params))


def param_digest(str_params: Mapping[str, str]) -> str:
    """Full hex MD5 of :func:`canonical_params` (luigi keeps the first 10 characters)."""
    return hashlib.md5(canonical_params(str_params).encode("utf-8"), usedforsecurity=False).hexdigest()


def is_name(value: str) -> bool:
    return NAME_RE.fullmatch(value) is not None


@dataclass(frozen=True, order=True)
class TargetKey:
    """``chains/<chain_type>/<chain>/<task>/<digest>/<filename>``."""

    chain_type: str
    chain: str
    task: str
    digest: str
    filename: str = OUTPUT_FILE

    def __post_init__(self) -> None:
        path = f"chains/{self.chain_type}/{self.chain}/{self.task}/{self.digest}/{self.filename}"
        object.__setattr__(self, "path", path)  # asked for again and again on hot paths: made once (:attr:`path`)
        found = KEY_RE.fullmatch(path)
        if found is not None and found.groups() == self._parts() and ".." not in self.filename:
            return  # each part matched its own pattern, whole (none of them spans a '/' of another)
        for part in ("chain_type", "chain", "task"):
            if not is_name(getattr(self, part)):
                raise InvalidKey(f"{part} {getattr(self, part)!r} is not a name of [A-Za-z0-9_]")
        if not DIGEST_RE.fullmatch(self.digest):
            raise InvalidKey(f"digest {self.digest!r} is not 32 lowercase hex characters")
        if not FILE_RE.fullmatch(self.filename) or ".." in self.filename:
            raise InvalidKey(f"file {self.filename!r} is not a plain file name (optionally under log/)")

    def _parts(self) -> tuple[str, str, str, str, str]:
        return (self.chain_type, self.chain, self.task, self.digest, self.filename)

    @property
    def folder(self) -> str:
        """The task's folder, ``chains/<type>/<chain>/<Task>/<md5>``."""
        return f"chains/{self.chain_type}/{self.chain}/{self.task}/{self.digest}"

    @functools.cached_property
    def path(self) -> str:
        """``chains/<type>/<chain>/<Task>/<md5>/<file>``. Set in the key's own ``__dict__`` as it is made (its
        ``__post_init__``, :meth:`_matched`), where a read finds it without a call: a descriptor that is not a data
        descriptor is looked up after the instance's ``__dict__``. A property was a Python call per read (~1k
        instructions, callgrind), and a status lookup reads it ~8 times."""
        return f"chains/{self.chain_type}/{self.chain}/{self.task}/{self.digest}/{self.filename}"

    @property
    def chain_ref(self) -> str:
        return f"{self.chain_type}/{self.chain}"

    def with_file(self, filename: str) -> TargetKey:
        """The key of ``filename`` in this key's folder. One of the files the service writes there
        (:data:`SERVICE_FILES`) is made without :meth:`__post_init__`'s match of the whole path: this key's parts
        were checked as it was made, and the name is one of these (a step's start and end ask for five such keys,
        each a match of ~100 characters)."""
        if filename == self.filename:  # the usual case on hot paths: out.txt's key asked for out.txt
            return self
        if filename in SERVICE_FILES and type(filename) is str and type(self) is TargetKey:
            parts = (self.chain_type, self.chain, self.task, self.digest, filename)
            return TargetKey._matched(
                f"chains/{self.chain_type}/{self.chain}/{self.task}/{self.digest}/{filename}", parts
            )
        return TargetKey(self.chain_type, self.chain, self.task, self.digest, filename)

    def __str__(self) -> str:
        return self.path

    @classmethod
    def for_task(cls, chain_type: str, chain: str, task: str, str_params: Mapping[str, str]) -> TargetKey:
        return cls(chain_type, chain, task, param_digest(str_params))

    @classmethod
    def of_digest(cls, chain_type: str, chain: str, task: str, digest: str) -> TargetKey:
        """``cls(chain_type, chain, task, digest)``, the key of a task's ``out.txt``, made without
        :meth:`__post_init__`'s match of the whole path when its three names were checked by an earlier call (among
        the last :data:`CHECKED_NAMES` sets of them: a submission's are its class's, the same each time), its digest
        then checked alone (32 lowercase hex digits, one ``strip``): a submission's key, ~3.6 -> ~1.2 µs. Anything
        else is made by the class, whose checks raise :class:`InvalidKey` naming the wrong part."""
        names = (chain_type, chain, task)
        if cls is TargetKey and names in _CHECKED and type(digest) is str and len(digest) == 32:
            if not digest.strip(HEX_DIGITS):
                path = f"chains/{chain_type}/{chain}/{task}/{digest}/{OUTPUT_FILE}"
                return cls._matched(path, (*names, digest, OUTPUT_FILE))
        key = cls(chain_type, chain, task, digest)
        if len(_CHECKED) >= CHECKED_NAMES:
            _CHECKED.clear()
        _CHECKED.add(names)
        return key

    @classmethod
    def _matched(cls, path: str, parts: tuple[str, ...]) -> TargetKey:
        """The key at ``path``, which :data:`KEY_RE` matched whole into ``parts`` (no '..' in its file name): made
        without :meth:`__post_init__`'s checks, which would rebuild the same path and match it again (the status
        poll parses one key a lookup). Its fields and ``path`` are those the class would set."""
        key = object.__new__(cls)
        key.__dict__.update(zip(FIELDS, parts, strict=True), path=path)
        return key

    @classmethod
    def parse(cls, value: str) -> TargetKey:
        """Parse a key, raising :class:`InvalidKey` that says which part is wrong. A valid key's text is parsed once
        while it is among the last :data:`PARSED_KEYS` parsed (a key is immutable: one object serves each parse)."""
        if cls is TargetKey and type(value) is str:
            return _parsed(value)
        return cls._parse(value)

    @classmethod
    def _parse(cls, value: str) -> TargetKey:
        found = KEY_RE.fullmatch(value) if isinstance(value, str) else None
        if found is not None:  # a valid key (its file name checked for '..' with the others, by the class)
            groups = found.groups()
            if type(value) is str and ".." not in groups[4]:
                return cls._matched(value, groups)
            return cls(*groups)
        if not isinstance(value, str) or not value:
            raise InvalidKey("key is empty")
        if len(value) > MAX_KEY_LENGTH:
            raise InvalidKey(f"key is longer than {MAX_KEY_LENGTH} characters")
        if "\x00" in value:
            raise InvalidKey("key contains a NUL character")
        if "\\" in value or "%" in value:
            raise InvalidKey("key contains an encoded or backslash separator")
        parts = value.split("/")
        if "" in parts:
            raise InvalidKey("key has an empty segment (leading, doubled or trailing '/')")
        if ".." in parts or "." in parts:
            raise InvalidKey("key contains a '.' or '..' segment")
        if parts[0] != "chains":
            raise InvalidKey("key must start with 'chains/'")
        if len(parts) not in (6, 7):
            raise InvalidKey("key must be chains/<type>/<chain>/<Task>/<md5>/<file>")
        _, chain_type, chain, task, digest, *file_parts = parts
        return cls(chain_type, chain, task, digest, "/".join(file_parts))


#: how many sets of names (chain type, chain, task) :meth:`TargetKey.of_digest` keeps as checked (all forgotten past it)
CHECKED_NAMES = 1024
_CHECKED: set[tuple[str, str, str]] = set()
#: the characters of a digest (:data:`DIGEST_RE`'s)
HEX_DIGITS = "0123456789abcdef"
#: a key's fields, in the order of its parts in a path (and of :data:`KEY_RE`'s groups)
FIELDS = tuple(field.name for field in fields(TargetKey))
#: how many keys :meth:`TargetKey.parse` keeps parsed, the last parsed kept: a status poll parses the key it is sent,
#: and its clients poll the same keys again and again (~1 KB a key: 4 MB at most)
PARSED_KEYS = 4096
#: :meth:`TargetKey.parse` of a text (an invalid one raises each time: a raise is not kept)
_parsed = functools.lru_cache(maxsize=PARSED_KEYS)(TargetKey._parse)


def task_key(chain_type: str, chain: str, task: luigi.Task) -> TargetKey:
    """The key of ``out.txt`` of ``task``, a luigi task of chain ``<chain_type>/<chain>``: its class's name and
    the MD5 of its significant public parameters, the ones luigi's task_id hashes. The one formula the
    catalog, :class:`~nectar.task.NectarTask` and the logs of a plain luigi task use."""
    params = task.to_str_params(only_significant=True, only_public=True)
    return TargetKey.for_task(chain_type, chain, type(task).__name__, params)
