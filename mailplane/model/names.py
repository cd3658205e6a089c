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


def pool_name(tenant: str) -> str:
    """One virtual-MTA pool per tenant; the sender names it in ``X-Virtual-MTA``."""
    return f"{tenant}-pool"


def dkim_key_file(selector: str, domain: str) -> str:
    """File name of a BYODKIM private key on an MTA host (in the role's key folder)."""
    return f"{selector}.{domain}.pem"
