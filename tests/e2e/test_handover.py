"""No mail lost at the hand-over: the sender, a PowerMTA stand-in and the daily deployment, across a plan day.

Seed 004's layout, small: two tenants on one MTA host, each with a warm IP and an IP whose warmup plan
starts on ``START``; the sender runs in this process (its service, its delivery workers) on a fake
clock that the test moves across midnight, against ``tests/support/pmta_stub.py``, which refuses a VMTA its
config lacks as PowerMTA does.  "Ansible" here is :func:`Fleet.deploy`: render the day's config,
reload the stand-in, write the deployed record -- what ``roles/powermta`` does at 00:07 UTC.

On SQLite and PostgreSQL: the holds and the waits are rows every instance shares.
"""

from __future__ import annotations

import datetime
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pmta_stub import PmtaStub
from prometheus_client import generate_latest
from sender_http import serve
from webhook_receiver import WebhookReceiver

from mailplane.model.loader import load_stack
from mailplane.model.names import vmta_name
from mailplane.model.stack import Fleet
from mailplane.mta.deployed import dumps, record
from mailplane.mta.render import render_vars
from mailplane.mta.view import host_view
from mailplane.sender.config import hash_api_key, load_config, new_api_key
from mailplane.sender.core.messages import NewMessage
from mailplane.sender.delivery.handover import SOURCE as HANDOVER
from mailplane.sender.delivery.worker import Delivery
from mailplane.sender.front.api import create_app
from mailplane.sender.service import Service

API_KEY = new_api_key()
START = datetime.date(2026, 12, 10)
"""The first plan day of the new IPs."""
WARM = {"sos-expat": "203.0.113.21", "ulixai": "203.0.113.31"}
NEW = {"sos-expat": "203.0.113.22", "ulixai": "203.0.113.32"}


def at(day: datetime.date, hh: int, mm: int = 0, ss: int = 0) -> float:
    return datetime.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=datetime.UTC).timestamp()


class Clock:
    """The fake time every part reads: the sender, its store, the stand-in's accounting."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now

    @property
    def day(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self(), datetime.UTC).date()


def write_stack(root: Path, lead: int) -> Path:
    """Two tenants, one host; the new IPs carry only the marketing stream, so its mail must go through them."""
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: eu-west-1, max_send_rate: 10, daily_quota: 1000}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
        powermta: {{postmaster: postmaster@example.com, vmta_lead_days: {lead}}}
        sender: {{public_url: "https://mailplane.test"}}
        warmup_plans:
          open: {{schedule: [{{day: 1, daily: 1000, hourly: 1000}}]}}
        """))
    for tenant in WARM:
        (stack / "tenants" / f"{tenant}.yaml").write_text(textwrap.dedent(f"""\
            name: {tenant}
            streams: [transactional, marketing]
            domains: [{{name: {tenant}.example.com, dkim: {{mode: easy}}}}]
            ips:
              - {{address: {WARM[tenant]}, hostname: a.{tenant}.example.com, host: mta1, streams: [transactional],
                  warmup: {{plan: open, started: 2020-01-01}}}}
              - {{address: {NEW[tenant]}, hostname: b.{tenant}.example.com, host: mta1, streams: [marketing],
                  warmup: {{plan: open, started: {START.isoformat()}}}}}
            senders: [{{name: app, from: [app@{tenant}.example.com]}}]
            """))
    return stack




class Fleet_:
    """The fleet, the stand-in PowerMTA of mta1, and the daily deployment."""

    def __init__(self, fleet: Fleet, pmta: PmtaStub, record_file: Path) -> None:
        self.fleet, self.pmta, self.record_file = fleet, pmta, record_file
        self.deployed_on: list[datetime.date] = []

    def config(self, day: datetime.date) -> str:
        return render_vars(host_view(self.fleet, "mta1", day).to_vars())

    def deploy(self, day: datetime.date) -> None:
        """What roles/powermta does: render the day's config, reload PowerMTA, then write the record."""
        pmta_vars = host_view(self.fleet, "mta1", day).to_vars()
        self.pmta.reload(render_vars(pmta_vars))
        self.record_file.write_text(dumps(record(pmta_vars)))
        self.deployed_on.append(day)




