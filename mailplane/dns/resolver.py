"""Answers the checks' questions with dnspython's asyncio resolver.

With ``--nameserver`` the resolver is built from nothing (``configure=False``): no
``/etc/resolv.conf``, no search domains, only that server on that port, so a check of a zone
before delegation, or of the test server on a loopback port, asks exactly the server it names.
Without it, the system's resolvers answer, as receivers' recursive resolvers would.
"""

from __future__ import annotations

import socket
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailplane.dns.lookup import Answer, DnsError, name_problem
from mailplane.model.addresses import canonical_ip

DNS_PORT = 53


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``[IPV6]``, ``[IPV6]:PORT`` or a bare IPv6 address, to an address and port.

    A host name is resolved once, here, by the system; raises ValueError with a reason.
    """
    host, port_text = text.strip(), ""
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        host, port_text = inside, rest[1:]
    elif host.count(":") == 1:
        host, _, port_text = host.partition(":")
    port = DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    if not host:
        raise ValueError(f"{text!r}: no host")
    try:
        return canonical_ip(host), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as err:
        raise ValueError(f"{text!r}: cannot resolve {host!r} ({err})") from None
    return str(infos[0][4][0]), port


def make_resolver(nameserver: tuple[str, int] | None, timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver that gives up on a question after ``timeout`` seconds.

    Raises ValueError when no nameserver is given and the system has none configured.
    """
    if nameserver is None:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise ValueError("the system has no nameserver configured: give --nameserver HOST[:PORT]") from None
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        address, port = nameserver
        resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port)]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _text(rdata: Any, rdtype: str) -> str:
    """An answer's record in the checks' form: a TXT's strings joined (RFC 7208 3.3), names without the final dot."""
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
    if rdtype in ("CNAME", "PTR"):
        return rdata.target.to_text(omit_final_dot=True)
    return rdata.to_text()


class DnsLookup:
    """:class:`~mailplane.dns.lookup.Lookup` over one dnspython resolver; every failure becomes a DnsError."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver

    @property
    def servers(self) -> str:
        return ", ".join(f"{ns.address}:{ns.port}" if isinstance(ns, dns.nameserver.Do53Nameserver) else str(ns)
                         for ns in self.resolver.nameservers)

    async def query(self, name: str, rdtype: str) -> Answer:
        """A name no query can be made for (from a record a person wrote) is a void answer saying why."""
        if problem := name_problem(name):
            return Answer(name, rdtype, invalid=problem)
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, ValueError) as err:
            return Answer(name, rdtype, invalid=str(err) or type(err).__name__)
        try:
            answer = await self.resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer(name, rdtype, nxdomain=True)
        except dns.exception.Timeout:
            raise DnsError(f"timeout: no answer from {self.servers} within {self.resolver.lifetime:g} s "
                           f"({rdtype} {name})") from None
        except dns.resolver.NoNameservers as err:
            errors = err.kwargs.get("errors") or []
            reasons = "; ".join(f"{server} answered {reason}" for server, _, _, reason, *_ in errors)
            raise DnsError(f"{rdtype} {name}: {reasons or err}") from None
        except (dns.exception.DNSException, OSError) as err:
            raise DnsError(f"{rdtype} {name}: {err}") from None
        rrset = answer.rrset
        records = tuple(_text(rdata, rdtype) for rdata in rrset) if rrset is not None else ()
        return Answer(name, rdtype, tuple(sorted(records)))
