"""What PowerMTA accepts where: blocks, the directives of each, and the checker of each value.

The linter (:mod:`mailplane.mta.lint`) holds no knowledge of PowerMTA directives of its own:
adding a directive, moving one to another block or loosening a value is a change to these tables.
The facts are the PowerMTA v5.0 User's Guide's, as ``docs/powermta.md`` records them (``g X.Y`` =
a guide section, ``pub X.Y`` = the public edition's chapter where the 2020 text is missing).  Rows
marked ``unconfirmed=True`` are names the sources show without settling them; they are accepted,
and listed by :func:`unconfirmed` so a reviewer with the manual can settle them.

Names are matched case-insensitively (see :data:`CASE_SENSITIVE`), so the tables are lower case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailplane.mta import values as v
from mailplane.mta.values import ValueCheck

CASE_SENSITIVE = False
"""Directive and tag names are compared case-insensitively, and so are the names of VMTAs, pools,
lists and macros when one refers to another.  The guide settles neither (``pmta show settings``
prints ``smtp-tls-allow-TLSv1``); being lenient can only miss an error, never fail a correct file."""

GLOBAL = "global"
"""The context of directives outside every block (no block is called that)."""

Names = Callable[[str], list[str]]


def _whole(value: str) -> list[str]:
    return [v.unquote(value)]


@dataclass(frozen=True)
class Directive:
    """One directive in one context.

    ``repeatable``: may appear more than once in one block (listeners, pool members, keys).
    ``refers_to``: name spaces (see :data:`NAME_SPACES`) one of which must define each name
    ``names(value)`` returns; ``before``: the definition must come earlier in the file.
    ``defines``: the first word of the value names something of this kind (``domain-macro``).
    ``macros``: ``$NAME`` in the value is a domain-macro reference.
    ``exclusive_ip``: the value starts with an IP or network that no other VMTA may also use.
    ``clearable``: ``""`` clears an inherited value (g 3.1).
    ``deprecated``: what to write instead; the directive is reported, its value is not checked.
    """

    check: ValueCheck
    section: str = ""
    repeatable: bool = False
    refers_to: tuple[str, ...] = ()
    names: Names = _whole
    before: bool = False
    defines: str = ""
    macros: bool = False
    exclusive_ip: bool = False
    clearable: bool = False
    deprecated: str = ""
    unconfirmed: bool = False


@dataclass(frozen=True)
class Block:
    """One kind of ``<tag ARG>…</tag>`` block.

    ``parents``: contexts it may open in.  ``arg``: checker of the argument, ``None`` when the
    tag takes none; ``arg_in`` overrides it per parent (an ``<address-list>`` is named at top level
    and unnamed in a processor).  ``defines``: the argument names something others refer to, when
    ``named(arg)`` (a ``<source 10/8>`` names nothing, a ``<source api>`` does).  ``lines``: the
    body is pattern lines, not directives, each checked with ``lines``.  ``once``: at most one in
    the file.  ``requires``: directives the block must hold; ``conflicts``: pairs it must not hold
    together.  Two blocks of one kind with the same argument in the same place are an error.
    """

    parents: tuple[str, ...]
    arg: ValueCheck | None
    section: str
    arg_in: dict[str, ValueCheck | None] = field(default_factory=dict)
    defines: str = ""
    named: Callable[[str], bool] = lambda arg: True
    lines: ValueCheck | None = None
    once: bool = False
    requires: tuple[str, ...] = ()
    conflicts: tuple[tuple[str, str], ...] = ()
    macros: bool = False
    unconfirmed: bool = False

    def arg_check(self, parent: str) -> ValueCheck | None:
        return self.arg_in.get(parent, self.arg)


VMTA_NAMES = ("virtual-mta", "virtual-mta-pool")
"""VMTAs and pools share one name space: ``X-Virtual-MTA`` and ``default-virtual-mta`` name either."""
NAME_SPACES: tuple[tuple[str, ...], ...] = (
    VMTA_NAMES, ("smtp-pattern-list",), ("pattern-list",), ("domain-macro",), ("address-list",), ("source",),
    ("source-group",), ("rewrite-list",), ("proxy",), ("domain-key-list",), ("smtp-user",))
PROCESSORS = ("bounce-processor", "feedback-loop-processor")
# -- blocks -------------------------------------------------------------------------------------------

BLOCKS: dict[str, Block] = {
    "source": Block((GLOBAL,), v.source_arg, "g 3.3.7", defines="source",
                    named=lambda arg: not v.is_network(arg) and not arg.startswith("{")),
    "smtp-user": Block((GLOBAL,), v.name, "g 3.3.8", defines="smtp-user"),
    "source-group": Block((GLOBAL,), v.name, "g 3.3.9", defines="source-group"),
    "smtp-listener": Block((GLOBAL,), v.listener, "g 3.3.17"),
    "virtual-mta": Block((GLOBAL,), v.name, "g 3.3.12", defines="virtual-mta",
                         conflicts=(("smtp-proxy-source-host", "smtp-source-host"),
                                    ("smtp-proxy-source-host", "use-proxy"))),
    "virtual-mta-pool": Block((GLOBAL,), v.name, "g 3.3.13", defines="virtual-mta-pool"),
    "domain": Block((GLOBAL, "virtual-mta", "virtual-mta-pool"), v.domain_pattern, "g 3.3.10", macros=True),
    "acct-file": Block((GLOBAL,), v.acct_target, "g 3.3.11"),
    "spool": Block((GLOBAL,), v.absolute_path, "g 3.3.2"),
    "bounce-processor": Block((GLOBAL,), None, "g 3.3.3"),
    "feedback-loop-processor": Block((GLOBAL,), None, "g 3.3.4"),
    "address-list": Block((GLOBAL, *PROCESSORS), v.name, "g 3.3.5", defines="address-list",
                          arg_in=dict.fromkeys(PROCESSORS)),
    "email-patterns": Block(PROCESSORS, None, "g 3.3.6"),
    "pattern-list": Block((GLOBAL,), v.name, "g 3.3.14", defines="pattern-list"),
    "smtp-pattern-list": Block((GLOBAL,), v.name, "g 3.3.15", defines="smtp-pattern-list"),
    "bounce-category-patterns": Block((GLOBAL,), None, "pub 10.8", lines=v.bounce_category),
    "mx-rollup-list": Block((GLOBAL,), None, "pub 10.17"),
    "rewrite-list": Block((GLOBAL,), v.name, "g 3.3.18", defines="rewrite-list"),
    "domain-key-list": Block((GLOBAL,), v.name, "g 3.3.19", defines="domain-key-list"),
    "dns": Block((GLOBAL,), None, "g 3.3.16"),
    "proxy": Block((GLOBAL,), v.name, "g 3.3.22", defines="proxy", requires=("server", "client")),
    "vault": Block((GLOBAL,), None, "g 3.3.23", once=True),
    "transmissions-api": Block((GLOBAL,), None, "g 3.3.20"),
    "transmissions-api-listener": Block((GLOBAL,), v.listener, "g 3.3.21"),
    "aliases": Block((GLOBAL,), None, "pub 12.9", lines=v.alias),
    "signals": Block((GLOBAL,), None, "pub 10.1.4", unconfirmed=True),
}

# -- directive tables ---------------------------------------------------------------------------------


def _same(check: ValueCheck, names: Iterable[str], section: str, unconfirmed: bool = False) -> dict[str, Directive]:
    """Several directives with one kind of value."""
    return {name: Directive(check, section, unconfirmed=unconfirmed) for name in names}


def _bools(names: str, section: str, unconfirmed: bool = False) -> dict[str, Directive]:
    return _same(v.yes_no, names.split(), section, unconfirmed)


def _deprecated(instead: str, section: str, *names: str) -> dict[str, Directive]:
    return {name: Directive(v.text, section, deprecated=instead) for name in names}


_TLS_VERSIONS = ("tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")


def _tls(prefix: str, section: str) -> dict[str, Directive]:
    """The ``PREFIX-allow-tlsv1…``, ciphers and key-length family of a TLS endpoint."""
    table = _bools(" ".join(f"{prefix}allow-{ver}" for ver in _TLS_VERSIONS), section)
    table |= _same(v.text, (f"{prefix}ciphers", f"{prefix}tlsv1.3-ciphersuites"), section)
    table[f"{prefix}dh-key-length"] = Directive(v.one_of("1024", "2048", "4096"), section)
    table[f"{prefix}ca-file"] = Directive(v.path, section)
    table |= _deprecated("no longer valid: SSLv3 is not offered", section, f"{prefix}allow-sslv3")
    return table


_GLOBAL: dict[str, Directive] = {
    "postmaster": Directive(v.email, "g 3.3.1.3", repeatable=True),
    "host-name": Directive(v.hostname, "g 3.3.1.32", repeatable=True),
    "host-id": Directive(v.count, "g 3.3.1.30"),
    "domain-suffix": Directive(v.hostname, "g 3.3.1.31"),
    "name-server": Directive(v.ip, "g 3.3.1.33", repeatable=True),
    "total-max-smtp-out": Directive(v.count, "g 3.3.1.1"),
    "total-max-smtp-in": Directive(v.count, "g 3.3.1.2"),
    "smtp-listener": Directive(v.listener, "g 3.3.1.24", repeatable=True, refers_to=("source",),
                               names=v.listener_source),
    "smtp-await-slot": Directive(v.yes_no, "g 3.3.1.29"),
    "smtp-source-host": Directive(v.smtp_source_host, "g 3.3.1.19", repeatable=True, exclusive_ip=True),
    "smtp-proxy-source-host": Directive(v.smtp_proxy_source_host, "g 3.3.1.20", repeatable=True),
    "use-proxy": Directive(v.name_list, "g 3.3.1.49", refers_to=("proxy",), names=v.names_in),
    "spool-delete-corrupted": Directive(v.yes_no, "g 3.3.1.5"),
    "spool-max-recipients": Directive(v.count_or("auto"), "g 3.3.1.7"),
    "run-as-root": Directive(v.yes_no, "g 3.3.1.8"),
    "log-file": Directive(v.absolute_path, "g 3.3.1.47.2"),
    "log-rotate": Directive(v.count, "g 3.3.1.47.3"),
    "log-auto-rotation": Directive(v.yes_no, "g 3.3.1.47.1"),
    "log-file-world-readable": Directive(v.yes_no, "g 3.3.1.47.4"),
    "include": Directive(v.include, "g 3.3.1.41", repeatable=True),
    "domain-macro": Directive(v.domain_macro, "g 3.3.1.43.4", repeatable=True, defines="domain-macro", macros=True),
    "domain-key": Directive(v.domain_key, "g 3.3.1.43.1", repeatable=True, macros=True),
    "invalid-virtual-mta-fallback": Directive(v.name, "g 3.3.1.43.2", refers_to=VMTA_NAMES),
    "include-headers-from": Directive(v.path, "g 3.3.1.43.3"),
    "relay-domain": Directive(v.domain_pattern, "g 3.3.1.42.2", repeatable=True, macros=True),
    "relay-address": Directive(v.list_address, "g 3.3.1.42.3", repeatable=True),
    "relay-debug": Directive(v.yes_no, "g 3.3.1.42.4"),
    "alias": Directive(v.alias, "g 3.3.1.21", repeatable=True),
    "pickup": Directive(v.pickup, "g 3.3.1.44.1"),
    "pickup-remove-dot": Directive(v.yes_no, "g 3.3.1.44.3"),
    "dummy-smtp-ip": Directive(v.ip, "g 3.3.1.45"),
    "dummy-smtp-port": Directive(v.int_range(0, 65535), "g 3.3.1.45"),
    "dummy-smtp-latency": Directive(v.count, "g 3.3.1.45"),
    "http-mgmt-port": Directive(v.int_range(0, 65535), "g 3.3.1.46.1"),
    "http-redirect-to-https": Directive(v.yes_no, "g 3.3.1.46.2"),
    "http-access": Directive(v.http_access, "g 3.3.1.46.3", repeatable=True),
    "http-csrf-protection": Directive(v.yes_no, "g 3.3.1.46.4"),
    "http-api-key": Directive(v.api_key, "g 3.3.1.46.5", repeatable=True),
    "http-strict-transport-security-max-age": Directive(v.count, "g 3.3.1.46.6"),
    "http-default-max-items": Directive(v.count, "g 3.3.1.46.20"),
    "http-default-sort-order": Directive(v.one_of("rcpt", "name", "size"), "g 3.3.1.46.21"),
    "smtp-server-tls-certificate": Directive(v.file_and_password, "g 3.3.1.9"),
    "custom-dsn-from-header": Directive(v.text, "g 3.3.1.25"),
    "dsn-failed-from-template": Directive(v.text, "g 3.3.1.26"),
    "dsn-failed-subject-template": Directive(v.text, "g 3.3.1.27"),
    "dsn-failed-body-template-from": Directive(v.path, "g 3.3.1.28"),
    "thread-min-priority": Directive(v.count, "g 3.3.1.34"),
    "thread-max-priority": Directive(v.count, "g 3.3.1.35"),
    "pmc-acct-min-free-space": Directive(v.size_or_unlimited, "g 3.3.1.38"),
    "track-time-first-attempt": Directive(v.yes_no, "g 3.3.1.38", unconfirmed=True),
    "volume-audit-api-key": Directive(v.text, "g 3.3.1.39"),
    "edns-udp-length": Directive(v.count, "g 3.3.1.40"),
    "mx-connection-limit": Directive(v.mx_connection_limit, "g 3.3.1.48.1", repeatable=True),
    "ip-connection-limit": Directive(v.cidr_and(v.count), "g 3.3.1.48.2", repeatable=True),
    "max-memory-usage-percent": Directive(v.int_range(1, 100), "g 3.3.1.50"),
    "enable-signals": Directive(v.yes_no, "pub 10.1.4", unconfirmed=True),
    **_bools("dummy-smtp-await-slot dummy-smtp-has-chunking dummy-smtp-has-pipelining dummy-smtp-has-verp "
             "dummy-smtp-update-stats", "g 3.3.1.45"),
    **_bools("http-log-tls http-log-data http-log-requests", "g 3.3.1.46.17"),
    **_bools("thread-reuse mailmerge-expands-undefined-variables", "g 3.3.1.36"),
    **_tls("http-tls-", "g 3.3.1.46.9"),
    **_tls("smtp-server-tls-", "g 3.3.1.10"),
    **_deprecated("write a <spool DIR> block", "g 3.3.1.4", "spool"),
    **_deprecated("write a <spool DIR> block with min-free-space", "g 3.3.1.6", "spool-min-free-space"),
    **_deprecated("write smtp-listener ADDR:PORT", "g 3.3.1.22", "smtp-ip", "smtp-port"),
    **_deprecated("remove it", "g 3.3.1.44", "pickup-retry-interval"),
    **_deprecated("use http-access", "g 3.3.1.46.7", "http-mgmt-source", "no-http-mgmt-source"),
}

_SOURCE: dict[str, Directive] = {
    **_bools("always-allow-relaying allow-mailmerge always-allow-api-submission require-auth allow-starttls "
             "require-starttls-before-auth allow-unencrypted-plain-auth process-x-virtual-mta retain-x-virtual-mta "
             "allow-empty-x-virtual-mta add-x-virtual-mta-header process-x-job retain-x-job process-x-envid "
             "process-x-dkim-options retain-x-dkim-options process-x-dkim-key retain-x-dkim-key process-x-schedule "
             "retain-x-schedule add-message-id-header hide-message-source suppress-local-dsn "
             "disconnect-on-transient-error too-many-rcpts-fails-message accept-invalid-recipients log-connections "
             "log-commands log-data log-tls check-dkim-inbound trace-dkim-check check-spf-inbound trace-spf-check "
             "check-iprev-inbound trace-iprev-check reject-iprev-check-temperror reject-iprev-check-permerror "
             "reject-iprev-check-fail smtp-service add-received-header allow-auth allow-chunking allow-smtputf8 "
             "reject-invalid-virtual-mta auto-qualify-domain reject-spf-check-temperror reject-spf-check-permerror "
             "reject-spf-check-fail verp-default", "g 3.3.7"),
    "add-date-header": Directive(v.boolean("override"), "g 3.3.7"),
    "date-header-time": Directive(v.one_of("reception", "delivery"), "g 3.3.7"),
    "dsn-return-default": Directive(v.one_of("headers", "full", "system"), "g 3.3.7"),
    "default-virtual-mta": Directive(v.default_vmta, "g 3.3.7.29", refers_to=VMTA_NAMES, names=v.default_vmta_names),
    "pattern-list": Directive(v.name, "g 3.3.7", refers_to=("pattern-list",), before=True),
    "suppression-lists": Directive(v.name_list, "g 3.3.7", refers_to=("address-list",), names=v.names_in),
    "source-group": Directive(v.name, "g 3.3.7", refers_to=("source-group",)),
    "rewrite-list": Directive(v.name, "g 3.3.18", refers_to=("rewrite-list",)),
    "max-message-size": Directive(v.size_or_unlimited, "g 3.3.7.34"),
    "max-message-hops": Directive(v.count, "g 3.3.7"),
    "max-rcpt-per-message": Directive(v.count_or_unlimited, "g 3.3.7"),
    "check-spf-inbound-max-void-lookups": Directive(v.count, "g 3.3.7"),
    "smtp-max-auth-failure-rate": Directive(v.rate, "g 3.3.7.7"),
    "smtp-data-timeout": Directive(v.time, "g 3.3.7"),
    "smtp-command-timeout": Directive(v.time, "g 3.3.7"),
    "bcc": Directive(v.email, "g 3.3.7"),
    "remove-header": Directive(v.header_names, "g 3.3.7", clearable=True),
    "jobid-header": Directive(v.header_name, "g 3.3.7"),
    "jobid-prefix": Directive(v.text, "g 3.3.7"),
    "include": Directive(v.include, "g 3.3.1.41", repeatable=True),
    **_deprecated("remove it", "g 3.3.7", "broken-auth-clients", "check-spf-inbound-best-guess"),
}


def _dkim(prefix: str) -> dict[str, Directive]:
    """The ``dkim-*`` family of ``<domain>``; each also exists as ``second-dkim-*`` (g 3.3.10.19–30)."""
    section = "g 3.3.10.19"
    table = {
        f"{prefix}sign": Directive(v.boolean("if-x-dkim-options-present"), section),
        f"{prefix}algorithm": Directive(v.one_of("rsa-sha256", "rsa-sha1"), section),
        f"{prefix}body-canon": Directive(v.one_of("relaxed", "simple"), section),
        f"{prefix}headers-canon": Directive(v.one_of("relaxed", "simple"), section),
        f"{prefix}expire-after": Directive(v.time_or_never, section),
        f"{prefix}query-method": Directive(v.text, section),
        f"{prefix}headers": Directive(v.header_list, section, clearable=True),
        f"{prefix}identity": Directive(v.dkim_identity, section),
        f"{prefix}identity-fallback": Directive(v.dkim_identity, section),
        f"{prefix}disallow-adding-headers": Directive(v.header_list, section),
    }
    return table | _bools(f"{prefix}add-body-limit {prefix}add-timestamp", section)


_DOMAIN: dict[str, Directive] = {
    # limits per queue (g 3.3.10.33-37)
    "max-smtp-out": Directive(v.count, "g 3.3.10"),
    "backoff-max-smtp-out": Directive(v.count, "g 3.3.10"),
    **_same(v.rate, ("max-msg-rate", "backoff-max-msg-rate", "max-connect-rate", "backoff-max-connect-rate"),
            "g 3.3.10.33"),
    **_same(v.volume_rate, ("max-data-volume-rate", "backoff-max-data-volume-rate"), "g 3.3.10.37"),
    "max-msg-per-connection": Directive(v.count, "g 3.3.10"),
    "max-rcpt-per-message": Directive(v.count_or_unlimited, "g 3.3.10"),
    "max-rcpt-per-transaction": Directive(v.count_or_unlimited, "g 3.3.10"),
    "max-errors-per-connection": Directive(v.count_or_unlimited, "g 3.3.10"),
    "smtp-out-rampup-interval": Directive(v.time, "g 3.3.10"),
    "connection-idle-timeout": Directive(v.time_at_most("10m"), "g 3.3.10"),
    "source-ip-max-smtp-out": Directive(v.cidr_and(v.count), "g 3.3.10", repeatable=True),
    "source-ip-max-msg-rate": Directive(v.cidr_and(v.rate), "g 3.3.10", repeatable=True),
    "source-ip-max-connect-rate": Directive(v.cidr_and(v.rate), "g 3.3.10", repeatable=True),
    "source-ip-max-data-volume-rate": Directive(v.cidr_and(v.volume_rate), "g 3.3.10", repeatable=True),
    # retry and expiry
    "retry-after": Directive(v.time_list, "g 3.3.10.39"),
    "backoff-retry-after": Directive(v.time_list, "g 3.3.10.39"),
    **_same(v.time, ("retry-recipients-after", "retry-after-dns-error", "bounce-after"), "g 3.3.10"),
    "bounce-upon-no-mx": Directive(v.boolean("never"), "g 3.3.10"),
    **_bools("bounce-upon-5xx-greeting bounce-upon-transfer-failure bounce-upon-pix-transfer-failure "
             "retry-upon-new-mail", "g 3.3.10"),
    "notify-of-delay-every": Directive(v.time_or_never, "g 3.3.10"),
    # backoff and source IPs
    "smtp-pattern-list": Directive(v.name, "g 3.3.10", refers_to=("smtp-pattern-list",)),
    "backoff-to-normal-after": Directive(v.time_or_never, "g 3.3.10"),
    **_bools("backoff-to-normal-after-delivery backoff-upon-all-sources-disabled", "g 3.3.10"),
    "backoff-notify": Directive(v.email_list, "g 3.3.10", clearable=True),
    "backoff-reroute-to-virtual-mta": Directive(v.name, "g 3.3.10", clearable=True, refers_to=VMTA_NAMES),
    "disabled-source-ip-notify": Directive(v.email_list, "g 3.3.10", clearable=True),
    "reenable-source-ip-after": Directive(v.time_or_never, "g 3.3.10"),
    # routing
    "type": Directive(v.one_of("smtp", "pipe", "file", "discard", "http-delivery"), "g 3.3.10.52"),
    "smtp-hosts": Directive(v.host_list, "g 3.3.10.90", clearable=True),
    "default-smtp-port": Directive(v.port, "g 3.3.10"),
    "queue-to": Directive(v.domain_pattern, "g 3.3.10.31", clearable=True),
    "disable-mx-rollup": Directive(v.yes_no, "g 3.3.10.93"),
    "reroute-to-virtual-mta": Directive(v.name, "g 3.3.10.50", clearable=True, refers_to=VMTA_NAMES),
    "max-cold-virtual-mta-msg": Directive(v.daily_list, "g 3.3.10.49"),
    "queue-priority": Directive(v.int_range(0, 100), "g 3.3.10"),
    **_bools("allow-priority-interruption allow-priority-interruption-during-transfer "
             "smtp-421-means-mx-unavailable", "g 3.3.10"),
    # SMTP client
    **_same(v.time, ("connect-timeout", "smtp-greeting-timeout", "data-send-timeout",
                     "smtp-data-termination-timeout"), "g 3.3.10"),
    **_bools("assume-delivery-upon-data-termination-timeout ignore-8bitmime ignore-chunking ignore-pipelining "
             "ignore-dsn pix-bug-workaround allow-cancel-during-transfer smtp-553-means-invalid-mailbox "
             "replace-smtp-421-service-response use-unencrypted-plain-auth check-spf-outbound", "g 3.3.10"),
    "auth-username": Directive(v.text, "g 3.3.10.56", clearable=True),
    "auth-password": Directive(v.text, "g 3.3.10.56"),
    # TLS
    **_bools("use-starttls require-starttls use-dane use-mta-sts reuse-ssl-session log-tls", "g 3.3.10.95"),
    "smtp-client-certificate": Directive(v.file_and_password, "g 3.3.10.95"),
    **_tls("smtp-tls-", "g 3.3.10.95"),
    # DKIM
    **_dkim("dkim-"),
    **_dkim("second-dkim-"),
    # logging and accounting
    **_bools("log-connections log-commands log-data log-resolution log-transfer-failures log-disabled-ips "
             "track-recipient-events", "g 3.3.10"),
    "max-events-recorded": Directive(v.count, "g 3.3.10"),
    "disable-acct-records": Directive(v.acct_records_no_remote, "g 3.3.10.9"),
    # DSN and delivery types
    "dsn-format": Directive(v.one_of("standard", "plain-text"), "g 3.3.10"),
    "bcc-upon-delivery": Directive(v.email, "g 3.3.10", clearable=True),
    "discard-as-bounce": Directive(v.yes_no, "g 3.3.10.52"),
    "file-format": Directive(v.one_of("newfile-plain", "newfile-pickup", "append-mbox"), "g 3.3.10.52"),
    "file-destination": Directive(v.path, "g 3.3.10.52"),
    "command": Directive(v.text, "g 3.3.10.52"),
    "macro-variables-preserve-case": Directive(v.yes_no, "g 3.3.10.52"),
    "http-delivery-url": Directive(v.url, "g 3.3.10.52"),
    "http-delivery-extra-headers": Directive(v.path, "g 3.3.10.52"),
    **_bools("add-x-msys-api-header sparkpost-sandbox", "g 3.3.10"),
    "sparkpost-ip-pool": Directive(v.text, "g 3.3.10"),
    "remove-header": Directive(v.header_names, "g 3.3.7", clearable=True),
    "include": Directive(v.include, "g 3.3.1.41", repeatable=True),
    # named by `pmta show settings` only (g 6.3.16), without a guide section
    "mx-connection-attempts": Directive(v.count, "g 6.3.16", unconfirmed=True),
    "smtp-multiple-line-response-timeout": Directive(v.time, "g 6.3.16", unconfirmed=True),
    **_deprecated("write smtp-hosts", "g 3.3.10.90", "route"),
    **_deprecated("write queue-priority", "g 3.3.10", "delivery-priority"),
    **_deprecated("write suppress-local-dsn in <source>", "g 3.3.10", "deliver-local-dsn"),
    **_deprecated("write max-msg-rate N/h", "g 3.3.10.33", "max-msg-per-hour"),
    **_deprecated("write backoff-max-msg-rate N/h", "g 3.3.10.33", "backoff-max-msg-per-hour"),
    **_deprecated("write source-ip-max-smtp-out CIDR N", "g 3.3.10", "max-smtp-out-per-source-ip"),
}

_VMTA_AND_POOL: dict[str, Directive] = {
    "max-smtp-msg-rate": Directive(v.rate, "g 3.3.12"),
    "max-smtp-out": Directive(v.count_or_unlimited, "g 3.3.12"),
    "max-smtp-data-volume-rate": Directive(v.volume_rate, "g 3.3.12"),
    "domain-key": Directive(v.domain_key, "g 3.3.1.43.1", repeatable=True, macros=True),
    "include-headers-from": Directive(v.path, "g 3.3.1.43.3"),
    "rewrite-list": Directive(v.name, "g 3.3.18", refers_to=("rewrite-list",)),
    "cold-virtual-mta": Directive(v.name, "pub 10.7", repeatable=True, refers_to=VMTA_NAMES),
    "enable-signals": Directive(v.yes_no, "pub 10.1.4", unconfirmed=True),
}

_LISTENER_TLS: dict[str, Directive] = {
    "tls-certificate": Directive(v.file_and_password, "g 3.3.17"),
    **_tls("tls-", "g 3.3.17"),
}

_ADDRESS_LIST: dict[str, Directive] = {
    "address": Directive(v.list_address, "g 3.3.5", repeatable=True, macros=True),
    "address-file": Directive(v.path, "g 3.3.5", repeatable=True),
    "domain": Directive(v.domain_pattern, "g 3.3.5", repeatable=True, macros=True),
}

_PROCESSOR: dict[str, Directive] = {
    **_bools("deliver-unmatched-email deliver-matched-email", "g 3.3.3"),
    "forward-unmatched-to": Directive(v.email, "g 3.3.3", repeatable=True),
    "forward-errors-to": Directive(v.email, "g 3.3.3", repeatable=True),
    **_deprecated("write deliver-unmatched-email / deliver-matched-email", "g 3.3.3", "deliver-email"),
}

_PATTERN_LIST: dict[str, Directive] = {
    rule: Directive(v.pattern_rule(rule), "g 3.3.14", repeatable=True) for rule in v.PATTERN_LIST_RULES}

DIRECTIVES: dict[str, dict[str, Directive]] = {
    GLOBAL: _GLOBAL,
    "source": _SOURCE,
    "smtp-user": {
        "password": Directive(v.text, "g 3.3.8"),
        "authentication-method": Directive(v.one_of("password", "system", "certificate"), "g 3.3.8"),
        "tls-certificate": Directive(v.path, "g 3.3.8"),
        "source": Directive(v.name, "g 3.3.8", refers_to=("source",)),
    },
    "source-group": _same(v.count_or_unlimited, ("max-smtp-in", "reserved-smtp-in"), "g 3.3.9"),
    "smtp-listener": {
        **_bools("await-slot immediate-tls", "g 3.3.17"),
        "source": Directive(v.name, "g 3.3.17", refers_to=("source",)),
        **_LISTENER_TLS,
    },
    "virtual-mta": {
        **_VMTA_AND_POOL,
        "smtp-source-host": Directive(v.smtp_source_host, "g 3.3.1.19", repeatable=True, exclusive_ip=True),
        "smtp-proxy-source-host": Directive(v.smtp_proxy_source_host, "g 3.3.1.20", repeatable=True),
        "proxy-protocol": Directive(v.one_of("1", "2"), "g 3.3.12"),
        "use-proxy": Directive(v.name_list, "g 3.3.1.49", refers_to=("proxy",), names=v.names_in),
        "host-name": Directive(v.hostname, "g 3.3.1.32"),
        "include": Directive(v.include, "g 3.3.1.41", repeatable=True),
    },
    "virtual-mta-pool": {
        **_VMTA_AND_POOL,
        "virtual-mta": Directive(v.name, "g 3.3.13", repeatable=True, refers_to=("virtual-mta",)),
    },
    "domain": _DOMAIN,
    "acct-file": {
        "records": Directive(v.acct_records, "g 3.3.11.11"),
        "record-fields": Directive(v.record_fields, "g 3.3.11.12", repeatable=True),
        "delete-after": Directive(v.days_or_never, "g 3.3.11"),
        "move-to": Directive(v.path, "g 3.3.11"),
        "move-interval": Directive(v.time, "g 3.3.11"),
        "max-size": Directive(v.size_at_least("1M"), "g 3.3.11"),
        "queue-filter": Directive(v.queue_filter, "g 3.3.11"),
        **_same(v.time, ("retry-interval", "write-timeout"), "g 3.3.11"),
        **_bools("iso-times world-readable count-moved-records sync", "g 3.3.11"),
        "user-string": Directive(v.text, "g 3.3.11"),
        "map-header-to-field": Directive(v.map_header_to_field, "g 3.3.11", repeatable=True),
        "privacy-policy": Directive(v.privacy_policy, "g 3.3.11"),
        "http-webhook-url": Directive(v.url, "g 3.3.11"),
        "http-webhook-extra-headers": Directive(v.path, "g 3.3.11"),
        "http-webhook-certificate": Directive(v.file_and_password, "g 3.3.11"),
        "http-webhook-ca-file": Directive(v.path, "g 3.3.11"),
        "http-webhook-max-interval": Directive(v.time_at_least("1m"), "g 3.3.11"),
        "http-webhook-transfer-encoding": Directive(v.one_of("gzip"), "g 3.3.11"),
        "http-webhook-log-verbose": Directive(v.yes_no, "g 3.3.11"),
        **_same(v.time, ("http-webhook-connect-timeout", "http-webhook-io-timeout"), "g 3.3.11"),
    },
    "spool": {
        "priority": Directive(v.int_range(1, 100), "g 3.3.2"),
        "min-free-space": Directive(v.size, "g 3.3.2"),
        **_bools("deliver-only delete-file-holders", "g 3.3.2"),
    },
    "bounce-processor": _PROCESSOR,
    "feedback-loop-processor": _PROCESSOR,
    "address-list": _ADDRESS_LIST,
    "email-patterns": {
        "body-pattern-file": Directive(v.path, "g 3.3.6", repeatable=True),
        "log-match-info": Directive(v.yes_no, "g 3.3.6"),
    },
    "pattern-list": _PATTERN_LIST,
    "smtp-pattern-list": {
        "reply": Directive(v.reply_rule, "g 3.3.15", repeatable=True),
        "include": Directive(v.include, "g 3.3.15.1", repeatable=True),
    },
    "mx-rollup-list": {"mx": Directive(v.mx_rollup, "pub 10.17", repeatable=True)},
    "rewrite-list": {
        "mail-from": Directive(v.rewrite_mail_from, "g 3.3.18", repeatable=True),
        "from-domain": Directive(v.from_domain, "g 3.3.18", repeatable=True),
    },
    "domain-key-list": {"domain-key": Directive(v.domain_key, "g 3.3.19", repeatable=True, macros=True)},
    "dns": {
        "precached-domains-file": Directive(v.path, "g 3.3.16"),
        "precached-refresh-interval": Directive(v.time, "g 3.3.16"),
        "precached-max-domains": Directive(v.count, "g 3.3.16"),
    },
    "proxy": {
        "server": Directive(v.proxy_server, "g 3.3.22"),
        "client": Directive(v.proxy_client, "g 3.3.22"),
        "protocol-version": Directive(v.one_of("1", "2"), "g 3.3.22"),
    },
    "vault": {
        "server-url": Directive(v.url, "g 3.3.23"),
        "access-token": Directive(v.text, "g 3.3.23"),
        "cache-ttl": Directive(v.time, "g 3.3.23"),
    },
    "transmissions-api": {
        **_bools("log-requests log-data log-tls", "g 3.3.20"),
        "api-key": Directive(v.api_key, "g 3.3.20"),
    },
    "transmissions-api-listener": _LISTENER_TLS,
    "signals": {
        **_same(v.text, ("api-key", "upload-url", "engagement-tracking", "custom-message-id-header",
                         "privacy-policy"), "pub 10.1.4", unconfirmed=True),
        **_bools("process-x-sp-subaccount-id retain-x-sp-subaccount-id log-verbose", "pub 10.1.4", unconfirmed=True),
        "min-free-space": Directive(v.size, "pub 10.1.4", unconfirmed=True),
    },
}
"""Directives by context.  Line blocks (``Block.lines``) have none: their lines are patterns."""

NOT_POWERMTA: dict[str, str] = {
    "mx-rollup": "PowerMTA has no mx-rollup directive: list the MX hosts in <mx-rollup-list> "
                 "(mx PATTERN NAME.rollup) or write queue-to in each member's <domain>",
    "dk-sign": "DomainKeys signing is not in the guide: did you mean 'dkim-sign'?",
    "sync-msg-create": "not in the guide: remove it",
    "sync-msg-update": "not in the guide: remove it",
    "remove-received-headers": "not in the guide: did you mean 'remove-header'?",
    "bounce-classification-file": "not in the guide: write a <bounce-category-patterns> block",
    "routing-file": "not in the guide: route with <pattern-list>, queue-to or smtp-hosts",
    "domain-selection": "not in the guide: route with <pattern-list> or default-virtual-mta",
    "map-header-to-column": "not in the guide: did you mean 'map-header-to-field'?",
}
"""Names seen in configs that the guide does not document, with what to write instead."""

def where_allowed(directive: str) -> list[str]:
    """Contexts that accept ``directive``, for "belongs in …" messages."""
    return [context for context, table in DIRECTIVES.items() if directive in table]


def all_directive_names() -> list[str]:
    return sorted({name for table in DIRECTIVES.values() for name in table})


def knows(context: str, item: str) -> bool:
    """Whether the catalogue accepts ``item`` (a directive, or ``<block>``) in ``context``, a block
    kind or a path of them (``virtual-mta/domain``; the innermost block decides)."""
    innermost = context.rsplit("/", 1)[-1]
    if item.startswith("<"):
        block = BLOCKS.get(item.strip("<>"))
        return block is not None and innermost in block.parents
    directive = DIRECTIVES.get(innermost, {}).get(item)
    return directive is not None and not directive.deprecated


def unconfirmed() -> list[str]:
    """Every assumption in the tables, for the docs and for a reviewer with the PowerMTA manual."""
    items = [f"<{name}>" for name, block in BLOCKS.items() if block.unconfirmed]
    items += [f"{name} in {context}" for context, table in DIRECTIVES.items()
              for name, directive in table.items() if directive.unconfirmed]
    return items
