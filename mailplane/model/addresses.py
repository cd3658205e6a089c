"""IP addresses and ``ADDRESS:PORT`` listeners: one canonical text form and one parser for each.

The fleet YAML, PowerMTA's config, the sender's look-ups and its listen and submission sockets all
name the same addresses.  Written as ``2001:DB8::1`` in one place and ``2001:db8::1`` in another
they would stop matching, so every consumer canonicalises through :func:`canonical_ip` and splits a
listener with :func:`parse_listener` (IPv6 in brackets, as PowerMTA's ``smtp-listener`` takes it).
"""

from __future__ import annotations

import ipaddress


def canonical_ip(address: str) -> str:
    """Compressed, lower-case text form of an IPv4 or IPv6 address; ``ValueError`` if it is not one."""
    return str(ipaddress.ip_address(address.strip()))


def ip_key(address: str) -> str:
    """:func:`canonical_ip`, or the text unchanged when it is not an address: a dictionary key for
    look-ups that must find nothing, rather than fail, on a malformed value read from a log or a row."""
    try:
        return canonical_ip(address)
    except ValueError:
        return address


def parse_listener(value: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` or ``[IPV6]:PORT`` to the canonical address (no brackets) and the port.

    Raises ``ValueError`` with a reason: no port, a port outside 1-65535, a host that is not an
    address, or an IPv6 address without brackets (its colons would make the port ambiguous).
    """
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not ADDRESS:PORT with a port from 1 to 65535")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    if address.version == 6 and not bracketed:
        raise ValueError(f"{value!r}: write an IPv6 listener as [ADDRESS]:PORT")
    return str(address), int(port)


def format_listener(address: str, port: int | str) -> str:
    """The listener syntax of ``address`` on ``port``: IPv6 in brackets, the address canonical."""
    text = canonical_ip(address)
    return f"[{text}]:{int(port)}" if ":" in text else f"{text}:{int(port)}"


def normalise_listener(value: str) -> str:
    """A listener in its one canonical spelling, or ``ValueError``."""
    return format_listener(*parse_listener(value))
