"""The PowerMTA role, its playbook and the inventory plugin, with ansible-playbook really running.

PowerMTA itself is proprietary, so each host gets a stub ``pmta`` that records every call (with a
digest of the live config it sees) and can be told to fail; its HTTP management port is a real
HTTP server on loopback answering ``/status?format=json``.  Everything else is real, and as in
production: the mailplane inventory plugin reads a copy of ``stacks/prod``, the hosts are reached
with ``ansible_connection: local`` and ``become`` (su: this machine has no sudo), each one's
PowerMTA paths live in its own temporary folder, files get real owners (a user and group made for
the module, removed after), the DKIM keys come from a vault-encrypted vars file shaped like
Pulumi's stack output, and PATH has no ``mailplane``: the role installs it (a wheel of the
repository) into its own virtualenv, and the config is checked by that ``mailplane pmta-lint``.
The play runs one host at a time (``serial: 1``, the default).  The tests of this module share one
deployment (a few playbook runs, some limited to one host): Ansible spends about half a second of
CPU per task and host, so the module takes a few minutes on two cores.
"""

from __future__ import annotations

import datetime
import grp
import hashlib
import importlib.util
import json
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible_env import (
    StatusServer,
    ansible_env,
    build_wheel,
    recap,
    system_account,
    throwaway_name,
    venv_python,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailplane.model.loader import load_stack
from mailplane.model.names import dkim_key_file
from mailplane.mta.deployed import record
from mailplane.mta.render import render_host
from mailplane.mta.view import host_view

pytestmark = pytest.mark.ansible

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATE = "2026-11-25"
HOSTS = ("mta1", "mta2", "mta3")
PEM_MARKER = "PRIVATE KEY"
BACKUP_RE = re.compile(r"/config\.\d+\.[^/]*~$")
"""``backup: true``: Ansible's ``config.<pid>.<timestamp>~`` next to the config."""
LINT_VENV = "opt/mailplane/pmta-lint"
"""The linter's virtualenv under a host's root (``powermta_lint_venv``)."""
WHEEL_VERSION = "0.1.0+tests"
"""The wheel's version: a requirement the project's editable install (seen by the venv) does not meet."""
PENDING = ".mailplane-reload-due"
"""The mark of a reload not done yet, in the config folder (roles/powermta/vars/main.yml)."""

PMTA_STUB = """#!/bin/sh
# Stub of PowerMTA's pmta for {host}: records "{host} <command> <digest of the live config>" and,
# when told to (a file in {control}), prints what it holds and fails the way the guide describes.
config={config}
digest=$(sha256sum "$config" 2>/dev/null | cut -c1-16)
echo "{host} $* ${{digest:-none}}" >> {calls}
case "$*" in
  "test config")
    # The exit status of a failing check is undocumented: this one exits 0 and prints the error.
    if [ -e {control}/{host}.test-fails ]; then cat {control}/{host}.test-fails; exit 0; fi
    echo "Configuration OK." ;;
  reload)
    if [ -e {control}/{host}.reload-fails-once ]; then
      cat {control}/{host}.reload-fails-once; rm -f {control}/{host}.reload-fails-once; exit 1
    fi
    echo "Configuration reloaded." ;;
  *) echo "stub pmta: unexpected command: $*" >&2; exit 2 ;;
esac
"""


def _pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Run:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}


@dataclass(frozen=True)
class Accounts:
    """PowerMTA's user and group, as its package would make them; made for the module, removed after."""

    user: str
    group: str


