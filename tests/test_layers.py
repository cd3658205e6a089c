"""Which packages may import which: the layering the code's structure promises.

The sender service runs on hosts without the Pulumi program's dependencies and starts in a
fraction of the second Pulumi and pulumi-aws take to load; the model is read by everyone and so
imports none of its consumers.  Each rule is checked in a fresh interpreter, since a module an
earlier test loaded would hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SENDER_DIR = ROOT / "mailplane" / "sender"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SENDER_MODULES = tuple(sorted(_module_name(p) for p in SENDER_DIR.rglob("*.py")))
"""Every module of the sender service: ``sns``, ``events``, the HTTP app and ``service`` among them."""
MODEL_CONSUMERS = ("mailplane.cloud", "mailplane.mta", "mailplane.sender", "mailplane.dns", "mailplane.gitops",
                   "mailplane.cli", "mailplane.warmup", "mailplane.mailwizz")


def _loaded_after(*modules: str, then: str = "") -> list[str]:
    """Every module name loaded once ``modules`` are imported (and ``then`` run) in a new interpreter."""
    code = (f"import sys\nfor m in {list(modules)!r}: __import__(m)\n{then}\n"
            "import json; print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                          cwd=ROOT)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_the_sender_never_imports_pulumi() -> None:
    assert [m for m in _loaded_after(*SENDER_MODULES) if m.split(".")[0].startswith("pulumi")] == []


def test_the_topic_allow_list_needs_no_pulumi() -> None:
    """The SNS topic names are the Pulumi program's, computed without it (:mod:`mailplane.model.names`)."""
    then = ("from mailplane.model.loader import load_stack\n"
            "fleet = load_stack('stacks/prod')\n"
            "topics = sys.modules['mailplane.sender.sns'].fleet_topics(fleet.tenants, region='eu-north-1', "
            "account_id='123456789012')\n"
            "assert topics, topics")
    assert [m for m in _loaded_after("mailplane.sender.sns", then=then) if m.startswith("pulumi")] == []


def test_the_sender_never_imports_the_cloud_package() -> None:
    assert [m for m in _loaded_after(*SENDER_MODULES) if m.startswith("mailplane.cloud")] == []


@pytest.mark.parametrize("module", ["mailplane.model.loader", "mailplane.model.records", "mailplane.model.names",
                                    "mailplane.model.warmup_plans", "mailplane.model.addresses"])
def test_the_model_imports_none_of_its_consumers(module: str) -> None:
    assert [m for m in _loaded_after(module) if m.startswith(MODEL_CONSUMERS)] == []
