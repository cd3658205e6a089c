"""The sender's event side against a real SQLite database, real files and real local HTTP servers:
PowerMTA accounting ingestion (counts, suppressions, cursors, rotation), IP holds reaching the
pacer, alerts POSTed once, and SNS notifications signed here with a generated certificate."""

from __future__ import annotations

import datetime
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sns_signer import CERT_URL, Signer, new_signer

from mailplane.model.names import topic_name, vmta_name
from mailplane.model.stack import Fleet
from mailplane.sender.config import SenderConfig
from mailplane.sender.delivery.pacing import IpOverride
from mailplane.sender.events.side import Events
from mailplane.sender.service import Service

ROOT = Path(__file__).resolve().parents[3]
UTC = datetime.UTC
ACCOUNT = "123456789012"
NOW = datetime.datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # the day after the accounting rows below
DAY = datetime.date(2026, 11, 20)
TENANT = "sos-expat"
IP = "203.0.113.21"  # sos-expat, plan standard-45d (bounce_rate hold above 4 %), started 2026-11-02
HEADER = "type,timeLogged,orig,rcpt,vmta,dsnAction,dsnStatus,dsnDiag,bounceCat\n"


@dataclass
class Clock:
    now: float = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Instance:
    """A service with its events attached, as one sender process has them."""

    service: Service
    events: Events


def _builder(url: str, fleet: Fleet, tmp_path: Path, services: list[Service]) -> Callable[..., Instance]:
    """Build instances sharing the database ``url`` (a second one is a restart)."""

    def build(*, webhook: str | None = None, insecure: bool = False, fetcher: Any = None, get: Any = None,
              clock: Clock | None = None, accounting: list[str] | None = None) -> Instance:
        config = SenderConfig(
            database_url=url, aws={"account_id": ACCOUNT}, unsubscribe_keys=["k" * 32], alert_webhook_url=webhook,
            insecure_skip_sns_signature=insecure,
            accounting_files=accounting if accounting is not None else [str(tmp_path / "acct" / "*.csv")])
        service = Service(fleet, config, stack_name="prod", clock=clock or Clock())
        services.append(service)
        return Instance(service, service.attach_events(fetcher=fetcher, get=get))

    (tmp_path / "acct").mkdir()
    return build


