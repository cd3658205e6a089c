"""The sender service end to end: `mailplane serve` processes, a real SMTP server, moto for SES.

Messages go in over HTTP, through the shared queue and the pacing gates, out over SMTP to an
aiosmtpd server standing in for PowerMTA (with scripted faults) or through SES v2 to moto in
server mode.  What the tests count is what the servers received.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto_server import MotoServer, ses_sent
from sender_instance import (
    ACME_QUOTA,
    ADMIN_KEY,
    BIG,
    CAPS,
    KEYS,
    MAILPLANE,
    REGION,
    SES_QUOTA,
    Instance,
    message,
    message_ids,
    vmta_counts,
    wait_for,
    write_config,
    write_stack,
)
from smtp_sink import Faults, SmtpSink

from mailplane.model.names import parse_verp
from mailplane.sender.core.compose import message_id
from mailplane.sender.db.store import Store

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        server.verify_identity("sesco.example.com", REGION)
        server.create_configuration_set("sesco", REGION)
        yield server


def test_two_instances_never_exceed_any_cap(tmp_path: Path, db_url: str, moto: MotoServer,
                                            instances: Callable[..., Instance]) -> None:
    """Two processes x 3 workers on one database: every IP, tenant and SES cap holds exactly."""
    stack = write_stack(tmp_path)
    before = len(ses_sent(REGION))
    with SmtpSink() as sink:
        one = instances(stack, write_config(tmp_path / "one.yaml", db=db_url, sink_port=sink.port,
                                            moto_url=moto.url, workers=3))
        two = instances(stack, write_config(tmp_path / "two.yaml", db=db_url, sink_port=sink.port,
                                            moto_url=moto.url, workers=3))
        wanted = {"acme": 80, "bravo": 45, "sesco": 30}
        for tenant, count in wanted.items():
            for start in range(0, count, 10):  # batches, alternating between the instances
                inst = one if (start // 10) % 2 else two
                batch = [message(tenant, n) for n in range(start, min(start + 10, count))]
                response = inst.post(tenant, {"messages": batch})
                assert response.status_code == 202, response.text
        expected_pmta = ACME_QUOTA + CAPS["192.0.2.41"]
        wait_for(lambda: sink.received >= expected_pmta and len(ses_sent(REGION)) - before >= SES_QUOTA,
                 60, "the capped volume to be delivered")
        time.sleep(1.5)  # anything beyond the caps would show now
        by_vmta = vmta_counts(sink)
    store = Store(db_url, create=False)
    try:
        counts = store.counts()
        assert counts == {"sent": expected_pmta + SES_QUOTA,
                          "queued": sum(wanted.values()) - expected_pmta - SES_QUOTA}, counts
        today = datetime.datetime.now(datetime.UTC).date()
        ip_sent = {ip: store.counter("ip", ip, today) for ip in CAPS}
    finally:
        store.close()
    assert sink.received == expected_pmta and len(message_ids(sink)) == expected_pmta  # none twice
    assert len(ses_sent(REGION)) - before == SES_QUOTA
    # every IP within its cap; acme's tenant quota (55) bound before its IPs' caps (40 + 25)
    assert by_vmta["bravo-192-0-2-41"] == CAPS["192.0.2.41"]
    assert by_vmta["acme-192-0-2-31"] + by_vmta["acme-192-0-2-32"] == ACME_QUOTA
    assert by_vmta["acme-192-0-2-31"] <= 40 and by_vmta["acme-192-0-2-32"] <= 25
    assert set(by_vmta) == {"acme-192-0-2-31", "acme-192-0-2-32", "bravo-192-0-2-41"}
    # each message went out through its own tenant's IPs only
    assert all(str(m.message["X-Virtual-MTA"]).split("-")[0] == str(m.message["From"]).split("@")[1].split(".")[0]
               for m in sink.messages)
    ip_of_vmta = {"acme-192-0-2-31": "192.0.2.31", "acme-192-0-2-32": "192.0.2.32", "bravo-192-0-2-41": "192.0.2.41"}
    # ... with the return path of its route: aligned with its From domain, where its bounces come back
    assert all((verp := parse_verp(m.mail_from)) is not None and verp[1] == ip_of_vmta[str(m.message["X-Virtual-MTA"])]
               and m.mail_from.endswith("@transactional.rp." + str(m.message["From"]).split("@")[1])
               for m in sink.messages)
    assert ip_sent == {"192.0.2.31": by_vmta["acme-192-0-2-31"], "192.0.2.32": by_vmta["acme-192-0-2-32"],
                       "192.0.2.41": 30}


def test_temporary_failures_retry_until_all_delivered(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    """421/451 for a third of the attempts (at RCPT and after DATA): every message arrives in the end."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    faults = Faults(rcpt_every=3, rcpt_code=451, data_every=3, data_code=421)
    with SmtpSink(faults) as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))
        response = inst.post("bravo", {"messages": [message("bravo", n) for n in range(30)]})
        assert response.status_code == 202, response.text
        ids = [m["id"] for m in response.json()["messages"]]
        wait_for(lambda: len(message_ids(sink)) == 30, 60, "all 30 messages")
        states = {inst.http.get(f"/v1/messages/{i}", headers={"Authorization": f"Bearer {KEYS['bravo']}"}
                                ).json()["state"] for i in ids}
    assert states == {"sent"}
    store = Store(f"sqlite:///{tmp_path / 'q.db'}", create=False)
    try:
        retried = [m for m in map(store.get, [int(i) for i in ids]) if m and m.attempts > 1]
    finally:
        store.close()
    assert len(retried) >= 10  # a third of 30 failed at least once (a retry may fail again)
    # a 421 after DATA may have been delivered: such messages can arrive twice, never more often
    # than they were refused after the dot; RCPT-time failures are never delivered twice
    assert max(message_ids(sink).values()) <= 3


