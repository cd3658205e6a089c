"""Shared fixtures: small, generic helpers only."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pg_server import db_url, pg_server

__all__ = ["db_url", "pg_server"]  # fixtures shared by the sender's tests

if TYPE_CHECKING:
    from dns_server import DnsTestData, KnotServer, Zone

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

MODULE_MARKS = {
    "test_ansible_powermta": "ansible", "test_ansible_sender": "ansible",
    "test_sender_service": "processes", "test_sender_hostile": "processes", "test_sender_openapi": "processes",
    "test_tenant_guard_e2e": "processes", "test_smtp_submission": "processes",
    "test_ansible_sender_smtp": "ansible",
}
"""Whole modules of a kind ``make test-fast`` leaves out (markers in pyproject.toml); single tests carry theirs."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        mark = MODULE_MARKS.get(item.module.__name__ if item.module else "")
        if mark is not None:
            item.add_marker(mark)


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
    from test_sender_service import Instance

    started: list[Instance] = []

    def start(stack: Path, config: Path) -> Instance:
        inst = Instance(stack, config, config.with_suffix(f".{len(started)}.log"))
        started.append(inst)
        return inst

    yield start
    for inst in started:
        inst.stop()
