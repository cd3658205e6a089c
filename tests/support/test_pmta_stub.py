"""The PowerMTA stand-in (tests/support/pmta_stub.py) against configs rendered from stacks/prod.

Hand-over by real SMTP (smtplib) on loopback: VMTA choice by X-Virtual-MTA, refusal of a VMTA the
config lacks and its acceptance after a reload, relaying by source, and accounting records that the
sender's own reader (mailplane.sender.core.accounting) turns into the right events.
"""

from __future__ import annotations

import csv
import datetime
import email
import email.policy
import re
import smtplib
import threading
from pathlib import Path

import pytest
from pmta_stub import ConfigError, Outcome, PmtaStub, parse_config

from mailplane.model.names import VMTA_HEADER, verp_address, vmta_name
from mailplane.model.stack import Fleet
from mailplane.mta.render import render_host
from mailplane.sender.core.accounting import VmtaIndex, parse_text, read_file

ROOT = Path(__file__).resolve().parents[2]
HOST = "mta1"
EARLY = datetime.date(2026, 11, 2)
"""mta1 on this day: only 203.0.113.21 (transactional) sends; 203.0.113.22 has no VMTA yet."""
LATER = datetime.date(2026, 11, 25)
"""mta1 on this day: 203.0.113.21 and 203.0.113.22 (marketing) both send."""
IP21, IP22 = "203.0.113.21", "203.0.113.22"
VMTA21, VMTA22 = vmta_name("sos-expat", IP21), vmta_name("sos-expat", IP22)
RELAY_DOMAIN = "marketing.rp.news.example.com"
"""A return path domain of mta1's routes: a relay-domain of its config."""
T0 = datetime.datetime(2026, 11, 25, 9, 30, tzinfo=datetime.UTC).timestamp()


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def early(fleet: Fleet) -> str:
    return render_host(fleet, HOST, EARLY)


@pytest.fixture(scope="module")
def later(fleet: Fleet) -> str:
    return render_host(fleet, HOST, LATER)


def message(vmta: str | None = None, subject: str = "hello") -> str:
    header = f"{VMTA_HEADER}: {vmta}\r\n" if vmta is not None else ""
    return (f"From: news@news.example.com\r\nTo: someone@example.org\r\n{header}Subject: {subject}\r\n"
            f"\r\nbody\r\n")


def send(pmta: PmtaStub, rcpts: list[str], vmta: str | None = None, *,
         mail_from: str = "bounces@marketing.rp.news.example.com") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(pmta.host, pmta.port, timeout=10) as client:
        return client.sendmail(mail_from, rcpts, message(vmta))


def without_source(text: str, address: str) -> str:
    variant = re.sub(rf"<source {re.escape(address)}>.*?</source>\n", "", text, flags=re.S)
    assert variant != text
    return variant


def no_relaying(text: str, address: str) -> str:
    variant = re.sub(rf"(<source {re.escape(address)}>.*?always-allow-relaying) yes", r"\1 no", text, flags=re.S)
    assert variant != text
    return variant


# --- the config it reads ------------------------------------------------------------------------


def test_reads_vmtas_pools_sources_and_relay_domains_of_a_rendered_config(later: str) -> None:
    config = parse_config(later)
    vmta = config.vmtas[VMTA22]
    assert (vmta.name, vmta.source_ip, vmta.source_host) == (VMTA22, IP22, "mta1-b.news.example.com")
    assert ("s2026a", "news.example.com", "/etc/pmta/dkim/s2026a.news.example.com.pem") in vmta.domain_keys
    assert config.vmtas["mailplane-unrouted"].source_ip is None
    assert config.pools == {"sos-expat-marketing-pool": (VMTA22,), "sos-expat-transactional-pool": (VMTA21,)}
    sender = config.source_for("127.0.0.1")
    assert (sender.always_allow_relaying, sender.process_x_virtual_mta, sender.default_virtual_mta) == (
        True, True, "mailplane-unrouted")
    anyone = config.source_for("192.0.2.200")  # no <source> of its own: 0/0
    assert (str(anyone.network), anyone.always_allow_relaying, anyone.process_x_virtual_mta) == (
        "0.0.0.0/0", False, False)
    assert str(config.source_for("2001:db8::7").network) == "::/0"
    assert RELAY_DOMAIN in config.relay_domains and "gmail.com" not in config.relay_domains


# --- VMTA choice and reload ---------------------------------------------------------------------


