"""Schemathesis against a real server: the operations of schedules and triggers fuzzed over HTTP, every answer
checked, as ``tests/security/test_fuzz.py`` describes (which fuzzes the others, on a server of its own)."""

from __future__ import annotations

from tests.security.fuzzing import fuzz_tests, operations

#: the operations of schedules and triggers
FUZZED = operations(scheduling=True)
#: each of them fuzzed, then their cases counted
test_fuzz_operation, test_enough_cases_ran = fuzz_tests(FUZZED)
