"""What the Ansible tests share: the environment ansible-playbook runs in, its recap, a wheel of
the repository and a ``python`` whose virtualenvs see the project's dependencies (what the roles
install), throwaway system accounts (the roles run with ``become`` and real owners, as in
production), and PowerMTA's HTTP status endpoint on loopback."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import pwd
import re
import secrets
import subprocess
import sys
import sysconfig
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RECAP_RE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


def ansible_env(tmp: Path, *first_on_path: Path, project_bin: bool = True) -> dict[str, str]:
    """``first_on_path`` (a stub's folder), then the venv's tools on PATH; the repository's
    ansible.cfg; colour off and output unbuffered so it parses line by line; logs and temporary
    files under ``tmp``.  Any ANSIBLE_* of the caller's environment is dropped.

    ``project_bin=False`` leaves the project's virtualenv (and so its ``mailplane``) off PATH, as
    on an MTA host: run the Ansible commands by their full path then."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    inherited = [p for p in env.get("PATH", "").split(os.pathsep) if p and (project_bin or Path(p) != BIN)]
    path = [str(p) for p in first_on_path] + ([str(BIN)] if project_bin else []) + inherited
    env.update(
        PATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOG_PATH=str(tmp / "ansible.log"),
        ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-remote"),
    )
    return env


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as ``{host: {"ok": 7, "changed": 0, ...}}``."""
    tail = output.rsplit("PLAY RECAP", 1)[-1]
    return {m["host"]: {k: int(v) for k, v in (p.split("=") for p in m["counts"].split())}
            for m in RECAP_RE.finditer(tail)}


def build_wheel(out_dir: Path, version: str | None = None) -> Path:
    """A pure-Python wheel of the repository (``mailplane/**/*.py``, metadata, console script).

    What CI would publish, made without a build backend: the project venv's setuptools cannot
    build a wheel without the ``wheel`` package, and fetching one needs the network.  ``version``
    (default the project's) lets a requirement tell it from the project's own editable install,
    which virtualenvs made by :func:`venv_python` see too.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name, version = project["name"], version or project["version"]
    dist_info = f"{name}-{version}.dist-info"
    files = {str(p.relative_to(ROOT)): p.read_bytes() for p in sorted((ROOT / "mailplane").rglob("*.py"))}
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist_info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    scripts = "".join(f"{script} = {target}\n" for script, target in project["scripts"].items())
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = "".join(f"{line}\n" for line in [*record, f"{dist_info}/RECORD,,"]).encode()
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return wheel


def venv_python(path: Path, pip_conf: str = "") -> Path:
    """A ``python`` for the roles' ``*_python`` whose ``-m venv`` makes virtualenvs that see the
    project's site-packages through a .pth file: a host where mailplane's dependencies are there.

    ``pip_conf`` goes to each new virtualenv's ``pip.conf``, as a host's pip configuration would
    (an internal index, say): options there, unlike the pip module's ``extra_args``, leave check
    mode able to tell whether a requirement is installed already."""
    pure = Path(sysconfig.get_paths()["purelib"])
    site = pure.relative_to(sys.prefix)
    path.write_text(f"""#!{sys.executable}
import pathlib, subprocess, sys
code = subprocess.run([{str(sys.executable)!r}, *sys.argv[1:]]).returncode
if code == 0 and sys.argv[1:3] == ["-m", "venv"]:
    pathlib.Path(sys.argv[-1], {str(site)!r}, "mailplane-project.pth").write_text({str(pure) + chr(10)!r})
    if {pip_conf!r}:
        pathlib.Path(sys.argv[-1], "pip.conf").write_text({pip_conf!r})
sys.exit(code)
""")
    path.chmod(0o755)
    return path


def throwaway_name(kind: str) -> str:
    """A user or group name no real account has, short enough for useradd (32 characters)."""
    return f"mpt{secrets.token_hex(3)}{kind}"


@contextlib.contextmanager
def system_account(user: str, group: str) -> Iterator[pwd.struct_passwd]:
    """A system user and its group for one test module (the tests run as root), removed after."""
    subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
    try:
        subprocess.run(["useradd", "--system", "--gid", group, "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", user], check=True, capture_output=True)
        try:
            yield pwd.getpwnam(user)
        finally:
            subprocess.run(["userdel", user], check=False, capture_output=True)
    finally:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


def remove_accounts(users: list[str], groups: list[str]) -> None:
    """Remove accounts a role made during the tests (a missing one is fine)."""
    for user in users:
        subprocess.run(["userdel", user], check=False, capture_output=True)
    for group in groups:
        subprocess.run(["groupdel", group], check=False, capture_output=True)


HEALTHY: dict[str, object] = {
    "status": "success",
    "data": {"status": {"status": "running", "shuttingDown": False}, "spool": {"initPct": 100}},
}
"""PowerMTA's ``GET /status?format=json`` when it is healthy (the guide's fields; the rest left out)."""


@dataclass
class StatusServer:
    """PowerMTA's HTTP management port of one host, on loopback: ``/status?format=json`` answers
    ``answer`` (set it to make the host sick), and each request is appended to ``log`` as
    ``"<host> status"``, in the same file the stub ``pmta`` writes its calls to."""

    host: str
    log: Path
    answer: dict[str, object]
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @classmethod
    def start(cls, host: str, log: Path) -> StatusServer:
        holder: list[StatusServer] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = holder[0]
                if self.path != "/status?format=json":
                    self.send_error(404)
                    return
                with status.log.open("a") as out:
                    out.write(f"{status.host} status\n")
                body = json.dumps(status.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        status = cls(host, log, json.loads(json.dumps(HEALTHY)), server, thread)
        holder.append(status)
        thread.start()
        return status

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
