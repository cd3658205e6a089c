"""The sender role, with ansible-playbook really running.

One local "host" (``mta-dev`` of a copy of ``stacks/dev``, ``ansible_connection: local``) whose
paths all live in a temporary folder.  As in production the play runs with ``become`` (su: this
machine has no sudo) and real owners: the role creates the service's user and group, PowerMTA's
group is made by the test (PowerMTA's package would), and all are removed after the module.
There is no systemd here (a container), so the role runs with ``sender_service_manager: none``
and the test plays the supervisor: when the play reaches its health check it starts the command
the rendered unit's ``ExecStart`` names (as root: this machine's Python is under /root), with
the unit's environment file and working folder, and the role's health check must pass against that real
service.  Installing mailplane and its dependencies from PyPI would be slow and need the network,
so the role's virtualenv is made beforehand and sees the project's site-packages through a
``.pth`` file; the role's pip step installs a wheel of the repository with ``--no-deps``.  One
more test lets the role create a fresh virtualenv itself.  The secrets arrive in a vault-encrypted
vars file, as in production, and every run is checked for a leaked secret in its output and log.
"""

from __future__ import annotations

import grp
import json
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sender_deployment import (
    BACKUP_RE,
    HEALTH_TASK,
    HOST,
    RESTART_HANDLER,
    Accounts,
    Deployment,
    Run,
    setup_deployment,
)

from mailplane.sender.config import load_config, new_api_key

pytestmark = pytest.mark.ansible


@dataclass
class Deployed:
    deployment: Deployment
    fresh: Run
    """``--check`` on the fresh host, before anything was installed."""
    fresh_files: list[str]
    """Every path under the host's root after that run."""
    first: Run


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, wheel: Path, sender_accounts: Accounts) -> Iterator[Deployed]:
    """A check-mode run on the fresh host, then the first run, with the service started as the
    unit says once the play waits for it; the service runs until the module's tests are done."""
    deployment = setup_deployment(tmp_path_factory.mktemp("sender"), wheel, sender_accounts)
    fresh = deployment.playbook("--check")
    fresh_files = sorted(str(p.relative_to(deployment.root)) for p in deployment.root.rglob("*"))
    try:
        first = deployment.playbook("--diff", on_health=deployment.start_service)
        yield Deployed(deployment, fresh, fresh_files, first)
    finally:
        deployment.stop_service()


def test_check_mode_on_a_fresh_host_writes_nothing(deployed: Deployed) -> None:
    assert deployed.fresh.rc == 0, deployed.fresh.output
    assert deployed.fresh.changed() > 0, deployed.fresh.output
    assert deployed.fresh_files == ["etc", "etc/systemd", "etc/systemd/system"]  # what the test made
    assert "[WARNING]" not in deployed.fresh.output, deployed.fresh.output