def write_config(path: Path, *, db: str, pmta_port: int, alerts_url: str, record_file: Path | None,
                 accounting: Path) -> Path:
    records = f'deployed_records: {{mta1: "{record_file}"}}' if record_file else ""
    path.write_text(textwrap.dedent(f"""\
        database_url: "{db}"
        aws: {{account_id: "123456789012"}}
        unsubscribe_keys: ["a-test-key-of-32-bytes-0123456789"]
        smtp_endpoints: {{mta1: "127.0.0.1:{pmta_port}"}}
        {records}
        accounting_files: ["{accounting}"]
        alert_webhook_url: "{alerts_url}"
        api_keys: {{ulixai/app: "{hash_api_key(API_KEY)}"}}
        handover_refusals_before_hold: 3
        handover_hold_seconds: 300
        workers: 1
        batch_size: 4
        retry_base_seconds: 30
        retry_max_seconds: 60
        """))
    return path


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def enqueue(service: Service, tenant: str, stream: str, count: int, first: int = 0) -> list[int]:
    return [e.id for e in service.store.enqueue([
        NewMessage(tenant, "app", stream, f"app@{tenant}.example.com", f"r{first + n}@example.org",
                   {"subject": f"hello {n}", "text": "hi"}) for n in range(count)])]


def states(service: Service, ids: list[int]) -> list[str]:
    return [m.state for m in (service.store.get(i) for i in ids) if m is not None]


def settle() -> None:
    """Give the delivery loop time to claim what is due (it polls every 0.05 s here)."""
    time.sleep(0.6)


def run_sender(stack: Path, config: Path, clock: Clock) -> tuple[Service, Delivery]:
    service = Service(load_stack(stack), load_config(config), stack_name="seed004", clock=clock)
    service.attach_events()
    delivery = Delivery(service, idle_poll=0.05)
    delivery.start()
    return service, delivery


