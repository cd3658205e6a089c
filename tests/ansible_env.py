"""What the Ansible tests share: the environment ansible-playbook runs in, and its recap."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RECAP_RE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$", re.MULTILINE)


def ansible_env(tmp: Path, *first_on_path: Path) -> dict[str, str]:
    """``first_on_path`` (a stub's folder), then the venv's tools on PATH; the repository's
    ansible.cfg; colour off and output unbuffered so it parses line by line; logs and temporary
    files under ``tmp``.  Any ANSIBLE_* of the caller's environment is dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    path = [str(p) for p in first_on_path] + [str(BIN), env.get("PATH", "")]
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