def test_a_refusal_at_the_hand_over_suppresses_nobody(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    """PowerMTA's 550 5.1.1 at RCPT is PowerMTA's decision, not the mailbox's: the message waits in the queue
    with the reply as its error, the address stays sendable, and other mail goes."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    with SmtpSink(Faults(reject=r"^bounce")) as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))
        auth = {"Authorization": f"Bearer {KEYS['bravo']}"}
        bad = inst.post("bravo", {**message("bravo", 1), "to": "bounce-me@example.org"})
        good = inst.post("bravo", message("bravo", 2))
        assert bad.status_code == good.status_code == 202

        def refused() -> dict[str, Any]:
            found: dict[str, Any] = inst.http.get(f"/v1/messages/{bad.json()['id']}", headers=auth).json()
            return found

        wait_for(lambda: refused()["attempts"] >= 1, 30, "the refused hand-over")
        assert refused()["state"] == "queued" and "550 5.1.1" in refused()["last_error"]
        wait_for(lambda: sink.received == 1, 30, "the good message")
        again = inst.post("bravo", {**message("bravo", 3), "to": "Bounce-Me@example.org"})
        assert again.status_code == 202  # not suppressed
        assert [m.rcpt_tos for m in sink.messages] == [["rcpt2@example.org"]]
    store = Store(f"sqlite:///{tmp_path / 'q.db'}", create=False)
    try:
        assert store.suppressed("bravo", ["bounce-me@example.org"]) == set()
    finally:
        store.close()


def test_kill_9_mid_batch_loses_nothing(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    """A `mailplane serve` killed with SIGKILL mid-batch: another instance delivers everything;
    only messages that were in flight at the kill may arrive twice."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    with SmtpSink(Faults(delay=0.1)) as sink:  # slow answers: the victim always has sends in flight
        victim = instances(stack, write_config(tmp_path / "a.yaml", db=db, sink_port=sink.port, workers=1,
                                               batch=10, lease=2))
        assert victim.post("bravo", {"messages": [message("bravo", n) for n in range(40)]}).status_code == 202
        store = Store(db, create=False)

        def sending() -> set[int]:
            return {m.id for m in map(store.get, range(1, 41)) if m and m.state == "sending"}

        # kill while a batch is out (a batch of 10 at 0.1 s a message is out for a second)
        wait_for(lambda: sink.received >= 5 and bool(sending()), 30, "the victim to be mid-batch")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        in_flight = sending()
        assert in_flight and len(in_flight) <= 10  # at most its one batch
        in_flight_ids = {message_id(m) for m in map(store.get, in_flight) if m}
        heir = instances(stack, write_config(tmp_path / "b.yaml", db=db, sink_port=sink.port, lease=2))
        wait_for(lambda: store.counts() == {"sent": 40}, 60, "the heir to deliver the rest")
        heir.stop()
        store.close()
    received = message_ids(sink)
    assert len(received) == 40  # nothing lost
    twice = {mid for mid, n in received.items() if n > 1}
    assert twice <= in_flight_ids and max(received.values()) == (2 if twice else 1)


def test_a_running_serve_has_not_loaded_pulumi(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    """The sender runs on MTA hosts without the Pulumi SDK: a serving process has not loaded it (pulumi brings
    grpc's compiled core, which shows in the process's memory map), whatever it took to start and send."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))
        assert inst.post("bravo", message("bravo", 1)).status_code == 202
        wait_for(lambda: sink.received == 1, 30, "the message")
        assert inst.http.get("/metrics").status_code == 200
        mapped = {line.split()[-1] for line in Path(f"/proc/{inst.proc.pid}/maps").read_text().splitlines()
                  if len(line.split()) >= 6}
    assert any("/sqlalchemy/" in path for path in mapped)  # the check sees the sender's own compiled parts
    assert [path for path in mapped if "/pulumi" in path or "/grpc/" in path] == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_an_operator_pauses_drains_and_cancels_a_tenant_across_instances(
        tmp_path: Path, db_url: str, instances: Callable[..., Instance]) -> None:
    """A pause made through one instance holds on the other (they share the database): the tenant's mail
    waits, nothing is dropped, another tenant goes on; a resume sends it; a drain refuses new mail; a
    cancel empties the queue.  The admin API takes operators' keys only."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with SmtpSink() as sink:
        one = instances(stack, write_config(tmp_path / "one.yaml", db=db_url, sink_port=sink.port))
        two = instances(stack, write_config(tmp_path / "two.yaml", db=db_url, sink_port=sink.port))
        assert one.http.get("/v1/admin/pauses").status_code == 401
        assert one.http.get("/v1/admin/pauses", headers={"Authorization": f"Bearer {KEYS['acme']}"}).status_code == 401
        pause = one.http.post("/v1/admin/pauses", headers=admin, json={
            "scope": "tenant", "tenant": "bravo", "reason": "complaints from a bad list"})
        assert pause.status_code == 201, pause.text
        for n in range(5):
            assert two.post("bravo", message("bravo", n)).status_code == 202
            assert two.post("acme", message("acme", n)).status_code == 202
        wait_for(lambda: sink.received == 5, 30, "acme's mail")
        time.sleep(1.0)  # bravo's would have gone by now
        assert set(vmta_counts(sink)) <= {"acme-192-0-2-31", "acme-192-0-2-32"}
        report = two.http.get("/v1/quotas/bravo", headers={"Authorization": f"Bearer {KEYS['bravo']}"}).json()
        assert report["pauses"] == ["tenant bravo paused by operator (complaints from a bad list)"]
        queue = two.http.get("/v1/admin/queue/bravo", headers=admin).json()
        assert queue["streams"]["transactional"].get("queued") == 5
        resumed = two.http.delete(f"/v1/admin/pauses/{pause.json()['id']}", headers=admin)
        assert resumed.status_code == 200 and two.http.delete(f"/v1/admin/pauses/{pause.json()['id']}",
                                                               headers=admin).status_code == 404
        wait_for(lambda: sink.received == 10, 30, "bravo's mail after the resume")
        assert vmta_counts(sink)["bravo-192-0-2-41"] == 5
        drain = one.http.post("/v1/admin/pauses", headers=admin, json={
            "scope": "tenant", "tenant": "bravo", "mode": "drain", "reason": "moving to another stack"})
        assert drain.status_code == 201
        refused = two.post("bravo", message("bravo", 9))
        assert refused.status_code == 409 and refused.json()["problems"][0]["code"] == "draining"
        hold = one.http.post("/v1/admin/pauses", headers=admin, json={
            "scope": "tenant", "tenant": "acme", "reason": "list review"})
        for n in range(10, 13):
            assert one.post("acme", message("acme", n)).status_code == 202
        cancelled = two.http.post("/v1/admin/queue/acme/cancel", headers=admin, json={"reason": "bad list"})
        assert cancelled.json() == {"tenant": "acme", "cancelled": 3}
        assert two.http.delete(f"/v1/admin/pauses/{hold.json()['id']}", headers=admin).status_code == 200
        time.sleep(1.0)
        assert sink.received == 10  # cancelled mail is never sent
        bad = one.http.post("/v1/admin/pauses", headers=admin, json={
            "scope": "ip", "tenant": "acme", "key": "192.0.2.41", "reason": "x"})
        assert bad.status_code == 422 and "not an IP of acme" in bad.json()["problems"][0]["message"]


def test_operators_pause_and_resume_with_the_mailplane_command(tmp_path: Path,
                                                              instances: Callable[..., Instance]) -> None:
    """`mailplane admin` against a real serve: the key from the environment, the API's refusals as errors."""
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))

        def admin(*args: str, key: str | None = ADMIN_KEY) -> subprocess.CompletedProcess[str]:
            env = {k: v for k, v in os.environ.items() if k != "MAILPLANE_ADMIN_KEY"}
            if key is not None:
                env["MAILPLANE_ADMIN_KEY"] = key
            return subprocess.run([MAILPLANE, "admin", *args, "--url", inst.url], capture_output=True, text=True,
                                  env=env, timeout=60)

        paused = admin("pause", "--scope", "ip", "--tenant", "acme", "--key", "192.0.2.31", "--reason", "blocklisted")
        assert paused.returncode == 0, paused.stderr
        pause_id = paused.stdout.split()[0]
        listed = admin("pauses")
        assert "ip acme 192.0.2.31" in listed.stdout and "by operator: blocklisted" in listed.stdout
        for n in range(4):
            assert inst.post("acme", message("acme", n)).status_code == 202
        wait_for(lambda: sink.received == 4, 30, "acme's mail")
        assert set(vmta_counts(sink)) == {"acme-192-0-2-32"}  # never the paused IP
        assert admin("resume", pause_id).returncode == 0
        assert admin("pauses").stdout.strip() == "no pause in force"
        refused = admin("pause", "--scope", "stream", "--tenant", "acme", "--key", "bulk", "--reason", "x")
        assert refused.returncode == 1 and "acme sends no 'bulk' stream" in refused.stderr
        assert admin("pauses", key=None).returncode == 2  # no key in the environment: a usage error
        assert admin("pauses", key=KEYS["acme"]).returncode == 1  # a sender's key is not an admin key