@dataclass
class Deployment:
    """A copy of stacks/prod, an inventory on it, three local "hosts", each with a stub pmta and
    a status endpoint."""

    tmp: Path
    accounts: Accounts
    keys: dict[str, str] = field(default_factory=dict)
    status: dict[str, StatusServer] = field(default_factory=dict)

    @property
    def stack(self) -> Path:
        return self.tmp / "prod"

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory" / "mailplane.yml"

    @property
    def control(self) -> Path:
        """Files here tell a host's stub pmta to fail (``mta1.test-fails``, ``mta1.reload-fails-once``)."""
        return self.tmp / "pmta-control"

    def host_root(self, host: str) -> Path:
        return self.tmp / "hosts" / host

    def config(self, host: str) -> Path:
        return self.host_root(host) / "etc" / "pmta" / "config"

    def key_dir(self, host: str) -> Path:
        return self.host_root(host) / "etc" / "pmta" / "dkim"

    def events(self) -> list[str]:
        """Every call of a stub pmta and every status request, in order: ``"mta1 reload <digest>"``."""
        path = self.tmp / "pmta-calls"
        return path.read_text().splitlines() if path.exists() else []

    def calls(self) -> list[str]:
        """The calls of the stub pmta commands, without the status requests."""
        return [event for event in self.events() if not event.endswith(" status")]

    def snapshot(self) -> dict[str, tuple[bytes, int, int, int, int]]:
        """Every file of every host but the linter's virtualenv, with its bytes, mode, owner, group
        and mtime: proof that nothing was touched."""
        return {str(p.relative_to(self.tmp)): (p.read_bytes(), p.stat().st_mode, p.stat().st_uid, p.stat().st_gid,
                                               p.stat().st_mtime_ns)
                for p in sorted((self.tmp / "hosts").rglob("*"))
                if p.is_file() and LINT_VENV not in str(p) and p.name != "pmta"}

    def write_inventory(self, path: Path, date: str) -> None:
        path.write_text(f"plugin: mailplane\nstack: {self.stack}\ndate: {date}\n")

    def env(self) -> dict[str, str]:
        """No ``mailplane`` on PATH, as on a fresh MTA host: the role must bring its linter.  Nor the
        caller's PIP_* settings: the hosts' pip reads its virtualenv's pip.conf (see ``_setup``)."""
        return {k: v for k, v in ansible_env(self.tmp, project_bin=False).items() if not k.startswith("PIP_")}

    def playbook(self, *args: str) -> Run:
        """Run site.yml's PowerMTA play (the sender's has its own test); every run is also checked
        for a leaked key, in its output and its log."""
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory),
             "--vault-password-file", str(self.tmp / "vault-pass"), "playbooks/site.yml", "--skip-tags", "sender",
             *args],
            cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=600, check=False)
        output = proc.stdout + proc.stderr
        log = (self.tmp / "ansible.log").read_text() if (self.tmp / "ansible.log").exists() else ""
        assert PEM_MARKER not in output and PEM_MARKER not in log, "a DKIM key leaked into the output"
        for pem in self.keys.values():
            body = pem.splitlines()[1]
            assert body not in output and body not in log, "a DKIM key leaked into the output"
        return Run(proc.returncode, output, recap(proc.stdout))

    def write_vault(self) -> None:
        """The keys arrive as Pulumi's stack output does, in a vault-encrypted vars file (README)."""
        fleet = load_stack(self.stack)
        outputs = {"region": fleet.settings.ses.region, "dkim_private_keys": self.keys}
        subprocess.run(
            [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(self.tmp / "vault-pass"),
             "--output", str(self.inventory.parent / "group_vars" / "all" / "pulumi.vault.yml"), "-"],
            input=json.dumps(outputs), env=self.env(), capture_output=True, text=True, check=True)

    def change_postmaster(self, name: str) -> None:
        """A change of fleet.yaml every host's config carries."""
        fleet = self.stack / "fleet.yaml"
        fleet.write_text(re.sub(r"postmaster: \S+", f"postmaster: {name}@mailplane.example.com", fleet.read_text()))


def _setup(tmp: Path, accounts: Accounts) -> Deployment:
    deployment = Deployment(tmp, accounts)
    shutil.copytree(ROOT / "stacks" / "prod", deployment.stack)
    deployment.control.mkdir()
    wheels = tmp / "wheels"
    wheels.mkdir()
    build_wheel(wheels, WHEEL_VERSION)
    # The hosts' pip is configured for "an index" (the wheel's folder), as a host's pip.conf would be.
    venv_python(tmp / "python", f"[global]\nno-index = true\nfind-links = {wheels}\n[install]\nno-deps = true\n")
    inventory = deployment.inventory.parent
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "host_vars").mkdir()
    deployment.write_inventory(deployment.inventory, DATE)
    root = tmp / "hosts"
    for host in HOSTS:
        stub = deployment.host_root(host) / "usr" / "sbin" / "pmta"
        stub.parent.mkdir(parents=True)
        stub.write_text(PMTA_STUB.format(host=host, config=deployment.config(host), calls=tmp / "pmta-calls",
                                         control=deployment.control))
        stub.chmod(0o755)
        deployment.status[host] = StatusServer.start(host, tmp / "pmta-calls")
        (inventory / "host_vars" / f"{host}.yml").write_text(
            json.dumps({"powermta_health_port": deployment.status[host].port}))
    host_root = f"{root}/{{{{ inventory_hostname }}}}"
    (inventory / "group_vars" / "mta.yml").write_text(json.dumps({
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        # As in production: become root (su: this machine has no sudo) and real owners.
        "ansible_become": True,
        "ansible_become_method": "su",
        "powermta_user": accounts.user,
        "powermta_group": accounts.group,
        "powermta_config_dir": f"{host_root}/etc/pmta",
        "powermta_acct_file": f"{host_root}/var/log/pmta/acct.csv",
        "powermta_log_file": f"{host_root}/var/log/pmta/log",
        "powermta_spool_dir": f"{host_root}/var/spool/pmta",
        "powermta_pmta": f"{host_root}/usr/sbin/pmta",
        # The linter: a wheel of this repository, as an index would serve it, into the role's venv.
        "powermta_lint_venv": f"{host_root}/{LINT_VENV}",
        "powermta_lint_python": str(tmp / "python"),
        "powermta_lint_package": f"mailplane=={WHEEL_VERSION}",
        # The stub's status endpoint speaks plain HTTP (PowerMTA's own redirects to HTTPS).
        "powermta_health_url": "http://127.0.0.1:{{ powermta_health_port }}/status?format=json",
        "powermta_health_retries": 3,
        "powermta_health_delay": 1,
    }, indent=2))
    fleet = load_stack(deployment.stack)
    deployment.keys = {d.name: _pem() for t in fleet.tenants for d in t.domains}  # each domain: PowerMTA's key
    (tmp / "vault-pass").write_text("test-only\n")
    deployment.write_vault()
    return deployment


