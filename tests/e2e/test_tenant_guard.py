"""The tenant guard end to end: two `mailplane serve` processes sharing PostgreSQL, a tenant sending on both
routes (PowerMTA, an SMTP sink standing in for it; SES, moto in server mode), its bounces coming back
through PowerMTA's accounting file and SES's SNS events (moto POSTing to the webhook).

Neither route's bounces alone are over the tenant's threshold; together they are: the guard pauses the
tenant on both routes, its queued mail waits (nothing dropped), another tenant goes on, an alert is
POSTed, both instances' quota API and ``/metrics`` say why, and an operator's resume sends the mail.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from moto_server import ACCOUNT_ID, MotoServer, ses_sent
from ports import free_port
from sender_instance import ADMIN_KEY, MAILPLANE, Instance, wait_for
from smtp_sink import SmtpSink
from webhook_receiver import WebhookReceiver

from mailplane.model.names import WEBHOOK_PATH, topic_name, vmta_name
from mailplane.sender.config import hash_api_key, new_api_key

pytestmark = pytest.mark.processes

REGION = "eu-west-1"
DUO_IP, BRAVO_IP = "192.0.2.51", "192.0.2.61"
KEYS = {"duo": new_api_key(), "bravo": new_api_key()}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def write_stack(root: Path) -> Path:
    """duo: transactional through its IP (PowerMTA), marketing through SES; a guard at 10 % over 20 sent."""
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: {REGION}, max_send_rate: 50, daily_quota: 10000}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
        sender: {{public_url: "https://mailplane.test"}}
        """))
    (stack / "tenants" / "duo.yaml").write_text(textwrap.dedent(f"""\
        name: duo
        streams: [transactional, marketing]
        guard: {{bounce_rate: 0.10, complaint_rate: 0.05, min_volume: 20, window_hours: 24}}
        domains: [{{name: duo.example.com, dkim: {{mode: easy}}}}]
        ips:
          - {{address: {DUO_IP}, hostname: o1.duo.example.com, host: mta1, streams: [transactional]}}
        senders: [{{name: app, from: [app@duo.example.com]}}]
        """))
    (stack / "tenants" / "bravo.yaml").write_text(textwrap.dedent(f"""\
        name: bravo
        domains: [{{name: bravo.example.com, dkim: {{mode: easy}}}}]
        ips:
          - {{address: {BRAVO_IP}, hostname: o1.bravo.example.com, host: mta1}}
        senders: [{{name: app, from: [app@bravo.example.com]}}]
        """))
    return stack


def write_config(path: Path, *, db: str, sink_port: int, moto_url: str, alert_url: str,
                 accounting: Path | None) -> Path:
    keys = "".join(f'  {t}/app: "{hash_api_key(k)}"\n' for t, k in KEYS.items())
    path.write_text(textwrap.dedent(f"""\
        database_url: "{db}"
        listen: 127.0.0.1:{free_port()}
        aws: {{account_id: "{ACCOUNT_ID}", endpoint_url: {moto_url}}}
        unsubscribe_keys: ["a-test-key-of-32-bytes-0123456789"]
        smtp_endpoints: {{mta1: "127.0.0.1:{sink_port}"}}
        accounting_files: {json.dumps([str(accounting / "*.csv")] if accounting else [])}
        alert_webhook_url: {alert_url}
        events_interval_seconds: 0.5
        insecure_skip_sns_signature: true
        retry_base_seconds: 0.2
        retry_max_seconds: 1.0
        api_keys:
        """) + keys + f'admin_keys:\n  ops: "{hash_api_key(ADMIN_KEY)}"\n')
    return path






def message(tenant: str, n: int, stream: str = "transactional") -> dict[str, Any]:
    return {"from": f"app@{tenant}.example.com", "to": f"rcpt{n}@example.org", "subject": f"hello {n}",
            "text": f"message {n}", "stream": stream}


def post(inst: Instance, tenant: str, messages: list[dict[str, Any]]) -> None:
    response = inst.http.post("/v1/messages", json={"messages": messages},
                              headers={"Authorization": f"Bearer {KEYS[tenant]}"})
    assert response.status_code == 202, response.text


