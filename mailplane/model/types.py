"""Value types of the fleet YAML: DNS names, addresses, listeners (parsed by :mod:`mailplane.model.addresses`).

Each type normalises as it validates (lower case, no trailing dot, IDN to A-labels, IPv6
compressed) so that every consumer compares and renders one canonical form.  The common ASCII
case is checked with a regular expression; only non-ASCII names go through the IDNA codec,
which is two orders of magnitude slower and would dominate validation of a large stack.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

import idna
from pydantic import AfterValidator, Field, JsonValue, StrictStr

from mailplane.model.addresses import normalise_listener

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME_RE = re.compile(rf"(?:{_LABEL}\.)+(?:{_LABEL})")
_LABEL_RE = re.compile(_LABEL)
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def normalise_domain(value: str) -> str:
    """Canonical A-label form of a fully qualified DNS name, or ``ValueError``."""
    name = value.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as err:
            raise ValueError(f"{value!r} is not a valid internationalised domain name: {err}") from None
    if len(name) > 253 or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{value!r} is not a valid DNS name: it needs two or more labels of letters, digits "
            "and inner hyphens, each at most 63 characters, 253 in all")
    if name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(f"{value!r} looks like an address, not a DNS name")
    return name


def normalise_label(value: str) -> str:
    label = value.strip().lower()
    if not _LABEL_RE.fullmatch(label):
        raise ValueError(f"{value!r} is not a valid DNS label: letters, digits and inner hyphens, "
                         "at most 63 characters")
    return label


def normalise_slug(value: str) -> str:
    if not _SLUG_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use lower-case letters, digits and inner "
                         "hyphens, at most 63 characters (it becomes part of DNS, IAM and VMTA names)")
    return value


def normalise_ip(value: str) -> str:
    """Compressed canonical text form of a unicast IPv4 or IPv6 address."""
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback or address.is_link_local:
        raise ValueError(f"{value!r} is not a unicast address a host can send from")
    return str(address)


def normalise_email(value: str) -> str:
    """``local@domain`` with the domain normalised; ``*@domain`` allows any local part."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local:
        raise ValueError(f"{value!r} is not an email address (local@domain)")
    if local != "*" and (len(local) > 64 or not _LOCAL_RE.fullmatch(local)):
        raise ValueError(f"{value!r}: the part before '@' is not a valid ASCII local part")
    try:
        return f"{local}@{normalise_domain(domain)}"
    except ValueError:
        raise ValueError(f"{value!r}: the part after '@' is not a valid DNS name") from None


def normalise_https_url(value: str) -> str:
    """An absolute ``https://host[:port][/path]`` URL without query or fragment, no trailing slash."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an https:// URL of a host (no query, fragment or user)")
    normalise_domain(parts.hostname)
    return value.strip().rstrip("/")


def _annotated(fn, **schema: str):  # type: ignore[no-untyped-def]
    extra: dict[str, JsonValue] | None = dict(schema) or None
    return Annotated[StrictStr, AfterValidator(fn), Field(json_schema_extra=extra)]


DomainName = _annotated(normalise_domain, format="hostname")
"""A fully qualified DNS name; Unicode names are stored in A-label (``xn--``) form."""
DnsLabel = _annotated(normalise_label)
Slug = _annotated(normalise_slug, pattern=_SLUG_RE.pattern)
"""A name that becomes part of DNS labels, IAM user names, VMTA and pool names."""
IPAddress = _annotated(normalise_ip)
EmailAddress = _annotated(normalise_email)
Listener = _annotated(normalise_listener)
HttpsUrl = _annotated(normalise_https_url, format="uri")