@pytest.fixture(scope="module")
def pmta_accounts() -> Iterator[Accounts]:
    made = Accounts(throwaway_name("pm"), throwaway_name("pm"))
    with system_account(made.user, made.group):
        yield made


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, pmta_accounts: Accounts) -> Iterator[tuple[Deployment, Run]]:
    """The deployment after its first run (the tests below start from a deployed fleet)."""
    deployment = _setup(tmp_path_factory.mktemp("ansible"), pmta_accounts)
    try:
        first = deployment.playbook("--diff")
        yield deployment, first
    finally:
        for server in deployment.status.values():
            server.stop()


def test_first_run_on_fresh_hosts_installs_the_linter_before_using_it(deployed: tuple[Deployment, Run]) -> None:
    """No mailplane on PATH (nor on root's): the role installs it into its own virtualenv, then
    renders and lints the config with it; the sender play, which installs mailplane too, comes
    later in site.yml."""
    deployment, first = deployed
    assert first.rc == 0, first.output
    assert shutil.which("mailplane", path=deployment.env()["PATH"]) is None
    install = first.output.index("TASK [powermta : Install mailplane (its PowerMTA linter) into a virtualenv")
    assert install < first.output.index("TASK [powermta : Write the PowerMTA config")
    for host in HOSTS:
        linter = deployment.host_root(host) / LINT_VENV / "bin" / "mailplane"
        assert linter.is_file()
        assert subprocess.run([str(linter), "pmta-lint", str(deployment.config(host))],
                              capture_output=True, text=True, check=False).returncode == 0


def test_first_run_writes_config_and_keys_and_reloads_each_host_once(deployed: tuple[Deployment, Run]) -> None:
    deployment, first = deployed
    assert first.rc == 0, first.output
    assert set(first.recap) == set(HOSTS)
    assert all(counts["failed"] == 0 and counts["changed"] > 0 for counts in first.recap.values())
    fleet = load_stack(deployment.stack)
    for host in HOSTS:
        config = deployment.config(host).read_text()
        assert (deployment.config(host).stat().st_mode & 0o777) == 0o640
        for ref in fleet.ips_by_host[host]:
            assert ref.ip.address in config
        # every domain of a tenant with a VMTA here (an IP that may send on DATE): its BYODKIM key,
        # or an Easy DKIM domain's own at pmta1; exactly the files the config's domain-key lines name
        signed = {(d.dkim.selector if d.dkim.mode == "byo" else "pmta1", d.name)
                  for ref in fleet.ips_by_host[host] if f"<virtual-mta {ref.tenant.name}-" in config
                  for d in ref.tenant.domains}
        keys = sorted(p.name for p in deployment.key_dir(host).iterdir())
        assert keys == sorted(dkim_key_file(selector, domain) for selector, domain in signed)
        named = {line.split(",")[2] for line in config.splitlines() if line.strip().startswith("domain-key ")}
        assert named == {str(deployment.key_dir(host) / key) for key in keys}
        for key in deployment.key_dir(host).iterdir():
            assert (key.stat().st_mode & 0o777) == 0o600
            domain = key.name.split(".", 1)[1].removesuffix(".pem")
            assert key.read_text() == deployment.keys[domain]
            assert str(key) in config  # the config signs with the very file the role wrote
        assert not (deployment.config(host).parent / PENDING).exists()
    assert (deployment.tmp / "ansible.log").stat().st_size > 0  # so the leak check of the log means something