def test_a_named_vmta_or_pool_is_queued_with_its_source_ip_and_the_header_removed(later: str) -> None:
    with PmtaStub(later) as pmta:
        assert send(pmta, ["ann@gmail.com", "bob@example.org"], VMTA22) == {}
        send(pmta, ["carl@yahoo.com"], "sos-expat-transactional-pool")
        send(pmta, ["dan@example.net"])  # no header: the source's default-virtual-mta
    named, pooled, unnamed = pmta.queued
    assert (named.vmta, named.source_ip, named.pool, named.rcpt_tos) == (
        VMTA22, IP22, None, ("ann@gmail.com", "bob@example.org"))
    assert named.mail_from == "bounces@marketing.rp.news.example.com" and named.peer == "127.0.0.1"
    parsed = email.message_from_bytes(named.data, policy=email.policy.default)
    assert VMTA_HEADER not in parsed and parsed["Subject"] == "hello"
    assert (pooled.vmta, pooled.source_ip, pooled.pool) == (VMTA21, IP21, "sos-expat-transactional-pool")
    assert (unnamed.vmta, unnamed.source_ip) == ("mailplane-unrouted", None)
    assert pmta.refused == []


def test_a_vmta_the_config_lacks_is_refused_after_the_dot_until_a_reload_defines_it(early: str, later: str) -> None:
    with PmtaStub(early) as pmta:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(pmta, ["ann@gmail.com"], VMTA22)
        error = refused.value.smtp_error
        assert refused.value.smtp_code == 550 and isinstance(error, bytes) and error.startswith(b"5.")
        assert pmta.queued == []
        assert [(r.stage, r.code, r.subject) for r in pmta.refused] == [("data", 550, VMTA22)]
        assert "invalid virtual MTA" in pmta.refused[0].text

        pmta.reload(later)
        assert pmta.reloads == 1
        send(pmta, ["ann@gmail.com"], VMTA22)
    assert [(q.vmta, q.source_ip) for q in pmta.queued] == [(VMTA22, IP22)]


def test_a_config_pmta_would_not_load_is_refused_and_the_live_one_kept(later: str) -> None:
    dangling = later.replace(f"  virtual-mta {VMTA22}\n", "  virtual-mta sos-expat-203-0-113-99\n")
    with PmtaStub(later) as pmta:
        with pytest.raises(ConfigError, match="sos-expat-203-0-113-99"):
            pmta.reload(dangling)
        assert pmta.reloads == 0
        send(pmta, ["ann@gmail.com"], "sos-expat-marketing-pool")
    assert pmta.queued[0].vmta == VMTA22


def test_reload_is_safe_while_mail_is_handed_over(early: str, later: str) -> None:
    stop = threading.Event()
    with PmtaStub(later) as pmta:

        def flip() -> None:
            while not stop.is_set():
                pmta.reload(early)
                pmta.reload(later)

        flipper = threading.Thread(target=flip)
        flipper.start()
        try:
            for _ in range(20):
                try:
                    send(pmta, ["ann@gmail.com"], VMTA22)
                except smtplib.SMTPDataError as err:
                    assert err.smtp_code == 550
        finally:
            stop.set()
            flipper.join(10)
    assert len(pmta.queued) + len(pmta.refused) == 20
    assert all((q.vmta, q.source_ip) == (VMTA22, IP22) for q in pmta.queued)
    assert pmta.reloads >= 2


# --- relaying -----------------------------------------------------------------------------------


def test_the_sender_source_may_relay_to_any_domain(later: str) -> None:
    with PmtaStub(later) as pmta:
        assert send(pmta, ["ann@gmail.com", "bob@example.org", f"x@{RELAY_DOMAIN}"], VMTA21) == {}
    assert pmta.queued[0].rcpt_tos == ("ann@gmail.com", "bob@example.org", f"x@{RELAY_DOMAIN}")


@pytest.mark.parametrize("variant", ["relaying off", "no source: 0/0"])
def test_without_relaying_only_relay_domains_are_accepted(later: str, variant: str) -> None:
    text = no_relaying(later, "127.0.0.1") if variant == "relaying off" else without_source(later, "127.0.0.1")
    with PmtaStub(text) as pmta:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(pmta, ["ann@gmail.com"], VMTA21)
        code, reply = refused.value.recipients["ann@gmail.com"]
        assert code == 550 and reply.startswith(b"5.7.1")
        assert send(pmta, ["bob@example.org", f"mp-1-cb007116@{RELAY_DOMAIN}"], VMTA21) == {
            "bob@example.org": (550, b"5.7.1 relaying denied")}
    assert [(r.stage, r.code, r.subject) for r in pmta.refused] == [
        ("rcpt", 550, "ann@gmail.com"), ("rcpt", 550, "bob@example.org")]
    (queued,) = pmta.queued
    assert queued.rcpt_tos == (f"mp-1-cb007116@{RELAY_DOMAIN}",)
    if variant == "relaying off":  # still the sender's source: X-Virtual-MTA is processed
        assert (queued.vmta, queued.source_ip) == (VMTA21, IP21)
        assert VMTA_HEADER.encode() not in queued.data
    else:  # 0/0 does not process X-Virtual-MTA and names no default VMTA; the header stays
        assert (queued.vmta, queued.source_ip) == (None, None)
        assert VMTA_HEADER.encode() in queued.data


