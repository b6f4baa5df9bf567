"""review24 (round 70): review23's finding, mended for SQLite (22b400e: a read never writes), left for PostgreSQL ("it
is the URL's"). An operator's ``nectar status`` or ``nectar schedules`` with ``NECTAR_DATABASE_URL`` naming another
database than the service's (a mistyped name that exists, the server's default database, another application's) makes
nectar's whole schema there (its tables, triggers and functions: a migration run by a read) and answers from it "no run
and no target for <key>" or "no schedules": the service's runs are elsewhere, nothing names where the command looked,
and another application's database now holds nectar's tables. The service's own start is where a registry is made."""

from __future__ import annotations

import psycopg
import pytest

from nectar.config import Settings
from tests.nectar.test_cli import nectar

KEY = "chains/testchains/hello_luigiworld_chain/TestS3Task/d41d8cd98f00b204e9800998ecf8427e/out.txt"


@pytest.mark.parametrize("args", [("status", KEY), ("schedules",)], ids=lambda a: a[0])
def test_a_read_against_a_database_without_the_registry_makes_no_table_and_names_it(
    settings: Settings, database_url: str, args: tuple[str, ...]
) -> None:
    """``database_url`` is an empty database of its own (another application's, as far as nectar knows)."""
    said = nectar(settings.replace(database_url=database_url), *args)
    with psycopg.connect(database_url) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert tables == [], f"a read made {len(tables)} tables: {sorted(tables)[:5]}... ({said.returncode}, {said.stdout})"
    assert said.returncode == 2, (said.returncode, said.stdout, said.stderr)
    assert "no run registry in the PostgreSQL database" in said.stderr, said.stderr