def test_files_get_real_owners_with_become(deployed: tuple[Deployment, Run]) -> None:
    """As in production: the config root-owned in PowerMTA's group, keys, spool and logs PowerMTA's."""
    deployment, first = deployed
    assert first.rc == 0, first.output
    uid, gid = pwd.getpwnam(deployment.accounts.user).pw_uid, grp.getgrnam(deployment.accounts.group).gr_gid
    for host in HOSTS:
        root = deployment.host_root(host)
        owners = {str(p.relative_to(root)): (p.stat().st_uid, p.stat().st_gid) for p in (
            deployment.config(host), deployment.config(host).parent, deployment.key_dir(host),
            *deployment.key_dir(host).iterdir(), root / "var" / "spool" / "pmta", root / "var" / "log" / "pmta")}
        expected = {path: (uid, gid) for path in owners}
        expected.update({"etc/pmta/config": (0, gid), "etc/pmta": (0, gid)})
        assert owners == expected
        assert (deployment.key_dir(host).stat().st_mode & 0o777) == 0o700


def test_hosts_roll_one_at_a_time_each_checked_and_healthy_before_the_next(deployed: tuple[Deployment, Run]) -> None:
    """serial 1: host after host, PowerMTA's own check runs on the new config in place, then the
    reload, then the status answers healthy, and only then the next host starts."""
    deployment, first = deployed
    assert first.rc == 0, first.output
    events = deployment.events()
    digests = {host: _digest(deployment.config(host).read_bytes()) for host in HOSTS}
    assert [event.split(" ", 1)[0] for event in events] == sorted(event.split(" ", 1)[0] for event in events)
    for host in HOSTS:
        mine = [event for event in events if event.startswith(f"{host} ")]
        assert mine == [f"{host} test config {digests[host]}", f"{host} reload {digests[host]}", f"{host} status"]
    assert first.output.count("PLAY [Configure PowerMTA on the MTA hosts]") == len(HOSTS)  # one batch per host


def test_second_run_changes_nothing(deployed: tuple[Deployment, Run]) -> None:
    deployment, _ = deployed
    calls, before = deployment.calls(), deployment.snapshot()
    second = deployment.playbook("--diff")
    assert second.rc == 0, second.output
    assert second.changed() == dict.fromkeys(HOSTS, 0), second.output
    assert deployment.calls() == calls
    assert deployment.snapshot() == before
    assert deployment.events()[-1] == "mta3 status"  # the health check runs on every run


def test_role_writes_the_bytes_the_python_renderer_writes(deployed: tuple[Deployment, Run]) -> None:
    """One template, two users: Ansible's template module and mailplane.mta.render agree exactly."""
    deployment, _ = deployed
    fleet = load_stack(deployment.stack)
    for host in HOSTS:
        base = deployment.host_root(host)
        paths = {"config_dir": f"{base}/etc/pmta", "dkim_dir": f"{base}/etc/pmta/dkim",
                 "acct_file": f"{base}/var/log/pmta/acct.csv", "log_file": f"{base}/var/log/pmta/log",
                 "spool_dir": f"{base}/var/spool/pmta"}
        expected = render_host(fleet, host, datetime.date.fromisoformat(DATE), paths)
        assert deployment.config(host).read_text() == expected


