"""Fixtures every folder of the tests shares, one meaning each.

``fleet`` is stacks/prod loaded; ``prod_copy`` a copy of stacks/prod to edit; ``stack_copy`` a copy
of any stack; the DNS fixtures serve zones from a real knotd; ``ca`` a test certificate authority;
``instances`` real `mailplane serve` processes; ``db_url`` the sender's database on SQLite and on a
real PostgreSQL. The helpers behind them live in tests/support/ (on pytest's path). Marks:
tests/roles/ is ``ansible``; the modules that start processes say ``processes`` themselves.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pg_server import db_url, pg_server
from tls_ca import CaFiles, make_ca

from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet

__all__ = ["db_url", "pg_server"]  # fixtures shared by the sender's tests

if TYPE_CHECKING:
    from dns_server import DnsTestData, KnotServer, Zone

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    """stacks/prod, loaded once: the model is frozen, so every test may read the same one."""
    return load_stack(ROOT / "stacks" / "prod")


@pytest.fixture
def prod_copy(tmp_path: Path) -> Path:
    """A copy of stacks/prod in ``tmp_path`` (``tmp_path/prod``), for a test that edits it."""
    return Path(shutil.copytree(ROOT / "stacks" / "prod", tmp_path / "prod"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CaFiles:
    """A test certificate authority and a server certificate it signed, for TLS listeners on loopback."""
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def stack_copy(tmp_path: Path) -> Callable[[str | Path], Path]:
    """Copy a stack to ``tmp_path``: a name under ``stacks/`` ("dev", "prod") or any folder."""

    def copy(source: str | Path) -> Path:
        src = Path(source) if Path(source).is_absolute() else ROOT / "stacks" / source
        dest = tmp_path / src.name
        shutil.copytree(src, dest)
        return dest

    return copy


@pytest.fixture(scope="session")
def dns_data(tmp_path_factory: pytest.TempPathFactory) -> DnsTestData:
    """The example stacks with made-up Easy DKIM tokens, real BYODKIM keys, outputs files and their good zone."""
    from dns_server import DnsTestData

    return DnsTestData(ROOT / "stacks", tmp_path_factory.mktemp("dns-data"))


@pytest.fixture(scope="session")
def good_dns(dns_data: DnsTestData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """A real DNS server (knotd on a loopback port) serving the good records of stacks/prod and stacks/dev."""
    from dns_server import KnotServer

    server = KnotServer(dns_data.zone, tmp_path_factory.mktemp("knot-good"))
    try:
        server.start()
    except RuntimeError as err:  # not installed: a failure, never a skip (CI installs it)
        pytest.fail(str(err), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def serve_zone(tmp_path: Path) -> Iterator[Callable[[Zone], KnotServer]]:
    """Start a knotd serving a given (broken) zone; every one started is stopped after the test."""
    from dns_server import KnotServer

    servers: list[KnotServer] = []

    def serve(zone: Zone) -> KnotServer:
        server = KnotServer(zone, tmp_path / f"knot-{len(servers)}")
        servers.append(server)
        try:
            return server.start()
        except RuntimeError as err:
            pytest.fail(str(err), pytrace=False)

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def instances() -> Iterator[Callable[..., Any]]:
    """Start real `mailplane serve` processes (``test_sender_service.Instance``); each is stopped after the test."""
    from sender_instance import Instance

    started: list[Instance] = []

    def start(stack: Path, config: Path) -> Instance:
        inst = Instance(stack, config, config.with_suffix(f".{len(started)}.log"))
        started.append(inst)
        return inst

    yield start
    for inst in started:
        inst.stop()
