"""A PowerMTA stand-in for the tests: the hand-over (injection by SMTP), the queue and accounting.

:class:`PmtaStub` is a real SMTP server on loopback (aiosmtpd, in a thread, like ``smtp_sink.py``)
that loads a PowerMTA config **text** (as ``mailplane.mta.render.render_host`` writes it) and
answers as PowerMTA does when mail is handed to it::

    with PmtaStub(render_host(fleet, "mta1", day), acct_file=tmp_path / "acct.csv", clock=clock) as pmta:
        ...send to pmta.host, pmta.port...
        pmta.queued[0].vmta, pmta.refused, pmta.reload(other_text)
        pmta.deliver(lambda rcpt: ("bounce", "5.1.1 (bad destination mailbox address)",
                                   "smtp;550 5.1.1 user unknown", "bad-mailbox"))

``smtp_sink.py`` plays the remote receiving server; this plays PowerMTA itself.

What it models (PowerMTA v5.0 User's Guide, "g"; and docs/powermta.md):

* **The config** it reads, tolerantly, is only what the hand-over needs: ``<virtual-mta NAME>``
  (its ``smtp-source-host ADDR HOSTNAME`` and ``domain-key SELECTOR,DOMAIN,FILE`` lines),
  ``<virtual-mta-pool NAME>`` and its ``virtual-mta`` members, each ``<source ADDR>``'s
  ``always-allow-relaying``, ``process-x-virtual-mta`` and ``default-virtual-mta``, and the top-level
  ``relay-domain`` lines.  Everything else is skipped.  Names compare without case.
  :meth:`PmtaStub.reload` swaps the config at any time, thread-safe, as ``pmta reload`` does; a
  text whose pool members or default VMTAs name no VMTA is refused (:class:`ConfigError`) and the
  old config stays live, as a failing ``pmta reload`` leaves it (docs/powermta.md).
* **Sources** (g 3.3.7): the connection's peer address picks the most specific ``<source>``
  network holding it (an exact address before ``0/0``); none matching means the defaults, no
  relaying and no X-Virtual-MTA processing.
* **Relaying** (g 3.3.1.42): a recipient whose domain is not a ``relay-domain`` (exact match) from a
  source without ``always-allow-relaying yes`` is refused at RCPT with 5xx (``relay-debug``,
  which would make it 4xx, is not modelled).
* **VMTA choice** (g 3.3.7): with ``process-x-virtual-mta yes`` the ``X-Virtual-MTA`` header names a
  VMTA or a pool (a pool's members are taken in turn); a name the config lacks is refused after
  the final dot with 5xx (``reject-invalid-virtual-mta`` is true by default); the header is removed
  from the queued message (``retain-x-virtual-mta`` is false by default).  Without the header, or
  from a source that does not process it (where the header is left as it is), the source's
  ``default-virtual-mta`` is used, or none.
* **Queueing**: accepted mail (250 after the dot) is queued, never delivered by itself;
  :meth:`PmtaStub.deliver` later applies a verdict to each queued recipient and appends accounting
  records (g 3.3.11) to the accounting file: RFC 4180 CSV with a header row, written once when
  the file is created; ``d`` delivered, ``b`` a bounce PowerMTA made from the remote server's
  refusal, and for a remote bounce first the ``d`` of the hand-over, then the ``rb`` of the DSN
  that came back (with no ``vmta`` nor ``dlvSourceIp``: ``orig``, the return path, names the IP).
  Column names are those ``mailplane.sender.core.accounting`` reads (FIELD_NAMES).

**The reply texts are the stand-in's own**: PowerMTA's texts are not documented, only its
behaviour, so tests should hold the codes (and the enhanced status codes), not the words.

Left out: the rest of the grammar and every delivery behaviour (no outbound SMTP, rates,
backoff, DKIM signing, retries, ``<domain>`` settings such as ``mailplane-unrouted``'s
``type discard``), ``smtp-service no`` (521), SMTP AUTH and ``<smtp-user>``, pattern-lists, the
bounce and feedback-loop processors (mail to a relay domain is queued like any other), ``t``,
``tq`` and ``f`` records, ``relay-address``, wildcard relay domains, and ``include``.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import ipaddress
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from aiosmtpd.smtp import SMTP, Envelope, Session
from loop_server import LoopServer

VMTA_HEADER = "X-Virtual-MTA"

# The stand-in's reply texts (PowerMTA's own are not documented): codes as the guide's behaviour.
RELAYING_DENIED = "550 5.7.1 relaying denied"
INVALID_VMTA = "550 5.5.0 invalid virtual MTA {name}"
"""5.5.0, as docs/powermta.md says PowerMTA refuses a message naming a missing VMTA at injection."""
QUEUED = "250 2.6.0 message received, queued as {id}"

ACCT_FIELDS = ("type", "timeLogged", "timeQueued", "orig", "rcpt", "dsnAction", "dsnStatus", "dsnDiag",
               "bounceCat", "dlvSourceIp", "vmta", "vmtaPool")
"""The accounting columns written: the union of the record types' fields (the guide's names)."""

DELIVERED_STATUS, DELIVERED_DIAG = "2.0.0 (success)", "smtp;250 2.0.0 OK"
"""The ``d`` record written before a remote bounce's ``rb`` (the remote server first accepted)."""

