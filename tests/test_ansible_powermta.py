"""The PowerMTA role and the inventory plugin, with ansible-playbook really running.

PowerMTA itself is proprietary, so a stub ``pmta`` on PATH records every call; everything else
is real: the mailplane inventory plugin reads a copy of ``stacks/prod``, the hosts are reached
with ``ansible_connection: local`` and each one's PowerMTA paths live in its own temporary
folder, the DKIM keys come from a vault-encrypted vars file shaped like Pulumi's stack output,
and the config is checked by the real ``mailplane pmta-lint``.  The tests of this module share
one deployment (a few playbook runs, some limited to one host): Ansible spends about half a second
of CPU per task and host, so the module takes about a minute on two cores.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible_env import ansible_env, recap
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailplane.model.loader import load_stack
from mailplane.model.names import dkim_key_file
from mailplane.mta.render import render_host

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATE = "2026-11-25"
HOSTS = ("mta1", "mta2", "mta3")
PEM_MARKER = "PRIVATE KEY"
BACKUP_RE = re.compile(r"/config\.\d+\.[^/]*~$")
"""``backup: true``: Ansible's ``config.<pid>.<timestamp>~`` next to the config."""


def _env(tmp: Path) -> dict[str, str]:
    return ansible_env(tmp, tmp / 'bin')


