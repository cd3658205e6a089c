"""Problems of an edit told in the edit's own terms: the flag the author typed, not the YAML key.

``mailplane domain add`` builds YAML from flags, so "e.g. dns: {provider: route53, zone: ...}"
sends its author to a file they never wrote.  Each edit command describes how its flags map onto
the entry it adds; :func:`for_flags` rewrites every problem located in that entry so that it names
the flag and, where one is known, a hint in flags.  :func:`new_findings` keeps only the policy
findings the edit itself brings, so an edit is not refused for what was already wrong.
Pure: nothing here reads or prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mailplane.gitops.policy import Finding
from mailplane.model.problems import YamlProblem


@dataclass(frozen=True)
class Flags:
    """How one edit's arguments map onto the YAML entry it adds."""

    entry: str
    """Path of the added entry (``domains[2]``), or ``""`` for a whole new file."""
    fields: Mapping[str, str]
    """Path under the entry (``dkim.selector``; ``""`` for the entry itself) to the flag or argument that set it."""
    hints: Mapping[str, str] = field(default_factory=dict)
    """Path under the entry to a hint in flags, replacing the loader's hint in YAML."""
    checks: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Policy check id to the flag that fixes it and how."""


def _relative(path: str, entry: str) -> str | None:
    """``path`` below ``entry`` (``dkim.selector``), ``""`` for the entry itself, None when outside it."""
    if not entry:
        return path
    if path == entry:
        return ""
    for sep in (".", "["):
        if path.startswith(entry + sep):
            return path[len(entry):].lstrip(".")
    return None


def _field(relative: str, fields: Mapping[str, str]) -> str | None:
    """The longest field of ``fields`` that ``relative`` lies in."""
    best: str | None = None
    for name in fields:
        inside = (not name or relative == name or relative.startswith(name + ".")
                  or relative.startswith(name + "["))
        if inside and (best is None or len(name) > len(best)):
            best = name
    return best


def for_flags(problem: YamlProblem, flags: Flags, check: str | None = None) -> YamlProblem:
    """``problem`` naming the flag behind it (``domains[2].dns (--dns-provider)``); others unchanged."""
    relative = _relative(problem.path, flags.entry)
    if relative is None:
        return problem
    if check is not None and check in flags.checks:
        flag, hint = flags.checks[check]
        return dataclasses.replace(problem, path=f"{problem.path} ({flag})", hint=hint)
    name = _field(relative, flags.fields)
    if name is None:
        return problem
    return dataclasses.replace(problem, path=f"{problem.path} ({flags.fields[name]})",
                               hint=flags.hints.get(name, problem.hint))


def finding_for_flags(finding: Finding, flags: Flags) -> Finding:
    return dataclasses.replace(finding, problem=for_flags(finding.problem, flags, finding.check))


def _key(finding: Finding) -> tuple[str, str, str, str, str]:
    """What identifies a finding across an edit: not its line, which the edit may move."""
    p = finding.problem
    return finding.check, p.file, p.path, p.message, finding.waived or ""


def new_findings(before: Iterable[Finding], after: Iterable[Finding]) -> list[Finding]:
    """The findings of ``after`` that ``before`` did not have."""
    seen = {_key(f) for f in before}
    return [f for f in after if _key(f) not in seen]