@pytest.fixture
def make(fleet: Fleet, tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Instances on one SQLite file: enough where the database engine does not matter."""
    services: list[Service] = []
    yield _builder(f"sqlite:///{tmp_path / 'sender.db'}", fleet, tmp_path, services)
    for service in services:
        service.close()


@pytest.fixture
def make_db(fleet: Fleet, tmp_path: Path, db_url: str) -> Iterator[Callable[..., Instance]]:
    """Instances on SQLite and on PostgreSQL: where transactions and locks matter."""
    services: list[Service] = []
    yield _builder(db_url, fleet, tmp_path, services)
    for service in services:
        service.close()


def row(kind: str, rcpt: str, *, ip: str = IP, tenant: str = TENANT, when: str = "2026-11-20 10:00:00+0000",
        status: str = "", category: str = "") -> str:
    return f"{kind},{when},news@mail1.example.com,{rcpt},{vmta_name(tenant, ip)},x,{status},smtp;diag,{category}\n"


def hard(rcpt: str, **kwargs: Any) -> str:
    return row("b", rcpt, status="5.1.1", category="bad-mailbox", **kwargs)


def delivered(n: int, prefix: str = "ok", **kwargs: Any) -> str:
    return "".join(row("d", f"{prefix}{i}@example.org", status="2.0.0", **kwargs) for i in range(n))


def stats_of(instance: Instance, ip: str = IP) -> dict[datetime.date, dict[str, int]]:
    return {r["day"]: {k: r[k] for k in ("delivered", "hard_bounces", "soft_bounces", "complaints", "deferrals")}
            for r in instance.service.store.ledger.ip_stats(ip)}


def suppressed_metric(instance: Instance, tenant: str, reason: str) -> float:
    value = instance.service.metrics.registry.get_sample_value(
        "mailplane_sender_suppressed_total", {"tenant": tenant, "reason": reason})
    return value or 0.0


# -- accounting ingestion --------------------------------------------------------------------------


def test_ingest_counts_suppresses_and_continues_from_its_cursor(make_db: Callable[..., Instance],
                                                                tmp_path: Path) -> None:
    first = make_db()
    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + delivered(3) + hard("Bad@Example.org")
                    + row("b", "full@example.org", status="4.2.2", category="quota-issues")
                    + row("f", "angry@example.org") + row("t", "slow@example.org", status="4.7.0"))
    summary = first.events.ingest_accounting()
    assert summary == {"files": 1, "events": 7, "suppressed": 2, "problems": 0, "ignored": 0, "skipped": 0,
                       "alerts": 0}
    assert stats_of(first) == {DAY: {"delivered": 3, "hard_bounces": 1, "soft_bounces": 1, "complaints": 1,
                                     "deferrals": 1}}
    store = first.service.store
    assert store.suppressed(TENANT, ["bad@example.org", "angry@example.org", "full@example.org",
                                     "slow@example.org"]) == {"bad@example.org", "angry@example.org"}
    assert store.suppressed("globex", ["bad@example.org"]) == set()  # the row's tenant only
    assert suppressed_metric(first, TENANT, "hard_bounce") == 1
    assert suppressed_metric(first, TENANT, "complaint") == 1
    assert store.get_state(f"accounting:{acct}")["offset"] == acct.stat().st_size

    # Nothing new: nothing counted again.
    assert first.events.ingest_accounting()["events"] == 0
    # Two more rows and half of a third (PowerMTA still writing it): only the complete ones count.
    with acct.open("a") as f:
        f.write(delivered(2, prefix="more") + "d,2026-11-20 11:00:00+0000,news@mail1.example.com,half@exa")
    assert first.events.ingest_accounting()["events"] == 2
    assert stats_of(first)[DAY]["delivered"] == 5

    # A restart (a new instance on the same database) continues from the stored cursor.
    restarted = make_db()
    with acct.open("a") as f:
        f.write(f"mple.org,{vmta_name(TENANT, IP)},relayed,2.0.0,smtp;250,\n")
    assert restarted.events.ingest_accounting()["events"] == 1
    assert stats_of(restarted)[DAY]["delivered"] == 6
    assert restarted.events.ingest_accounting()["events"] == 0


def test_rotated_file_is_finished_and_the_new_one_read_from_its_start(make_db: Callable[..., Instance],
                                                                       tmp_path: Path) -> None:
    instance = make_db()
    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + delivered(4))
    assert instance.events.ingest_accounting()["events"] == 4
    with acct.open("a") as f:  # written after our last read, just before PowerMTA rotates
        f.write(delivered(3, prefix="tail"))
    acct.rename(tmp_path / "acct" / "acct-2026-11-20.csv")  # still matches the glob: it must not be re-read
    acct.write_text(HEADER + delivered(2, prefix="new"))
    summary = instance.events.ingest_accounting()
    assert (summary["files"], summary["events"]) == (2, 5)
    assert stats_of(instance)[DAY]["delivered"] == 9
    assert instance.events.ingest_accounting()["events"] == 0


def test_truncated_file_is_read_again_from_its_start(make_db: Callable[..., Instance], tmp_path: Path) -> None:
    instance = make_db()
    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + delivered(5))
    instance.events.ingest_accounting()
    with acct.open("w") as f:  # same inode, emptied and started again (copytruncate)
        f.write(HEADER + delivered(1, prefix="after"))
    assert instance.events.ingest_accounting()["events"] == 1
    assert stats_of(instance)[DAY]["delivered"] == 6


def test_a_new_file_in_the_old_files_place_is_read_whole(make_db: Callable[..., Instance], tmp_path: Path) -> None:
    """Truncated and rewritten past the old offset between two polls (or a deleted file's inode
    given to a new one): size and inode look like the old file, its first bytes do not."""
    instance = make_db()
    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + delivered(3, when="2026-11-19 10:00:00+0000"))
    instance.events.ingest_accounting()
    inode = acct.stat().st_ino
    with acct.open("w") as f:
        f.write(HEADER + delivered(6, prefix="replacement"))
    assert acct.stat().st_ino == inode and acct.stat().st_size > instance.service.store.get_state(
        f"accounting:{acct}")["offset"]
    assert instance.events.ingest_accounting()["events"] == 6
    assert stats_of(instance)[DAY]["delivered"] == 6


def test_instances_ingesting_the_same_files_at_once_count_each_row_once(make_db: Callable[..., Instance],
                                                                         tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / "acct" / f"acct{n}.csv").write_text(HEADER + delivered(200, prefix=f"f{n}-")
                                                        + hard(f"bad{n}@example.org"))
    instances = [make_db() for _ in range(4)]
    barrier = threading.Barrier(len(instances))
    results: list[dict[str, int]] = []

    def run(instance: Instance) -> None:
        barrier.wait()
        results.append(instance.events.ingest_accounting())

    threads = [threading.Thread(target=run, args=(i,)) for i in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4
    assert stats_of(instances[0])[DAY] == {"delivered": 600, "hard_bounces": 3, "soft_bounces": 0,
                                           "complaints": 0, "deferrals": 0}
    assert sum(r["suppressed"] for r in results) == 3  # each new suppression counted by one instance only


def test_bad_rows_are_skipped_and_reported(make: Callable[..., Instance], tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    instance = make()
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + delivered(1) + row("d", "x@example.org", ip="192.0.2.99")
                                                + "d,not a time,o,r@example.org,v,x,2.0.0,,\n")
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        summary = instance.events.ingest_accounting()
    assert (summary["events"], summary["problems"]) == (1, 2)
    assert "acct.csv:3:" in caplog.text and "acct.csv:4:" in caplog.text


# -- holds and alerts --------------------------------------------------------------------------------


@dataclass
class Webhook:
    """A local HTTP server recording POSTed JSON; answers 500 to the first ``failures`` requests."""

    failures: int = 0
    bodies: list[Any] = field(default_factory=list)
    requests: int = 0
    gets: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests += 1
            if hook.requests <= hook.failures:
                self.send_response(500)
            else:
                hook.bodies.append(json.loads(body))
                self.send_response(204)
            self.end_headers()

        def do_GET(self) -> None:
            hook.gets.append(self.path)
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.end_headers()
            self.wfile.write(b"<ConfirmSubscriptionResponse/>")

        def log_message(self, *args: Any) -> None:
            pass

    hook.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=hook.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def bad_day(prefix: str = "") -> str:
    """100 messages of DAY on IP, 10 hard bounces: 10 % against standard-45d's 4 %."""
    return delivered(90, prefix=f"{prefix}ok") + "".join(hard(f"{prefix}bad{i}@example.org") for i in range(10))


def test_a_bad_day_holds_the_ip_and_alerts_once(make_db: Callable[..., Instance], tmp_path: Path,
                                                webhook: Webhook, fleet: Fleet,
                                                caplog: pytest.LogCaptureFixture) -> None:
    instance = make_db(webhook=webhook.url)
    tenant = fleet.tenant(TENANT)
    ip = next(i for i in tenant.ips if i.address == IP)
    pacer = instance.service.pacer
    tomorrow = DAY + datetime.timedelta(days=1)
    cap_before_hold = pacer.ip_gate(tenant, ip, tomorrow).daily_cap
    assert cap_before_hold > pacer.ip_gate(tenant, ip, DAY).daily_cap  # the plan would rise on the 21st

    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + bad_day())
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        summary = instance.events.ingest_accounting()
    assert (summary["events"], summary["suppressed"], summary["alerts"]) == (100, 10, 1)
    assert f"{TENANT} {IP} held on 2026-11-20: bounce rate 10.00% (10/100) above 4.00%" in caplog.text

    # Held: the 21st does not advance, its cap is the 20th's; the 20th itself is not affected.
    assert instance.events.held_days(TENANT, IP, tomorrow) == 1
    assert instance.events.held_days(TENANT, IP, DAY) == 0
    assert instance.events.override(TENANT, IP, tomorrow) == IpOverride(held_days=1)
    assert instance.events.override(TENANT, IP, DAY) is None
    assert pacer.ip_gate(tenant, ip, tomorrow).daily_cap == pacer.ip_gate(tenant, ip, DAY).daily_cap
    assert pacer.ip_gate(tenant, ip, tomorrow).daily_cap < cap_before_hold
    other = next(i for i in tenant.ips if i.address != IP)  # the tenant's other IPs are not held
    assert instance.events.override(TENANT, other.address, tomorrow) is None

    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert body["event"] == "ip_hold" and body["stack"] == "prod"
    assert [(a["ip"], a["day"], a["rate"], a["count"], a["volume"]) for a in body["alerts"]] == [
        (IP, "2026-11-20", "bounce_rate", 10, 100)]
    assert "[mailplane prod] sos-expat 203.0.113.21 held on 2026-11-20" in body["text"]

    # More bad rows for the same day, then a restart: still the one alert.
    with acct.open("a") as f:
        f.write(bad_day("again-"))
    assert instance.events.ingest_accounting()["alerts"] == 0
    restarted = make_db(webhook=webhook.url)
    assert restarted.events.ingest_accounting()["alerts"] == 0
    assert restarted.events.held_days(TENANT, IP, tomorrow) == 1
    assert len(webhook.bodies) == 1


