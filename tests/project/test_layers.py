"""Which packages may import which: the layering the code's structure promises.

The sender service runs on hosts without the Pulumi program's dependencies and starts in a
fraction of the second Pulumi and pulumi-aws take to load; the model is read by everyone and so
imports none of its consumers.  Inside the sender, each folder is a layer (:data:`SENDER_LAYERS`):
``core`` is pure, ``db`` talks to the database, ``delivery`` to PowerMTA and SES, ``events`` reads
what comes back, ``front`` takes mail in; at the top only the wiring.  What a module loads is
checked in a fresh interpreter, since a module an earlier test loaded would hide an import; what
it names is read from its source, ``TYPE_CHECKING`` imports included.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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


SENDER_LAYERS: dict[str, set[str]] = {
    "core": {"core"},
    "db": {"core", "db"},
    "delivery": {"core", "db", "delivery", "config", "service"},
    "events": {"core", "db", "events", "config", "metrics"},
    "front": {"core", "db", "front", "config", "service"},
}
"""What each layer's modules may import of the sender: the layers below, and of the top only the
configuration, the metrics registry and the service that hands a front end or a worker its parts."""
TOP = {"service", "server", "config", "metrics"}
NETWORK_AND_DATABASE = ("sqlalchemy", "psycopg", "botocore", "boto3", "aiosmtplib", "aiosmtpd", "httpx",
                        "urllib.request", "http.client", "smtplib", "fastapi", "starlette", "uvicorn")


def _sender_imports() -> dict[str, set[str]]:
    """Each sender module's imports of other sender modules, from its source (``TYPE_CHECKING`` included)."""
    paths = {_module_name(p): p for p in SENDER_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailplane.sender"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("mailplane.sender")}
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def _layer(module: str) -> str:
    rest = module.removeprefix("mailplane.sender").lstrip(".")
    return rest.split(".")[0] if rest else ""


def test_every_sender_module_is_in_a_layer_or_the_wiring() -> None:
    stray = [m for m in SENDER_MODULES if _layer(m) not in {*SENDER_LAYERS, *TOP, ""}]
    assert stray == []


@pytest.mark.parametrize("layer", sorted(SENDER_LAYERS))
def test_each_sender_layer_imports_only_what_is_below_it(layer: str) -> None:
    allowed = SENDER_LAYERS[layer]
    wrong = sorted((m, d) for m, deps in _sender_imports().items() if _layer(m) == layer
                   for d in deps if _layer(d) not in allowed)
    assert wrong == []


def test_the_sender_has_no_import_cycle() -> None:
    graph = _sender_imports()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        seen[module] = 1
        for dep in sorted(graph[module]):
            if seen.get(dep) == 1:
                return [*path, module, dep]
            if dep not in seen and (cycle := visit(dep, [*path, module])):
                return cycle
        seen[module] = 2
        return None

    cycles = [c for m in sorted(graph) if m not in seen and (c := visit(m, []))]
    assert cycles == []


def test_the_core_loads_no_database_and_no_network() -> None:
    core = [m for m in SENDER_MODULES if _layer(m) == "core"]
    loaded = _loaded_after(*core)
    assert [m for m in loaded if m.startswith(NETWORK_AND_DATABASE)] == []
    assert [m for m in loaded if m.startswith("mailplane.sender.") and _layer(m) != "core"] == []


def test_the_sender_never_imports_pulumi() -> None:
    assert [m for m in _loaded_after(*SENDER_MODULES) if m.split(".")[0].startswith("pulumi")] == []


def test_the_topic_allow_list_needs_no_pulumi() -> None:
    """The SNS topic names are the Pulumi program's, computed without it (:mod:`mailplane.model.names`)."""
    then = ("from mailplane.model.loader import load_stack\n"
            "fleet = load_stack('stacks/prod')\n"
            "topics = sys.modules['mailplane.sender.events.sns'].fleet_topics(fleet.tenants, region='eu-north-1', "
            "account_id='123456789012')\n"
            "assert topics, topics")
    assert [m for m in _loaded_after("mailplane.sender.events.sns", then=then) if m.startswith("pulumi")] == []


def test_the_sender_never_imports_the_cloud_package() -> None:
    assert [m for m in _loaded_after(*SENDER_MODULES) if m.startswith("mailplane.cloud")] == []


@pytest.mark.parametrize("module", ["mailplane.model.loader", "mailplane.model.records", "mailplane.model.names",
                                    "mailplane.model.warmup_plans", "mailplane.model.addresses"])
def test_the_model_imports_none_of_its_consumers(module: str) -> None:
    assert [m for m in _loaded_after(module) if m.startswith(MODEL_CONSUMERS)] == []