def test_marketing_mail_unsubscribes_with_one_click(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))
        assert inst.post("acme", message("acme", 1, stream="marketing")).status_code == 202
        wait_for(lambda: sink.received == 1, 30, "the newsletter")
        mail = sink.messages[0].message
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert str(mail["X-Virtual-MTA"]).startswith("acme-")  # acme's own IP, never another tenant's
        link = str(mail["List-Unsubscribe"]).strip("<>")
        assert link.startswith("https://mailplane.test/v1/unsubscribe/")
        path = link.removeprefix("https://mailplane.test")
        with httpx.Client(base_url=inst.url) as browser:  # a fresh client: no cookie, no login
            page = browser.get(path)
            assert page.status_code == 200 and inst.post("acme", message("acme", 1)).status_code == 202  # GET: nothing
            click = browser.post(path, content=b"List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert click.status_code == 200 and "set-cookie" not in click.headers and not click.is_redirect
        refused = inst.post("acme", message("acme", 1, stream="marketing"))
        assert refused.status_code == 422 and "suppress" in refused.text.lower()
        # an unsubscription is from the newsletter: a receipt still goes
        assert inst.post("acme", message("acme", 1)).status_code == 202


def _service(tmp_path: Path, sink_port: int) -> Any:
    from mailplane.model.loader import load_stack
    from mailplane.sender.config import load_config
    from mailplane.sender.service import Service

    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    config = load_config(write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}", sink_port=sink_port))
    return Service(load_stack(stack), config)


def test_a_message_that_cannot_be_built_or_has_no_tenant_fails_alone(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A poisoned payload or a tenant removed from the stack must not hold its batch hostage; each message that
    fails at the hand-over says so in one log line: its id, tenant, route, IP and the reason."""
    from mailplane.sender.core.messages import NewMessage
    from mailplane.sender.delivery.worker import Delivery

    def new(tenant: str, n: int, payload: dict[str, Any]) -> NewMessage:
        return NewMessage(tenant, "app", "transactional", f"app@{tenant}.example.com", f"rcpt{n}@example.org",
                          payload)

    with SmtpSink() as sink:
        service = _service(tmp_path, sink.port)
        ids = [e.id for e in service.store.enqueue([
            new("bravo", 1, {"subject": "ok", "text": "fine"}),
            new("bravo", 2, {"subject": "no body"}),  # neither text nor html
            new("bravo", 3, {"subject": "odd", "text": "x", "headers": {"X-Note": "a@"}}),
            new("ghost", 4, {"subject": "gone", "text": "x"}),  # a tenant no longer in the stack
            new("bravo", 5, {"subject": "ok", "text": "fine"}),
        ])]
        delivery = Delivery(service, idle_poll=0.05)
        delivery.start()
        try:
            wait_for(lambda: service.store.counts().get("queued", 0) + service.store.counts().get("sending", 0) == 0,
                     30, "every message to reach a final state")
        finally:
            delivery.stop()
        states = {i: service.store.get(i) for i in ids}
        service.close()
    assert [states[i].state for i in ids] == ["sent", "failed", "sent", "failed", "sent"]  # type: ignore[union-attr]
    assert "cannot build" in (states[ids[1]].last_error or "")  # type: ignore[union-attr]
    assert "no longer in the stack" in (states[ids[3]].last_error or "")  # type: ignore[union-attr]
    failed = [r.getMessage() for r in caplog.records if r.name == "mailplane.sender.delivery.worker" and " failed: " in
              r.getMessage()]
    assert len(failed) == 1 and failed[0].startswith(f"message {ids[1]} failed: tenant bravo, route bravo/"
                                                     "transactional via pmta, IP 192.0.2.")
    assert "cannot build the message" in failed[0]
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["rcpt1@example.org", "rcpt3@example.org",
                                                           "rcpt5@example.org"]


def test_sigterm_stops_cleanly_and_leaves_no_claim(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    db = f"sqlite:///{tmp_path / 'q.db'}"
    with SmtpSink(Faults(delay=0.05)) as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=db, sink_port=sink.port, batch=10))
        assert inst.post("bravo", {"messages": [message("bravo", n) for n in range(60)]}).status_code == 202
        wait_for(lambda: sink.received >= 3, 30, "delivery to start")
        inst.proc.send_signal(signal.SIGTERM)
        assert inst.proc.wait(30) == 0
    store = Store(db, create=False)
    try:
        counts = store.counts()
    finally:
        store.close()
    assert "sending" not in counts, counts  # finished or given back: nothing waits for a lease to run out
    assert counts.get("sent", 0) == sink.received and sum(counts.values()) == 60


def _two_host_stack(root: Path) -> Path:
    stack = root / "stack2"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: {REGION}, max_send_rate: 50, daily_quota: 1000}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
          mta2: {{ansible_host: 192.0.2.11}}
        warmup_plans:
          open: {{schedule: [{{day: 1, daily: 1000, hourly: 1000}}]}}
        """))
    ips = {"split": [("192.0.2.31", "mta1"), ("192.0.2.32", "mta2")], "far": [("192.0.2.41", "mta2")], "sesco": []}
    for name, addresses in ips.items():
        lines = [f"name: {name}", f"domains: [{{name: {name}.example.com, dkim: {{mode: easy}}}}]"]
        if addresses:
            lines.append("ips:")
            lines += [f"  - {{address: {a}, hostname: o{i}.{name}.example.com, host: {h}, "
                      f"warmup: {{plan: open, started: 2020-01-01}}}}" for i, (a, h) in enumerate(addresses)]
        lines.append(f"senders: [{{name: app, from: [app@{name}.example.com]}}]")
        (stack / "tenants" / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return stack


def test_an_instance_delivers_only_through_its_own_hosts(tmp_path: Path) -> None:
    """PowerMTA takes mail only from its own host's sender: an instance restricted to mta1 claims
    the messages it can route (mta1's IPs, or SES) and leaves the rest to mta2's instance."""
    from mailplane.model.loader import load_stack
    from mailplane.sender.core.gates import Deferred, Granted
    from mailplane.sender.core.messages import NewMessage
    from mailplane.sender.delivery.pacing import Pacer

    fleet = load_stack(_two_host_stack(tmp_path))
    store = Store(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        mta1 = Pacer(store, fleet, hosts={"mta1"})
        assert sorted(mta1.routes() or []) == [("sesco", "transactional"), ("split", "transactional")]
        assert Pacer(store, fleet).routes() is None  # unrestricted: everything
        new = [NewMessage(t, "app", "transactional", f"app@{t}.example.com", f"r{n}@example.org",
                          {"subject": "s", "text": "t"}) for n, t in enumerate(["far", "split", "sesco", "split"])]
        ids = [e.id for e in store.enqueue(new)]
        claimed = store.claim("w1", 10, routes=mta1.routes())
        assert [m.tenant for m in claimed] == ["split", "sesco", "split"]  # "far" is mta2's
        grants = mta1.reserve_many("w1", claimed)
        assert [(g.transport, g.ip) for g in grants if isinstance(g, Granted)] == [
            ("pmta", "192.0.2.31"), ("ses", None), ("pmta", "192.0.2.31")]  # never mta2's 192.0.2.32
        # a "far" message claimed anyway (an instance started with an older fleet) goes back, not to SES
        [far] = store.claim("w2", 10)
        assert far.id == ids[0]
        [back] = mta1.reserve_many("w2", [far])
        assert isinstance(back, Deferred) and not back.kept
        got = store.get(far.id)
        assert got is not None and got.state == "queued" and got.transport is None
    finally:
        store.close()


def test_serve_refuses_a_config_naming_what_the_stack_lacks(tmp_path: Path) -> None:
    stack = write_stack(tmp_path)
    config = write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}", sink_port=2525)
    unknown = 'mta_hosts: [mta9]\napi_keys:\n  nobody/app: "sha256:' + "0" * 64 + '"\n'
    config.write_text(config.read_text().replace("api_keys:\n", unknown))
    run = subprocess.run([MAILPLANE, "serve", str(stack), "--config", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert "mta_hosts: 'mta9' is not an MTA host of stack stack" in run.stderr
    assert "api_keys: 'nobody/app' is not a sender of stack stack" in run.stderr
