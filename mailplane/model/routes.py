"""The route of each (tenant, stream): SES, or PowerMTA through a set of the tenant's IPs.

Decided here once and read by every consumer -- the sender's pacer (which IPs may carry a
message), the PowerMTA renderer (which keys each VMTA signs with), the DNS records (which IPs a
return path's SPF lists), the policy checks and ``mailplane dns check`` -- so that what is sent,
what is signed and what DNS authorises cannot drift apart.

The rule: a stream that some IP of the tenant carries (an IP without ``streams`` carries all of
the tenant's) goes through PowerMTA on exactly those IPs; a stream no IP carries goes through SES.

What authenticates mail on a route, per From domain (:func:`route_auth`):

- SES: DKIM by SES (Easy DKIM, or the BYODKIM key and selector), and the domain's ``mail_from``
  as the return path (without one SES uses its own ``amazonses.com`` MAIL FROM, which DMARC does
  not align);
- PowerMTA: DKIM by PowerMTA with the BYODKIM key, or for an Easy DKIM domain a key of its own at
  :func:`~mailplane.model.names.powermta_selector`; the return path ``<stream>.<return_path>``
  (:func:`~mailplane.model.names.return_path_domain`), whose SPF lists exactly the route's IPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailplane.model.names import powermta_selector, return_path_domain
from mailplane.model.tenant import Domain, Ip, Tenant

SES_MAIL_FROM_DEFAULT = "amazonses.com"
"""The MAIL FROM domain SES uses when an identity has no custom one (a subdomain of it, in fact)."""

Transport = Literal["ses", "pmta"]


@dataclass(frozen=True)
class Route:
    """Where one stream of one tenant is sent; ``ips`` is empty for SES."""

    tenant: str
    stream: str
    transport: Transport
    ips: tuple[Ip, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(ip.address for ip in self.ips)


@dataclass(frozen=True)
class RouteAuth:
    """How mail from one domain is authenticated on one route: what a receiver gets to check."""

    route: Route
    from_domain: str
    dkim_domain: str | None
    """The ``d=`` of the signature aligned candidates come from; None: the mail is not signed for it."""
    dkim_selector: str | None
    """None for Easy DKIM through SES (SES's three token selectors)."""
    return_path: str
    """Domain of the SMTP MAIL FROM."""
    spf_ips: tuple[str, ...]
    """The sending IPs the return path's SPF must pass; empty for SES (its own addresses)."""


def tenant_routes(tenant: Tenant) -> tuple[Route, ...]:
    """One route per stream of the tenant, in the tenant's stream order."""
    out = []
    for stream in tenant.streams:
        ips = tuple(ip for ip in tenant.ips if ip.streams is None or stream in ip.streams)
        out.append(Route(tenant.name, stream, "pmta" if ips else "ses", ips))
    return tuple(out)


def needs_powermta_key(domain: Domain) -> bool:
    """An Easy DKIM domain needs a key of its own for PowerMTA (a BYODKIM key serves both)."""
    return domain.dkim.mode == "easy"


def route_auth(route: Route, domain: Domain) -> RouteAuth:
    """What authenticates mail From ``domain`` on ``route`` (see the module docstring)."""
    if route.transport == "ses":
        selector = domain.dkim.selector if domain.dkim.mode == "byo" else None
        return RouteAuth(route, domain.name, domain.name, selector, domain.mail_from or SES_MAIL_FROM_DEFAULT, ())
    return RouteAuth(route, domain.name, domain.name, powermta_selector(domain),
                     return_path_domain(domain, route.stream), route.addresses)


def powermta_return_paths(tenant: Tenant, domain: Domain) -> list[tuple[Route, str]]:
    """Each PowerMTA route of the tenant with ``domain``'s return path on it."""
    return [(r, return_path_domain(domain, r.stream)) for r in tenant_routes(tenant) if r.transport == "pmta"]


def is_aligned(identifier: str, from_domain: str, mode: str, organizational: str | None = None) -> bool:
    """RFC 7489 3.1: strict needs equal names; relaxed, the same organizational domain.

    Offline, a name aligns in relaxed mode when it equals the From domain or lies under it (every
    return path and MAIL FROM mailplane uses does); ``organizational`` lets a caller with the
    public suffix list say more.
    """
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if identifier == from_domain:
        return True
    if mode == "strict":
        return False
    if organizational is not None:
        return organizational == identifier or identifier.endswith("." + organizational)
    return identifier.endswith("." + from_domain)


@dataclass(frozen=True)
class Alignment:
    """DMARC's verdict on one From domain and route, offline: aligned DKIM, aligned SPF, and why not."""

    dkim: bool
    spf: bool
    why: str

    @property
    def passes(self) -> bool:
        return self.dkim or self.spf


def alignment(auth: RouteAuth, *, adkim: str = "relaxed", aspf: str = "relaxed") -> Alignment:
    """Would DMARC pass for ``auth`` (RFC 7489 3.1, 4.2): a signature whose ``d=`` aligns, or a return path
    that aligns and whose SPF passes the sending IPs.

    SPF through SES passes only with a custom MAIL FROM: SES's default one is under amazonses.com.
    Through PowerMTA the return path's SPF lists exactly the route's IPs, so it passes for all of them.
    """
    dkim = auth.dkim_domain is not None and is_aligned(auth.dkim_domain, auth.from_domain, adkim)
    spf_passes = (auth.route.transport == "pmta" and bool(auth.spf_ips)) or (
        auth.route.transport == "ses" and auth.return_path != SES_MAIL_FROM_DEFAULT)
    spf = spf_passes and is_aligned(auth.return_path, auth.from_domain, aspf)
    reasons = []
    if not dkim:
        reasons.append("no DKIM signature for it" if auth.dkim_domain is None else
                       f"DKIM d={auth.dkim_domain} does not align ({adkim})")
    if not spf:
        reasons.append(f"return path {auth.return_path} does not align ({aspf})" if spf_passes else
                       f"SPF cannot pass for return path {auth.return_path}")
    return Alignment(dkim, spf, "; ".join(reasons))