def test_fleet_change_previewed_in_check_mode_then_reloads_only_the_changed_host(
        deployed: tuple[Deployment, Run]) -> None:
    """A later warmup start for one IP of mta1.  --check --diff shows the throttle lines that would
    change and touches nothing; the real run changes one config, reloads once, and shows the diff.
    A key file left on mta3 by a domain that is gone is removed, without a reload of its own."""
    deployment, _ = deployed
    tenant = deployment.stack / "tenants" / "sos-expat.yaml"
    text = tenant.read_text()
    assert "started: 2026-11-02" in text  # 203.0.113.21, bound to mta1
    tenant.write_text(text.replace("started: 2026-11-02", "started: 2026-11-20"))
    stale = deployment.key_dir("mta3") / "old2025.gone.example.com.pem"
    stale.write_text("not a key\n")
    stale.chmod(0o600)
    calls, before = deployment.calls(), deployment.snapshot()

    check = deployment.playbook("--check", "--diff", "--limit", "mta1")
    assert check.rc == 0, check.output
    assert check.changed() == {"mta1": 1}, check.output  # the config, as it would be
    assert re.search(r"^-\s+max-msg-rate", check.output, re.MULTILINE), check.output
    assert re.search(r"^\+\s+max-msg-rate", check.output, re.MULTILINE), check.output
    assert deployment.calls() == calls
    assert deployment.snapshot() == before

    run = deployment.playbook("--diff")
    assert run.rc == 0, run.output
    # mta1: the config, then the reload; mta3: the stale key removed.
    assert run.changed() == {"mta1": 2, "mta2": 0, "mta3": 1}, run.output
    new = _digest(deployment.config("mta1").read_bytes())
    assert deployment.calls() == [*calls, f"mta1 test config {new}", f"mta1 reload {new}"]
    after = deployment.snapshot()
    assert set(before) - set(after) == {str(stale.relative_to(deployment.tmp))}
    changed = {path for path in after if before.get(path) != after[path]}
    backups = {path for path in changed if BACKUP_RE.search(path)}
    assert changed - backups == {"hosts/mta1/etc/pmta/config"}
    assert [after[path][0] for path in backups] == [before["hosts/mta1/etc/pmta/config"][0]]  # backup: true
    diff = [line for line in run.output.splitlines() if re.match(r"[-+](?![-+]{2} )", line)]
    assert "-# sos-expat 203.0.113.21: warmup plan standard-45d from 2026-11-02" in diff
    assert "+# sos-expat 203.0.113.21: warmup plan standard-45d from 2026-11-20" in diff
    throttles = [line for line in diff if "# sos-expat" not in line]
    throttle = re.compile(r"[-+]\s+(max-msg-rate|backoff-max-msg-rate|max-smtp-out|max-smtp-msg-rate) ")
    assert throttles and all(throttle.match(line) for line in throttles), diff


def test_config_the_linter_rejects_is_not_installed(deployed: tuple[Deployment, Run]) -> None:
    """A template that renders a broken config: the play fails with the linter's message, the live
    config stays byte for byte, and PowerMTA is neither checked nor reloaded."""
    deployment, _ = deployed
    broken = deployment.tmp / "broken-config.j2"
    template = (ROOT / "templates" / "powermta" / "config.j2").read_text()
    broken.write_text(template + "\nsmtp-source-host mta1.example.com 203.0.113.21\n")
    calls, before = deployment.calls(), deployment.snapshot()
    run = deployment.playbook("--diff", "--limit", "mta1", "-e", f"powermta_template={broken}")
    assert run.rc != 0
    assert run.recap["mta1"]["failed"] == 1, run.output
    assert "failed to validate" in run.output
    assert re.search(r":\d+: .*the hostname comes first", run.output), run.output  # file:line: message
    assert deployment.calls() == calls
    after = deployment.snapshot()
    # Ansible's copy module backs the live file up before it validates the new one; only that may appear.
    assert {path: value for path, value in after.items() if not BACKUP_RE.search(path)} == {
        path: value for path, value in before.items() if not BACKUP_RE.search(path)}
    assert all(after[path][0] == before["hosts/mta1/etc/pmta/config"][0] for path in set(after) - set(before))


def test_config_pmta_rejects_is_checked_in_place_and_swapped_back(deployed: tuple[Deployment, Run]) -> None:
    """``pmta test config`` (no file argument) prints an error about the new config: the role ran it
    with the new config in the live path, put the previous one back (same bytes, owner, mode and
    time), reloaded nothing, failed with PowerMTA's message and stopped the rollout; the next run,
    with PowerMTA content, tries again."""
    deployment, _ = deployed
    message = f"Error in line 11 of {deployment.config('mta1')}: argument missing"
    (deployment.control / "mta1.test-fails").write_text(message + "\n")
    deployment.change_postmaster("pm-checked")
    calls, before = deployment.calls(), deployment.snapshot()
    try:
        run = deployment.playbook()
    finally:
        (deployment.control / "mta1.test-fails").unlink()
    assert run.rc != 0
    assert run.recap["mta1"]["failed"] == 1, run.output
    assert "mta2" not in run.recap and "mta3" not in run.recap, run.output  # the next batches never started
    assert message in run.output
    assert "The previous config and DKIM keys are back in place; the next run tries again" in run.output
    new_calls = deployment.calls()[len(calls):]
    assert len(new_calls) == 1 and new_calls[0].startswith("mta1 test config ")
    assert new_calls[0] != f"mta1 test config {_digest(before['hosts/mta1/etc/pmta/config'][0])}"  # the new one
    after = deployment.snapshot()
    assert {p: v for p, v in after.items() if not BACKUP_RE.search(p)} == {
        p: v for p, v in before.items() if not BACKUP_RE.search(p)}
    assert not (deployment.config("mta1").parent / PENDING).exists()

    again = deployment.playbook()
    assert again.rc == 0, again.output
    assert all(again.changed()[host] >= 2 for host in HOSTS), again.output  # config and reload, on each
    assert "postmaster pm-checked@mailplane.example.com" in deployment.config("mta1").read_text()


