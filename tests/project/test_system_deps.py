"""``tools/system-deps``, which ``make test`` runs first: it finds the test servers by command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "system-deps"


def dry_run(path: str, dirs: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "MAILPLANE_SYSTEM_DEPS_DIRS": dirs}
    return subprocess.run(["/bin/bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True,
                          check=False)


def stub(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text("#!/bin/sh\n")
    (directory / name).chmod(0o755)


def test_nothing_found_lists_every_package_with_its_reason(tmp_path: Path) -> None:
    result = dry_run(f"{tmp_path}:/usr/bin:/bin", str(tmp_path / "none"))
    assert result.returncode == 0
    # swaks installs to /usr/bin, which the script needs on its PATH: listed only where it is not there yet
    client = [] if shutil.which("swaks", path="/usr/bin:/bin") else ["swaks"]
    perl_tls = subprocess.run(["perl", "-MNet::SSLeay", "-e", "1"], capture_output=True, check=False).returncode
    client += ["libnet-ssleay-perl"] if perl_tls else []  # a module, found by perl itself
    client += [] if shutil.which("promtool", path="/usr/bin:/bin") else ["prometheus"]
    assert result.stdout.split() == ["knot", "postgresql", *client]
    assert "knotd not found" in result.stderr and "initdb not found" in result.stderr


def test_commands_on_path_or_in_a_globbed_server_directory_are_found(tmp_path: Path) -> None:
    stub(tmp_path / "bin", "knotd")
    stub(tmp_path / "bin", "swaks")
    stub(tmp_path / "bin", "promtool")
    stub(tmp_path / "lib" / "postgresql" / "17" / "bin", "initdb")
    result = dry_run(f"{tmp_path / 'bin'}:/usr/bin:/bin", f"{tmp_path}/lib/postgresql/*/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_one_missing_command_names_only_its_package(tmp_path: Path) -> None:
    stub(tmp_path / "sbin", "initdb")
    stub(tmp_path / "sbin", "swaks")
    stub(tmp_path / "sbin", "promtool")
    result = dry_run("/usr/bin:/bin", str(tmp_path / "sbin"))
    assert result.stdout.split() == ["knot"]


def test_make_test_runs_it_and_ci_calls_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "test: $(STAMP) system-deps" in makefile
    assert "\ttools/system-deps" in makefile
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci and "/usr/lib/postgresql/" not in ci