def test_powermtas_own_records_hold_the_ip_remote_bounces_deferrals_and_complaints(
        make: Callable[..., Instance], tmp_path: Path, fleet: Fleet) -> None:
    """Documented field layouts: d and t (with ``vmta``), tq (a queue), rb (a DSN that came back to the
    return path: only ``orig`` names the IP), f (a feedback-loop report: only ``dlvSourceIp``)."""
    from mailplane.model.names import verp_address

    instance = make()
    vmta = vmta_name(TENANT, IP)
    when = "2026-11-20 10:00:00+0000"
    d_header = "type,timeLogged,orig,rcpt,dsnAction,dsnStatus,dsnDiag,bounceCat,dlvSourceIp,vmta,queue\n"
    rows = d_header + "".join(f"d,{when},x@news.example.com,ok{i}@example.org,relayed,2.0.0,ok,,{IP},{vmta},q\n"
                             for i in range(200))
    rows += "".join(f"t,{when},x@news.example.com,slow{i}@example.org,delayed,4.7.0,later,,{IP},{vmta},q\n"
                    for i in range(30))
    rows += "type,timeLogged,queue,vmta,dsnStatus,dsnDiag,dsnMta,dlvType,dlvSourceIp,dlvDestinationIp\n"
    rows += "".join(f"tq,{when},gmail.rollup/{vmta},{vmta},4.7.28,421-4.7.28 unusual rate,mx,smtp,{IP},\n"
                    for _ in range(30))
    rows += "type,timeLogged,orig,rcpt,orcpt,dsnStatus,dsnDiag,dsnMta,dsnReportingMta,bounceCat,format\n"
    rows += "".join(f"rb,{when},{verp_address(100 + i, IP, 'transactional.rp.mail1.example.com')},gone{i}@example.org"
                    ",,5.1.1,550 no such user,mx,mx,bad-mailbox,dsn\n" for i in range(3))
    rows += "type,timeLogged,repSourceIp,feedbackType,format,orig,rcpt,reportingMta,dlvSourceIp,reportedDomain\n"
    rows += f"f,{when},198.51.100.9,abuse,arf,x@news.example.com,angry@example.org,fbl.example.net,{IP},x\n"
    (tmp_path / "acct" / "acct-2026-11-20-0001.csv").write_text(rows)
    summary = instance.events.ingest_accounting()
    assert summary["events"] == 200 + 30 + 30 + 3 + 1
    assert stats_of(instance)[DAY] == {"delivered": 200, "hard_bounces": 3, "soft_bounces": 0, "complaints": 1,
                                       "deferrals": 60}
    # 60 deferrals of 263 attempts: 22.8 % > the plan's 20 %; 1 complaint in 204: 0.49 % > 0.1 %
    assert instance.events.held_days(TENANT, IP, DAY + datetime.timedelta(days=1)) == 1
    store = instance.service.store
    assert store.suppressed(TENANT, ["gone0@example.org", "angry@example.org", "slow0@example.org"]) == {
        "gone0@example.org", "angry@example.org"}