Outcome = Literal["delivered", "bounce", "remote-bounce"]
Verdict = Callable[[str], tuple[Outcome, str, str, str]]
"""recipient -> (outcome, dsnStatus, dsnDiag, bounceCat)."""


class ConfigError(ValueError):
    """A config text PowerMTA would not load: the live config is kept."""


# --- the config --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vmta:
    name: str
    source_ip: str | None = None
    """``smtp-source-host``'s address: where the VMTA sends from (None: the host's own addresses)."""
    source_host: str | None = None
    domain_keys: tuple[tuple[str, str, str], ...] = ()
    """(selector, domain, key file) of each ``domain-key`` line."""


@dataclass(frozen=True)
class Source:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    always_allow_relaying: bool = False
    process_x_virtual_mta: bool = False
    default_virtual_mta: str | None = None


DEFAULT_SOURCE = Source(ipaddress.ip_network("0.0.0.0/0"))
"""What applies when no ``<source>`` holds the peer: PowerMTA's defaults."""


@dataclass(frozen=True)
class PmtaConfig:
    vmtas: dict[str, Vmta] = field(default_factory=dict)
    """By lower-cased name."""
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Lower-cased pool name to its members' lower-cased names."""
    sources: tuple[Source, ...] = ()
    relay_domains: frozenset[str] = frozenset()

    def source_for(self, peer: str) -> Source:
        """The most specific ``<source>`` network holding ``peer``."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return DEFAULT_SOURCE
        holding = [s for s in self.sources if s.network.version == address.version and address in s.network]
        return max(holding, key=lambda s: s.network.prefixlen, default=DEFAULT_SOURCE)


_TAG_RE = re.compile(r"<(/?)\s*([^\s<>/]+)\s*([^<>]*?)\s*>")


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``127.0.0.1``, ``::1``, ``10.0.0.0/8`` and PowerMTA's short IPv4 forms ``0/0``, ``10/8``."""
    address, slash, bits = text.partition("/")
    if ":" not in address and address.count(".") < 3:
        address += ".0" * (3 - address.count("."))
    return ipaddress.ip_network(address + slash + bits, strict=False)


def _yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true")


def _read_block(kind: str, arg: str, block: dict[str, list[str]], vmtas: dict[str, Vmta],
                pools: dict[str, list[str]], sources: list[Source]) -> None:
    """Record one closed top-level block (a VMTA, a pool or a source) from its directives."""
    if kind == "virtual-mta":
        host = (block.get("smtp-source-host") or [""])[0].split()
        keys = [[p.strip() for p in line.split(",")] for line in block.get("domain-key", [])]
        vmtas[arg.lower()] = Vmta(arg, host[0] if host else None, host[1] if len(host) > 1 else None,
                                  tuple((k[0], k[1], k[2]) for k in keys if len(k) == 3))
    elif kind == "virtual-mta-pool":
        pools[arg.lower()] = [m.split()[0].lower() for m in block.get("virtual-mta", []) if m.split()]
    elif kind == "source":
        try:
            network = _network(arg)
        except ValueError:
            return  # a source this stand-in cannot read is skipped (it is not lint)

        def last(key: str) -> str | None:
            return block[key][-1] if block.get(key) else None

        sources.append(Source(network, _yes(last("always-allow-relaying") or "no"),
                              _yes(last("process-x-virtual-mta") or "no"), last("default-virtual-mta")))


