"""What PowerMTA accepts where: blocks, the directives of each, and the checker of each value.

The linter (:mod:`mailplane.mta.lint`) holds no knowledge of PowerMTA directives of its own:
adding a directive, moving one to another block or loosening a value is a change to these tables.
The source is ``/work/shared/reference/powermta.md``; rows marked ``unconfirmed=True`` are
assumptions from public configs rather than facts from it, kept here so they are easy to change.

Names are matched case-insensitively (see :data:`CASE_SENSITIVE`), so the tables are lower case.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplane.mta import values as v
from mailplane.mta.values import Check

CASE_SENSITIVE = False
"""Directive and tag names are compared case-insensitively, and so are the names of VMTAs, pools,
pattern lists and macros when one refers to another (unconfirmed: public configs are all lower
case and PowerMTA documents names without a case rule).  Being lenient here can only miss an
error on a config written in mixed case, never fail a correct one."""

GLOBAL = "global"
"""The context of directives outside every block (no block is called that)."""


@dataclass(frozen=True)
class Directive:
    """One directive in one context.

    ``repeatable``: may appear more than once in one block (listeners, pool members, keys).
    ``refers_to``: block kinds (or ``domain-macro``) one of which must define the value's name.
    ``defines``: the first word of the value names something of this kind (``domain-macro``).
    ``exclusive_ip``: the value starts with an IP (or range) that no other VMTA may also use.
    """

    check: Check
    repeatable: bool = False
    refers_to: tuple[str, ...] = ()
    defines: str = ""
    exclusive_ip: bool = False
    unconfirmed: bool = False


@dataclass(frozen=True)
class Block:
    """One kind of ``<tag ARG>…</tag>`` block.

    ``parents``: contexts it may open in.  ``arg``: checker of the argument, ``None`` when the
    tag takes none.  ``defines``: the argument names something others refer to (a VMTA, a pool,
    a pattern list).  ``patterns``: the body is pattern lines, not directives, each checked with
    ``line_check``.  Two blocks of one kind with the same argument in the same place are an error.
    """

    parents: tuple[str, ...]
    arg: Check | None
    defines: str = ""
    patterns: bool = False
    line_check: Check = v.text
    unconfirmed: bool = False


DOMAIN_WILDCARDS = ("*", "*.", "[*.]")
"""``<domain *>`` is in the reference; ``*.example.com`` and ``[*.]example.com`` are unconfirmed."""
MACRO_PREFIX = "$"
"""``<domain $NAME>`` names a ``domain-macro`` (reference)."""


def domain_arg(value: str) -> str | None:
    """``*``, ``$MACRO`` or a domain (the macro itself is checked against the file's macros)."""
    if value == "*":
        return None
    if value.startswith(MACRO_PREFIX):
        return v.name(value[len(MACRO_PREFIX):])
    for prefix in DOMAIN_WILDCARDS[1:]:
        if value.startswith(prefix):
            return v.hostname(value[len(prefix):])
    return v.hostname(value)


def slash_pattern(value: str) -> str | None:
    """Pattern blocks hold lines like ``reply /421 .*rate limit/ mode=backoff`` or ``/spam/ spam-related``:
    the pattern between slashes is the one part of their syntax every public example shares
    (the rest is unconfirmed, so it is not checked)."""
    first = value.find("/")
    if first >= 0 and value.find("/", first + 2) > first:
        return None
    return f"{value!r} has no /pattern/"


VMTA_NAMES = ("virtual-mta", "virtual-mta-pool")
"""VMTAs and pools share one name space: ``X-Virtual-MTA`` and ``default-virtual-mta`` name either."""
NAME_SPACES: tuple[tuple[str, ...], ...] = (VMTA_NAMES, ("smtp-pattern-list",), ("pattern-list",), ("domain-macro",))

BLOCKS: dict[str, Block] = {
    "source": Block(parents=(GLOBAL,), arg=v.network),
    "virtual-mta": Block(parents=(GLOBAL,), arg=v.name, defines="virtual-mta"),
    "virtual-mta-pool": Block(parents=(GLOBAL,), arg=v.name, defines="virtual-mta-pool"),
    "domain": Block(parents=(GLOBAL, "virtual-mta"), arg=domain_arg),
    "acct-file": Block(parents=(GLOBAL,), arg=v.absolute_path),
    "smtp-pattern-list": Block(parents=(GLOBAL,), arg=v.name, defines="smtp-pattern-list", patterns=True,
                               line_check=slash_pattern),
    "bounce-category-patterns": Block(parents=(GLOBAL,), arg=None, patterns=True, line_check=slash_pattern),
    "pattern-list": Block(parents=(GLOBAL,), arg=v.name, defines="pattern-list", patterns=True,
                          line_check=slash_pattern, unconfirmed=True),
}

_DOMAIN: dict[str, Directive] = {
    "max-smtp-out": Directive(v.count),
    "max-msg-per-connection": Directive(v.count),
    "max-msg-rate": Directive(v.rate),
    "max-connect-rate": Directive(v.rate, unconfirmed=True),
    "retry-after": Directive(v.duration),
    "bounce-after": Directive(v.duration),
    "use-starttls": Directive(v.yes_no),
    "require-starttls": Directive(v.yes_no),
    "dkim-sign": Directive(v.yes_no),
    "mx-rollup": Directive(v.domain_or_yes_no),
    "backoff-max-msg-rate": Directive(v.rate),
    "backoff-retry-after": Directive(v.duration),
    "backoff-to-normal-after": Directive(v.duration),
    "backoff-notify": Directive(v.email),
    "smtp-pattern-list": Directive(v.name, refers_to=("smtp-pattern-list",)),
}

DIRECTIVES: dict[str, dict[str, Directive]] = {
    GLOBAL: {
        "postmaster": Directive(v.email),
        "host-name": Directive(v.hostname),
        "smtp-listener": Directive(v.listener, repeatable=True),
        "http-mgmt-port": Directive(v.port),
        "http-access": Directive(v.http_access, repeatable=True),
        "run-as-root": Directive(v.yes_no),
        "log-file": Directive(v.absolute_path),
        "spool": Directive(v.absolute_path, repeatable=True),
        "domain-macro": Directive(v.domain_macro, repeatable=True, defines="domain-macro"),
        "domain-key": Directive(v.domain_key, repeatable=True),
        "include": Directive(v.path, repeatable=True),
    },
    "source": {
        "always-allow-relaying": Directive(v.yes_no),
        "process-x-virtual-mta": Directive(v.yes_no),
        "smtp-service": Directive(v.yes_no),
        "default-virtual-mta": Directive(v.name, refers_to=VMTA_NAMES),
        "add-received-header": Directive(v.yes_no),
        "process-x-job": Directive(v.yes_no),
        "jobid-header": Directive(v.header_name),
        "hide-message-source": Directive(v.yes_no),
        "log-connections": Directive(v.yes_no),
        "max-message-size": Directive(v.size_or_unlimited),
        "allow-unencrypted-plain-auth": Directive(v.yes_no, unconfirmed=True),
        "pattern-list": Directive(v.name, refers_to=("pattern-list",), unconfirmed=True),
    },
    "virtual-mta": {
        "smtp-source-host": Directive(v.smtp_source_host, repeatable=True, exclusive_ip=True),
        "domain-key": Directive(v.domain_key, repeatable=True),
    },
    "virtual-mta-pool": {
        "virtual-mta": Directive(v.name, repeatable=True, refers_to=("virtual-mta",)),
    },
    "domain": _DOMAIN,
    "acct-file": {
        "records": Directive(v.acct_records),
        "move-interval": Directive(v.duration),
        "max-size": Directive(v.size),
        "delete-after": Directive(v.duration),
        "record-fields": Directive(v.record_fields, repeatable=True, unconfirmed=True),
    },
}
"""Directives by context.  Pattern blocks have none: their lines are patterns."""


def where_allowed(directive: str) -> list[str]:
    """Contexts that accept ``directive``, for "belongs in …" messages."""
    return [context for context, table in DIRECTIVES.items() if directive in table]


def all_directive_names() -> list[str]:
    return sorted({name for table in DIRECTIVES.values() for name in table})


def unconfirmed() -> list[str]:
    """Every assumption in the tables, for the docs and for a reviewer with the PowerMTA manual."""
    items = [f"<{name}>" for name, block in BLOCKS.items() if block.unconfirmed]
    items += [f"{name} in {context}" for context, table in DIRECTIVES.items()
              for name, directive in table.items() if directive.unconfirmed]
    return items