def test_failed_reload_restores_config_and_keys_reloads_them_and_the_next_run_retries(
        deployed: tuple[Deployment, Run]) -> None:
    """A new config and a rotated key on mta1, and a reload PowerMTA refuses: the previous config
    and key are back (same bytes, owner, mode and time), PowerMTA reloads them, the play fails with
    PowerMTA's message before mta2, and no copy of a key is left behind.  The next run sees the
    change again and reloads it."""
    deployment, _ = deployed
    domain = next(key.name.split(".", 1)[1].removesuffix(".pem") for key in deployment.key_dir("mta1").iterdir())
    old_pem, new_pem = deployment.keys[domain], _pem()
    deployment.keys[domain] = new_pem
    deployment.write_vault()
    deployment.change_postmaster("pm-reloaded")
    message = f"Error in line 3 of {deployment.config('mta1')}: unknown directive"
    (deployment.control / "mta1.reload-fails-once").write_text(message + "\n")
    calls, before = deployment.calls(), deployment.snapshot()
    old = _digest(before["hosts/mta1/etc/pmta/config"][0])

    run = deployment.playbook()
    assert run.rc != 0
    assert run.recap["mta1"]["failed"] == 1, run.output
    assert "mta2" not in run.recap and "mta3" not in run.recap, run.output
    assert message in run.output
    assert "The previous config and DKIM keys are back in place and reloaded; the next run tries again" in run.output
    new_calls = deployment.calls()[len(calls):]
    assert [call.rsplit(" ", 1)[0] for call in new_calls] == ["mta1 test config", "mta1 reload", "mta1 reload"]
    assert new_calls[0].rsplit(" ", 1)[1] != old and new_calls[1] == f"mta1 reload {new_calls[0].rsplit(' ', 1)[1]}"
    assert new_calls[2] == f"mta1 reload {old}"  # the restored config, reloaded
    after = deployment.snapshot()
    assert {p: v for p, v in after.items() if not BACKUP_RE.search(p)} == {
        p: v for p, v in before.items() if not BACKUP_RE.search(p)}
    assert (deployment.key_dir("mta1") / next(p.name for p in deployment.key_dir("mta1").iterdir()
                                              if domain in p.name)).read_text() == old_pem
    assert sorted(p.name for p in deployment.key_dir("mta1").iterdir() if not p.name.endswith(".pem")) == []
    assert not (deployment.config("mta1").parent / PENDING).exists()

    again = deployment.playbook()
    assert again.rc == 0, again.output
    assert again.changed()["mta1"] == 4, again.output  # the key, the config, the reload, the old key's copy removed
    retried = deployment.calls()[len(calls) + 3:]
    assert [call.rsplit(" ", 1)[0] for call in retried if call.startswith("mta1 ")] == ["mta1 test config",
                                                                                        "mta1 reload"]
    assert "postmaster pm-reloaded@mailplane.example.com" in deployment.config("mta1").read_text()
    assert any(p.read_text() == new_pem for p in deployment.key_dir("mta1").iterdir())
    assert sorted(p.name for p in deployment.key_dir("mta1").iterdir() if not p.name.endswith(".pem")) == []


def test_a_reload_left_due_is_done_by_the_next_run(deployed: tuple[Deployment, Run]) -> None:
    """A run cut off between writing the config and reloading it leaves its mark: the next run
    finds nothing to change, reloads anyway, and clears the mark."""
    deployment, _ = deployed
    settle = deployment.playbook("--limit", "mta2")  # whatever earlier tests left to do there
    assert settle.rc == 0, settle.output
    mark = deployment.config("mta2").parent / PENDING
    mark.write_text("left by a run that was cut off\n")
    calls = deployment.calls()
    run = deployment.playbook("--limit", "mta2")
    assert run.rc == 0, run.output
    assert run.changed() == {"mta2": 1}, run.output  # the reload
    assert deployment.calls()[len(calls):] == [f"mta2 reload {_digest(deployment.config('mta2').read_bytes())}"]
    assert not mark.exists()


