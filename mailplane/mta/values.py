"""PowerMTA's value grammar: one small checker per kind of value (``docs/powermta.md``, g 3.2).

A checker takes the text after the directive name (stripped, and unquoted when the whole value is
one ``"…"`` string) and returns what is wrong with it, or ``None``.  :mod:`mailplane.mta.directives`
assigns one to every directive, so a new directive is a table row and a new kind of value is one
function here.  The grammar is the guide's, not mailplane's: a checker accepts every documented
form (``true``, ``4d12h``, ``1/20m``, ``10/8``…), because a linter that refuses valid PowerMTA
syntax is one people learn to ignore.  The few forms the guide leaves open are the constants below.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable

from mailplane.model.types import normalise_domain, normalise_email

ValueCheck = Callable[[str], str | None]
"""Returns what is wrong with a value, or ``None`` (named apart from the DNS and policy checks)."""

BOOLEAN_WORDS = ("yes", "no", "true", "false")
"""g 3.2: these four and nothing else (a few directives add keywords, see :func:`boolean`)."""
TIME_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
"""g 3.2: ``N`` and a unit, combinable (``1w2d12h``).  A bare ``0`` (the guide's written default
of several timeouts) is accepted too; other unitless numbers are not documented."""
MAX_TIME_LIST = 30
"""g 3.3.10.39: retry-after takes at most 30 times."""
RATE_UNITS = ("d", "day", "h", "hr", "m", "min", "s", "sec")
"""g 3.3.10.33: ``N/[M]unit``."""
SIZE_SUFFIXES = "bkmgt"
"""g 3.3.7.34: ``N`` with an optional suffix (either case; the guide writes ``50M``)."""
HTTP_ACCESS_LEVELS = ("monitor", "monitor,deny-logs", "operator", "admin", "none")
"""g 3.3.1.46.3."""
RESERVED_SOURCES = ("{auth}", "{pickup}")
"""g 3.3.7: source names starting with ``{`` are reserved; these are the documented ones."""
ACCT_RECORD_TYPES = {"d": "delivery", "b": "bounce", "t": "transient", "tq": "transient-queue",
                     "r": "receipt", "rb": "remote-bounce", "rs": "remote-status", "f": "feedback-loop"}
"""g 3.3.11.11, pub 11: record types and their long names."""


def _fields(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_DELIVERY_FIELDS = _fields(
    "timeLogged timeQueued totalSecondsQueued orig rcpt orcpt dsnAction dsnStatus dsnDiag dsnMta bounceCat srcType "
    "srcMta dlvType dlvSourceIp dlvDestinationIp dlvEsmtpAvailable dlvSize vmta jobId envId queue vmtaPool userString "
    "dlvTlsProtocol dlvTlsCipher rcvSmtpUser")
ACCT_FIELDS: dict[str, tuple[str, ...]] = {
    "d": _DELIVERY_FIELDS, "b": _DELIVERY_FIELDS, "t": _DELIVERY_FIELDS,
    "tq": _fields("timeLogged queue vmta dsnStatus dsnDiag dsnMta dlvType dlvSourceIp dlvDestinationIp userString"),
    "r": _fields("timeLogged orig rcpt orcpt srcType srcMta rcvSourceIp rcvDestinationIp vmta vmtaPool jobId envId "
                 "userString rcvSmtpUser"),
    "rb": _fields("timeLogged orig rcpt orcpt dsnStatus dsnDiag dsnMta dsnReportingMta bounceCat srcType srcMta "
                  "envId format"),
    "rs": _fields("timeLogged orig rcpt orcpt dsnAction dsnStatus dsnDiag dsnMta bounceCat srcType srcMta envId "
                  "format"),
    "f": _fields("timeLogged repSourceIp feedbackType format userAgent envId orig rcpt reportingMta reportingMTA "
                 "dlvSourceIp reportedDomain"),
}
"""pub 11.2: the fields of each record type (``type`` is always there; ``header_X`` anywhere, ``arf_X`` in f)."""
PRIVACY_POLICIES = ("retain", "redact", "siphash", "siphash-hexkey", "hmac-sha256", "hmac-sha256-hexkey")
REPLY_ACTIONS = ("mode", "backoff-to-normal-after", "defer-queue", "skip-mx", "bounce-queue", "bounce-rcpt",
                 "disable-source-ip", "reenable-after")
"""g 3.3.15: what a ``reply /RE/`` rule of an smtp-pattern-list may do."""
PATTERN_RESULTS = ("virtual-mta", "recipient-priority", "pattern-list", "call-to")
"""g 3.3.14: results of a pattern-list rule (``pattern-list=`` for a nested list is unconfirmed)."""
PATTERN_LIST_RULES = ("header", "mail-from", "rcpt-to", "*")

_INT_RE = re.compile(r"\d+")
_TIME_RE = re.compile(r"(?:\d+[wdhms])+", re.I)
_RATE_RE = re.compile(r"(\d+)/(\d*)([a-z]+)", re.I)
_VOLUME_RE = re.compile(r"(\d+)([bkmgt]?)/(\d*)([a-z]+)", re.I)
_SIZE_RE = re.compile(r"(\d+)([bkmgt]?)", re.I)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MACRO_NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_MACRO_RE = re.compile(r"\$([A-Za-z0-9_]+)")
_RESERVED_RE = re.compile(r"\{[A-Za-z][A-Za-z0-9-]*\}")
_SELECTOR_RE = re.compile(r"(?!-)[A-Za-z0-9_${}-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*")
_HEADER_RE = re.compile(r"[!-9;-~]+")
"""RFC 5322 field name: printable ASCII except space and colon."""
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')
_API_KEY_RE = re.compile(r"[A-Za-z0-9_]{32,128}")
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


# -- words, quotes ---------------------------------------------------------------------------------

def words(value: str) -> list[str]:
    """Whitespace-separated words, a ``"…"`` string (with ``\\"`` inside) counting as one, unquoted."""
    out: list[str] = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', value):
        out.append(match.group(1) if match.group(1) is not None else match.group(2))
    return out


def quote_problem(value: str) -> str | None:
    """An unbalanced ``"``: PowerMTA would read the rest of the line as part of one value."""
    if _QUOTED_RE.sub("", value).count('"'):
        return f"unbalanced '\"' in {value!r}"
    return None


def unquote(value: str) -> str:
    """The text of a value written as one ``"…"`` string, else the value itself."""
    if len(value) >= 2 and _QUOTED_RE.fullmatch(value):
        return re.sub(r'\\(.)', r"\1", value[1:-1])
    return value


# -- scalars ---------------------------------------------------------------------------------------

def boolean(*extra: str) -> ValueCheck:
    """``yes no true false`` (g 3.2) and a directive's own keywords (``override``…)."""
    accepted = (*BOOLEAN_WORDS, *extra)

    def check(value: str) -> str | None:
        if value.lower() in accepted:
            return None
        return f"{value!r} is not a boolean: write {', '.join(accepted[:-1])} or {accepted[-1]}"
    return check


yes_no = boolean()


def one_of(*choices: str) -> ValueCheck:
    def check(value: str) -> str | None:
        if value.lower() in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"
    return check


def count(value: str) -> str | None:
    """A whole number (of connections, messages, items)."""
    if _INT_RE.fullmatch(value):
        return None
    return f"{value!r} is not a whole number"


def count_or(*words_: str) -> ValueCheck:
    def check(value: str) -> str | None:
        if value.lower() in words_ or _INT_RE.fullmatch(value):
            return None
        return f"{value!r} is not a whole number or {' or '.join(words_)}"
    return check


count_or_unlimited = count_or("unlimited")


def int_range(low: int, high: int) -> ValueCheck:
    def check(value: str) -> str | None:
        if _INT_RE.fullmatch(value) and low <= int(value) <= high:
            return None
        return f"{value!r} is not a whole number from {low} to {high}"
    return check


port = int_range(1, 65535)


def time_seconds(value: str) -> int | None:
    """Seconds of a TIME value (``4d12h``, ``300s``, ``0``), or ``None`` when it is not one."""
    if value == "0":
        return 0
    if not _TIME_RE.fullmatch(value):
        return None
    scale = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(int(n) * scale[unit.lower()] for n, unit in re.findall(r"(\d+)([a-z])", value, re.I))


def time(value: str) -> str | None:
    """``N`` with ``w d h m s``, combinable (``1w2d12h``); ``never`` only where :func:`time_or_never`."""
    if time_seconds(value) is not None:
        return None
    if value.lower() == "never":
        return "'never' is not allowed here: give a time such as 4d12h"
    return (f"{value!r} is not a time: a whole number and a unit of {', '.join(TIME_UNITS)}, "
            "combinable, e.g. 10m, 4d12h, 1w2d")


def time_or_never(value: str) -> str | None:
    return None if value.lower() == "never" else time(value)


def time_at_most(limit: str) -> ValueCheck:
    most = time_seconds(limit) or 0

    def check(value: str) -> str | None:
        if problem := time(value):
            return problem
        if (time_seconds(value) or 0) > most:
            return f"{value!r} is more than the maximum, {limit}"
        return None
    return check


def time_at_least(limit: str) -> ValueCheck:
    least = time_seconds(limit) or 0

    def check(value: str) -> str | None:
        if problem := time(value):
            return problem
        if (time_seconds(value) or 0) < least:
            return f"{value!r} is less than the minimum, {limit}"
        return None
    return check


def days_or_never(value: str) -> str | None:
    """acct-file delete-after: ``Nd`` or ``never`` only (g 3.3.11)."""
    if value.lower() == "never" or re.fullmatch(r"\d+d", value, re.I):
        return None
    return f"{value!r} is not Nd or never (delete-after counts whole days)"


def time_list(value: str) -> str | None:
    """retry-after: ``10m,10m,1h,4h``, commas without spaces; the last repeats; at most 30."""
    if re.search(r",\s|\s,", value):
        return f"{value!r}: write the times separated by commas without spaces"
    items = value.split(",")
    if len(items) > MAX_TIME_LIST:
        return f"{len(items)} times: at most {MAX_TIME_LIST}"
    for item in items:
        if problem := time(item):
            return problem
    return None


def _per(value: str, pattern: re.Pattern[str], example: str, what: str) -> str | None:
    if value.lower() == "unlimited" or value == "0":
        return None
    match = pattern.fullmatch(value)
    if match is None or match.groups()[-1].lower() not in RATE_UNITS:
        return (f"{value!r} is not a {what}: write unlimited, 0 or {example} "
                f"(unit {', '.join(RATE_UNITS)})")
    if int(match.group(1)) == 0:
        return (f"{value!r}: the count of a {what} is not zero (0/unit is outside the grammar; "
                "a bare 0 is undefined, see docs/powermta.md)")
    if match.groups()[-2] and int(match.groups()[-2]) == 0:
        return f"{value!r}: the period of a {what} is not zero"
    return None


def rate(value: str) -> str | None:
    """``unlimited``, ``0`` or ``N/[M]unit`` with N non-zero: ``500/h``, ``1/20m``, ``6/sec``."""
    return _per(value, _RATE_RE, "N/[M]unit such as 500/h or 100/15m", "rate")


def volume_rate(value: str) -> str | None:
    """``unlimited``, ``0`` or ``N[bkmgt]/[X]unit``: ``12M/m``, ``2g/10h`` (g 3.3.10.37)."""
    return _per(value, _VOLUME_RE, "N[bkmgt]/[X]unit such as 12M/m", "volume rate")


def daily_list(value: str) -> str | None:
    """max-cold-virtual-mta-msg: ``1/day,2/day,…`` (N/d or N/day); the last repeats (g 3.3.10.49)."""
    for item in value.split(","):
        if not re.fullmatch(r"\d+/(?:d|day)", item.strip(), re.I):
            return f"{item.strip()!r} is not N/d or N/day: write e.g. 100/d,200/d,500/d"
    return None


def size_bytes(value: str) -> int | None:
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * 1024 ** SIZE_SUFFIXES.index(match.group(2).lower() or "b")


def size(value: str) -> str | None:
    """``N`` with an optional ``b k m g t``: ``40K``, ``50M``, ``1G``."""
    if size_bytes(value) is not None:
        return None
    return f"{value!r} is not a size: a whole number with an optional b, k, m, g or t, e.g. 50M"


def size_or_unlimited(value: str) -> str | None:
    return None if value.lower() == "unlimited" else size(value)


def size_at_least(limit: str) -> ValueCheck:
    least = size_bytes(limit) or 0

    def check(value: str) -> str | None:
        if problem := size(value):
            return problem
        if (size_bytes(value) or 0) < least:
            return f"{value!r} is less than the minimum, {limit}"
        return None
    return check


def text(value: str) -> str | None:
    """Any non-empty text: passwords, cipher lists, templates, URLs PowerMTA checks itself."""
    return None


def api_key(value: str) -> str | None:
    if _API_KEY_RE.fullmatch(value):
        return None
    return "an API key is 32 to 128 characters of letters, digits and '_'"


def url(value: str) -> str | None:
    if re.fullmatch(r"https?://[^\s/?#]+(?::\d+)?(?:/\S*)?", value, re.I):
        return None
    return f"{value!r} is not an http(s) URL"


# -- names -----------------------------------------------------------------------------------------

def name(value: str) -> str | None:
    """A VMTA, pool, list or proxy name: one word, as the X-Virtual-MTA header carries it."""
    if _NAME_RE.fullmatch(value):
        return None
    return f"{value!r} is not a name: letters, digits, '.', '_' and '-', starting with a letter or digit"


def name_list(value: str) -> str | None:
    """``A[,B]``: suppression-lists, use-proxy."""
    for item in value.split(","):
        if problem := name(item.strip()):
            return problem
    return None


def names_in(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def macro_name(value: str) -> str | None:
    """domain-macro names: letters, digits and ``_`` (g 3.3.1.43.4)."""
    if _MACRO_NAME_RE.fullmatch(value):
        return None
    return f"{value!r} is not a domain-macro name: letters, digits and '_'"


def macros_in(value: str) -> list[str]:
    """The ``$NAME`` macros a value uses (``${selector}`` interpolation is not one)."""
    return _MACRO_RE.findall(value)


def header_name(value: str) -> str | None:
    if _HEADER_RE.fullmatch(value):
        return None
    return f"{value!r} is not a header name"


def header_names(value: str) -> str | None:
    """remove-header ``H1,H2``."""
    for item in value.split(","):
        if problem := header_name(item.strip()):
            return problem
    return None


# -- paths, hosts, addresses -----------------------------------------------------------------------

def path(value: str) -> str | None:
    """A file or folder; PowerMTA reads it on the host, so only its shape is checked here."""
    if len(words(value)) == 1:
        return None
    return f"{value!r} is not one path (quote a path with spaces)"


def absolute_path(value: str) -> str | None:
    """Log, spool and accounting locations: absolute on Unix (g 3.3.1.47.2)."""
    problem = path(value)
    if problem is None and not unquote(value).startswith("/"):
        return f"{value!r} is not an absolute path"
    return problem


def file_and_password(value: str) -> str | None:
    """``FILE [PASSWORD]``: TLS certificates."""
    parts = words(value)
    if not 1 <= len(parts) <= 2:
        return "takes FILE [PASSWORD]"
    return None


def acct_target(value: str) -> str | None:
    """``<acct-file PATH>`` or a pipe ``|command args`` (quoted when it has spaces) (g 3.3.11)."""
    inner = unquote(value)
    if inner.startswith("|"):
        return None if inner[1:].strip() else "a pipe needs a command after '|'"
    return absolute_path(value)


def hostname(value: str) -> str | None:
    try:
        normalise_domain(value)
    except ValueError as err:
        return str(err)
    return None


def _hostname_with_macros(value: str) -> str | None:
    """A domain that may use macros as or inside labels (``$google``, ``yahoo.$tld``)."""
    if not macros_in(value):
        return hostname(value)
    plain = _MACRO_RE.sub("m", value)
    if all(_LABEL_RE.fullmatch(label) for label in plain.split(".")):
        return None
    return f"{value!r} is not a domain"


def domain_pattern(value: str) -> str | None:
    """``*``, ``d.tld``, ``*.d.tld``, ``[*.]d.tld``, ``[ip/mask]``, ``$macro``, ``{reserved}`` (g 3.2)."""
    if value == "*" or _RESERVED_RE.fullmatch(value):
        return None
    if value.startswith("[") and value.endswith("]") and not value.startswith("[*.]"):
        return network(value[1:-1])
    for prefix in ("[*.]", "*."):
        if value.startswith(prefix):
            return _hostname_with_macros(value[len(prefix):])
    return _hostname_with_macros(value)


def email(value: str) -> str | None:
    """An address; a one-label domain (``root@localhost``) is valid syntax too."""
    try:
        normalise_email(value)
    except ValueError as err:
        local, at, domain = value.rpartition("@")
        if at and local and _LABEL_RE.fullmatch(domain):
            return None
        return str(err)
    return None


def email_list(value: str) -> str | None:
    """backoff-notify ``a@x,b@y``."""
    for item in value.split(","):
        if problem := email(item.strip()):
            return problem
    return None


def _email_with_macros(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return f"{value!r} is not an email address (local@domain)"
    return _hostname_with_macros(domain) if macros_in(domain) else email(value)


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network, with PowerMTA's short IPv4 forms (``10/8``, ``0/0``); ``ValueError`` else."""
    address, slash, mask = text.partition("/")
    if slash and ":" not in address and re.fullmatch(r"\d+(?:\.\d+){0,3}", address):
        octets = address.split(".")
        address = ".".join(octets + ["0"] * (4 - len(octets)))
    if not slash and "-" in text:
        raise ValueError(f"{text!r} is a range: PowerMTA has no A-B form, write a CIDR network (e.g. 10.0.0.0/28)")
    return ipaddress.ip_network(f"{address}/{mask}" if slash else address, strict=False)


def network(value: str) -> str | None:
    """An IP address or CIDR network, short forms allowed (g 3.3.7)."""
    try:
        parse_network(value)
    except ValueError as err:
        reason = str(err) if "A-B" in str(err) else "write an IP or a CIDR network such as 10/8 or 0/0"
        return f"{value!r} is not an IP address or network: {reason}"
    return None


def source_arg(value: str) -> str | None:
    """``<source CIDR>``, a named source, or a reserved ``{auth}``/``{pickup}`` (g 3.3.7)."""
    if value.startswith("{"):
        if value.lower() in RESERVED_SOURCES:
            return None
        return f"{value!r}: names starting with '{{' are reserved ({', '.join(RESERVED_SOURCES)}); use a plain name"
    if re.fullmatch(r"[\d./]+|[0-9A-Fa-f:./]*:[0-9A-Fa-f:./]*", value):
        return network(value)
    return name(value)


def is_network(value: str) -> bool:
    return network(value) is None


def smtp_source_host(value: str) -> str | None:
    """``IP|CIDR HOSTNAME``.  The hostname is the EHLO name; swapping the two is the classic mistake."""
    parts = words(value)
    if len(parts) != 2:
        return f"takes an IP (or CIDR) and its hostname (IP HOSTNAME), got {len(parts)} field(s)"
    address, host = parts
    if not is_network(address):
        if is_network(host):
            return (f"the hostname comes first in {value!r}: write the IP first, "
                    f"'smtp-source-host {host} {address}'")
        return network(address)
    problem = hostname(host)
    return f"hostname: {problem}" if problem else None


def smtp_proxy_source_host(value: str) -> str | None:
    """``IP|CIDR PROXY:PORT CLIENT-IP[:PORT] HOSTNAME`` (g 3.3.1.20)."""
    parts = words(value)
    if len(parts) != 4:
        return f"takes IP PROXY:PORT CLIENT-IP[:PORT] HOSTNAME, got {len(parts)} field(s)"
    if problem := network(parts[0]):
        return problem
    return hostname(parts[3])


def _address_part(address: str) -> str | None:
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    return network(address)


def listener(value: str) -> str | None:
    """``CIDR:PORT [source=NAME]``: ``0.0.0.0:25``, ``0/0:2525``, ``[::1]:2525`` (g 3.3.1.24)."""
    first, *options = words(value)
    address, colon, port_text = first.rpartition(":")
    if not colon or not address:
        return f"{first!r} is not ADDR:PORT (e.g. 127.0.0.1:2525)"
    if problem := _address_part(address):
        return problem
    if problem := port(port_text):
        return f"port: {problem}"
    for option in options:
        key, eq, val = option.partition("=")
        if key.lower() != "source" or not eq:
            return f"{option!r}: a listener takes only source=NAME after ADDR:PORT"
        if problem := source_arg(val):
            return problem
    return None


def listener_source(value: str) -> list[str]:
    """The named source a listener line chooses, if any."""
    return [w.partition("=")[2] for w in words(value)[1:] if w.lower().startswith("source=")
            and not w.partition("=")[2].startswith("{")]


def http_access(value: str) -> str | None:
    """``CIDR LEVEL``, LEVEL ``monitor[,deny-logs]``, ``operator``, ``admin`` or ``none`` (g 3.3.1.46.3)."""
    parts = words(value)
    if len(parts) != 2:
        return f"takes CIDR LEVEL, e.g. '127.0.0.1 admin', got {len(parts)} field(s)"
    address, level = parts
    if problem := network(address):
        return problem
    if level.lower() not in HTTP_ACCESS_LEVELS:
        return f"{level!r} is not an access level: write {', '.join(HTTP_ACCESS_LEVELS)}"
    return None


def cidr_and(check: ValueCheck) -> ValueCheck:
    """``CIDR VALUE``: the per-source-IP limits of a queue, ip-connection-limit."""
    def checker(value: str) -> str | None:
        parts = words(value)
        if len(parts) != 2:
            return f"takes CIDR VALUE, got {len(parts)} field(s)"
        return network(parts[0]) or check(parts[1])
    return checker


def mx_connection_limit(value: str) -> str | None:
    parts = words(value)
    if len(parts) != 2:
        return f"takes MX-PATTERN N, got {len(parts)} field(s)"
    return domain_pattern(parts[0]) or count(parts[1])


def _host_item(item: str) -> str | None:
    if item.lower().startswith("lookup-mx:"):
        return hostname(item[len("lookup-mx:"):])
    if item.startswith("["):
        inside, bracket, rest = item[1:].partition("]")
        if not bracket:
            return f"{item!r}: missing ']'"
        if rest and (not rest.startswith(":") or port(rest[1:])):
            return f"{item!r}: after ']' only :PORT"
        literal = inside[5:] if inside.lower().startswith("ipv6:") else inside
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            return f"{item!r}: {inside!r} is not an IP address"
        return None
    host, colon, port_text = item.partition(":")
    if colon and port(port_text):
        return f"{item!r}: {port_text!r} is not a port"
    return None if _LABEL_RE.fullmatch(host) else hostname(host)


def host_list(value: str) -> str | None:
    """smtp-hosts: ``h1, h2; [10.1.1.1]:2525; lookup-mx:dom`` (``,`` round-robin, ``;`` next level)."""
    for level in value.split(";"):
        for item in level.split(","):
            if not item.strip():
                return f"{value!r} has an empty entry"
            if problem := _host_item(item.strip()):
                return problem
    return None


def proxy_server(value: str) -> str | None:
    """``<proxy>`` server ``HOST:PORT``."""
    host, colon, port_text = value.rpartition(":")
    if not colon:
        return f"{value!r} is not HOST:PORT"
    return port(port_text) or (None if is_network(host.strip("[]")) else hostname(host))


def proxy_client(value: str) -> str | None:
    """``<proxy>`` client ``IP[:PORT] HOST``."""
    parts = words(value)
    if len(parts) != 2:
        return f"takes IP[:PORT] HOST, got {len(parts)} field(s)"
    address = parts[0]
    if address.count(":") == 1:
        address, _, port_text = address.partition(":")
        if problem := port(port_text):
            return problem
    return network(address.strip("[]")) or hostname(parts[1])


# -- DKIM ------------------------------------------------------------------------------------------

def domain_key(value: str) -> str | None:
    """``SELECTOR,DOMAIN|*,KEYFILE``, spaces around the commas allowed; a ``{vault}:`` key (g 3.3.1.43.1)."""
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
    if domain != "*" and (problem := _hostname_with_macros(domain)):
        return f"domain: {problem}"
    if keyfile.lower().startswith("{vault}:"):
        return None
    return path(keyfile)


def dkim_identity(value: str) -> str | None:
    """``ADDR``, ``@DOM``, ``DOM``, ``sender-or-from`` or ``strict-from`` (g 3.3.10)."""
    if value.lower() in ("sender-or-from", "strict-from"):
        return None
    if value.startswith("@"):
        return hostname(value[1:])
    return email(value) if "@" in value else hostname(value)


def header_list(value: str) -> str | None:
    """dkim-headers: header names and/or ``/RE/``, comma-separated."""
    for item in re.findall(r"/(?:[^/\\]|\\.)*/|[^,]+", value):
        item = item.strip()
        if item.startswith("/"):
            if problem := regex(item):
                return problem
        elif item and (problem := header_name(item)):
            return problem
    return None


# -- accounting ------------------------------------------------------------------------------------

def acct_type(kind: str) -> str | None:
    """A short record type (``rb``) for a short or long name, or ``None``."""
    kind = kind.strip().lower()
    if kind in ACCT_RECORD_TYPES:
        return kind
    return next((short for short, long in ACCT_RECORD_TYPES.items() if long == kind), None)


def acct_records(value: str) -> str | None:
    unknown = [kind.strip() for kind in value.split(",") if acct_type(kind) is None]
    if unknown:
        return (f"unknown record type(s) {', '.join(repr(k) for k in unknown)}: "
                f"write a comma-separated list of {', '.join(ACCT_RECORD_TYPES)}")
    return None


def acct_records_no_remote(value: str) -> str | None:
    """disable-acct-records: ``d,b,t,tq`` only (g 3.3.10.9)."""
    if problem := acct_records(value):
        return problem
    bad = [k for k in value.split(",") if acct_type(k) not in ("d", "b", "t", "tq")]
    return f"only d, b, t and tq can be disabled per queue, not {', '.join(bad)}" if bad else None


def _acct_field(kind: str, field: str) -> str | None:
    bare = field.removeprefix("!")
    if bare in ("*", "type") or bare.startswith("header_") or (kind == "f" and bare.startswith("arf_")):
        return None
    known = ACCT_FIELDS[kind]
    if bare.lower() in (f.lower() for f in known):
        return None
    close = [f for f in known if f.lower().startswith(bare.lower()[:4])]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{bare!r} is not a field of {kind} records{hint}"


def record_fields(value: str) -> str | None:
    """``record-fields TYPE FIELDS``: ``*``, ``!field``, ``header_X`` (g 3.3.11)."""
    parts = value.split(None, 1)
    if len(parts) != 2:
        return "takes a record type and its fields, e.g. 'b timeLogged,rcpt,bounceCat'"
    kind = acct_type(parts[0])
    if kind is None:
        return acct_records(parts[0])
    for field in parts[1].replace(" ", "").split(","):
        if problem := _acct_field(kind, field):
            return problem
    return None


def map_header_to_field(value: str) -> str | None:
    """``TYPE header_NAME FIELD``, not for tq (g 3.3.11)."""
    parts = words(value)
    if len(parts) != 3:
        return "takes TYPE header_NAME FIELD"
    kind = acct_type(parts[0])
    if kind is None or kind == "tq":
        return f"{parts[0]!r}: a header maps into d, b, t, r, rb, rs or f records"
    if not parts[1].startswith("header_"):
        return f"{parts[1]!r} is not header_NAME"
    return None


def queue_filter(value: str) -> str | None:
    """``d/v,!d/*``: queues as DOMAIN/VMTA, ``!`` excludes."""
    for item in value.split(","):
        if item.strip().removeprefix("!").count("/") != 1:
            return f"{item.strip()!r} is not DOMAIN/VMTA"
    return None


def privacy_policy(value: str) -> str | None:
    parts = words(value)
    if not parts or parts[0].lower() not in PRIVACY_POLICIES or len(parts) > 2:
        return f"takes one of {', '.join(PRIVACY_POLICIES)} and an optional \"KEY\""
    return None


# -- regular expressions and pattern lines ---------------------------------------------------------

_PCRE_ONLY = {"h": "[ \\t]", "H": "[^ \\t]", "R": "(?:\\r\\n|\\n|\\r)", "K": "", "X": ".", "C": ".",
              "e": "\\x1b", "G": "", "z": "\\Z", "V": "[^\\n]", "N": "[^\\n]"}
_PCRE_ONLY_IN_CLASS = {"h": " \\t", "e": "\\x1b", "R": "\\r\\n", "V": "\\n", "H": "\\S"}


_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")
_INLINE_FLAGS = re.compile(r"\(\?[a-zA-Z]*-?[a-zA-Z]*\)")
_NAMED_GROUP = re.compile(r"\(\?(?:P?<|')([A-Za-z_]\w*)[>']")
_RECURSION = re.compile(r"\(\?(?:R|[+-]?\d+|&\w+|P>\w+)\)")

_Step = tuple[list[str], int]
"""The pieces a translation step writes and the index the scan goes on at.  Pieces rather than one
string: whether a ``]`` ends a class depends on the piece written last (``[`` or ``[^``: a literal)."""


def _python_regex(pattern: str) -> str:
    """PCRE spelled as Python's ``re`` reads it, for a compile check only (not for matching).

    PCRE forms Python lacks become an equivalent of the same shape, so that a pattern PCRE accepts
    is not reported; what neither accepts (an unclosed group, a bad quantifier) still fails.  One
    left-to-right scan: an escape, a character inside a class, a class opening or anything else,
    each translated by its own step."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            pieces, i = _escape(pattern, i, in_class)
        elif in_class:
            in_class = not _closes_class(pattern, i, out)
            pieces, i = _class_member(pattern, i)
        elif pattern[i] == "[":
            in_class = True
            pieces, i = _class_open(pattern, i)
        else:
            pieces, i = _outside_class(pattern, i)
        out += pieces
    return "".join(out)


def _closes_class(pattern: str, i: int, out: list[str]) -> bool:
    """A ``]`` ends the class unless it comes first in it (``[]a]``, ``[^]a]``: a literal ``]``)."""
    return pattern[i] == "]" and bool(out) and out[-1] not in ("[", "[^")


def _class_member(pattern: str, i: int) -> _Step:
    """A POSIX class (``[:alpha:]``) becomes a range Python takes; any other character stays."""
    if posix := _POSIX_CLASS.match(pattern, i):
        return ["a-z"], posix.end()
    return [pattern[i]], i + 1


def _class_open(pattern: str, i: int) -> _Step:
    """``[`` or ``[^``; a ``]`` right after is a literal in PCRE, so it is escaped for Python."""
    opening = "[^" if pattern.startswith("[^", i) else "["
    i += len(opening)
    if i < len(pattern) and pattern[i] == "]":
        return [opening, "\\]"], i + 1
    return [opening], i


def _outside_class(pattern: str, i: int) -> _Step:
    """A group opening ``(?`` PCRE has and Python lacks, translated; any other character stays."""
    if pattern.startswith("(?", i) and (step := _group(pattern, i)) is not None:
        return step
    return [pattern[i]], i + 1


def _group(pattern: str, i: int) -> _Step | None:
    rest = pattern[i:]
    if flags := _INLINE_FLAGS.match(rest):
        return [], i + flags.end()  # inline flags: Python takes them only at the start
    if named := _NAMED_GROUP.match(rest):
        return [f"(?P<{named.group(1)}>"], i + named.end()
    if recurse := _RECURSION.match(rest):
        return ["(?:)"], i + recurse.end()
    if rest.startswith("(?|"):
        return ["(?:"], i + 3
    return None


# Escapes: ``pattern[i]`` is the backslash and ``pattern[i + 1]`` the letter; None when the form is
# not this one after all (``\p`` at the end), so that the escape is left as written.

def _quoted(pattern: str, i: int, _in_class: bool) -> _Step:
    r"""``\Q...\E``: the text between, literally (to the end when there is no ``\E``)."""
    end = pattern.find("\\E", i + 2)
    literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
    return [re.escape(literal)], len(pattern) if end < 0 else end + 2


def _unquote(_pattern: str, i: int, _in_class: bool) -> _Step:
    r"""A ``\E`` without its ``\Q`` is ignored."""
    return [], i + 2


def _property(pattern: str, i: int, in_class: bool) -> _Step | None:
    r"""``\pL``, ``\p{Greek}``: one character."""
    if i + 2 >= len(pattern):
        return None
    skip = pattern.find("}", i) + 1 if pattern[i + 2] == "{" else i + 3
    return ["a" if in_class else "."], max(skip, i + 3)


def _braced_code(pattern: str, i: int, in_class: bool) -> _Step | None:
    r"""``\x{263a}``, ``\o{17}``: one character."""
    if i + 2 >= len(pattern) or pattern[i + 2] != "{":
        return None
    return ["a" if in_class else "."], pattern.find("}", i) + 1 or len(pattern)


def _control(pattern: str, i: int, _in_class: bool) -> _Step | None:
    r"""``\cX``: a control character."""
    if i + 2 >= len(pattern):
        return None
    return ["\\x01"], i + 3


def _backreference(pattern: str, i: int, _in_class: bool) -> _Step | None:
    r"""``\k<name>``, ``\g{2}``, ``\g{-1}``: by number or by name, as Python writes them."""
    if i + 2 >= len(pattern) or pattern[i + 2] not in "{<'":
        return None
    close = {"{": "}", "<": ">", "'": "'"}[pattern[i + 2]]
    end = pattern.find(close, i + 3)
    ref = pattern[i + 3:end] if end > 0 else ""
    return ([f"\\{ref.lstrip('-+')}" if ref.lstrip("-+").isdigit() else f"(?P={ref})"],
            end + 1 if end > 0 else len(pattern))


_ESCAPES: dict[str, Callable[[str, int, bool], _Step | None]] = {
    "Q": _quoted, "E": _unquote, "p": _property, "P": _property, "x": _braced_code, "o": _braced_code,
    "c": _control, "k": _backreference, "g": _backreference}
"""PCRE escapes with an argument, or none in Python; the others go through :data:`_PCRE_ONLY` tables."""


def _escape(pattern: str, i: int, in_class: bool) -> _Step:
    letter = pattern[i + 1]
    if (form := _ESCAPES.get(letter)) is not None and (step := form(pattern, i, in_class)) is not None:
        return step
    table = _PCRE_ONLY_IN_CLASS if in_class else _PCRE_ONLY
    return [table.get(letter, pattern[i:i + 2])], i + 2


def regex_problem(pattern: str) -> str | None:
    """What PCRE would refuse in ``pattern`` (checked through Python's ``re`` after adaptation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(_python_regex(pattern))
        except re.error as err:
            if "look-behind requires fixed-width" in str(err):
                return None  # PCRE allows alternatives of different fixed lengths
            return f"/{pattern}/ is not a valid regular expression: {err.msg}"
        except RecursionError:
            return None
    return None


def split_regex(value: str) -> tuple[str, str] | str:
    """``/RE/ rest`` → ``(RE, rest)``; the pattern ends at the last ``/`` followed by a space or the end."""
    if not value.startswith("/"):
        return f"{value!r} does not start with a /pattern/"
    candidates = [m.start() for m in re.finditer(r"/(?=\s|$)", value) if m.start() > 0]
    if not candidates:
        return f"{value!r}: the /pattern/ has no closing '/'"
    end = candidates[-1]
    rest = value[end + 1:].strip()
    while rest and "/" in rest and len(candidates) > 1:  # the rest holds no slash: take an earlier end
        candidates.pop()
        end = candidates[-1]
        rest = value[end + 1:].strip()
    return value[1:end], rest


def regex(value: str) -> str | None:
    """A whole value that is one ``/RE/``."""
    split = split_regex(value)
    if isinstance(split, str):
        return split
    pattern, rest = split
    if rest:
        return f"text after the pattern: {rest!r}"
    return regex_problem(pattern)


def _option_time(option: str, value: str) -> str | None:
    return time_or_never(value) if option == "backoff-to-normal-after" else time(value)


def reply_rule(value: str) -> str | None:
    """``/RE/ ACTION[,ACTION]`` of ``reply`` in an smtp-pattern-list (g 3.3.15)."""
    split = split_regex(value)
    if isinstance(split, str):
        return split
    pattern, rest = split
    if re.search(r'(?<!\\)(?:\\\\)*"', pattern):
        return f"/{pattern}/: write a '\"' in an smtp-pattern-list pattern as '\\\"'"
    if problem := regex_problem(pattern):
        return problem
    if not rest:
        return "a reply rule needs an action, e.g. mode=backoff"
    seen: dict[str, str] = {}
    for option in (o.strip() for o in rest.split(",")):
        key, eq, val = option.partition("=")
        key = key.lower()
        if problem := _reply_action_problem(option, key, eq, val, seen):
            return problem
        seen[key] = val.lower()
    return _reply_actions_together(seen)


def _reply_action_problem(option: str, key: str, eq: str, val: str, seen: dict[str, str]) -> str | None:
    """One action of a reply rule, on its own: known, once, with a value where it takes one."""
    if key not in REPLY_ACTIONS:
        return f"unknown action {option!r}: write {', '.join(REPLY_ACTIONS)}"
    if key in seen:
        return f"{key} is given twice in one rule"
    if key == "mode":
        return None if val.lower() in ("backoff", "normal") else f"{option!r}: write mode=backoff or mode=normal"
    if key in ("backoff-to-normal-after", "reenable-after"):
        if not eq:
            return f"{key} needs =TIME"
        problem = _option_time(key, val)
        return f"{key}: {problem}" if problem else None
    return f"{key} takes no value" if eq else None


def _reply_actions_together(seen: dict[str, str]) -> str | None:
    """The actions of one rule that exclude or need each other."""
    if "skip-mx" in seen and "bounce-queue" in seen:
        return "skip-mx and bounce-queue are not allowed in one rule"
    if "reenable-after" in seen and "disable-source-ip" not in seen:
        return "reenable-after needs disable-source-ip in the same rule"
    if "backoff-to-normal-after" in seen and seen.get("mode") != "backoff":
        return "backoff-to-normal-after needs mode=backoff in the same rule"
    return None


def rollup_name(value: str) -> str | None:
    if not value.lower().endswith(".rollup") or len(value) <= len(".rollup"):
        return f"{value!r}: a rollup name ends in .rollup (e.g. gmail.rollup)"
    return hostname(value)


def mx_rollup(value: str) -> str | None:
    """``mx MX-PATTERN NAME.rollup [rollup-by-ip]`` in ``<mx-rollup-list>`` (pub 10.17)."""
    if value.startswith("/"):
        split = split_regex(value)
        if isinstance(split, str):
            return split
        pattern, rest = split
        if problem := regex_problem(pattern):
            return problem
        parts = rest.split()
    else:
        first, *parts = value.split()
        if problem := domain_pattern(first):
            return f"MX pattern: {problem}"
    if not 1 <= len(parts) <= 2:
        return "takes MX-PATTERN NAME.rollup [rollup-by-ip]"
    if len(parts) == 2 and parts[1].lower() != "rollup-by-ip":
        return f"{parts[1]!r}: the only option is rollup-by-ip"
    return rollup_name(parts[0])


def mx_rollup_parts(value: str) -> tuple[bool, str, bool]:
    """(wildcard pattern, rollup name, rollup-by-ip) of a valid mx line."""
    parts = value.split()
    return "*" in parts[0], parts[-2] if parts[-1].lower() == "rollup-by-ip" else parts[-1], \
        parts[-1].lower() == "rollup-by-ip"


def bounce_category(value: str) -> str | None:
    """``/RE/ category`` in ``<bounce-category-patterns>``; custom category names are allowed (pub 10.8)."""
    split = split_regex(value)
    if isinstance(split, str):
        return split
    pattern, rest = split
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", rest):
        return f"after /{pattern}/ comes one category name (e.g. bad-mailbox), got {rest!r}"
    return regex_problem(pattern)


def list_address(value: str) -> str | None:
    """address-list ``address ADDR|/RE/|local-part`` (g 3.3.5)."""
    if value.startswith("/"):
        return regex(value)
    if "@" in value:
        return _email_with_macros(value)
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+", value):
        return None
    return f"{value!r} is not an address, a /pattern/ or a local part"


def _results(text: str) -> str | None:
    for item in (r.strip() for r in text.split(",")):
        key = re.split(r"[=:]", item, maxsplit=1)[0].lower()
        if key not in PATTERN_RESULTS:
            return f"unknown result {item!r}: write {', '.join(PATTERN_RESULTS)}"
        if key == "recipient-priority" and (problem := int_range(0, 100)(item.partition("=")[2])):
            return problem
        if key in ("virtual-mta", "pattern-list") and (problem := name(item.partition("=")[2])):
            return problem
    return None


def pattern_rule(rule: str) -> ValueCheck:
    """A ``<pattern-list>`` rule: ``header NAME /RE/ RES``, ``mail-from /RE/ RES``, ``* RES`` (g 3.3.14)."""
    def check(value: str) -> str | None:
        if rule == "*":
            return _results(value)
        if rule == "header":
            header, _, value = value.partition(" ")
            if problem := header_name(header):
                return problem
            value = value.strip()
        split = split_regex(value)
        if isinstance(split, str):
            return split
        pattern, rest = split
        if not rest:
            return "a rule needs a result, e.g. virtual-mta=NAME"
        return regex_problem(pattern) or _results(rest)
    return check


def pattern_result_names(value: str) -> list[tuple[str, str]]:
    """(kind, name) of the VMTAs and pattern lists a pattern-list rule routes to."""
    found = re.findall(r"(virtual-mta|pattern-list)=([^,\s]+)", value, re.I)
    return [(kind.lower(), target) for kind, target in found]


def rewrite_mail_from(value: str) -> str | None:
    """``mail-from SRC TGT``: ``a@*``, ``*@d``, ``*@*``, ``<>`` (g 3.3.18)."""
    parts = words(value)
    if len(parts) != 2:
        return "takes SOURCE TARGET, e.g. '*@old.example.com *@new.example.com'"
    for part in parts:
        if part != "<>" and not re.fullmatch(r"[^@\s]+@[^@\s]+", part):
            return f"{part!r} is not an address pattern (a@*, *@d, *@* or <>)"
    return None


def from_domain(value: str) -> str | None:
    parts = words(value)
    if len(parts) != 2:
        return "takes PATTERN DOMAIN"
    return domain_pattern(parts[0]) or hostname(parts[1])


def domain_macro(value: str) -> str | None:
    """``domain-macro NAME a.com, b.com``: a name, then one or more domains (macros may nest)."""
    macro, *others = value.split(None, 1)
    rest = others[0] if others else ""
    if problem := macro_name(macro):
        return problem
    domains = [d.strip() for d in rest.split(",")]
    if not rest.strip() or not all(domains):
        return "takes NAME and a comma-separated list of domains, e.g. 'google gmail.com, googlemail.com'"
    for domain in domains:
        plain = _MACRO_RE.sub("m", domain.removeprefix("[*.]").removeprefix("*."))
        if not all(_LABEL_RE.fullmatch(label) for label in plain.split(".")) and domain_pattern(domain):
            return f"{macro}: {domain!r} is not a domain or a part of one (a macro may stand for 'com' in 'yahoo.$tld')"
    return None


def alias(value: str) -> str | None:
    if len(words(value)) < 2:
        return "takes SOURCE TARGET"
    return None


def pickup(value: str) -> str | None:
    if len(words(value)) != 2:
        return "takes DIR BADDIR"
    return None


def include(value: str) -> str | None:
    """``include FILE|http(s)://host[:port][/path]``; no userinfo, query or fragment (g 3.3.1.41)."""
    if value.lower().startswith(("http://", "https://")):
        if re.search(r"[@?#]", value.split("://", 1)[1]):
            return f"{value!r}: an include URL has no user, query or fragment"
        return url(value)
    return path(value)


def default_vmta(value: str) -> str | None:
    """``VMTA|POOL|by-smtp-source-ip`` (g 3.3.7.29)."""
    return None if value.lower() == "by-smtp-source-ip" else name(value)


def default_vmta_names(value: str) -> list[str]:
    return [] if value.lower() == "by-smtp-source-ip" else [value]


def ip(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    return None
