"""roles/sender with SMTP submission: ansible-playbook really runs, writes the listeners into sender.yaml, the
certificate and key from the vault with their modes, gives the unit CAP_NET_BIND_SERVICE only for a port
below 1024, and health-checks each listener of the service it started (a certificate from a test CA)."""

from __future__ import annotations

import grp
import pwd
import stat
from pathlib import Path

import pytest
from ports import free_port
from sender_deployment import Accounts, Deployment, setup_deployment
from tls_ca import CaFiles

from mailplane.sender.config import load_config

pytestmark = pytest.mark.ansible

SMTP_HEALTH_TASK = "TASK [sender : Wait for each SMTP submission listener to answer its health check]"


def listeners(*ports: tuple[int, str]) -> list[dict[str, str]]:
    return [{"listen": f"127.0.0.1:{port}", "tls": tls} for port, tls in ports]


def test_listeners_certificate_and_smtp_health_check(tmp_path: Path, wheel: Path, sender_accounts: Accounts,
                                                      ca: CaFiles) -> None:
    starttls, implicit = free_port(), free_port()
    key_pem = ca.server_key.read_text()
    deployment: Deployment = setup_deployment(
        tmp_path, wheel, sender_accounts,
        sender_submission_listeners=listeners((starttls, "starttls"), (implicit, "implicit")),
        sender_submission_certificate_pem=ca.server_cert.read_text(), sender_submission_key_pem=key_pem,
        sender_submission_hostname="localhost", sender_submission_streams={"acme/app": "marketing"},
        sender_submission_health_cafile=str(ca.ca_cert), sender_submission_health_server_name="localhost")
    deployment.secrets.append(key_pem.splitlines()[1])  # the key never shows in the output or the log
    try:
        run = deployment.playbook(on_health=deployment.start_service)
        again = deployment.playbook()  # the service still runs: a second run changes nothing
    finally:
        deployment.stop_service()
    assert run.rc == 0, run.output
    assert again.rc == 0 and again.changed() == 0, again.output
    config = load_config(deployment.config)
    assert config.submission is not None
    assert [(lst.listen, lst.tls) for lst in config.submission.listeners] == [
        (f"127.0.0.1:{starttls}", "starttls"), (f"127.0.0.1:{implicit}", "implicit")]
    assert config.submission.streams == {"acme/app": "marketing"} and config.submission.hostname == "localhost"
    cert, key = Path(str(config.submission.certificate)), Path(str(config.submission.key))
    assert cert.parent == key.parent == deployment.config.parent
    assert cert.read_text() == ca.server_cert.read_text() and key.read_text() == key_pem
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert pwd.getpwuid(key.stat().st_uid).pw_name == sender_accounts.user
    assert grp.getgrgid(key.stat().st_gid).gr_name == sender_accounts.group
    # the health check connected to both listeners of the service the unit runs
    assert SMTP_HEALTH_TASK in run.output
    assert f"ok: [mta-dev] => (item=127.0.0.1:{starttls})" in run.output
    assert f"ok: [mta-dev] => (item=127.0.0.1:{implicit})" in run.output
    unit = deployment.unit.read_text()
    assert "CAP_NET_BIND_SERVICE" not in unit and "CapabilityBoundingSet=\n" in unit  # ports above 1024


def test_a_port_below_1024_gets_only_the_bind_capability(tmp_path: Path, wheel: Path, sender_accounts: Accounts,
                                                          ca: CaFiles) -> None:
    """In check mode with --diff: the unit the role would write for port 587."""
    deployment = setup_deployment(
        tmp_path, wheel, sender_accounts, sender_submission_listeners=listeners((587, "starttls")),
        sender_submission_certificate=str(ca.server_cert), sender_submission_key=str(ca.server_key))
    run = deployment.playbook("--check", "--diff")
    assert run.rc == 0, run.output
    assert "+AmbientCapabilities=CAP_NET_BIND_SERVICE" in run.output
    assert "+CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in run.output


def test_a_tls_listener_without_a_certificate_fails_before_any_change(tmp_path: Path, wheel: Path,
                                                                      sender_accounts: Accounts) -> None:
    deployment = setup_deployment(tmp_path, wheel, sender_accounts, sender_submission_listeners=listeners(
        (free_port(), "starttls")))
    run = deployment.playbook()
    assert run.rc != 0
    assert "needs its certificate and key" in run.output
    assert not deployment.config.exists() and not (deployment.root / "opt").exists()
