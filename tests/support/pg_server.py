"""A throwaway PostgreSQL cluster for the sender's tests (Debian's postgresql; ``make test`` installs it).

Fixtures ``pg_server`` (session) and ``db_url`` (SQLite file and PostgreSQL database, both) are
registered in ``conftest.py``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port


def _pg_bin() -> Path:
    for candidate in [shutil.which("initdb"), *sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)]:
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    pytest.fail("PostgreSQL is not installed (initdb not found): make test installs Debian's postgresql "
                "package (tools/system-deps)",
                pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway cluster on a free loopback port; as the ``postgres`` user when we are root."""
    bindir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="mailplane-pg-"))  # not under pytest's root-only 0700 folders
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            shutil.chown(base, "postgres", "postgres")
        except LookupError:
            pytest.fail("running as root and there is no `postgres` user to run PostgreSQL as", pytrace=False)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60, check=False)

    init = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
               "--no-sync")
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr or init.stdout}", pytrace=False)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    start = run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    if start.returncode != 0:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {start.stderr or start.stdout}\n{log}", pytrace=False)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


_db_names = itertools.count()


def _pg_database(server: str) -> str:
    import psycopg

    name = f"mailplane_{os.getpid()}_{next(_db_names)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return _pg_database(request.getfixturevalue("pg_server"))