def parse_config(text: str) -> PmtaConfig:
    """Read what the stand-in needs from a config text; raise :class:`ConfigError` on a dangling name."""
    vmtas: dict[str, Vmta] = {}
    pools: dict[str, list[str]] = {}
    sources: list[Source] = []
    relay: set[str] = set()
    stack: list[tuple[str, str]] = []  # open blocks: (kind, argument)
    block: dict[str, list[str]] = {}   # directives of the open top-level block we read

    def finish(kind: str, arg: str) -> None:
        _read_block(kind, arg, block, vmtas, pools, sources)

    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if tag := _TAG_RE.fullmatch(line):
            closing, kind, arg = tag.group(1), tag.group(2).lower(), tag.group(3)
            if not closing:
                stack.append((kind, arg))
                if len(stack) == 1:
                    block.clear()
            elif any(k == kind for k, _ in stack):  # a stray closing tag is ignored
                while stack:
                    open_kind, open_arg = stack.pop()
                    if not stack:
                        finish(open_kind, open_arg)
                    if open_kind == kind:
                        break
            continue
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip()
        if not stack:
            if key == "relay-domain" and value:
                relay.add(value.lower())
        elif len(stack) == 1:  # directives of nested blocks (<domain> in a VMTA) are not ours
            block.setdefault(key, []).append(value)
    if stack:  # a block left open at the end: read what it has
        finish(*stack[0])

    problems = [f"pool {name}: no virtual MTA {member}" for name, members in pools.items()
                for member in members if member not in vmtas]
    problems += [f"source {s.network}: default-virtual-mta {s.default_virtual_mta} is not a virtual MTA"
                 for s in sources if s.default_virtual_mta and s.default_virtual_mta.lower() not in vmtas]
    if problems:
        raise ConfigError("; ".join(problems))
    return PmtaConfig(vmtas, {name: tuple(members) for name, members in pools.items()}, tuple(sources),
                      frozenset(relay))


# --- messages ----------------------------------------------------------------------------------


def _header_fields(data: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its continuation lines and line endings) and the rest."""
    lines = data.splitlines(keepends=True)
    fields: list[bytes] = []
    for number, line in enumerate(lines):
        if line in (b"\r\n", b"\n"):
            return fields, b"".join(lines[number:])
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, b""


def _field_name(raw: bytes) -> str:
    return raw.split(b":", 1)[0].strip().decode("ascii", "replace").lower()


def take_header(data: bytes, name: str) -> tuple[str | None, bytes]:
    """The first ``name`` field's unfolded value (None if absent) and the message without any ``name``."""
    fields, rest = _header_fields(data)
    found = [f for f in fields if _field_name(f) == name.lower()]
    if not found:
        return None, data
    value = found[0].split(b":", 1)[1] if b":" in found[0] else b""
    kept = b"".join(f for f in fields if _field_name(f) != name.lower())
    return " ".join(value.decode("utf-8", "replace").split()), kept + rest


@dataclass(frozen=True)
class Queued:
    """One message PowerMTA accepted and queued."""

    id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    vmta: str | None
    """The VMTA it went to (a pool's member), as the config spells it; None: no VMTA at all."""
    source_ip: str | None
    """The address that VMTA sends from (``smtp-source-host``)."""
    data: bytes
    """As queued: ``X-Virtual-MTA`` removed when it was processed."""
    peer: str
    time_queued: float
    pool: str | None = None


class Refusal(NamedTuple):
    stage: str
    """``rcpt`` or ``data`` (after the final dot)."""
    code: int
    text: str
    """The reply after the code, e.g. ``5.7.1 relaying denied``."""
    subject: str
    """The recipient (rcpt) or the VMTA name (data)."""


# --- the server --------------------------------------------------------------------------------


