"""A real authoritative DNS server for the ``dns check`` tests: Knot DNS (Debian's ``knot``) on loopback.

Knot serves plain zone files as they are: a CNAME to any name (dnsmasq only serves CNAMEs to
names it knows itself, and Easy DKIM's targets are under amazonses.com), TXT records of several
strings, MX, PTR, A and AAAA, and NXDOMAIN for names it does not have (what SPF's void-lookup
limit counts).  One root zone holds every name, so no delegation is needed, and knotd runs as an
ordinary process on a free port with its files in a temporary folder.

The good zone is built from the example stacks with :mod:`mailplane.model.records`, the module
the Pulumi program publishes from (DKIM, PowerMTA's own DKIM keys of Easy DKIM domains, DMARC,
SPF, MAIL FROM and the PowerMTA return paths), plus the PTR and A/AAAA records of every IP and the
SPF records of include targets (``amazonses.com``, ``spf.example.org``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailplane.dns.checks import external_report_hosts, is_spf
from mailplane.dns.checks import public_pem_of as public_pem
from mailplane.model import records as rec
from mailplane.model.stack import Fleet

KNOTD_PACKAGE = "knot"
INCLUDE_TARGET_SPF = {"amazonses.com": "v=spf1 ip4:199.255.192.0/22 ip4:199.127.232.0/22 ip4:54.240.0.0/18 -all"}
"""SPF of include targets the fleet names; others get a one-network record."""


def easy_dkim_tokens(domain: str) -> list[str]:
    """Three 32-character tokens, as SES makes them, but the same on every run."""
    return [hashlib.sha256(f"{domain}/{i}".encode()).hexdigest()[:32] for i in range(rec.EASY_DKIM_TOKENS)]


def rsa_private_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")




def stack_outputs(fleet: Fleet, keys: dict[str, str]) -> dict[str, object]:
    """The part of ``pulumi stack output --json --show-secrets`` the check reads, as the program shapes it."""
    return {
        "region": fleet.settings.ses.region,
        "domains": {d.name: {"tenant": t.name, "dkim_mode": d.dkim.mode,
                             "dkim_selectors": [d.dkim.selector] if d.dkim.mode == "byo" else
                             easy_dkim_tokens(d.name)}
                    for t in fleet.tenants for d in t.domains},
        "dkim_private_keys": {d.name: keys[d.name] for t in fleet.tenants for d in t.domains
                              if d.dkim.mode == "byo" or rec.has_powermta_key(t, d)},
    }


class Zone:
    """Records by (name, type), values in presentation form (TXT as plain text, names without the final dot)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}

    def add(self, name: str, rtype: str, value: str) -> None:
        values = self.records.setdefault((name.lower(), rtype), [])
        if value not in values:
            values.append(value)

    def set(self, name: str, rtype: str, *values: str) -> None:
        """Replace the records of a type at a name (none: remove them)."""
        self.records.pop((name.lower(), rtype), None)
        for value in values:
            self.add(name, rtype, value)

    def get(self, name: str, rtype: str) -> list[str]:
        return list(self.records.get((name.lower(), rtype), []))

    def copy(self) -> Zone:
        zone = Zone()
        zone.records = {key: list(values) for key, values in self.records.items()}
        return zone

    def add_record(self, record: rec.Record) -> None:
        for value in record.values:
            self.add(record.name, record.type, value)

    def text(self) -> str:
        lines = ["$TTL 300", ". SOA ns.test. hostmaster.test. 1 3600 600 86400 300", ". NS ns.test.",
                 "ns.test. A 127.0.0.1"]
        for (name, rtype), values in sorted(self.records.items()):
            lines += [f"{_name(name)} {rtype} {_rdata(rtype, value)}" for value in values]
        return "\n".join(lines) + "\n"


NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def _name(name: str) -> str:
    """A name in zone-file form, absolute; any octet other than letters, digits, ``-``, ``_`` and ``*`` escaped
    (the RFC 7208 test suite has names with ``:``, ``/``, ``%`` and spaces)."""
    labels = name.rstrip(".").split(".") if name.rstrip(".") else []
    return "".join("".join(chr(b) if b in NAME_CHARS else f"\\{b:03d}" for b in label.encode("utf-8")) + "."
                   for label in labels) or "."


def _string(text: str) -> str:
    """A TXT character-string, quoted, with quotes, backslashes, control and non-ASCII octets escaped."""
    out = []
    for b in text.encode("utf-8"):
        out.append(f"\\{b:03d}" if b < 0x20 or b > 0x7E or b in b'"\\' else chr(b))
    return '"' + "".join(out) + '"'


def _rdata(rtype: str, value: str) -> str:
    if rtype == "TXT":
        return " ".join(_string(s) for s in rec.split_txt(value))
    if rtype in ("CNAME", "PTR"):
        return _name(value)
    if rtype == "MX":
        preference, _, host = value.partition(" ")
        return f"{preference} {_name(host.strip())}"
    return value


