"""A private PostgreSQL server for the tests: Debian's package (installed if missing), a cluster on a free port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def ensure_installed() -> Path:
    """The folder of PostgreSQL's server programs, installing Debian's ``postgresql`` package if it is missing."""
    binaries = _binaries()
    if binaries is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"cannot install PostgreSQL ({' '.join(argv)}): {done.stderr[-2000:]}")
        binaries = _binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL's server programs are not in /usr/lib/postgresql/*/bin")
    return binaries


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    """One cluster in a temporary folder, listening on 127.0.0.1:``port``; trust authentication."""

    binaries: Path
    folder: Path
    port: int

    @classmethod
    def start(cls, port: int) -> PostgresServer:
        binaries = ensure_installed()
        folder = Path(tempfile.mkdtemp(prefix="nectar-pg-"))
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        data = folder / "data"
        initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(_as_owner(initdb), check=True, capture_output=True, timeout=120)
        server = cls(binaries, folder, port)
        server.resume()
        return server

    def _pg_ctl(self, *argv: str) -> list[str]:
        return _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.folder / "data"), *argv])

    def resume(self) -> None:
        """Start the server (again, after :meth:`halt`), and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400"
        start = self._pg_ctl("-l", str(self.folder / "log"), "-o", options, "-w", "start")
        subprocess.run(start, check=True, capture_output=True, timeout=120)

    def halt(self) -> None:
        """Stop the server as a crash would (immediate shutdown: every connection is cut)."""
        subprocess.run(self._pg_ctl("-m", "immediate", "stop"), check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"nectar_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self._pg_ctl("-m", "immediate", "stop"), capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)
