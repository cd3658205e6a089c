"""The right mail first, end to end: a real `mailplane serve`, an SMTP sink for PowerMTA and SES through moto.

* A tenant's campaign fills its IP's pace; a password reset posted after it leaves at the IP's next
  send while most of the campaign still waits, and the campaign leaves at the IP's steady rate, not
  in one burst.
* Two tenants share the SES account's daily quota: the heavy one's campaign takes what the light one
  does not keep, and the light one's mail, posted after, leaves while the heavy one's still waits.
* Two tenants share the SES account's send rate: the light one's mail, posted while the heavy one's
  campaign fills the rate, takes turns with it instead of waiting behind it.
"""

from __future__ import annotations

import datetime
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto_server import MotoServer, ses_sent
from sender_instance import KEYS, Instance, message, wait_for, write_config
from smtp_sink import SmtpSink

pytestmark = pytest.mark.processes

REGION = "eu-west-1"
HOURLY = 720  # one send every 5 s; a burst of 12 (60 s' worth)
SES_QUOTA = 20
"""Small: moto's account reads as 1 send a second, which the sender paces by."""
LIGHT_SHARE = 99
"""sesco's weight against bravo's 1: nearly the whole quota is its share, so what it keeps is large all day."""


def write_stack(root: Path, ses_quota: int = SES_QUOTA, light_share: int = LIGHT_SHARE) -> Path:
    """acme: one IP for both streams; bravo and sesco: SES only, sharing the account's quota."""
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: {REGION}, max_send_rate: 50, daily_quota: {ses_quota}}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
        sender: {{public_url: "https://mailplane.test"}}
        warmup_plans:
          steady: {{schedule: [{{day: 1, daily: 10000, hourly: {HOURLY}}}]}}
        """))
    (stack / "tenants" / "acme.yaml").write_text(textwrap.dedent("""\
        name: acme
        streams: [transactional, marketing]
        domains: [{name: acme.example.com, dkim: {mode: easy}}]
        ips:
          - {address: 192.0.2.31, hostname: o1.acme.example.com, host: mta1,
             warmup: {plan: steady, started: 2020-01-01}}
        senders: [{name: app, from: [app@acme.example.com]}]
        """))
    for name, share in (("bravo", 1), ("sesco", light_share)):
        (stack / "tenants" / f"{name}.yaml").write_text(textwrap.dedent(f"""\
            name: {name}
            streams: [transactional, marketing]
            domains: [{{name: {name}.example.com, dkim: {{mode: easy}}}}]
            ses: {{share: {share}}}
            senders: [{{name: app, from: [app@{name}.example.com]}}]
            """))
    return stack


def ses_sent_from(tenant: str, since: int) -> int:
    """Messages moto's SES took from ``tenant``'s sender after the first ``since`` it had."""
    return sum(1 for m in ses_sent(REGION)[since:] if m.source == f"app@{tenant}.example.com")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        for name in ("bravo", "sesco"):
            server.verify_identity(f"{name}.example.com", REGION)
            server.create_configuration_set(name, REGION)
        yield server


def test_a_password_reset_leaves_at_the_ips_next_send_while_the_campaign_is_paced(
        tmp_path: Path, instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path)
    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port))
        started = time.monotonic()
        campaign = [message("acme", n, stream="marketing") for n in range(60)]
        assert inst.post("acme", {"messages": campaign}).status_code == 202
        wait_for(lambda: sink.received >= 12, 20, "the IP's burst")
        time.sleep(1.0)
        assert sink.received <= 12 + 1, "after its burst the IP sends one message every 5 s"
        reset = inst.post("acme", message("acme", 99, subject="Reset your password"))
        assert reset.status_code == 202
        posted = time.monotonic()
        wait_for(lambda: any(m.rcpt_tos == ["rcpt99@example.org"] for m in list(sink.messages)), 15,
                 "the password reset")
        waited = time.monotonic() - posted
        arrived = [m.rcpt_tos[0] for m in list(sink.messages)]
        assert waited <= 5.0 + 3.0, f"one pace interval (5 s) and the workers' poll, not behind the campaign: {waited}"
        assert len(arrived) <= 12 + (time.monotonic() - started) / 5.0 + 2, "the campaign never bursts again"
        assert sum(1 for a in arrived if a != "rcpt99@example.org") < 30, "most of the campaign still waits"


def test_a_light_ses_tenant_sends_while_a_heavy_ones_campaign_waits(
        tmp_path: Path, moto: MotoServer, instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path)
    before = len(ses_sent(REGION))

    def sent(tenant: str) -> int:
        return ses_sent_from(tenant, before)

    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port, moto_url=moto.url))
        assert inst.post("bravo", {"messages": [message("bravo", n, stream="marketing")
                                                for n in range(SES_QUOTA)]}).status_code == 202
        now = datetime.datetime.now(datetime.UTC)
        left = 1 - (now.hour * 3600 + now.minute * 60 + now.second) / 86400
        kept = int(SES_QUOTA * LIGHT_SHARE / (LIGHT_SHARE + 1) * left)  # sesco's fair share still to come today
        if kept < 1:
            pytest.skip("in the last minutes of the UTC day nothing is kept for a share any more")
        wanted = min(5, kept)
        wait_for(lambda: sent("bravo") >= SES_QUOTA - kept - 1, 60, "the heavy tenant's campaign up to what is kept")
        time.sleep(1.0)
        assert sent("bravo") <= SES_QUOTA - kept + 1, "what sesco's share keeps is not taken"
        light = [message("sesco", n) for n in range(wanted)]
        assert inst.post("sesco", {"messages": light}).status_code == 202
        wait_for(lambda: sent("sesco") == wanted, 30, "the light tenant's mail")
        waiting = inst.http.get("/v1/quotas/bravo", headers={"Authorization": f"Bearer {KEYS['bravo']}"}).json()
        assert waiting["ses"]["share"] == 1 and waiting["ses"]["fair_share"] == SES_QUOTA / (LIGHT_SHARE + 1)
        assert waiting["ses"]["tenant_sent"] == sent("bravo") < SES_QUOTA, "the heavy one's campaign still waits"


def test_a_light_ses_tenant_takes_turns_with_a_heavy_ones_campaign_at_the_send_rate(
        tmp_path: Path, moto: MotoServer, instances: Callable[..., Instance]) -> None:
    """The account sends 1 a second: first-in, first-out, sesco's 3 messages would wait for the 90 ahead.
    Equal shares of a quota (moto's 200) that holds both, so what a share keeps never decides, at any hour."""
    stack = write_stack(tmp_path, ses_quota=1000, light_share=1)
    before = len(ses_sent(REGION))

    def sent(tenant: str) -> int:
        return ses_sent_from(tenant, before)

    with SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port, moto_url=moto.url))
        assert inst.post("bravo", {"messages": [message("bravo", n, stream="marketing")
                                                for n in range(90)]}).status_code == 202
        wait_for(lambda: sent("bravo") >= 3, 30, "the heavy tenant's campaign under way")
        light = [message("sesco", n, stream="marketing") for n in range(3)]
        assert inst.post("sesco", {"messages": light}).status_code == 202
        wait_for(lambda: sent("sesco") == 3, 40, "the light tenant's mail, in turn with the campaign")
        assert sent("bravo") < 60, "most of the heavy tenant's campaign still waits"
