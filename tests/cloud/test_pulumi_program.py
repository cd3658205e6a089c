"""``__main__.py`` under Pulumi's unit-test mocks: the engine cannot be installed here.

The program resolves its fleet folder from stack config (``mailplane:fleet``), else from the
stack name, and refuses to run on an invalid fleet with the located problems.
"""

from __future__ import annotations

import asyncio
import runpy
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cloud_mocks import AwsMocks

ROOT = Path(__file__).resolve().parents[2]


def _run(program: Path, stack: str, config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # Pulumi's mocks run on the thread's current event loop; a test before this one in the same process
    # may have ended with asyncio.run(), which leaves none.  One that is there is kept: Pulumi's runtime
    # holds futures of the loop it last ran on, and a plan after this test runs on it.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    pulumi.runtime.set_all_config(config)
    pulumi.runtime.set_mocks(AwsMocks(), project="mailplane", stack=stack, preview=False)
    return runpy.run_path(str(program), run_name="__main__")


def test_program_loads_the_fleet_named_in_stack_config(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(ROOT / "__main__.py", "prod", {"mailplane:fleet": "stacks/prod"}, monkeypatch)
    assert [t.name for t in result["fleet"].tenants] == ["globex", "initech", "sos-expat"]


def test_program_defaults_to_the_stack_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(ROOT / "__main__.py", "dev", {}, monkeypatch)
    assert result["fleet"].stack == "dev"


def test_program_refuses_an_invalid_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(ROOT / "__main__.py", tmp_path / "__main__.py")
    shutil.copytree(ROOT / "stacks" / "prod", tmp_path / "stacks" / "prod")
    tenant = tmp_path / "stacks" / "prod" / "tenants" / "globex.yaml"
    tenant.write_text(tenant.read_text().replace("host: mta2", "host: mta7"))
    with pytest.raises(SystemExit) as err:
        _run(tmp_path / "__main__.py", "prod", {}, monkeypatch)
    assert "globex.yaml:" in str(err.value) and "no MTA host 'mta7'" in str(err.value)


def test_stack_config_files_name_existing_fleets() -> None:
    import yaml

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["runtime"]["name"] == "python" and project["stackConfigDir"] == "stacks"
    for config_file in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        config = yaml.safe_load(config_file.read_text())["config"]
        assert (ROOT / config["mailplane:fleet"] / "fleet.yaml").is_file()
        stack = config_file.name.split(".")[1]
        fleet = yaml.safe_load((ROOT / "stacks" / stack / "fleet.yaml").read_text())
        assert config["aws:region"] == fleet["ses"]["region"]


def test_the_offline_plan_runs_after_asyncio_run_left_the_thread_no_event_loop() -> None:
    """``asyncio.run()`` ends by leaving the thread without a current loop; the plan makes its own.  In a
    process of its own: Pulumi's runtime keeps state from one loop to the next."""
    import subprocess
    import sys

    code = ("import asyncio\nfrom mailplane.cloud.plan import plan\nfrom mailplane.model.loader import load_stack\n"
            "asyncio.run(asyncio.sleep(0))\nasyncio.set_event_loop(None)\n"
            "print(len(plan(load_stack('stacks/dev'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) > 0
