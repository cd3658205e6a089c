"""Value checkers for PowerMTA directives: one small function per kind of value.

A checker takes the text after the directive name (already stripped) and returns an error
message, or ``None`` when the value is fine.  :mod:`mailplane.mta.directives` assigns one to
every directive, so a new directive is a table row and a new kind of value is one function here.
The syntax facts that are assumptions (units, words, special forms) are the constants below.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from mailplane.model.types import normalise_domain, normalise_email

Check = Callable[[str], str | None]
"""Returns what is wrong with a value, or ``None``."""

RATE_UNITS = {"h": "hour", "m": "minute", "s": "second"}
"""``N/h``, ``N/m``, ``N/s`` (reference)."""
RATE_ALLOWS_UNLIMITED = True
"""``max-msg-rate unlimited`` (unconfirmed: public configs use it; set False to reject it)."""
TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
"""``30s``, ``10m``, ``1h``, ``4d`` (reference); ``w`` weeks and compound ``1h30m`` are unconfirmed, so refused."""
SIZE_UNITS = ("K", "M", "G")
"""``50M`` (reference); a bare number of bytes is accepted too.  Lower-case ``50m`` is refused: it
reads as fifty minutes, and PowerMTA's reading of it is unconfirmed."""
BOOLEAN_WORDS = ("yes", "no")
"""The reference only ever writes yes/no; ``true``/``false`` (unconfirmed) are refused with a hint."""
HTTP_ACCESS_LEVELS = ("admin", "monitor", "none")
SOURCE_SPECIAL_FORMS = ("{auth}", "{pickup}")
"""``<source {auth}>`` for SMTP-authenticated clients (unconfirmed, seen in public configs)."""
ACCT_RECORD_TYPES = ("d", "b", "t", "tq", "f", "r", "rb", "rs")
"""``records d,b``: delivered, bounced, transient, transient-queue, feedback, receipt, remote
bounce, remote status (unconfirmed set: the reference only confirms d and b)."""

_INT_RE = re.compile(r"\d+")
_RATE_RE = re.compile(r"(\d+)/([A-Za-z]+)")
_TIME_RE = re.compile(r"(\d+)([A-Za-z]+)")
_SIZE_RE = re.compile(r"(\d+)([A-Za-z]*)")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SELECTOR_RE = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*")
_HEADER_RE = re.compile(r"[!-9;-~]+")
"""RFC 5322 field name: printable ASCII except space and colon."""


def _words(value: str) -> list[str]:
    return value.split()


def yes_no(value: str) -> str | None:
    """PowerMTA's booleans; the case of the word is not significant (see lint's case rule)."""
    if value.lower() in BOOLEAN_WORDS:
        return None
    return f"{value!r} is not a boolean: write {' or '.join(BOOLEAN_WORDS)}"


def count(value: str) -> str | None:
    """A whole number of connections or messages; 0 is left to PowerMTA to interpret."""
    if _INT_RE.fullmatch(value):
        return None
    return f"{value!r} is not a whole number"


def port(value: str) -> str | None:
    if _INT_RE.fullmatch(value) and 1 <= int(value) <= 65535:
        return None
    return f"{value!r} is not a TCP port (1 to 65535)"


def rate(value: str) -> str | None:
    """``N/h``, ``N/m`` or ``N/s``: a throttle PowerMTA cannot read is a throttle that is not applied."""
    if RATE_ALLOWS_UNLIMITED and value.lower() == "unlimited":
        return None
    match = _RATE_RE.fullmatch(value)
    if match and match.group(2) in RATE_UNITS:
        return None
    forms = ", ".join(f"N/{unit}" for unit in RATE_UNITS) + (" or unlimited" if RATE_ALLOWS_UNLIMITED else "")
    return f"{value!r} is not a rate: write {forms} (e.g. 500/h)"


def duration(value: str) -> str | None:
    match = _TIME_RE.fullmatch(value)
    if match and match.group(2) in TIME_UNITS:
        return None
    units = ", ".join(f"{unit} ({name})" for unit, name in TIME_UNITS.items())
    return f"{value!r} is not a time: a whole number and one unit of {units}, e.g. 10m or 4d"


def size(value: str) -> str | None:
    match = _SIZE_RE.fullmatch(value)
    if match and match.group(2) in ("", *SIZE_UNITS):
        return None
    return f"{value!r} is not a size: a whole number of bytes or with {', '.join(SIZE_UNITS)}, e.g. 50M"


def size_or_unlimited(value: str) -> str | None:
    return None if value.lower() == "unlimited" else size(value)


def name(value: str) -> str | None:
    """A VMTA, pool or pattern-list name: one word, as the X-Virtual-MTA header carries it."""
    if _NAME_RE.fullmatch(value):
        return None
    return f"{value!r} is not a name: letters, digits, '.', '_' and '-', starting with a letter or digit"


def header_name(value: str) -> str | None:
    if _HEADER_RE.fullmatch(value):
        return None
    return f"{value!r} is not a header name"


def path(value: str) -> str | None:
    """A file or folder; PowerMTA reads it on the host, so only its shape is checked here."""
    if len(_words(value)) == 1:
        return None
    return f"{value!r} is not one path (spaces in paths are not supported by this check)"


def absolute_path(value: str) -> str | None:
    """Log, spool and accounting locations: a relative path would depend on pmtad's working directory."""
    problem = path(value)
    if problem is None and not value.startswith("/"):
        return f"{value!r} is not an absolute path"
    return problem


def hostname(value: str) -> str | None:
    try:
        normalise_domain(value)
    except ValueError as err:
        return str(err)
    return None


def email(value: str) -> str | None:
    try:
        normalise_email(value)
    except ValueError as err:
        return str(err)
    return None