class _Handler:
    def __init__(self, stub: PmtaStub) -> None:
        self.stub = stub

    @staticmethod
    def _peer(session: Session) -> str:
        peer = session.peer
        return str(peer[0]) if isinstance(peer, tuple) else str(peer)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        config = self.stub.config
        source = config.source_for(self._peer(session))
        domain = address.rpartition("@")[2].strip().rstrip(".").lower()
        if not source.always_allow_relaying and domain not in config.relay_domains:
            return self.stub._refuse("rcpt", RELAYING_DENIED, address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 recipient ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.stub._accept(self._peer(session), str(envelope.mail_from or ""), list(envelope.rcpt_tos),
                                 envelope.original_content or b"")


class PmtaStub(LoopServer):
    """PowerMTA's listener on 127.0.0.1 (``port=0``: a free port), in its own thread and event loop."""

    name = "PowerMTA stub"

    def __init__(self, config_text: str, *, acct_file: str | os.PathLike[str] | None = None,
                 clock: Callable[[], float] = time.time, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._config = parse_config(config_text)
        self.acct_file = Path(acct_file) if acct_file is not None else None
        self.clock = clock
        self.queued: list[Queued] = []
        """Accepted and not yet delivered."""
        self.refused: list[Refusal] = []
        self.reloads = 0
        """Successful :meth:`reload` calls."""
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._turns: dict[str, Iterator[str]] = {}

    # -- config --

    @property
    def config(self) -> PmtaConfig:
        with self._lock:
            return self._config

    def reload(self, config_text: str) -> None:
        """``pmta reload``: the new text is live for the next command; a bad one raises and changes nothing."""
        config = parse_config(config_text)
        with self._lock:
            self._config, self._turns = config, {}
            self.reloads += 1

    # -- the SMTP side (called on the server's loop) --

    def _refuse(self, stage: str, reply: str, subject: str) -> str:
        code, _, text = reply.partition(" ")
        with self._lock:
            self.refused.append(Refusal(stage, int(code), text, subject))
        return reply

    def _accept(self, peer: str, mail_from: str, rcpt_tos: list[str], data: bytes) -> str:
        with self._lock:
            config = self._config
            source = config.source_for(peer)
            name = source.default_virtual_mta
            if source.process_x_virtual_mta:
                named, data = take_header(data, VMTA_HEADER)
                name = named if named is not None else name
            pool: str | None = None
            vmta: Vmta | None = None
            if name is not None:
                key = name.lower()
                if key in config.pools:
                    pool = name
                    turns = self._turns.setdefault(key, itertools.cycle(config.pools[key]))
                    key = next(turns)
                vmta = config.vmtas.get(key)
                if vmta is None:
                    reply = INVALID_VMTA.format(name=name)
                    code, _, text = reply.partition(" ")
                    self.refused.append(Refusal("data", int(code), text, name))
                    return reply
            message = Queued(next(self._ids), mail_from, tuple(rcpt_tos), vmta.name if vmta else None,
                             vmta.source_ip if vmta else None, data, peer, self.clock(), pool)
            self.queued.append(message)
            return QUEUED.format(id=message.id)

    # -- later: delivery and accounting --

    def _stamp(self, epoch: float) -> str:
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S%z")

    def deliver(self, verdict: Verdict) -> list[dict[str, str]]:
        """Take every queued message, decide each recipient with ``verdict`` and append the accounting
        records (returned too, in the order written)."""
        if self.acct_file is None:
            raise RuntimeError("PmtaStub was started without acct_file")
        with self._lock:
            messages, self.queued = self.queued, []
        records: list[dict[str, str]] = []
        for message in messages:
            queued = self._stamp(message.time_queued)
            sent = {"timeQueued": queued, "orig": message.mail_from, "dlvSourceIp": message.source_ip or "",
                    "vmta": message.vmta or "", "vmtaPool": message.pool or ""}
            for rcpt in message.rcpt_tos:
                outcome, status, diag, category = verdict(rcpt)
                if outcome == "delivered":
                    records.append({"type": "d", "timeLogged": self._stamp(self.clock()), **sent, "rcpt": rcpt,
                                    "dsnAction": "relayed", "dsnStatus": status, "dsnDiag": diag,
                                    "bounceCat": category})
                elif outcome == "bounce":
                    records.append({"type": "b", "timeLogged": self._stamp(self.clock()), **sent, "rcpt": rcpt,
                                    "dsnAction": "failed", "dsnStatus": status, "dsnDiag": diag,
                                    "bounceCat": category})
                elif outcome == "remote-bounce":
                    records.append({"type": "d", "timeLogged": self._stamp(self.clock()), **sent, "rcpt": rcpt,
                                    "dsnAction": "relayed", "dsnStatus": DELIVERED_STATUS,
                                    "dsnDiag": DELIVERED_DIAG, "bounceCat": ""})
                    records.append({"type": "rb", "timeLogged": self._stamp(self.clock()), "timeQueued": queued,
                                    "orig": message.mail_from, "rcpt": rcpt, "dsnAction": "failed",
                                    "dsnStatus": status, "dsnDiag": diag, "bounceCat": category,
                                    "dlvSourceIp": "", "vmta": "", "vmtaPool": ""})
                else:
                    raise ValueError(f"verdict for {rcpt}: unknown outcome {outcome!r}")
        self._write(records)
        return records

    def _write(self, records: list[dict[str, str]]) -> None:
        assert self.acct_file is not None
        with self._lock, self.acct_file.open("a", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, ACCT_FIELDS, lineterminator="\r\n")  # RFC 4180: CRLF
            if out.tell() == 0:
                writer.writeheader()
            writer.writerows(records)

    # -- the protocol (start and stop: LoopServer) --

    def protocol(self) -> Callable[[], asyncio.BaseProtocol]:
        handler = _Handler(self)
        return lambda: SMTP(handler, hostname="pmta.test", enable_SMTPUTF8=True, decode_data=False,
                         data_size_limit=None)
