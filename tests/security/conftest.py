"""The fuzz modules' fixtures (:mod:`tests.security.fuzzing`), each per module: a server per fuzz module."""

from __future__ import annotations

from tests.security.fuzzing import api_schema, fuzz_settings, server, world

__all__ = ["api_schema", "fuzz_settings", "server", "world"]
