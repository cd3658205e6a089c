"""Load a stack folder into a :class:`Fleet`, or fail with every located problem at once.

Layout: ``<stack>/fleet.yaml`` and ``<stack>/tenants/<tenant>.yaml``.  ``overrides`` replaces
the bytes of given files, which is how the editors validate a change before writing it.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from mailplane.model.checks import TenantFile, check_fleet, check_smtp_region, check_stack
from mailplane.model.errors import problems_from
from mailplane.model.fleet import FleetSettings
from mailplane.model.problems import StackError, YamlProblem, display_path
from mailplane.model.source import SourceDoc, parse
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant

FLEET_FILE = "fleet.yaml"
TENANTS_DIR = "tenants"
M = TypeVar("M", bound=BaseModel)


def tenant_files(stack_dir: Path) -> list[Path]:
    return sorted((stack_dir / TENANTS_DIR).glob("*.yaml"))


def _absolute(path: Path) -> Path:
    """Absolute without resolving symlinks: a linked tenant file keeps its own name."""
    return Path(os.path.abspath(path))


def _read(path: Path, overrides: dict[Path, bytes]) -> bytes:
    key = _absolute(path)
    return overrides[key] if key in overrides else path.read_bytes()


def _load_model(path: Path, model: type[M], overrides: dict[Path, bytes],
                              problems: list[YamlProblem]) -> tuple[M | None, SourceDoc | None]:
    name = display_path(path)
    try:
        data, doc, soft = parse(_read(path, overrides), name)
    except StackError as err:
        problems.extend(err.problems)
        return None, None
    except OSError as err:
        problems.append(YamlProblem(name, 1, 1, "(document)", f"cannot read: {err.strerror}"))
        return None, None
    problems.extend(soft)
    if not isinstance(data, dict):
        problems.append(doc.problem((), f"expected a mapping of keys, found a {type(data).__name__}"))
        return None, doc
    try:
        return model.model_validate(data), doc
    except ValidationError as err:
        # A value the reader already rejected (and replaced by None) would be reported twice.
        already = {(p.line, p.col) for p in soft}
        problems.extend(p for p in problems_from(err, model, doc) if (p.line, p.col) not in already)
        return None, doc


def load_file(path: Path, model: type[M]) -> M:
    """One YAML file into ``model`` (the sender's config, say), or ``StackError`` with located problems."""
    problems: list[YamlProblem] = []
    result, _doc = _load_model(path, model, {}, problems)
    if problems or result is None:
        raise StackError(problems)
    return result


def load_stack(stack_dir: Path | str, overrides: dict[Path, bytes] | None = None) -> Fleet:
    """Load and check a stack.

    The cyclic garbage collector is paused meanwhile: loading allocates hundreds of thousands of
    objects that all stay alive, so every collection it triggers is wasted work (a third of the
    load time of a 1,000-tenant stack).  It is switched back on, and the state restored, even on
    error.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_stack(Path(stack_dir), overrides)
    finally:
        if was_enabled:
            gc.enable()


def _load_fleet(stack_dir: Path, overrides: dict[Path, bytes],
                problems: list[YamlProblem]) -> tuple[FleetSettings | None, SourceDoc | None]:
    """fleet.yaml, loaded and checked on its own: the tenants' checks need it, but its problems come first."""
    fleet_path = stack_dir / FLEET_FILE
    if not (fleet_path.is_file() or _absolute(fleet_path) in overrides):
        problems.append(YamlProblem(display_path(fleet_path), 1, 1, "(stack)", "fleet.yaml is missing",
                                    "every stack has a fleet.yaml with ses: and mta_hosts:"))
        return None, None
    fleet, fleet_doc = _load_model(fleet_path, FleetSettings, overrides, problems)
    if fleet is not None and fleet_doc is not None:
        problems.extend(check_fleet(fleet, fleet_doc))
    return fleet, fleet_doc


def _tenant_paths(stack_dir: Path, overrides: dict[Path, bytes], problems: list[YamlProblem]) -> set[Path]:
    """The tenant files to load, on disk or only in ``overrides``; a missing folder or a misnamed file is reported,
    since either would otherwise leave tenants silently out of the stack."""
    tenants_dir = stack_dir / TENANTS_DIR
    # Absolute, so a file given both on disk and in ``overrides`` is read once, as overridden.
    paths = {_absolute(p) for p in tenant_files(stack_dir)} | {
        p for p in overrides if p.parent == _absolute(tenants_dir) and p.suffix == ".yaml"}
    if not tenants_dir.is_dir():
        problems.append(YamlProblem(display_path(tenants_dir), 1, 1, "(stack)", "tenants folder is missing",
                                    "create it: one <tenant>.yaml per tenant (it may be empty)"))
    else:
        for stray in sorted(tenants_dir.glob("*.yml")):
            problems.append(YamlProblem(display_path(stray), 1, 1, "(stack)", "tenant files end in .yaml",
                                        f"rename it to {stray.stem}.yaml"))
    return paths


def _load_tenants(paths: set[Path], overrides: dict[Path, bytes], problems: list[YamlProblem]) -> list[TenantFile]:
    """Every tenant file that parses and validates, in file-name order; the others only add problems."""
    loaded: list[TenantFile] = []
    for path in sorted(paths, key=lambda p: p.name):
        tenant, doc = _load_model(path, Tenant, overrides, problems)
        if tenant is not None and doc is not None:
            loaded.append(TenantFile(path.stem, tenant, doc))
    return loaded


def _load_stack(stack_dir: Path, overrides: dict[Path, bytes] | None) -> Fleet:
    overrides = {_absolute(Path(p)): b for p, b in (overrides or {}).items()}
    where = display_path(stack_dir)
    if not stack_dir.is_dir():
        raise StackError([YamlProblem(where, 1, 1, "(stack)", "no such stack folder",
                                      "pass a folder holding fleet.yaml and tenants/")])
    problems: list[YamlProblem] = []
    fleet, fleet_doc = _load_fleet(stack_dir, overrides, problems)
    loaded = _load_tenants(_tenant_paths(stack_dir, overrides, problems), overrides, problems)
    problems.extend(check_stack(fleet, loaded))
    if fleet is not None and fleet_doc is not None:
        problems.extend(check_smtp_region(fleet, fleet_doc, loaded))
    if problems or fleet is None or fleet_doc is None:
        raise StackError(problems)
    sources = {"fleet": fleet_doc, **{tf.tenant.name: tf.doc for tf in loaded}}
    tenants = tuple(sorted((tf.tenant for tf in loaded), key=lambda t: t.name))
    return Fleet(stack_dir.resolve().name, stack_dir, fleet, tenants, sources)
