"""Render PowerMTA configs from the fleet, as Ansible would.

The template ``templates/powermta/config.j2`` has two users: this module and the Ansible role's
``ansible.builtin.template`` task.  Both give it the same two variables, ``pmta``
(:meth:`HostView.to_vars <mailplane.mta.view.HostView.to_vars>`) and ``paths`` (where things
live on the host), and this module sets Jinja up the way Ansible's template module does
(``trim_blocks=True``, ``lstrip_blocks=False``, no trailing-newline keeping, then the template's
own trailing newlines put back), so both produce the same bytes.  The environment is sandboxed,
undefined variables are errors and nothing is escaped: the output is a config file, not HTML.

Pure apart from reading the template: writing files is :mod:`mailplane.cli.render`'s job.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from mailplane.model.stack import Fleet
from mailplane.mta.view import host_view

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
"""``mailplane/templates``: in the repository a link to ``templates/`` (where the Ansible role reads the same
file), in an installed package its copy (package data), so ``mailplane render`` works from either."""
CONFIG_TEMPLATE = "powermta/config.j2"

ANSIBLE_TRIM_BLOCKS = True
"""``ansible.builtin.template``'s default: the newline after a ``{% %}`` tag is dropped."""
ANSIBLE_LSTRIP_BLOCKS = False
"""Its other default: whitespace before a tag stays, so every tag in the template starts a line."""

DEFAULT_PATHS: Mapping[str, str] = MappingProxyType({
    "config_dir": "/etc/pmta",
    "dkim_dir": "/etc/pmta/dkim",
    "acct_file": "/var/log/pmta/acct.csv",
    "log_file": "/var/log/pmta/log",
    "spool_dir": "/var/spool/pmta",
})
"""PowerMTA's usual locations; the Ansible role builds the same keys from its role variables."""
PATH_KEYS = tuple(DEFAULT_PATHS)


def template_environment(template_dir: Path = TEMPLATES_DIR, *, trim_blocks: bool = ANSIBLE_TRIM_BLOCKS,
                         lstrip_blocks: bool = ANSIBLE_LSTRIP_BLOCKS) -> SandboxedEnvironment:
    """A sandboxed, strict, unescaped Jinja environment with Ansible's whitespace settings.

    ``keep_trailing_newline`` is off as in Ansible's environment; :func:`render_template` then
    restores the template's trailing newlines the way Ansible's templar does.
    """
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=trim_blocks,
        lstrip_blocks=lstrip_blocks,
        keep_trailing_newline=False,
        auto_reload=False,
    )


@lru_cache(maxsize=4)
def _environment(template_dir: Path) -> SandboxedEnvironment:
    """One compiled template per process: rendering 40 hosts should not parse it 40 times."""
    return template_environment(template_dir)


def _trailing_newlines(text: str) -> int:
    return len(text) - len(text.rstrip("\n"))


def render_template(env: SandboxedEnvironment, name: str, variables: Mapping[str, Any]) -> str:
    """Render ``name`` with ``variables``; the template's trailing newlines survive as in Ansible.

    Ansible renders with ``keep_trailing_newline=False`` and afterwards appends as many newlines
    as the template text ends with minus those the result already ends with.
    """
    assert env.loader is not None
    source = env.loader.get_source(env, name)[0]
    result = env.get_template(name).render(**variables)
    missing = _trailing_newlines(source) - _trailing_newlines(result)
    return result + "\n" * missing if missing > 0 else result


def check_paths(paths: Mapping[str, str]) -> dict[str, str]:
    """The ``paths`` variable, checked: exactly :data:`PATH_KEYS`, each an absolute path."""
    missing = [k for k in PATH_KEYS if k not in paths]
    extra = sorted(set(paths) - set(PATH_KEYS))
    if missing or extra:
        raise ValueError(f"paths needs exactly the keys {', '.join(PATH_KEYS)} "
                         f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(extra) or 'none'})")
    relative = [k for k in PATH_KEYS if not str(paths[k]).startswith("/")]
    if relative:
        raise ValueError(f"paths must be absolute on the MTA host: {', '.join(relative)}")
    return {k: str(paths[k]) for k in PATH_KEYS}


def render_vars(pmta: Mapping[str, Any], paths: Mapping[str, str] = DEFAULT_PATHS,
                template_dir: Path = TEMPLATES_DIR) -> str:
    """The config text from the two template variables: exactly what the Ansible role renders."""
    env = _environment(template_dir)
    return render_template(env, CONFIG_TEMPLATE, {"pmta": pmta, "paths": check_paths(paths)})


def render_host(fleet: Fleet, host: str, on: datetime.date, paths: Mapping[str, str] = DEFAULT_PATHS) -> str:
    """PowerMTA's config for MTA host ``host`` on date ``on``."""
    return render_vars(host_view(fleet, host, on).to_vars(), paths)
