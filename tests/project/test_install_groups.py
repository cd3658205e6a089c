"""The core installs alone, and each command that needs an optional group says which (pyproject's extras).

A fresh venv gets ``mailplane`` without extras, from a copy of the package (pinned by constraints.txt,
as ``make`` installs): validate, render and warmup status work, Pulumi, SQLAlchemy and matplotlib
are absent, and plan, dns check, serve and warmup chart exit 1 naming the extra to install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.install


def install(base: Path, extras: str = "") -> Path:
    """A fresh venv in ``base`` with a copy of the package installed (with ``extras``), as ``make`` pins it;
    returns its bin folder."""
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "mailplane", source / "mailplane", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                           "-c", str(source / "constraints.txt"), f"{source}{extras}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return venv / "bin"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the core install only; returns its bin folder."""
    return install(tmp_path_factory.mktemp("core"))


def run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "mailplane"), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_the_core_runs_a_tenants_engineers_commands_without_the_extras(core: Path, tmp_path: Path) -> None:
    assert run(core, "validate", "stacks/prod").returncode == 0
    assert run(core, "warmup", "status", "stacks/prod").returncode == 0
    rendered = run(core, "render", "stacks/prod", "--out", str(tmp_path / "out"))
    assert rendered.returncode == 0, rendered.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "powermta").iterdir())
    absent = subprocess.run([str(core / "python"), "-c", "import importlib.util as u; print([m for m in "
                             "('pulumi', 'pulumi_aws', 'sqlalchemy', 'fastapi', 'matplotlib', 'dns', 'spf') "
                             "if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert absent.stdout.strip() == "[]"


@pytest.mark.parametrize(("args", "extra"), [
    (("plan", "stacks/prod"), "cloud"),
    (("dns", "check", "stacks/prod"), "dns"),
    (("serve", "stacks/prod", "--config", "sender.yaml"), "sender"),
    (("ses", "status", "stacks/prod"), "sender"),
    (("warmup", "chart", "stacks/prod", "--out", "chart.svg"), "chart"),
])
def test_a_command_needing_an_extra_says_which(core: Path, args: tuple[str, ...], extra: str) -> None:
    done = run(core, *args)
    assert done.returncode == 1, done.stderr
    assert f"pip install 'mailplane[{extra}]'" in done.stderr and "Traceback" not in done.stderr


def test_an_mta_host_installs_the_sender_group_alone_and_serves_without_pulumi(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """What roles/sender installs by default (``mailplane[sender]``) is enough to run the sender, and
    brings no Pulumi SDK onto the MTA hosts."""
    import yaml

    defaults = yaml.safe_load((ROOT / "roles" / "sender" / "defaults" / "main.yml").read_text())
    assert defaults["sender_package"] == "mailplane[sender]"
    bin_dir = install(tmp_path_factory.mktemp("sender-only"), "[sender]")
    check = subprocess.run([str(bin_dir / "python"), "-c", "import importlib.util as u, mailplane.sender.server, "
                            "mailplane.sender.front.api; print([m for m in ('pulumi', 'pulumi_aws', 'matplotlib') "
                            "if u.find_spec(m)])"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]"
    help_text = subprocess.run([str(bin_dir / "mailplane"), "serve", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "Run the sender service" in help_text.stdout