def test_first_run_installs_the_package_stack_config_and_unit(deployed: Deployed) -> None:
    deployment, first = deployed.deployment, deployed.first
    assert first.rc == 0, first.output
    assert first.recap[HOST]["failed"] == 0 and first.changed() > 0
    assert "[WARNING]" not in first.output, first.output
    # The role made the virtualenv (python -m venv) and installed the wheel into it.
    assert (deployment.venv / "pyvenv.cfg").is_file() and (deployment.venv / "bin" / "mailplane").is_file()
    freeze = subprocess.run([str(deployment.venv / "bin" / "python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, check=True).stdout
    assert re.search(r"^mailplane @ file://.*\.whl", freeze, re.MULTILINE), freeze

    mode = deployment.config.stat().st_mode & 0o777
    assert mode == 0o600
    # Real owners, as in production: the role made the service account and gave it its files.
    accounts = deployment.accounts
    user, group = pwd.getpwnam(accounts.user), grp.getgrnam(accounts.group)
    assert user.pw_gid == group.gr_gid and accounts.user in grp.getgrnam(accounts.pmta_group).gr_mem
    assert user.pw_shell == "/usr/sbin/nologin"
    owners = {path: (path.stat().st_uid, path.stat().st_gid) for path in (
        deployment.config, deployment.env_file, deployment.root / "var" / "lib" / "mailplane-sender",
        deployment.config.parent, deployment.unit, deployment.stack_copy / "fleet.yaml")}
    assert owners == {
        deployment.config: (user.pw_uid, group.gr_gid), deployment.env_file: (user.pw_uid, group.gr_gid),
        deployment.root / "var" / "lib" / "mailplane-sender": (user.pw_uid, group.gr_gid),
        deployment.config.parent: (0, group.gr_gid), deployment.unit: (0, 0),
        deployment.stack_copy / "fleet.yaml": (0, group.gr_gid)}
    assert deployment.env_file.stat().st_mode & 0o777 == 0o600
    config = load_config(deployment.config)  # what the service will read, through its own loader
    assert str(config.listen) == f"127.0.0.1:{deployment.port}"
    assert config.database_url.startswith("sqlite:///") and str(deployment.root / "var") in config.database_url
    assert set(config.api_keys) == {"acme/app"}
    assert config.mta_hosts == [HOST]  # it submits to its own host's PowerMTA only
    assert len(config.unsubscribe_keys) == 2
    assert {n: k.access_key_id for n, k in config.ses_credentials.items()} == {"acme/app": "AKIAACMEAPP00000000"}
    assert config.aws.account_id == "123456789012"
    env = deployment.env_file.read_text()
    assert config.aws.endpoint_url == "http://127.0.0.1:9"
    assert 'AWS_ACCESS_KEY_ID="AKIAEXAMPLEEXAMPLE00"' in env and "AWS_SECRET_ACCESS_KEY=" in env

    unit = deployment.unit.read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start is not None
    assert shlex.split(exec_start[1]) == [
        str(deployment.venv / "bin" / "mailplane"), "serve", str(deployment.stack_copy),
        "--config", str(deployment.config)]
    for line in ("Restart=on-failure", "NoNewPrivileges=true", "ProtectSystem=strict", "PrivateTmp=true",
                 f"ReadWritePaths={deployment.root}/var/lib/mailplane-sender",
                 f"EnvironmentFile={deployment.env_file}"):
        assert line in unit.splitlines(), line

    copied = sorted(str(p.relative_to(deployment.stack_copy)) for p in deployment.stack_copy.rglob("*.yaml"))
    assert copied == sorted(str(p.relative_to(deployment.stack)) for p in deployment.stack.rglob("*.yaml"))
    for name in copied:
        assert (deployment.stack_copy / name).read_bytes() == (deployment.stack / name).read_bytes()
    # The first install notifies the restart; with no service manager the role only reports it.
    assert first.output.count(RESTART_HANDLER) == 1, first.output


def test_health_check_passes_against_the_service_the_unit_runs(deployed: Deployed) -> None:
    deployment, first = deployed.deployment, deployed.first
    assert first.rc == 0, first.output
    assert re.search(rf"^ok: \[{HOST}\]", first.output.split(HEALTH_TASK, 1)[1], re.MULTILINE), first.output
    assert deployment.service is not None and deployment.service.poll() is None
    assert (deployment.root / "var" / "lib" / "mailplane-sender" / "sender.db").is_file()  # its queue, in the state dir
    with socket.create_connection(("127.0.0.1", deployment.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200" and json.loads(body) == {"status": "ok"}


def test_second_run_changes_nothing(deployed: Deployed) -> None:
    deployment = deployed.deployment
    before = deployment.snapshot()
    second = deployment.playbook("--diff")
    assert second.rc == 0, second.output
    assert second.changed() == 0, second.output
    assert RESTART_HANDLER not in second.output
    assert deployment.snapshot() == before


def test_check_mode_reports_a_change_and_writes_nothing(deployed: Deployed) -> None:
    deployment = deployed.deployment
    tenant = deployment.stack / "tenants" / "acme.yaml"
    original = tenant.read_text()
    tenant.write_text(original.replace("display_name: ACME (development)", "display_name: ACME (dev)"))
    before = deployment.snapshot()
    try:
        check = deployment.playbook("--check", "--diff", "-e", "sender_workers=3")
    finally:
        tenant.write_text(original)
    assert check.rc == 0, check.output
    # The tenant file and the config, as they would be; and pip, which cannot tell in check mode
    # whether a wheel given by path is installed already (a `mailplane==X` requirement it can).
    assert check.changed() == 3, check.output
    assert "+display_name: ACME (dev)" in check.output  # the stack's diff is shown, the config's is not
    assert deployment.snapshot() == before
    assert HEALTH_TASK in check.output and "skipping" in check.output.split(HEALTH_TASK, 1)[1].splitlines()[1]


def test_config_and_stack_changes_notify_one_restart(deployed: Deployed) -> None:
    """A new setting and a tenant file the stack no longer has: both changed, one restart notified,
    the previous config kept as a backup.  Run with -v: no_log still hides the secrets."""
    deployment = deployed.deployment
    stale = deployment.stack_copy / "tenants" / "gone.yaml"
    stale.write_text("name: gone\n")
    before = deployment.snapshot()
    (deployment.inventory.parent / "group_vars" / "mta.yml").write_text(
        json.dumps({**deployment.host_vars(), "sender_workers": 3}, indent=2))
    run = deployment.playbook("--diff", "-v")
    assert run.rc == 0, run.output
    assert run.changed() == 2, run.output  # the config and the stale tenant file
    assert run.output.count(RESTART_HANDLER) == 1, run.output
    assert "sender_service_manager is none: restart it" in run.output
    assert not stale.exists()
    assert load_config(deployment.config).workers == 3
    after = deployment.snapshot()
    backups = [path for path in set(after) - set(before) if BACKUP_RE.search(path)]
    assert len(backups) == 1
    assert after[backups[0]][0] == before[str(deployment.config.relative_to(deployment.tmp))][0]
    assert "the output has been hidden due to the fact that 'no_log: true'" in run.output  # even with -v


def test_config_the_checker_rejects_is_not_installed(deployed: Deployed) -> None:
    """An API key given in clear instead of its hash: the play fails with the checker's located
    message (the key masked), the live config stays byte for byte, nothing is restarted."""
    deployment = deployed.deployment
    plain = new_api_key()
    deployment.secrets.append(plain)
    before = deployment.snapshot()
    run = deployment.playbook("-e", json.dumps({"sender_api_key_hashes": {"acme/app": plain}}))
    assert run.rc != 0
    assert run.recap[HOST]["failed"] == 1, run.output
    assert "The checker rejected the new sender config" in run.output
    assert re.search(rf"{re.escape(str(deployment.config))}:\d+:\d+: api_keys\b.*never the key", run.output), run.output
    assert RESTART_HANDLER not in run.output
    after = deployment.snapshot()
    assert {p: v for p, v in after.items() if not BACKUP_RE.search(p)} == {
        p: v for p, v in before.items() if not BACKUP_RE.search(p)}
    assert not list(deployment.config.parent.glob(".sender-candidate.*"))


def test_checker_output_is_shown_with_every_secret_masked(deployed: Deployed) -> None:
    """A checker that prints the whole candidate file, secrets included, and rejects it: the play
    shows what it printed with each secret value replaced (the leak check of every run holds)."""
    deployment = deployed.deployment
    before = deployment.snapshot()
    checker = """sh -c 'cat "$1" >&2; exit 1' sh %s"""
    run = deployment.playbook("-e", json.dumps({"sender_workers": 5, "sender_config_check_command": checker}))
    assert run.rc != 0
    assert "The checker rejected the new sender config" in run.output
    assert "unsubscribe_keys:" in run.output and "workers: 5" in run.output, run.output
    assert run.output.count("********") >= 3, run.output  # the API key's hash, the two unsubscribe keys
    assert {p: v for p, v in deployment.snapshot().items() if not BACKUP_RE.search(p)} == {
        p: v for p, v in before.items() if not BACKUP_RE.search(p)}


def test_several_hosts_on_separate_sqlite_queues_are_refused(tmp_path: Path, wheel: Path,
                                                             sender_accounts: Accounts) -> None:
    """Three MTA hosts, each with its own SQLite queue, would count every quota three times."""
    deployment = setup_deployment(tmp_path, wheel, sender_accounts, stack="prod")
    run = deployment.playbook()
    assert run.rc != 0
    assert "each with its own SQLite queue" in run.output
    assert set(run.recap) == {"mta1", "mta2", "mta3"}
    assert all(counts["changed"] == 0 and counts["failed"] == 1 for counts in run.recap.values()), run.output
    assert not (tmp_path / "hosts").exists() or not any(p.is_file() for p in (tmp_path / "hosts").rglob("*"))


def test_missing_secrets_fail_before_any_change(deployed: Deployed) -> None:
    deployment = deployed.deployment
    hidden = deployment.vault_file.with_suffix(".off")
    before = deployment.snapshot()
    deployment.vault_file.rename(hidden)
    try:
        run = deployment.playbook()
    finally:
        hidden.rename(deployment.vault_file)
    assert run.rc != 0
    assert "The sender service needs its secrets: set sender_api_key_hashes" in run.output
    # Only the check of the arguments' types (meta/argument_specs.yml) passed before the failure.
    assert run.recap[HOST] == {**run.recap[HOST], "ok": 1, "changed": 0, "failed": 1}, run.output
    assert deployment.snapshot() == before


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_is_verified_by_systemd_analyze(deployed: Deployed, tmp_path: Path) -> None:
    """The installed unit passes ``systemd-analyze verify``; and the role runs it before installing
    a unit: one whose ExecStart is not executable is refused and not written."""
    deployment = deployed.deployment
    unit = tmp_path / "mailplane-sender.service"
    shutil.copy(deployment.unit, unit)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr

    command = deployment.venv / "bin" / "mailplane"
    hidden = command.with_name("mailplane.off")
    command.rename(hidden)  # pip keeps the installed version: nothing puts it back during the run
    try:
        run = deployment.playbook("-e", "sender_service_name=mailplane-sender-verify")
    finally:
        hidden.rename(command)
    assert run.rc != 0
    assert run.recap[HOST]["failed"] == 1, run.output
    assert re.search(r"mailplane-sender-verify\.service: Command .*/bin/mailplane is not executable", run.output), \
        run.output
    assert not (deployment.unit.parent / "mailplane-sender-verify.service").exists()