def _plain(value: object) -> object:
    """``ansible-inventory --list`` marks plugin data untrusted (``{"__ansible_unsafe": x}``)."""
    if isinstance(value, dict):
        return _plain(value["__ansible_unsafe"]) if set(value) == {"__ansible_unsafe"} else {
            k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class Run:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> dict[str, int]:
        return {host: counts["changed"] for host, counts in self.recap.items()}


@dataclass
class Deployment:
    """A copy of stacks/prod, an inventory on it, three local "hosts" and a stub pmta."""

    tmp: Path
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def stack(self) -> Path:
        return self.tmp / "prod"

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory" / "mailplane.yml"

    def host_root(self, host: str) -> Path:
        return self.tmp / "hosts" / host

    def config(self, host: str) -> Path:
        return self.host_root(host) / "etc" / "pmta" / "config"

    def key_dir(self, host: str) -> Path:
        return self.host_root(host) / "etc" / "pmta" / "dkim"

    def calls(self) -> list[str]:
        path = self.tmp / "pmta-calls"
        return path.read_text().splitlines() if path.exists() else []

    def snapshot(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file of every host, with its bytes, mode and mtime: proof that nothing was touched."""
        return {str(p.relative_to(self.tmp)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
                for p in sorted((self.tmp / "hosts").rglob("*")) if p.is_file()}

    def write_inventory(self, path: Path, date: str) -> None:
        path.write_text(f"plugin: mailplane\nstack: {self.stack}\ndate: {date}\n")

    def playbook(self, *args: str) -> Run:
        """Run site.yml's PowerMTA play (the sender's has its own test); every run is also checked
        for a leaked key, in its output and its log."""
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory),
             "--vault-password-file", str(self.tmp / "vault-pass"), "playbooks/site.yml", "--skip-tags", "sender",
             *args],
            cwd=ROOT, env=_env(self.tmp), capture_output=True, text=True, timeout=300, check=False)
        output = proc.stdout + proc.stderr
        log = (self.tmp / "ansible.log").read_text() if (self.tmp / "ansible.log").exists() else ""
        assert PEM_MARKER not in output and PEM_MARKER not in log, "a DKIM key leaked into the output"
        for pem in self.keys.values():
            body = pem.splitlines()[1]
            assert body not in output and body not in log, "a DKIM key leaked into the output"
        return Run(proc.returncode, output, recap(proc.stdout))


def _setup(tmp: Path) -> Deployment:
    deployment = Deployment(tmp)
    shutil.copytree(ROOT / "stacks" / "prod", deployment.stack)
    (tmp / "bin").mkdir()
    stub = tmp / "bin" / "pmta"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {tmp / "pmta-calls"}\n')
    stub.chmod(0o755)
    inventory = deployment.inventory.parent
    (inventory / "group_vars" / "all").mkdir(parents=True)
    deployment.write_inventory(deployment.inventory, DATE)
    root = tmp / "hosts"
    (inventory / "group_vars" / "mta.yml").write_text(json.dumps({
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "powermta_manage_owner": False,
        "powermta_config_dir": f"{root}/{{{{ inventory_hostname }}}}/etc/pmta",
        "powermta_acct_file": f"{root}/{{{{ inventory_hostname }}}}/var/log/pmta/acct.csv",
        "powermta_log_file": f"{root}/{{{{ inventory_hostname }}}}/var/log/pmta/log",
        "powermta_spool_dir": f"{root}/{{{{ inventory_hostname }}}}/var/spool/pmta",
        "powermta_lint_command": f"{BIN / 'mailplane'} pmta-lint %s",
    }, indent=2))
    # The keys arrive as Pulumi's stack output does, in a vault-encrypted vars file (README).
    fleet = load_stack(deployment.stack)
    deployment.keys = {d.name: _pem() for t in fleet.tenants for d in t.domains}  # each domain: PowerMTA's key
    outputs = {"region": fleet.settings.ses.region, "dkim_private_keys": deployment.keys}
    (tmp / "vault-pass").write_text("test-only\n")
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(tmp / "vault-pass"),
         "--output", str(inventory / "group_vars" / "all" / "pulumi.vault.yml"), "-"],
        input=json.dumps(outputs), env=_env(tmp), capture_output=True, text=True, check=True)
    return deployment


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Run]]:
    """The deployment after its first run (the tests below start from a deployed fleet)."""
    deployment = _setup(tmp_path_factory.mktemp("ansible"))
    first = deployment.playbook("--diff")
    yield deployment, first


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
        # every domain of a tenant with an IP here: its BYODKIM key, or an Easy DKIM domain's own at pmta1
        signed = {(d.dkim.selector if d.dkim.mode == "byo" else "pmta1", d.name)
                  for ref in fleet.ips_by_host[host] for d in ref.tenant.domains}
        keys = sorted(p.name for p in deployment.key_dir(host).iterdir())
        assert keys == sorted(dkim_key_file(selector, domain) for selector, domain in signed)
        for key in deployment.key_dir(host).iterdir():
            assert (key.stat().st_mode & 0o777) == 0o600
            domain = key.name.split(".", 1)[1].removesuffix(".pem")
            assert key.read_text() == deployment.keys[domain]
            assert str(key) in config  # the config signs with the very file the role wrote
    assert deployment.calls() == ["reload"] * len(HOSTS)
    assert (deployment.tmp / "ansible.log").stat().st_size > 0  # so the leak check of the log means something
    assert first.output.count("RUNNING HANDLER [powermta : Reload PowerMTA]") == 1


def test_second_run_changes_nothing(deployed: tuple[Deployment, Run]) -> None:
    deployment, _ = deployed
    calls, before = deployment.calls(), deployment.snapshot()
    second = deployment.playbook("--diff")
    assert second.rc == 0, second.output
    assert second.changed() == dict.fromkeys(HOSTS, 0), second.output
    assert deployment.calls() == calls
    assert deployment.snapshot() == before


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
    assert deployment.calls() == [*calls, "reload"]
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
    assert throttles and all(re.match(r"[-+]\s+(max-msg-rate|backoff-max-msg-rate|max-smtp-out) ", line)
                             for line in throttles), diff


def test_config_the_linter_rejects_is_not_installed(deployed: tuple[Deployment, Run]) -> None:
    """A template that renders a broken config: the play fails with the linter's message, the live
    config stays byte for byte, and PowerMTA is not reloaded."""
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


def test_missing_dkim_key_fails_before_any_change(deployed: tuple[Deployment, Run]) -> None:
    """Pulumi's outputs not loaded: the play names the domains without a key and touches nothing."""
    deployment, _ = deployed
    calls, before = deployment.calls(), deployment.snapshot()
    run = deployment.playbook("--limit", "mta2", "-e", json.dumps({"dkim_private_keys": {}}))
    assert run.rc != 0
    assert ("No private key in powermta_dkim_keys for globex.example.net, initech.example.org, mail1.example.com, "
            "news.example.com") in run.output
    assert deployment.calls() == calls
    assert deployment.snapshot() == before


def test_inventory_lists_the_mta_hosts_and_tenant_groups_of_prod(tmp_path: Path) -> None:
    """From the repository root, as the README runs it."""
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventory/mailplane.yml", "--list"],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    inventory = _plain(json.loads(proc.stdout))
    assert isinstance(inventory, dict)
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


def test_inventory_of_a_broken_fleet_fails_with_located_problems(tmp_path: Path) -> None:
    stack = tmp_path / "prod"
    shutil.copytree(ROOT / "stacks" / "prod", stack)
    tenant = stack / "tenants" / "globex.yaml"
    tenant.write_text(tenant.read_text().replace("host: mta2", "host: mta9"))
    inventory = tmp_path / "mailplane.yml"
    inventory.write_text(f"plugin: mailplane\nstack: {stack}\n")
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    line = next(n for n, text in enumerate(tenant.read_text().splitlines(), 1) if "mta9" in text)
    assert re.search(rf"{re.escape(str(tenant))}:{line}:\d+: ips\[0\]\.host: ", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor", "roles/", "playbooks/"],
        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
