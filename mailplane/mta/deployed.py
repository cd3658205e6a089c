"""What PowerMTA runs on an MTA host: the record ``roles/powermta`` writes once a reload succeeded.

The sender names a virtual MTA in ``X-Virtual-MTA`` and PowerMTA refuses a name its running config
does not hold (``reject-invalid-virtual-mta`` is on by default); for a From domain its VMTA has no
``domain-key`` for, PowerMTA sends the mail *unsigned*, without an error.  What the fleet says
today is not always what a host runs: Ansible renders and reloads once a day, a run may fail and
put the previous config back, a host may be unreachable.  So the role records, after a reload
succeeded (and only then), the VMTAs and DKIM domains of the config PowerMTA now runs, and the
sender on that host reads that record before naming a VMTA (:mod:`mailplane.sender.delivery.deployed`).

The record is a small JSON document, the same whoever writes it (the Ansible role through the
inventory's ``mailplane_deployed`` host variable, ``mailplane render`` beside the configs)::

    {"format": 1, "stack": "prod", "host": "mta1",
     "vmtas": {"sos-expat-203-0-113-21": {"address": "203.0.113.21", "dkim_domains": ["mail1.example.com"]}}}

It holds no secret (names only), so it is world-readable on the host.  Pure: building and parsing;
reading the file is the sender's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailplane.model.names import dkim_key_covers

FORMAT = 1
"""Version of the record's shape; a reader refuses another (a newer role than its sender)."""
MAX_BYTES = 16 * 1024 * 1024
"""A record larger than this is not one (thousands of VMTAs take well under a megabyte)."""


class DeployedRecordError(ValueError):
    """The record cannot be read: what is wrong, for the log line and the quota API."""


@dataclass(frozen=True)
class Deployed:
    """The VMTAs of the config PowerMTA runs on ``host``, each with the domains it has a DKIM key for."""

    stack: str
    host: str
    vmtas: Mapping[str, frozenset[str]]

    def has(self, vmta: str) -> bool:
        return vmta in self.vmtas

    def signs(self, vmta: str, domain: str) -> bool:
        """Whether mail From ``domain`` leaves ``vmta`` signed (a parent domain's key signs a subdomain too)."""
        return dkim_key_covers(self.vmtas.get(vmta, ()), domain)


def record(pmta: Mapping[str, Any]) -> dict[str, Any]:
    """The record of the config rendered from ``pmta`` (the template's variable,
    :meth:`~mailplane.mta.view.HostView.to_vars`): what the role writes once PowerMTA reloaded it."""
    return {
        "format": FORMAT,
        "stack": pmta["stack"],
        "host": pmta["host"],
        "vmtas": {v["name"]: {"address": v["address"], "dkim_domains": sorted({k["domain"] for k in v["dkim"]})}
                  for v in pmta["vmtas"]},
    }


def dumps(data: Mapping[str, Any]) -> str:
    """The record as a file: sorted keys, so the same config gives the same bytes."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def parse(text: str | bytes) -> Deployed:
    """A record read back; :class:`DeployedRecordError` says what is wrong with one that is not."""
    if len(text) > MAX_BYTES:
        raise DeployedRecordError(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise DeployedRecordError(f"not JSON ({err})") from None
    if not isinstance(data, dict):
        raise DeployedRecordError("not a JSON object")
    if data.get("format") != FORMAT:
        raise DeployedRecordError(f"format {data.get('format')!r}: this mailplane reads format {FORMAT}")
    stack, host, vmtas = data.get("stack"), data.get("host"), data.get("vmtas")
    if not isinstance(stack, str) or not isinstance(host, str):
        raise DeployedRecordError("stack and host must be text")
    if not isinstance(vmtas, dict):
        raise DeployedRecordError("vmtas must be an object of VMTA names")
    found: dict[str, frozenset[str]] = {}
    for name, entry in vmtas.items():
        domains = entry.get("dkim_domains") if isinstance(entry, dict) else None
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise DeployedRecordError(f"vmtas.{name}.dkim_domains must be a list of domain names")
        found[name] = frozenset(d.lower().rstrip(".") for d in domains)
    return Deployed(stack, host, found)
