"""Names derived from the fleet that more than one consumer must agree on.

The Pulumi program creates the SNS topics and subscribes the webhook path that the sender service
allow-lists and serves; PowerMTA's config, the sender's ``X-Virtual-MTA`` header and the MailWizz
delivery servers name the same virtual MTAs and pools; the DNS records, PowerMTA's ``domain-key``
lines and ``mailplane dns check`` name the same DKIM selectors and return paths; the sender writes
the VERP bounce addresses its accounting reader decodes.  Each name is computed here and nowhere
else, so no two consumers can drift apart.  Pure: no Pulumi, no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from mailplane.model.addresses import canonical_ip
from mailplane.model.tenant import Domain

# --- SES events: the Pulumi program and the sender service ---------------------------------------

WEBHOOK_PATH = "/v1/webhooks/ses"
"""Where the sender service takes SNS deliveries; Pulumi subscribes ``<public_url>`` + this."""


def topic_name(tenant: str) -> str:
    """The tenant's SES event topic.  Fixed, so the sender can allow-list the fleet's topic ARNs
    before the topics exist."""
    return f"mailplane-{tenant}-ses-events"


# --- PowerMTA routing: the renderer, the sender and MailWizz -------------------------------------

STREAM_HEADER = "X-Mailplane-Stream"
"""The header an SMTP client picks the stream with (``transactional`` or ``marketing``): the sender's
listener reads and removes it, MailWizz's delivery servers add it."""

CAMPAIGN_HEADER = "X-Mailplane-Campaign"
"""The header an SMTP client names the message's campaign with (letters, digits, ``._:-``, at most 64):
a tenant's campaigns take turns in the sender's queue.  The listener reads and removes it."""

CAMPAIGN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
"""What a campaign name may be, through the API or :data:`CAMPAIGN_HEADER`."""

VMTA_HEADER = "X-Virtual-MTA"
"""The header that picks a virtual MTA or pool in PowerMTA (``process-x-virtual-mta yes``)."""


def vmta_name(tenant: str, address: str) -> str:
    """``<tenant>-<address with . and : as ->``: one virtual MTA per dedicated IP."""
    return f"{tenant}-{canonical_ip(address).replace('.', '-').replace(':', '-')}"


def pool_name(tenant: str, stream: str) -> str:
    """One virtual-MTA pool per (tenant, stream) route: marketing mail never leaves from a
    transactional IP.  Ends in ``-pool``, so it can never be a VMTA's name (those end in an address)."""
    return f"{tenant}-{stream}-pool"


# --- DKIM: DNS records, PowerMTA's keys and the DNS check ----------------------------------------

DEFAULT_POWERMTA_SELECTOR = "pmta1"
"""Selector of the key PowerMTA signs an Easy DKIM domain with, unless ``dkim.powermta_selector`` names one."""


def powermta_selector(domain: Domain) -> str:
    """The selector PowerMTA signs ``domain`` with: the BYODKIM one, or the Easy DKIM domain's own."""
    if domain.dkim.mode == "byo":
        assert domain.dkim.selector is not None  # the loader requires it
        return domain.dkim.selector
    return domain.dkim.powermta_selector or DEFAULT_POWERMTA_SELECTOR


def dkim_record_name(selector: str, domain: str) -> str:
    """Where a DKIM verifier looks up the key of ``selector`` (RFC 6376 3.6.2.1)."""
    return f"{selector}._domainkey.{domain}"


def dkim_key_file(selector: str, domain: str) -> str:
    """File name of a BYODKIM private key on an MTA host (in the role's key folder)."""
    return f"{selector}.{domain}.pem"


# --- Return paths: DNS records, PowerMTA, the sender and its bounce reader -----------------------

RETURN_PATH_LABEL = "rp"
"""Default ``return_path`` of a domain: ``rp.<domain>``."""
FEEDBACK_LOCAL_PART = "fbl"


def return_path_base(domain: Domain) -> str:
    return domain.return_path or f"{RETURN_PATH_LABEL}.{domain.name}"


def return_path_domain(domain: Domain, stream: str) -> str:
    """Return path domain of ``domain``'s mail on the PowerMTA route of ``stream``."""
    return f"{stream}.{return_path_base(domain)}"


def feedback_address(domain: Domain) -> str:
    """Where mailbox providers' feedback loops (Yahoo CFL, Microsoft JMRP) report complaints about
    ``domain``'s PowerMTA mail: ``fbl@<return_path>``, registered with each provider by hand; its MX
    names the tenant's PowerMTA IPs, where PowerMTA's feedback-loop processor reads the reports."""
    return f"{FEEDBACK_LOCAL_PART}@{return_path_base(domain)}"


def verp_address(tag: str | int, ip: str, return_path: str) -> str:
    """``mp-<tag>-<IP in hex>@<return path>``: a bounce to it names the message (``tag``: the sender's
    random token for it, so the address leaks no volume) and the IP it left from (a remote bounce
    record carries only this address), in at most 64 octets of local part."""
    packed = ipaddress.ip_address(ip).packed.hex()
    return f"mp-{tag}-{packed}@{return_path}"


def parse_verp(address: str) -> tuple[str, str] | None:
    """(tag, IP) of a :func:`verp_address`; None for any other address."""
    local, _, _ = address.strip().strip("<>").rpartition("@")
    parts = local.split("-")
    if (len(parts) != 3 or parts[0] != "mp" or not re.fullmatch(r"[0-9a-f]{1,20}", parts[1])
            or len(parts[2]) not in (8, 32)):
        return None
    try:
        return parts[1], str(ipaddress.ip_address(bytes.fromhex(parts[2])))
    except ValueError:
        return None


def dkim_key_covers(key_domains: Iterable[str], identity: str) -> bool:
    """Whether one of PowerMTA's ``domain-key`` domains signs mail whose signing identity is ``identity``:
    PowerMTA takes a key whose domain equals the identity's or is a parent of it (its guide's key choice)."""
    identity = identity.lower().rstrip(".")
    return any(identity == d or identity.endswith("." + d) for d in key_domains)
