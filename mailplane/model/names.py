"""Names derived from the fleet that more than one consumer must agree on.

PowerMTA's config, the sender service's ``X-Virtual-MTA`` header and the MailWizz delivery
servers all name the same virtual MTAs and pools; computing them anywhere else would let two
consumers drift apart.
"""

from __future__ import annotations

import ipaddress


def vmta_name(tenant: str, address: str) -> str:
    """``<tenant>-<address with . and : as ->``: one virtual MTA per dedicated IP."""
    text = str(ipaddress.ip_address(address))
    return f"{tenant}-{text.replace('.', '-').replace(':', '-')}"


def pool_name(tenant: str, stream: str) -> str:
    """One virtual-MTA pool per (tenant, stream) route: marketing mail never leaves from a
    transactional IP.  Ends in ``-pool``, so it can never be a VMTA's name (those end in an address)."""
    return f"{tenant}-{stream}-pool"


def dkim_key_file(selector: str, domain: str) -> str:
    """File name of a BYODKIM private key on an MTA host (in the role's key folder)."""
    return f"{selector}.{domain}.pem"