def domain_or_yes_no(value: str) -> str | None:
    """``mx-rollup gmail.com`` (reference); ``mx-rollup yes`` is how other configs write it (unconfirmed)."""
    if value.lower() in BOOLEAN_WORDS:
        return None
    return hostname(value)


def parse_ip_range(text: str) -> tuple[int, int, int]:
    """``(version, first, last)`` of an address or an ``A-B`` range; ``ValueError`` otherwise."""
    first_text, dash, last_text = text.partition("-")
    first = ipaddress.ip_address(first_text)
    last = ipaddress.ip_address(last_text) if dash else first
    if first.version != last.version:
        raise ValueError(f"{text!r} mixes IPv4 and IPv6")
    if int(last) < int(first):
        raise ValueError(f"{text!r} is a range that ends before it starts")
    return first.version, int(first), int(last)


def _is_ip_range(text: str) -> bool:
    try:
        parse_ip_range(text)
    except ValueError:
        return False
    return True


def smtp_source_host(value: str) -> str | None:
    """``IP HOSTNAME`` (a range ``A-B`` is allowed for the IP).  The hostname is the PTR name the
    VMTA announces in EHLO; swapping the two is the classic mistake and gets its own message."""
    words = _words(value)
    if len(words) != 2:
        return f"takes an IP and its hostname (IP HOSTNAME), got {len(words)} field(s)"
    address, host = words
    if not _is_ip_range(address):
        if _is_ip_range(host):
            return (f"the hostname comes first in {value!r}: write the IP first, "
                    f"'smtp-source-host {host} {address}'")
        try:
            parse_ip_range(address)
        except ValueError as err:
            if "-" in address:
                return str(err)
        return f"{address!r} is not an IP address: write IP HOSTNAME"
    problem = hostname(host)
    return f"hostname: {problem}" if problem else None


def domain_key(value: str) -> str | None:
    """``SELECTOR,DOMAIN,KEYFILE``: exactly three fields.  A fourth field (an old syntax seen in
    public configs) or a missing one means PowerMTA signs with the wrong key or not at all."""
    fields = [field.strip() for field in value.split(",")]
    if len(fields) != 3:
        return f"takes SELECTOR,DOMAIN,KEYFILE (three comma-separated fields), got {len(fields)}"
    selector, domain, keyfile = fields
    missing = [label for label, field in (("selector", selector), ("domain", domain), ("key file", keyfile))
               if not field]
    if missing:
        return f"empty {' and '.join(missing)}: write SELECTOR,DOMAIN,KEYFILE"
    if not _SELECTOR_RE.fullmatch(selector):
        return f"selector {selector!r} is not a DNS label"
    if domain != "*" and (problem := hostname(domain)):
        return f"domain: {problem}"
    return path(keyfile)


def listener(value: str) -> str | None:
    """``ADDR:PORT``; ADDR an IP, ``[IPv6]`` or ``0/0`` (any address)."""
    address, colon, port_text = value.rpartition(":")
    if not colon:
        return f"{value!r} is not ADDR:PORT (e.g. 127.0.0.1:2525)"
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if address != "0/0":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            return f"{value!r}: {address!r} is not an IP address (e.g. 127.0.0.1:2525)"
    return port(port_text)


def network(value: str) -> str | None:
    """An address or CIDR network; ``0/0`` is PowerMTA's "any address"."""
    if value == "0/0" or value in SOURCE_SPECIAL_FORMS:
        return None
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        special = f", {', '.join(SOURCE_SPECIAL_FORMS)}" if SOURCE_SPECIAL_FORMS else ""
        return f"{value!r} is not an IP address or network: write an IP, a CIDR network, 0/0{special}"
    return None


def http_access(value: str) -> str | None:
    words = _words(value)
    if len(words) != 2:
        return f"takes ADDR LEVEL, e.g. '127.0.0.1 admin', got {len(words)} field(s)"
    address, level = words
    if address in SOURCE_SPECIAL_FORMS:
        return f"{address!r} is not an IP address or network"
    if problem := network(address):
        return problem
    if level.lower() not in HTTP_ACCESS_LEVELS:
        return f"{level!r} is not an access level: write {', '.join(HTTP_ACCESS_LEVELS)}"
    return None


def domain_macro(value: str) -> str | None:
    """``domain-macro NAME a.com, b.com``: a name, then one or more domains."""
    macro, *others = value.split(None, 1)
    rest = others[0] if others else ""
    if problem := name(macro):
        return f"name: {problem}"
    domains = [d.strip() for d in rest.split(",")]
    if not rest.strip() or not all(domains):
        return "takes NAME and a comma-separated list of domains, e.g. 'google gmail.com, googlemail.com'"
    for domain in domains:
        if problem := hostname(domain):
            return f"{macro}: {problem}"
    return None


def acct_records(value: str) -> str | None:
    kinds = [kind.strip() for kind in value.split(",")]
    unknown = [kind for kind in kinds if kind not in ACCT_RECORD_TYPES]
    if unknown:
        return (f"unknown record type(s) {', '.join(repr(k) for k in unknown)}: "
                f"write a comma-separated list of {', '.join(ACCT_RECORD_TYPES)}")
    return None


def record_fields(value: str) -> str | None:
    """``record-fields TYPE field,field`` (unconfirmed syntax: only the record type is checked)."""
    words = _words(value)
    if len(words) < 2:
        return "takes a record type and its fields, e.g. 'b timeLogged,rcpt,bounceCat'"
    return acct_records(words[0])


def text(value: str) -> str | None:
    """Anything non-empty: for values whose syntax mailplane does not know (pattern lines)."""
    return None