def good_zone(fleets: Iterable[Fleet], outputs: dict[str, dict[str, object]]) -> Zone:
    """Every record the fleets declare, as the Pulumi program (or a human) would publish it."""
    zone = Zone()
    for fleet in fleets:
        ttl, region = fleet.settings.dns.ttl, fleet.settings.ses.region
        for tenant in fleet.tenants:
            for domain in tenant.domains:
                out = outputs[fleet.stack]
                if domain.dkim.mode == "byo":
                    pem = out["dkim_private_keys"][domain.name]  # type: ignore[index]
                    zone.add_record(rec.byo_dkim_record(domain, public_pem(pem), ttl))
                else:
                    tokens = out["domains"][domain.name]["dkim_selectors"]  # type: ignore[index]
                    for record in rec.easy_dkim_records(domain.name, tokens, ttl):
                        zone.add_record(record)
                if rec.has_powermta_key(tenant, domain):
                    pem = out["dkim_private_keys"][domain.name]  # type: ignore[index]
                    zone.add_record(rec.powermta_dkim_record(domain, public_pem(pem), ttl))
                for record in rec.static_records(tenant, domain, region, ttl):
                    zone.add_record(record)
                for host in external_report_hosts(domain):
                    zone.add(rec.dmarc_report_auth_name(domain.name, host), "TXT", rec.DMARC_REPORT_AUTH_VALUE)
            for ip in tenant.ips:
                address = ipaddress.ip_address(ip.address)
                zone.add(address.reverse_pointer, "PTR", ip.hostname)
                zone.add(ip.hostname, "AAAA" if address.version == 6 else "A", str(address))
    add_include_targets(zone)
    return zone


def add_include_targets(zone: Zone) -> None:
    """An SPF record at every ``include:`` target the zone's SPF records name and the zone lacks."""
    for (_, rtype), values in list(zone.records.items()):
        for value in values if rtype == "TXT" else []:
            for term in value.split()[1:] if is_spf(value) else []:
                target = term.lower().removeprefix("+")
                if target.startswith("include:") and not zone.get(target[8:], "TXT"):
                    zone.add(target[8:], "TXT", INCLUDE_TARGET_SPF.get(target[8:], "v=spf1 ip4:192.0.2.0/24 -all"))


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (Knot listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


class KnotServer:
    """``knotd`` serving one root zone from ``workdir`` on a loopback port; a context manager."""

    def __init__(self, zone: Zone, workdir: Path) -> None:
        self.zone = zone
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: float = 10.0) -> KnotServer:
        self.launch()
        self.wait_ready_or_relaunch(time.monotonic() + wait)
        return self

    PORT_CLASH = "address already in use"
    """knotd's complaint when another process (a parallel test worker) took the free port first."""

    def wait_ready_or_relaunch(self, deadline: float, attempts: int = 3) -> None:
        """:meth:`wait_ready`, launching again on another port when the one chosen was taken meanwhile."""
        for attempt in range(attempts):
            try:
                self.wait_ready(deadline)
                return
            except RuntimeError as err:
                if self.PORT_CLASH not in str(err) or attempt == attempts - 1:
                    raise
                self.launch()

    def launch(self) -> None:
        """Write the zone and config and start knotd; :meth:`wait_ready` waits until it answers."""
        knotd = shutil.which("knotd") or shutil.which("knotd", path="/usr/sbin:/usr/local/sbin")
        if knotd is None:
            raise RuntimeError(f"knotd not found: install Debian's {KNOTD_PACKAGE!r} package "
                               f"(apt-get install {KNOTD_PACKAGE}); `make test` installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.workdir / "root.zone").write_text(self.zone.text(), encoding="utf-8")
        (self.workdir / "knot.conf").write_text(
            "server:\n"
            f'    rundir: "{self.workdir}"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "log:\n"
            "  - target: stderr\n"
            "    any: notice\n"
            "database:\n"
            f'    storage: "{self.workdir}"\n'
            "zone:\n"
            '  - domain: "."\n'
            f'    storage: "{self.workdir}"\n'
            '    file: "root.zone"\n'
            "    journal-content: none\n"
            "    zonefile-sync: -1\n", encoding="utf-8")
        with (self.workdir / "knotd.log").open("wb") as log:
            self.process = subprocess.Popen([knotd, "-c", str(self.workdir / "knot.conf")], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"knotd did not serve the zone on {self.address} (exit status or timeout):\n"
                           + (self.workdir / "knotd.log").read_text(errors="replace"))

    def _answers(self) -> bool:
        query = dns.message.make_query(".", "SOA")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
        except (dns.exception.DNSException, OSError):
            return False
        return bool(response.answer)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @staticmethod
    def start_all(servers: Iterable[KnotServer], wait: float = 10.0) -> None:
        """Start several servers at once: each takes a fraction of a second, mostly waiting."""
        servers = list(servers)
        try:
            for server in servers:
                server.launch()
            deadline = time.monotonic() + wait
            for server in servers:
                server.wait_ready_or_relaunch(deadline)
        except RuntimeError:
            for server in servers:
                server.stop()
            raise

    def __enter__(self) -> KnotServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DnsTestData:
    """The example stacks, Easy DKIM tokens and real BYODKIM keys, their outputs files, and the good zone."""

    def __init__(self, stacks: Path, workdir: Path) -> None:
        from mailplane.model.loader import load_stack

        self.fleets = {name: load_stack(stacks / name) for name in ("prod", "dev")}
        self.keys = {d.name: rsa_private_pem() for f in self.fleets.values() for t in f.tenants for d in t.domains
                     if d.dkim.mode == "byo" or rec.has_powermta_key(t, d)}
        """The key PowerMTA signs each domain with (the BYODKIM key, or an Easy DKIM domain's own), by domain."""
        self.other_key = rsa_private_pem()
        """A valid key that is not the stack's: for a published key that does not match."""
        self.outputs = {name: stack_outputs(fleet, self.keys) for name, fleet in self.fleets.items()}
        self.outputs_files: dict[str, Path] = {}
        for name, outputs in self.outputs.items():
            path = workdir / f"{name}-outputs.json"
            path.write_text(json.dumps(outputs, indent=2), encoding="utf-8")
            self.outputs_files[name] = path
        self.zone = good_zone(self.fleets.values(), self.outputs)