@pytest.mark.parametrize("lead", [2, 0])
@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_new_ips_vmta_is_deployed_before_its_first_day_and_named_only_once_deployed(
        tmp_path: Path, db_url: str, alerts: WebhookReceiver, lead: int) -> None:
    """Lead 2: the config of the day before already has the VMTA, so at 00:00 its mail goes at once.  Lead 0 and
    the record: the sender does not hand the VMTA anything until the day's run deployed it, and says why."""
    stack = write_stack(tmp_path, lead)
    fleet = load_stack(stack)
    clock = Clock(at(START - datetime.timedelta(days=1), 23, 50))
    acct = tmp_path / "acct.csv"
    record_file = tmp_path / "mailplane-deployed.json"
    with PmtaStub(render_vars(host_view(fleet, "mta1", clock.day).to_vars()), acct_file=acct, clock=clock) as pmta:
        world = Fleet_(fleet, pmta, record_file)
        world.deploy(clock.day)  # the run of the day before, at 00:07
        config = write_config(tmp_path / "sender.yaml", db=db_url, pmta_port=pmta.port, alerts_url=alerts.url,
                              record_file=record_file, accounting=acct)
        service, delivery = run_sender(stack, config, clock)
        try:
            campaign = {t: enqueue(service, t, "marketing", 3) for t in NEW}
            settle()
            assert not pmta.queued, "nothing goes before the plan's first day"
            clock.set(at(START, 0, 0, 1))
            new_vmtas = {vmta_name(t, NEW[t]) for t in NEW}
            if lead == 2:
                assert new_vmtas <= set(pmta.config.vmtas), "the day before's config has the VMTAs"
                wait_for(lambda: len(pmta.queued) == 6, "the marketing mail at 00:00")
                assert {q.vmta for q in pmta.queued} == new_vmtas
            else:
                assert not new_vmtas & set(pmta.config.vmtas)
                service.check_deployed()
                settle()
                assert not pmta.queued, "no hand-over to a VMTA PowerMTA does not run"
                for tenant, ids in campaign.items():
                    waiting = [service.store.get(i) for i in ids]
                    assert all(m is not None and m.state == "queued" for m in waiting)
                    assert all(m is not None and "not deployed" in (m.last_error or "") for m in waiting)
                    assert service.store.counter("ip", NEW[tenant], START) == 0
                assert sorted(a["ip"] for a in alerts.bodies if a["kind"] == "vmta-not-deployed") == sorted(
                    NEW.values())
                assert {(t, ip) for t, ip, *_ in service.undeployed()} == {(t, NEW[t]) for t in NEW}
                metrics = generate_latest(service.metrics.registry).decode()
                assert (f'mailplane_sender_vmta_undeployed{{host="mta1",ip="{NEW["ulixai"]}",tenant="ulixai",'
                        f'vmta="{vmta_name("ulixai", NEW["ulixai"])}"}} 1.0') in metrics
                with serve(create_app(service)) as url:
                    report = httpx.get(f"{url}/v1/quotas/ulixai", headers={"Authorization": f"Bearer {API_KEY}"},
                                       timeout=10).json()
                why = {ip["address"]: ip["not_deployed"] for ip in report["ips"]}
                assert why[WARM["ulixai"]] is None and "is not in the config PowerMTA runs on mta1" in why[
                    NEW["ulixai"]]
                clock.set(at(START, 0, 7))
                world.deploy(START)  # the day's run
                clock.set(at(START, 0, 8, 1))  # past the messages' next look
                wait_for(lambda: len(pmta.queued) == 6, "the marketing mail once deployed")
                assert service.undeployed() == []
            assert pmta.refused == []
            wait_for(lambda: all(states(service, ids) == ["sent"] * 3 for ids in campaign.values()), "sent states")
        finally:
            delivery.stop()
            service.close()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_powermtas_refusals_hold_the_ip_and_suppress_nobody_only_remote_bounces_do(
        tmp_path: Path, db_url: str, alerts: WebhookReceiver) -> None:
    """No record (a fleet without Ansible's) and no lead: at 00:00 the sender names a VMTA PowerMTA lacks.  The
    refusals keep the mail queued with its reservations given back, hold the IP after three, and nobody is
    suppressed; once the day's config is live and the hold over, the mail goes and the hold ends.  Later the
    stand-in reports a remote bounce in its accounting file: that, and only that, suppresses."""
    stack = write_stack(tmp_path, 0)
    fleet = load_stack(stack)
    clock = Clock(at(START - datetime.timedelta(days=1), 23, 58))
    acct = tmp_path / "acct.csv"
    with PmtaStub(render_vars(host_view(fleet, "mta1", clock.day).to_vars()), acct_file=acct, clock=clock) as pmta:
        world = Fleet_(fleet, pmta, tmp_path / "unused.json")
        config = write_config(tmp_path / "sender.yaml", db=db_url, pmta_port=pmta.port, alerts_url=alerts.url,
                              record_file=None, accounting=acct)
        service, delivery = run_sender(stack, config, clock)
        try:
            assert service.unjudged_hosts() == ["mta1"]
            ids = enqueue(service, "ulixai", "marketing", 4)
            receipts = enqueue(service, "sos-expat", "transactional", 2)
            wait_for(lambda: states(service, receipts) == ["sent", "sent"], "the warm IP's mail")
            clock.set(at(START, 0, 0, 1))
            wait_for(lambda: len(pmta.refused) >= 3, "PowerMTA's refusals of the unknown VMTA")
            settle()
            refused_vmta = vmta_name("ulixai", NEW["ulixai"])
            assert {(r.code, r.subject) for r in pmta.refused} == {(550, refused_vmta)}
            waiting = [service.store.get(i) for i in ids]
            assert all(m is not None and m.state == "queued" for m in waiting), [m and m.state for m in waiting]
            assert service.store.counter("ip", NEW["ulixai"], START) == 0, "every refused reservation given back"
            assert service.store.suppressed("ulixai", [f"r{n}@example.org" for n in range(4)]) == set()
            holds = [p for p in service.store.pauses.active() if p.source == HANDOVER]
            assert [(p.scope, p.tenant, p.key) for p in holds] == [("ip", "ulixai", NEW["ulixai"])]
            assert "invalid virtual MTA" in holds[0].reason
            assert alerts.kinds().count("ip-handover-held") == 1
            refusals = len(pmta.refused)
            clock.set(at(START, 0, 2))
            settle()
            assert len(pmta.refused) == refusals, "held: nothing is handed over meanwhile"

            clock.set(at(START, 0, 7))
            world.deploy(START)
            clock.set(at(START, 0, 6) + 300)  # the hold is over
            wait_for(lambda: states(service, ids) == ["sent"] * 4, "the held mail once deployed")
            assert {q.vmta for q in pmta.queued} >= {refused_vmta}
            assert [p for p in service.store.pauses.active() if p.source == HANDOVER] == []
            wait_for(lambda: "ip-handover-released" in alerts.kinds(), "the release alert")

            # PowerMTA delivers; one recipient's server bounces it later (a DSN to the return path: an rb record)
            pmta.deliver(lambda rcpt: ("remote-bounce", "5.1.1 (bad destination mailbox address)",
                                       "smtp;550 5.1.1 no such user", "bad-mailbox") if rcpt == "r2@example.org"
                         else ("delivered", "2.0.0 (success)", "smtp;250 ok", ""))
            assert service.events is not None
            service.events.ingest_accounting()
            assert service.store.suppressed("ulixai", [f"r{n}@example.org" for n in range(4)]) == {"r2@example.org"}
        finally:
            delivery.stop()
            service.close()