def test_rollout_stops_at_a_host_that_is_not_healthy_after_its_reload(deployed: tuple[Deployment, Run]) -> None:
    """mta2's PowerMTA still loads its spool (initPct 40) after the reload: mta1 is done, mta2
    fails its health check, mta3 is not touched.  Once mta2 is healthy, the next run goes on."""
    deployment, _ = deployed
    sick = deployment.status["mta2"]
    sick.answer = {**sick.answer, "data": {"status": {"status": "running", "shuttingDown": False},
                                           "spool": {"initPct": 40}}}
    deployment.change_postmaster("pm-rolled")
    calls = deployment.calls()
    mta3_before = deployment.config("mta3").read_bytes()
    try:
        run = deployment.playbook()
    finally:
        sick.answer = json.loads(json.dumps(deployment.status["mta1"].answer))
    assert run.rc != 0
    assert run.recap["mta1"]["failed"] == 0 and run.recap["mta2"]["failed"] == 1, run.output
    assert "mta3" not in run.recap, run.output
    assert "Wait for PowerMTA to report itself healthy" in run.output
    assert [call.rsplit(" ", 1)[0] for call in deployment.calls()[len(calls):]] == [
        "mta1 test config", "mta1 reload", "mta2 test config", "mta2 reload"]
    assert deployment.events().count("mta2 status") >= 3  # asked until the retries ran out
    assert deployment.config("mta3").read_bytes() == mta3_before

    again = deployment.playbook()
    assert again.rc == 0, again.output
    assert again.changed() == {"mta1": 0, "mta2": 0, "mta3": 2}, again.output
    assert "postmaster pm-rolled@mailplane.example.com" in deployment.config("mta3").read_text()


def test_batches_and_failure_tolerance_are_play_variables(deployed: tuple[Deployment, Run]) -> None:
    """-e powermta_serial=3: one batch of every host."""
    deployment, _ = deployed
    run = deployment.playbook("-e", "powermta_serial=3", "-e", "powermta_max_fail_percentage=50")
    assert run.rc == 0, run.output
    assert run.output.count("PLAY [Configure PowerMTA on the MTA hosts]") == 1
    assert run.changed() == dict.fromkeys(HOSTS, 0), run.output


def test_wrong_role_argument_fails_before_any_change(deployed: tuple[Deployment, Run]) -> None:
    """meta/argument_specs.yml: a choice outside the list stops the host before its first task."""
    deployment, _ = deployed
    calls, before = deployment.calls(), deployment.snapshot()
    run = deployment.playbook("--limit", "mta1", "-e", "powermta_config_test=sometimes")
    assert run.rc != 0
    assert "powermta_config_test" in run.output and "sometimes" in run.output, run.output
    assert run.recap["mta1"]["changed"] == 0 and run.recap["mta1"]["failed"] == 1, run.output
    assert deployment.calls() == calls and deployment.snapshot() == before


def test_missing_dkim_key_fails_before_any_change(deployed: tuple[Deployment, Run]) -> None:
    """Pulumi's outputs not loaded: the play names the domains without a key and touches nothing."""
    deployment, _ = deployed
    calls, before = deployment.calls(), deployment.snapshot()
    run = deployment.playbook("--limit", "mta2", "-e", json.dumps({"dkim_private_keys": {}}))
    assert run.rc != 0
    # initech's IP on mta2 starts its warmup after DATE: no VMTA yet, so no key needed yet
    missing = "globex.example.net, mail1.example.com, news.example.com"
    assert f"No private key in powermta_dkim_keys for {missing}" in run.output
    assert deployment.calls() == calls
    assert deployment.snapshot() == before