def test_a_failed_alert_is_delivered_at_the_next_ingest(make_db: Callable[..., Instance], tmp_path: Path,
                                                        webhook: Webhook) -> None:
    webhook.failures = 1
    instance = make_db(webhook=webhook.url)
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + bad_day())
    assert instance.events.ingest_accounting()["alerts"] == 1
    assert (webhook.requests, webhook.bodies) == (1, [])
    restarted = make_db(webhook=webhook.url)  # the queued alert survives a restart too
    assert restarted.events.ingest_accounting()["alerts"] == 0
    assert webhook.requests == 2 and len(webhook.bodies) == 1
    assert webhook.bodies[0]["alerts"][0]["ip"] == IP
    restarted.events.ingest_accounting()
    assert webhook.requests == 2


def test_a_day_at_the_threshold_or_below_the_minimum_volume_does_not_hold(make: Callable[..., Instance],
                                                                           tmp_path: Path) -> None:
    instance = make()
    at = delivered(96) + "".join(hard(f"b{i}@example.org") for i in range(4))  # 4/100 is not above 4 %
    few = delivered(40, ip="203.0.113.22") + "".join(hard(f"c{i}@example.org", ip="203.0.113.22") for i in range(30))
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + at + few)
    assert instance.events.ingest_accounting()["alerts"] == 0
    tomorrow = DAY + datetime.timedelta(days=1)
    assert instance.events.override(TENANT, IP, tomorrow) is None
    assert instance.events.override(TENANT, "203.0.113.22", tomorrow) is None


def test_hold_answers_come_from_memory(make: Callable[..., Instance], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    instance = make(clock=clock)
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + bad_day())
    instance.events.ingest_accounting()
    reads: list[object] = []
    real = instance.service.store.ledger.ip_stats
    monkeypatch.setattr(instance.service.store.ledger, "ip_stats", lambda ip=None: reads.append(ip) or real(ip))
    tomorrow = DAY + datetime.timedelta(days=1)
    for _ in range(1000):
        assert instance.events.override(TENANT, IP, tomorrow) == IpOverride(held_days=1)
    assert reads == []
    clock.now += 3600  # another instance may have ingested since: read again, once
    for _ in range(10):
        instance.events.override(TENANT, IP, tomorrow)
    assert len(reads) == 1


def test_run_forever_ingests_until_stopped(make: Callable[..., Instance], tmp_path: Path) -> None:
    instance = make()
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + delivered(3))
    stop = threading.Event()
    thread = threading.Thread(target=instance.events.run_forever, args=(stop, 0.05))
    thread.start()
    try:
        for _ in range(100):
            if stats_of(instance):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert stats_of(instance)[DAY]["delivered"] == 3


# -- SNS -------------------------------------------------------------------------------------------------