# --- delivery and accounting --------------------------------------------------------------------


def test_deliver_writes_accounting_the_sender_reads(fleet: Fleet, later: str, tmp_path: Path) -> None:
    acct = tmp_path / "acct.csv"
    clock = FakeClock(T0)
    return_path = verp_address("7f3a", IP22, RELAY_DOMAIN)
    outcomes: dict[str, tuple[Outcome, str, str, str]] = {
        "ann@gmail.com": ("delivered", "2.0.0 (success)", "smtp;250 2.0.0 OK", ""),
        "bob@yahoo.com": ("bounce", "5.1.1 (bad destination mailbox address)",
                          "smtp;550 5.1.1 <bob@yahoo.com>: user unknown, sorry", "bad-mailbox"),
        "carl@example.org": ("remote-bounce", "5.1.1 (bad destination mailbox address)",
                             "smtp;550 5.1.1 no such user", "bad-mailbox"),
    }
    with PmtaStub(later, acct_file=acct, clock=clock) as pmta:
        send(pmta, ["ann@gmail.com"], "sos-expat-transactional-pool")
        send(pmta, ["bob@yahoo.com"], VMTA22)
        send(pmta, ["carl@example.org"], VMTA22, mail_from=return_path)
        clock.now += 3600
        records = pmta.deliver(outcomes.__getitem__)
        assert pmta.queued == []
    assert [r["type"] for r in records] == ["d", "b", "d", "rb"]

    with acct.open(newline="") as f:
        raw = f.read()
    assert raw.startswith("type,timeLogged,") and raw.count("type,timeLogged") == 1 and raw.endswith("\r\n")
    rows = list(csv.DictReader(raw.splitlines()))
    rb = rows[3]
    assert (rb["type"], rb["orig"], rb["vmta"], rb["dlvSourceIp"]) == ("rb", return_path, "", "")
    assert (rows[0]["vmta"], rows[0]["dlvSourceIp"], rows[0]["vmtaPool"]) == (
        VMTA21, IP21, "sos-expat-transactional-pool")

    batch = parse_text(raw, VmtaIndex.from_fleet(fleet), "acct.csv")
    assert batch.problems == [] and batch.ignored == 0
    got = [(e.kind, e.recipient, e.tenant, e.ip, e.vmta, e.permanent, e.category) for e in batch.events]
    assert got == [
        ("delivered", "ann@gmail.com", "sos-expat", IP21, VMTA21, False, ""),
        ("bounce", "bob@yahoo.com", "sos-expat", IP22, VMTA22, True, "bad-mailbox"),
        ("delivered", "carl@example.org", "sos-expat", IP22, VMTA22, False, ""),
        ("bounce", "carl@example.org", "sos-expat", IP22, VMTA22, True, "bad-mailbox"),  # rb: IP from orig
    ]
    assert {e.time.timestamp() for e in batch.events} == {T0 + 3600}
    assert batch.events[1].dsn_status.startswith("5.1.1") and "user unknown" in batch.events[1].diagnostic


def test_later_deliveries_append_rows_under_the_one_header(fleet: Fleet, later: str, tmp_path: Path) -> None:
    acct = tmp_path / "acct.csv"
    index = VmtaIndex.from_fleet(fleet)
    clock = FakeClock(T0)
    with PmtaStub(later, acct_file=acct, clock=clock) as pmta:
        send(pmta, ["ann@gmail.com"], VMTA21)
        pmta.deliver(lambda rcpt: ("delivered", "2.0.0 (success)", "smtp;250 2.0.0 OK", ""))
        first = read_file(acct, index)
        send(pmta, ["bob@gmail.com"], VMTA21)
        clock.now += 60
        pmta.deliver(lambda rcpt: ("bounce", "4.4.7 (delivery time expired)", "smtp;421 try later",
                                   "message-expired"))
        assert pmta.deliver(lambda rcpt: ("delivered", "", "", "")) == []  # nothing queued: nothing written
    second = read_file(acct, index, first.cursor)
    assert [(e.kind, e.recipient) for e in first.events] == [("delivered", "ann@gmail.com")]
    assert [(e.kind, e.recipient, e.permanent) for e in second.events] == [("bounce", "bob@gmail.com", False)]
    assert second.problems == [] and second.events[0].time.timestamp() == T0 + 60
    assert acct.read_text().count("type,timeLogged") == 1