def test_the_record_of_what_powermta_runs_follows_successful_reloads_only(deployed: tuple[Deployment, Run]) -> None:
    """Each host has the record of the config PowerMTA runs (its VMTAs and their DKIM domains) for the sender
    there; a reload PowerMTA refuses leaves the previous record, as it leaves the previous config, and the next
    run that reloads writes the new one.  initech's IP on mta2 starts on 2026-12-01: with the default lead its
    VMTA is deployed from 2026-11-29."""
    deployment, _ = deployed
    fleet = load_stack(deployment.stack)

    def record_of(host: str) -> dict[str, Any]:
        path = deployment.config(host).parent / "mailplane-deployed.json"
        assert (path.stat().st_mode & 0o777) == 0o644  # names only: the sender's user reads it
        found: dict[str, Any] = json.loads(path.read_text())
        return found

    for host in HOSTS:
        assert record_of(host) == record(host_view(fleet, host, datetime.date.fromisoformat(DATE)).to_vars())
    ahead, new_vmta = "2026-11-29", "initech-192-0-2-42"
    assert new_vmta not in record_of("mta2")["vmtas"]
    try:
        deployment.write_inventory(deployment.inventory, ahead)
        (deployment.control / "mta2.reload-fails-once").write_text("Error in line 1: refused\n")
        refused = deployment.playbook("--limit", "mta2")
        assert refused.rc != 0 and "Error in line 1: refused" in refused.output
        assert new_vmta not in record_of("mta2")["vmtas"]
        run = deployment.playbook("--limit", "mta2")
        assert run.rc == 0, run.output
        assert record_of("mta2") == record(host_view(fleet, "mta2", datetime.date.fromisoformat(ahead)).to_vars())
        assert record_of("mta2")["vmtas"][new_vmta]["dkim_domains"] == sorted(
            d.name for d in fleet.tenant("initech").domains)
    finally:
        deployment.write_inventory(deployment.inventory, DATE)
        assert deployment.playbook("--limit", "mta2").rc == 0


def test_inventory_lists_the_mta_hosts_and_tenant_groups_of_prod(tmp_path: Path) -> None:
    """From the repository root, as the README runs it; the plugin's values are trusted (the fleet
    is the repository's own), so nothing is wrapped as ``__ansible_unsafe``."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventory/mailplane.yml", "--list"],
                          cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "__ansible_unsafe" not in proc.stdout
    inventory = json.loads(proc.stdout)
    fleet = load_stack(ROOT / "stacks" / "prod")
    assert sorted(inventory["mta"]["hosts"]) == sorted(fleet.settings.mta_hosts)
    expected: dict[str, set[str]] = {}
    for host, refs in fleet.ips_by_host.items():
        for ref in refs:
            expected.setdefault("tenant_" + ref.tenant.name.replace("-", "_"), set()).add(host)
    assert {"tenant_sos_expat", "tenant_globex", "tenant_initech"} == set(expected)
    for group, hosts in expected.items():
        assert set(inventory[group]["hosts"]) == hosts
    hostvars = inventory["_meta"]["hostvars"]
    for host, settings in fleet.settings.mta_hosts.items():
        assert hostvars[host]["ansible_host"] == str(settings.ansible_host)
        assert hostvars[host]["mailplane_stack"] == "prod"
        assert isinstance(hostvars[host]["mailplane_pmta"], dict)
    signed = {(d.dkim.selector if d.dkim.mode == "byo" else "pmta1", d.name) for t in fleet.tenants for d in t.domains}
    listed = {(d["selector"], d["domain"]) for h in hostvars.values() for d in h["mailplane_dkim_domains"]}
    assert listed == signed


def test_inventory_keeps_a_value_with_jinja_delimiters_literal() -> None:
    """Trusted means "may be templated": the plugin vouches for the fleet's strings, except one
    holding Jinja delimiters, which stays untrusted and so is used as it is, never evaluated."""
    from ansible.template import is_trusted_as_template, trust_as_template

    source = ROOT / "inventory_plugins" / "mailplane.py"
    spec = importlib.util.spec_from_file_location("mailplane_inventory_plugin", source)
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    value = plugin.trusted({"name": "mta1", "replies": ["/4\\.7\\.0/", "{{ lookup('pipe', 'id') }}"], "port": 8080},
                           trust_as_template)
    assert is_trusted_as_template(value["name"]) and is_trusted_as_template(value["replies"][0])
    assert not is_trusted_as_template(value["replies"][1]) and value["replies"][1] == "{{ lookup('pipe', 'id') }}"
    assert value["port"] == 8080


def test_inventory_of_a_broken_fleet_fails_with_located_problems(tmp_path: Path) -> None:
    stack = tmp_path / "prod"
    shutil.copytree(ROOT / "stacks" / "prod", stack)
    tenant = stack / "tenants" / "globex.yaml"
    tenant.write_text(tenant.read_text().replace("host: mta2", "host: mta9"))
    inventory = tmp_path / "mailplane.yml"
    inventory.write_text(f"plugin: mailplane\nstack: {stack}\n")
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                          cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    line = next(n for n, text in enumerate(tenant.read_text().splitlines(), 1) if "mta9" in text)
    assert re.search(rf"{re.escape(str(tenant))}:{line}:\d+: ips\[0\]\.host: ", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor", "roles/", "playbooks/"],
        cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