REGION = "eu-north-1"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return new_signer(start=NOW - datetime.timedelta(days=1))


def topic(fleet: Fleet, tenant: str = TENANT) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic_name(tenant)}"


def stamp(when: datetime.datetime = NOW) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_bounce(recipient: str, bounce_type: str = "Permanent", config_set: str = TENANT) -> str:
    return json.dumps({
        "eventType": "Bounce",
        "mail": {"messageId": "0100019a-ses-id", "timestamp": "2026-11-21T11:58:00.000Z",
                 "destination": [recipient], "tags": {"ses:configuration-set": [config_set]}},
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "timestamp": "2026-11-21T11:59:00.000Z",
                   "bouncedRecipients": [{"emailAddress": recipient, "status": "5.1.1",
                                          "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]},
    })


def ses_complaint(recipient: str, feedback: str = "abuse") -> str:
    return json.dumps({"notificationType": "Complaint", "mail": {"destination": [recipient]},
                       "complaint": {"complainedRecipients": [{"emailAddress": recipient}],
                                     "complaintFeedbackType": feedback}})


def notification(arn: str, message: str, message_id: str = "5b7a9e1c-0000-4000-8000-000000000001") -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": message_id, "TopicArn": arn, "Message": message,
            "Timestamp": stamp(NOW - datetime.timedelta(seconds=30)),
            "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={arn}:x"}


def confirmation(arn: str, url: str, kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
    return {"Type": kind, "MessageId": "5b7a9e1c-0000-4000-8000-000000000002", "TopicArn": arn, "Token": "abc123",
            "Message": f"You have chosen to subscribe to the topic {arn}.", "SubscribeURL": url,
            "Timestamp": stamp(NOW - datetime.timedelta(seconds=30))}


def post(instance: Instance, msg: dict[str, Any], header: str | None = "Notification") -> tuple[int, dict[str, Any]]:
    return instance.events.handle_sns(json.dumps({"SignatureVersion": "2", **msg}).encode(), header)


def test_a_signed_permanent_bounce_suppresses_for_the_topics_tenant(make_db: Callable[..., Instance], fleet: Fleet,
                                                                     signer: Signer) -> None:
    instance = make_db(fetcher=signer.fetch)
    fetched_before = len(signer.fetched)  # the signer is shared by the module's tests
    msg = signer.sign(notification(topic(fleet), ses_bounce("Gone@Example.net")))
    assert post(instance, msg) == (200, {"status": "ok", "events": 1, "suppressed": 1})
    store = instance.service.store
    assert store.suppressed(TENANT, ["gone@example.net"]) == {"gone@example.net"}
    assert store.suppressed("globex", ["gone@example.net"]) == set()
    assert suppressed_metric(instance, TENANT, "hard_bounce") == 1
    # SNS delivers at least once: the same message again changes nothing and counts nothing.
    assert post(instance, msg) == (200, {"status": "ok", "events": 1, "suppressed": 0})
    assert suppressed_metric(instance, TENANT, "hard_bounce") == 1
    assert signer.fetched[fetched_before:] == [CERT_URL]  # fetched once by this instance, then cached


def test_complaints_suppress_transient_bounces_and_not_spam_do_not(make: Callable[..., Instance], fleet: Fleet,
                                                                    signer: Signer) -> None:
    instance = make(fetcher=signer.fetch)
    arn = topic(fleet)
    assert post(instance, signer.sign(notification(arn, ses_complaint("angry@example.net"))))[1]["suppressed"] == 1
    assert post(instance, signer.sign(notification(arn, ses_bounce("full@example.net", "Transient"))))[0] == 200
    assert post(instance, signer.sign(notification(arn, ses_complaint("fine@example.net", "not-spam"))))[0] == 200
    assert instance.service.store.suppressed(TENANT, ["angry@example.net", "full@example.net", "fine@example.net"]) \
        == {"angry@example.net"}
    assert suppressed_metric(instance, TENANT, "complaint") == 1


def test_ses_deliveries_and_delays_are_counted_for_the_overview(make: Callable[..., Instance], fleet: Fleet,
                                                               signer: Signer) -> None:
    """Delivery and DeliveryDelay events (published when a tenant's ``ses.events`` name them) count on the SES
    route, beside the bounces; they suppress nothing."""
    instance = make(fetcher=signer.fetch)
    mail = {"messageId": "0100019a-ok", "destination": ["a@example.org", "b@example.org"],
            "tags": {"ses:configuration-set": [TENANT]}}
    delivery = json.dumps({"eventType": "Delivery", "mail": mail, "delivery": {
        "recipients": ["a@example.org", "b@example.org"], "smtpResponse": "250 2.0.0 OK"}})
    delay = json.dumps({"eventType": "DeliveryDelay", "mail": mail, "deliveryDelay": {
        "delayType": "MailboxFull", "delayedRecipients": [{"emailAddress": "c@example.org", "status": "4.2.2"}]}})
    for n, body in enumerate((delivery, delay, ses_bounce("gone@example.org"))):
        assert post(instance, signer.sign(notification(topic(fleet), body, message_id=f"m-{n}")))[0] == 200
    [row] = instance.service.store.outcomes.hours(TENANT, 0)
    assert row.route == "ses"
    assert {k: v for k, v in row.counts.items() if v} == {"delivered": 2, "deferred": 1, "bounced": 1}
    assert instance.service.store.suppressed(TENANT, ["a@example.org", "c@example.org"]) == set()


def test_the_topic_decides_the_tenant_not_the_event(make: Callable[..., Instance], fleet: Fleet, signer: Signer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    instance = make(fetcher=signer.fetch)
    msg = signer.sign(notification(topic(fleet, "globex"), ses_bounce("who@example.net", config_set=TENANT)))
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        assert post(instance, msg)[0] == 200
    store = instance.service.store
    assert store.suppressed("globex", ["who@example.net"]) == {"who@example.net"}
    assert store.suppressed(TENANT, ["who@example.net"]) == set()
    assert "configuration set 'sos-expat'" in caplog.text


@pytest.mark.parametrize("case", ["forged-body", "other-key", "foreign-cert-host", "unknown-topic", "stale",
                                  "header-mismatch", "not-json"])
def test_anything_unverified_is_refused_and_suppresses_nothing(make: Callable[..., Instance], fleet: Fleet,
                                                                signer: Signer, case: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return signer.pem

    instance = make(fetcher=fetch)
    arn = topic(fleet)
    good = notification(arn, ses_bounce("victim@example.net"))
    header = "Notification"
    if case == "forged-body":
        msg = {**signer.sign(good), "Message": ses_bounce("someone-else@example.net")}
    elif case == "other-key":
        msg = new_signer(start=NOW - datetime.timedelta(days=1)).sign(good)
    elif case == "foreign-cert-host":
        msg = signer.sign(good, cert_url="https://sns.eu-north-1.amazonaws.com.evil.example/cert.pem")
    elif case == "unknown-topic":
        msg = signer.sign(notification(f"arn:aws:sns:{REGION}:{ACCOUNT}:someone-elses-topic",
                                       ses_bounce("victim@example.net")))
    elif case == "stale":
        msg = signer.sign({**good, "Timestamp": stamp(NOW - datetime.timedelta(hours=2))})
    else:
        msg = signer.sign(good)
        header = "SubscriptionConfirmation"
    body = b"{not json" if case == "not-json" else json.dumps(msg).encode()
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        answer = instance.events.handle_sns(body, header)
    assert answer == (403, {"error": "forbidden"})  # the same answer whatever the reason
    assert instance.service.store.suppressions.count() == 0
    assert "SNS message refused" in caplog.text
    assert "victim@example.net" not in caplog.text  # the body is not logged
    if case in ("foreign-cert-host", "unknown-topic", "header-mismatch", "not-json"):
        assert fetched == []  # refused before fetching anything


def test_an_authentic_message_that_is_not_an_ses_event_is_acknowledged(make: Callable[..., Instance],
                                                                        fleet: Fleet, signer: Signer,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    instance = make(fetcher=signer.fetch)
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        answer = post(instance, signer.sign(notification(topic(fleet), "plain text, not JSON")))
    assert answer == (200, {"status": "ignored"})  # retrying the same bytes would never help
    assert "is not an SES event" in caplog.text
    unknown = json.dumps({"eventType": "SomethingNew", "mail": {}})
    assert post(instance, signer.sign(notification(topic(fleet), unknown))) == (
        200, {"status": "ok", "events": 0, "suppressed": 0})


def test_insecure_mode_warns_and_confirms_only_through_an_sns_host_over_https(
        make: Callable[..., Instance], fleet: Fleet, webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    """Without signatures anyone can forge a confirmation: it still reaches only an SNS host over HTTPS, never
    the loopback webhook, a file or the metadata address; the service says at start that it is insecure."""
    got: list[str] = []
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        instance = make(insecure=True, get=got.append)
    assert "insecure_skip_sns_signature is on" in caplog.text
    arn = topic(fleet)
    for url in (f"{webhook.url}/?Action=ConfirmSubscription&Token=abc123", "file:///etc/passwd",
                "https://169.254.169.254/?Action=ConfirmSubscription", "https://evil.example/?Action=ConfirmSubscription"):
        assert post(instance, confirmation(arn, url), "SubscriptionConfirmation") == (403, {"error": "forbidden"})
    sns = f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={arn}&Token=abc123"
    assert post(instance, confirmation(arn, sns), "SubscriptionConfirmation") == (200, {"status": "confirmed"})
    assert post(instance, confirmation(f"arn:aws:sns:{REGION}:{ACCOUNT}:not-ours", sns),
                "SubscriptionConfirmation")[0] == 403
    assert got == [sns] and webhook.gets == []


def test_a_secure_service_does_not_warn(make: Callable[..., Instance], signer: Signer,
                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        make(fetcher=signer.fetch)
    assert "insecure" not in caplog.text


def test_secure_mode_never_gets_a_subscribe_url_off_the_topics_sns_endpoint(make: Callable[..., Instance],
                                                                            fleet: Fleet, signer: Signer,
                                                                            webhook: Webhook) -> None:
    instance = make(fetcher=signer.fetch)
    msg = signer.sign(confirmation(topic(fleet), f"{webhook.url}/?Action=ConfirmSubscription&Token=abc123"))
    assert post(instance, msg, "SubscriptionConfirmation") == (403, {"error": "forbidden"})
    assert webhook.gets == []


def test_secure_mode_confirms_through_the_pinned_sns_url(make: Callable[..., Instance], fleet: Fleet,
                                                         signer: Signer) -> None:
    arn = topic(fleet)
    url = f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={arn}&Token=abc123"
    got: list[str] = []
    instance = make(fetcher=signer.fetch, get=got.append)  # no network to AWS in tests: record the GET
    assert post(instance, signer.sign(confirmation(arn, url)), "SubscriptionConfirmation") == (
        200, {"status": "confirmed"})
    assert got == [url]


def test_unsubscribe_confirmation_is_acknowledged_and_logged(make: Callable[..., Instance], fleet: Fleet,
                                                             signer: Signer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    instance = make(fetcher=signer.fetch)
    arn = topic(fleet)
    url = f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={arn}&Token=abc123"
    with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
        answer = post(instance, signer.sign(confirmation(arn, url, "UnsubscribeConfirmation")),
                      "UnsubscribeConfirmation")
    assert answer == (200, {"status": "unsubscribed"})
    assert "unsubscribed this endpoint" in caplog.text


def test_accounting_globs_match_nothing_harmlessly(make: Callable[..., Instance], tmp_path: Path) -> None:
    (tmp_path / "acct" / "acct.csv").write_text(HEADER + delivered(1))  # not matched by the glob below
    instance = make(accounting=[str(tmp_path / "nowhere" / "*.csv")])
    assert instance.events.ingest_accounting() == {"files": 0, "events": 0, "suppressed": 0, "problems": 0,
                                                   "ignored": 0, "skipped": 0, "alerts": 0}
    assert stats_of(instance) == {}


# -- the tenant guard -----------------------------------------------------------------------------

def test_the_guard_judges_rates_only_over_enough_volume() -> None:
    from mailplane.model.fleet import TenantGuard
    from mailplane.sender.db.outcomes import Totals
    from mailplane.sender.events.guard import verdict

    guard = TenantGuard(bounce_rate=0.03, complaint_rate=0.001, min_volume=200, window_hours=24)
    assert verdict(guard, Totals(sent=199, bounced=100)) is None  # too little to judge
    assert verdict(guard, Totals(sent=1000, bounced=30, complained=1)) is None  # at the thresholds: not above
    assert verdict(guard, Totals(sent=1000, bounced=31)) == (
        "bounce rate 3.10% over 24 h (31 of 1000 sent) above 3.00%")
    assert verdict(guard, Totals(sent=1000, complained=2)) == (
        "complaint rate 0.200% over 24 h (2 of 1000 sent) above 0.100%")


def _send(store: Any, tenant: str, n: int, start: int = 0) -> None:
    """``n`` messages of ``tenant`` queued, claimed and marked sent (what a worker does after delivery)."""
    from mailplane.sender.core.messages import NewMessage

    address = {TENANT: "no-reply@mail1.example.com", "globex": "billing@globex.example.net"}[tenant]
    store.enqueue([NewMessage(tenant, "app", "transactional", address, f"r{start + i}@example.org")
                   for i in range(n)])
    claimed = store.claim(f"w-{tenant}-{start}", n)
    assert len(claimed) == n
    assert store.complete_many(f"w-{tenant}-{start}", [(m.id, "sent", None) for m in claimed]) == n


def test_the_guard_pauses_a_tenant_over_its_bounce_rate_on_both_routes_and_alerts(
        make_db: Callable[..., Instance], fleet: Fleet, signer: Signer, webhook: Webhook, tmp_path: Path) -> None:
    """300 sent; 8 hard bounces in PowerMTA's accounting and 2 from SES: 3.3 % over 24 h, above prod's
    3 %: sos-expat pauses (its mail waits), globex goes on, an alert goes out, and after an operator's
    resume the guard judges only what came after."""
    from mailplane.sender.core.gates import Granted

    clock = Clock()
    instance = make_db(webhook=webhook.url, fetcher=signer.fetch, clock=clock)
    store, events = instance.service.store, instance.events
    _send(store, TENANT, 300)
    _send(store, "globex", 300, start=1000)
    acct = tmp_path / "acct" / "acct.csv"
    acct.write_text(HEADER + "".join(hard(f"gone{i}@example.org") for i in range(8)))
    events.ingest_accounting()
    assert events.guard() == []  # 8 of 300: 2.7 %, within 3 %
    for i in range(2):
        msg = signer.sign(notification(topic(fleet), ses_bounce(f"bad{i}@example.net"), message_id=f"m-{i}"))
        assert post(instance, msg)[0] == 200
        assert post(instance, msg)[0] == 200  # delivered twice by SNS: counted once
    [paused] = events.guard()
    assert paused.tenant == TENANT and paused.reason.startswith("bounce rate 3.33% over 24 h (10 of 300 sent)")
    assert events.guard() == []  # paused already: not twice
    assert [(r.scope, r.tenant, r.source) for r in store.pauses.active()] == [("tenant", TENANT, "guard")]
    assert webhook.bodies[-1]["kind"] == "tenant-paused" and webhook.bodies[-1]["tenant"] == TENANT
    from prometheus_client import generate_latest

    scraped = generate_latest(instance.service.metrics.registry).decode()
    assert 'mailplane_sender_paused{key="",mode="pause",reason="bounce rate 3.33% over 24 h' in scraped
    assert 'scope="tenant",source="guard",tenant="sos-expat"} 1.0' in scraped
    assert 'mailplane_sender_guard_pauses_total{tenant="sos-expat"} 1.0' in scraped
    # its mail waits; globex's goes
    from mailplane.sender.core.messages import NewMessage

    store.enqueue([NewMessage(TENANT, "app", "transactional", "no-reply@mail1.example.com", "x@example.org"),
                   NewMessage("globex", "billing", "transactional", "billing@globex.example.net", "y@example.org")])
    claimed = store.claim("w", 10)
    reservations = {m.tenant: instance.service.pacer.reserve("w", m) for m in claimed}
    assert set(reservations) == {"globex"}  # a paused tenant's mail is not even claimed: it waits queued
    assert isinstance(reservations["globex"], Granted)
    from mailplane.sender.core.pauses import InForce

    plan = instance.service.pacer.plan(TENANT, "transactional", datetime.date(2030, 1, 1),
                                       InForce.of(store.pauses.active()))
    assert plan.pause is not None and "tenant guard" not in plan.pause.reason
    assert plan.pause.reason.startswith("tenant sos-expat paused by guard (bounce rate")
    store.complete_many("w", [(m.id, "sent", None) for m in claimed if m.tenant == "globex"])
    # an operator resumes: the mail that made it pause is not judged again
    assert store.pauses.end(paused.row.id)
    assert events.guard() == []
    clock.now += 3600  # an hour later, the list is still bad: it pauses again
    _send(store, TENANT, 300, start=2000)
    acct.write_text(acct.read_text() + "".join(hard(f"again{i}@example.org") for i in range(12)))
    events.ingest_accounting()
    [again] = events.guard()
    assert again.tenant == TENANT and "(12 of 300 sent)" in again.reason


def test_the_guard_reads_every_tenant_window_at_once(make_db: Callable[..., Instance], fleet: Fleet) -> None:
    """``since_each`` sums each tenant's own hours in one query; the oracle is the per-hour rows
    (``Outcomes.hours``), summed here from each tenant's start."""
    from mailplane.sender.db.outcomes import GUARDED
    from mailplane.sender.events.guard import judged_all

    clock = Clock()
    store = make_db(clock=clock).service.store
    now = int(clock.now // 3600)
    for back, tenant, counts in ((30, TENANT, {"sent": 50, "bounced": 9}), (20, TENANT, {"sent": 40, "bounced": 1}),
                                 (3, TENANT, {"sent": 10, "complained": 2}), (20, "globex", {"sent": 7}),
                                 (1, "globex", {"sent": 5, "bounced": 5}), (40, "initech", {"sent": 1})):
        store.run(lambda conn, t=tenant, h=now - back, c=counts: store.outcomes.add(conn, t, "ses", h, c))
    starts = {TENANT: now - 23, "globex": now - 2, "initech": now - 23, "nobody": now}
    each = store.outcomes.since_each(starts)
    for tenant, start in starts.items():
        rows = store.outcomes.hours(tenant, start)
        assert [getattr(each[tenant], name) for name in GUARDED] == [
            sum(r.counts[name] for r in rows) for name in GUARDED], tenant
    assert (each[TENANT].sent, each["globex"].sent, each["initech"].sent) == (50, 5, 0)
    judged = {j.tenant: j.totals for j in judged_all(fleet, store)}
    assert judged[TENANT].sent == 50 and judged[TENANT].complained == 2  # the 24 h window of prod's guard
    assert set(judged) == {t.name for t in fleet.tenants}