def accounting_records(bounced: int, delivered: int, deferred: int) -> str:
    """PowerMTA's accounting records on duo's IP, logged now: hard bounces, deliveries, deferrals."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S+0000")
    vmta = vmta_name("duo", DUO_IP)
    rows = [f"b,{now},app@duo.example.com,rcpt{i}@example.org,{vmta},failed,5.1.1,smtp;550 5.1.1 no such user,"
            "bad-mailbox\n" for i in range(bounced)]
    rows += [f"d,{now},app@duo.example.com,rcpt{bounced + i}@example.org,{vmta},relayed,2.0.0,smtp;250 ok,\n"
             for i in range(delivered)]
    rows += [f"t,{now},app@duo.example.com,rcpt14@example.org,{vmta},delayed,4.2.2,smtp;452 mailbox full,"
             "quota-issues\n" for _ in range(deferred)]
    return "type,timeLogged,orig,rcpt,vmta,dsnAction,dsnStatus,dsnDiag,bounceCat\n" + "".join(rows)


def ses_bounce(recipient: str) -> str:
    """What duo's configuration set publishes to its topic for a hard bounce (SES event publishing)."""
    return json.dumps({"eventType": "Bounce",
                       "mail": {"messageId": "0100019a-guard", "destination": [recipient],
                                "tags": {"ses:configuration-set": ["duo"]}},
                       "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                                  "bouncedRecipients": [{"emailAddress": recipient, "status": "5.1.1"}]}})


COUNTED = ("sent", "delivered", "bounced", "deferred")


def route_totals(inst: Instance) -> dict[str, dict[str, int]]:
    """``GET /v1/stats/duo``: per route, the counts summed over the days (the hour may turn mid-test)."""
    body = inst.http.get("/v1/stats/duo?days=1", headers={"Authorization": f"Bearer {KEYS['duo']}"}).json()
    totals: dict[str, dict[str, int]] = {}
    for row in body["routes"]:
        entry = totals.setdefault(row["route"], dict.fromkeys(COUNTED, 0))
        for name in COUNTED:
            entry[name] += row[name]
    return totals


def pauses(inst: Instance) -> list[dict[str, Any]]:
    return list(inst.http.get("/v1/admin/pauses", headers=ADMIN).json())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_guard_pauses_a_tenant_on_both_routes_across_instances(
        tmp_path: Path, db_url: str, instances: Callable[..., Instance], alerts: WebhookReceiver) -> None:
    stack = write_stack(tmp_path)
    accounting = tmp_path / "acct"
    accounting.mkdir()
    with MotoServer() as moto, SmtpSink() as sink:
        before = len(ses_sent(REGION))  # moto's backend lives in this process: other tests' mail is there too

        def ses_count() -> int:
            return len(ses_sent(REGION)) - before

        moto.verify_identity("duo.example.com", REGION)
        moto.create_configuration_set("duo", REGION)
        one = instances(stack, write_config(tmp_path / "one.yaml", db=db_url, sink_port=sink.port, moto_url=moto.url,
                                            alert_url=alerts.url, accounting=accounting))
        two = instances(stack, write_config(tmp_path / "two.yaml", db=db_url, sink_port=sink.port, moto_url=moto.url,
                                            alert_url=alerts.url, accounting=None))
        sns = moto.client("sns", REGION)
        topic = sns.create_topic(Name=topic_name("duo"))["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=one.url + WEBHOOK_PATH)

        # 15 through PowerMTA, 10 through SES, half from each instance
        post(one, "duo", [message("duo", n) for n in range(15)])
        post(two, "duo", [message("duo", 100 + n, "marketing") for n in range(10)])
        wait_for(lambda: sink.received == 15 and ses_count() == 10, 60, "duo's 25 messages")
        assert {str(m.message["X-Virtual-MTA"]) for m in sink.messages} == {vmta_name("duo", DUO_IP)}

        # 2 hard bounces in PowerMTA's accounting: 8 % of 25, under duo's 10 %
        (accounting / "acct-1.csv").write_text(accounting_records(bounced=2, delivered=12, deferred=1))
        wait_for(lambda: route_totals(two).get(DUO_IP, {}).get("bounced") == 2, 30, "the accounting bounces")
        time.sleep(1.5)  # three turns of the guard
        assert pauses(two) == [] and alerts.bodies == []

        # 1 hard bounce from SES's events: 3 of 25 (12 %) over both routes, over 10 %
        sns.publish(TopicArn=topic, Message=ses_bounce("rcpt100@example.org"))
        wait_for(lambda: bool(pauses(two)), 30, "the guard's pause")
        [pause] = pauses(two)
        assert (pause["scope"], pause["tenant"], pause["source"], pause["mode"]) == ("tenant", "duo", "guard", "pause")
        assert pause["reason"].startswith("bounce rate 12.00% over 24 h (3 of 25 sent)")
        assert route_totals(one) == {DUO_IP: {"sent": 15, "delivered": 12, "bounced": 2, "deferred": 1},
                                     "ses": {"sent": 10, "delivered": 0, "bounced": 1, "deferred": 0}}
        wait_for(lambda: bool(alerts.bodies), 10, "the alert")
        [alert] = alerts.bodies
        assert (alert["kind"], alert["tenant"], alert["pause_id"]) == ("tenant-paused", "duo", pause["id"])

        # both instances say why: the quota API and /metrics
        for inst in (one, two):
            quota = inst.http.get("/v1/quotas/duo", headers={"Authorization": f"Bearer {KEYS['duo']}"}).json()
            assert quota["pauses"] == [f"tenant duo paused by guard ({pause['reason']})"]
            scraped = inst.http.get("/metrics").text
            assert 'scope="tenant",source="guard",tenant="duo"} 1.0' in scraped
        # both instances judge; the database lets one pause (and count, and alert)
        counted = [inst.http.get("/metrics").text for inst in (one, two)]
        assert sum('mailplane_sender_guard_pauses_total{tenant="duo"} 1.0' in text for text in counted) == 1

        # paused on both routes: duo's new mail waits, accepted and queued; bravo's goes
        post(two, "duo", [message("duo", 200), message("duo", 201, "marketing")])
        post(one, "duo", [message("duo", 202), message("duo", 203, "marketing")])
        post(two, "bravo", [message("bravo", n) for n in range(3)])
        wait_for(lambda: sink.received == 18, 30, "bravo's mail")
        time.sleep(2.0)
        assert sink.received == 18 and ses_count() == 10
        queue = two.http.get("/v1/admin/queue/duo", headers=ADMIN).json()
        assert queue["streams"]["transactional"].get("queued") == 2
        assert queue["streams"]["marketing"].get("queued") == 2

        # an operator resumes through the other instance: the waiting mail goes on both routes
        assert one.http.delete(f"/v1/admin/pauses/{pause['id']}", headers=ADMIN).status_code == 200
        wait_for(lambda: sink.received == 20 and ses_count() == 12, 60, "duo's mail after the resume")
        time.sleep(1.5)  # the guard judges only what came after the resume: no new pause
        assert pauses(one) == []

        # the operator's view of the same numbers: `mailplane admin stats`
        env = {**os.environ, "MAILPLANE_ADMIN_KEY": ADMIN_KEY}
        shown = subprocess.run([MAILPLANE, "admin", "stats", "duo", "--days", "1", "--url", two.url],
                               capture_output=True, text=True, env=env, timeout=60)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert lines[0] == "duo: the guard pauses above 10.00% bounces or 5.00% complaints over 24 h, from 20 sent"
        assert lines[1].split() == ["day", "route", "sent", "delivered", "bounced", "complained", "deferred",
                                    "suppressed", "bounce", "complaint"]
        rows = {line.split()[1]: line.split()[2:] for line in lines[2:]}
        assert rows["ses"][0] == "12" and rows["ses"][2] == "1"  # 10 + the 2 sent after the resume
        assert rows[DUO_IP][:5] == ["17", "12", "2", "0", "1"]
        denied = subprocess.run([MAILPLANE, "admin", "stats", "duo", "--url", two.url], capture_output=True, text=True,
                                env={**env, "MAILPLANE_ADMIN_KEY": KEYS["duo"]}, timeout=60)
        assert denied.returncode == 1 and "401" in denied.stderr  # a sender's key is not an operator's
    assert len(alerts.bodies) == 1  # one pause, one alert
