"""A deployment of roles/sender on one local "host", for the role's tests.

A copy of a stack, an inventory on it, a host rooted in a temporary folder, the secrets in a
vault-encrypted vars file as in production, and the service started the way the rendered unit
says when the play reaches its health check. The role's tests with and without SMTP submission
deploy the same way, so the steps live here once.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ansible_env import ansible_env, recap, venv_python
from ports import free_port

from mailplane.sender.config import hash_api_key, new_api_key

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATE = "2026-11-25"
HOST = "mta-dev"
HEALTH_TASK = "TASK [sender : Wait for the sender service to answer its health check]"
RESTART_HANDLER = "RUNNING HANDLER [sender : Report that the sender service needs a restart]"
BACKUP_RE = re.compile(r"/sender\.yaml\.\d+\.[^/]*~$")


def _env(tmp: Path) -> dict[str, str]:
    return ansible_env(tmp)


@dataclass
class Run:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> int:
        return self.recap[HOST]["changed"]


@dataclass(frozen=True)
class Accounts:
    """The accounts of a run: PowerMTA's group (made by the fixture, as PowerMTA's package would
    make it) and the service's user and group (made by the role), all removed after the module."""

    user: str
    group: str
    pmta_group: str


@dataclass
class Deployment:
    """A copy of stacks/dev, an inventory on it, one local host rooted in ``tmp/hosts/mta-dev``."""

    tmp: Path
    port: int
    wheel: Path
    accounts: Accounts
    secrets: list[str] = field(default_factory=list)
    service: subprocess.Popen[bytes] | None = None

    @property
    def stack(self) -> Path:
        return self.tmp / "dev"

    @property
    def inventory(self) -> Path:
        return self.tmp / "inventory" / "mailplane.yml"

    @property
    def vault_file(self) -> Path:
        return self.tmp / "inventory" / "group_vars" / "all" / "sender.vault.yml"

    @property
    def root(self) -> Path:
        return self.tmp / "hosts" / HOST

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "mailplane" / "venv"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "mailplane" / "sender.yaml"

    @property
    def env_file(self) -> Path:
        return self.root / "etc" / "mailplane" / "sender.env"

    @property
    def unit(self) -> Path:
        return self.root / "etc" / "systemd" / "system" / "mailplane-sender.service"

    @property
    def stack_copy(self) -> Path:
        return self.root / "opt" / "mailplane" / "stacks" / "dev"

    def host_vars(self) -> dict[str, object]:
        root = f"{self.tmp}/hosts/{{{{ inventory_hostname }}}}"
        return {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            # As in production: become root (su: this machine has no sudo), the role creates the
            # service account, and every file gets its real owner.
            "ansible_become": True,
            "ansible_become_method": "su",
            "sender_create_user": True,
            "sender_manage_owner": True,
            "sender_user": self.accounts.user,
            "sender_group": self.accounts.group,
            "sender_extra_groups": [self.accounts.pmta_group],
            "sender_service_manager": "none",
            "sender_home": f"{root}/opt/mailplane",
            "sender_config_dir": f"{root}/etc/mailplane",
            "sender_state_dir": f"{root}/var/lib/mailplane-sender",
            "sender_unit_dir": f"{root}/etc/systemd/system",
            "sender_stack_src": str(self.stack),
            "sender_python": str(self.tmp / "python"),
            "sender_package": str(self.wheel),
            "sender_pip_extra_args": "--no-deps --no-index",
            "sender_listen": f"127.0.0.1:{self.port}",
            "sender_aws_account_id": "123456789012",
            "sender_aws_endpoint_url": "http://127.0.0.1:9",  # nothing here may reach AWS
            "sender_aws_access_key_id": "AKIAEXAMPLEEXAMPLE00",
            "sender_aws_region": "eu-west-1",
            "sender_health_retries": 60,
            "sender_health_delay": 1,
            "sender_health_check": True,
        }

    def snapshot(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file of the host but the virtualenv and the service's own state, with bytes, mode, mtime."""
        skip = (self.venv, self.root / "var")
        return {str(p.relative_to(self.tmp)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
                for p in sorted(self.root.rglob("*"))
                if p.is_file() and not any(p.is_relative_to(s) for s in skip)}

    def playbook(self, *args: str, on_health: Callable[[], None] | None = None) -> Run:
        """Run site.yml's sender play; ``on_health`` is called once the health check task starts."""
        proc = subprocess.Popen(
            [str(BIN / "ansible-playbook"), "-i", str(self.inventory),
             "--vault-password-file", str(self.tmp / "vault-pass"), "playbooks/sender.yml", *args],
            cwd=ROOT, env=_env(self.tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
        reader.start()
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_health is not None and line.startswith(HEALTH_TASK):
                on_health()
                on_health = None
        proc.wait(timeout=300)
        reader.join()
        output = "".join(lines) + "".join(errors)
        log = (self.tmp / "ansible.log").read_text() if (self.tmp / "ansible.log").exists() else ""
        for secret in self.secrets:
            assert secret not in output and secret not in log, "a secret leaked into the output"
        return Run(proc.returncode, output, recap("".join(lines)))

    def start_service(self) -> None:
        """Do what systemd would: the unit's ExecStart, with its EnvironmentFile and WorkingDirectory.

        As root, not as the unit's User: this machine's Python lives under /root, which no other
        user may enter; the owners of the files the role wrote are checked instead."""
        unit = dict(line.split("=", 1) for line in self.unit.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for line in Path(unit["EnvironmentFile"]).read_text().splitlines():
            if line and not line.startswith("#"):
                name, value = line.split("=", 1)
                env[name] = json.loads(value)
        log = (self.tmp / "service.log").open("wb")
        self.service = subprocess.Popen(shlex.split(unit["ExecStart"]), cwd=unit["WorkingDirectory"], env=env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop_service(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGTERM)
            try:
                self.service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()


def setup_deployment(tmp: Path, wheel: Path, accounts: Accounts, stack: str = "dev", **overrides: object) -> Deployment:
    deployment = Deployment(tmp, free_port(), wheel, accounts)
    venv_python(tmp / "python")
    shutil.copytree(ROOT / "stacks" / stack, deployment.stack)
    group_vars = deployment.inventory.parent / "group_vars"
    (group_vars / "all").mkdir(parents=True)
    deployment.inventory.write_text(f"plugin: mailplane\nstack: {deployment.stack}\ndate: {DATE}\n")
    deployment.unit.parent.mkdir(parents=True)  # systemd's folder is there on any host
    (group_vars / "mta.yml").write_text(json.dumps({**deployment.host_vars(), **overrides}, indent=2))
    # The secrets arrive as they would in production: a vault-encrypted vars file.
    api_key = new_api_key()
    vault = {
        "sender_api_key_hashes": {"acme/app": hash_api_key(api_key)},
        "sender_unsubscribe_keys": [secrets.token_urlsafe(24), secrets.token_urlsafe(24)],
        "sender_aws_secret_access_key": secrets.token_urlsafe(30),
        # Pulumi's secret output, loaded with the stack outputs: the role's default reads it
        "sender_credentials": {"acme/app": {"access_key_id": "AKIAACMEAPP00000000",
                                            "secret_access_key": secrets.token_urlsafe(30),
                                            "smtp_password": secrets.token_urlsafe(30)}},
    }
    deployment.secrets = [api_key, vault["sender_api_key_hashes"]["acme/app"].removeprefix("sha256:"),
                          *vault["sender_unsubscribe_keys"], vault["sender_aws_secret_access_key"],
                          vault["sender_credentials"]["acme/app"]["secret_access_key"],  # (the key id is not secret)
                          vault["sender_credentials"]["acme/app"]["smtp_password"]]
    (tmp / "vault-pass").write_text("test-only\n")
    subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(tmp / "vault-pass"),
         "--output", str(deployment.vault_file), "-"],
        input=json.dumps(vault), env=_env(tmp), capture_output=True, text=True, check=True)
    return deployment
