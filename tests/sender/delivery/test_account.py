"""The SES account as it is: read from SES (moto for GetSendQuota, botocore's Stubber with the real service
model for GetAccount, which moto lacks), and the lower of it and fleet.yaml paced by -- down to a real
``mailplane serve`` whose quota report says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto_server import MotoServer
from sender_instance import KEYS, Instance, wait_for, write_config, write_stack
from smtp_sink import SmtpSink

from mailplane.sender.core.limits import AccountLimits, Limits, effective
from mailplane.sender.delivery.account import read_account

pytestmark = pytest.mark.processes


def test_the_lower_of_fleet_yaml_and_the_account_is_paced_by_and_each_difference_said() -> None:
    assert effective(50_000, 14.0, None) == Limits(50_000, 14.0)
    sandbox = effective(50_000, 14.0, AccountLimits(200, 1.0, production_access=False, sending_enabled=True))
    assert (sandbox.daily_quota, sandbox.max_send_rate) == (200, 1.0)
    assert any("sandbox" in w for w in sandbox.warnings)
    assert any("daily_quota is 50000, the account's 200" in w for w in sandbox.warnings)
    raised = effective(50_000, 14.0, AccountLimits(100_000, 40.0, production_access=True, sending_enabled=True))
    assert (raised.daily_quota, raised.max_send_rate) == (50_000, 14.0)  # never more than the file allows
    assert len(raised.warnings) == 2  # the file is out of date: said, not followed
    same = effective(50_000, 14.0, AccountLimits(50_000, 14.0, production_access=True, sending_enabled=True))
    assert same.warnings == ()
    disabled = effective(50_000, 14.0, AccountLimits(50_000, 14.0, production_access=True, sending_enabled=False))
    assert disabled.warnings == ("sending is disabled for the whole SES account (PutAccountSendingAttributes)",)


def test_get_account_is_asked_first_in_the_shape_ses_takes() -> None:
    sesv2 = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    ses = boto3.client("ses", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sesv2) as stub, Stubber(ses) as unused:
        stub.add_response("get_account", {
            "ProductionAccessEnabled": False, "SendingEnabled": True, "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 3.0}}, {})
        account = read_account(sesv2, ses)
        stub.assert_no_pending_responses()
        unused.assert_no_pending_responses()
    assert account == AccountLimits(200, 1.0, production_access=False, sending_enabled=True, source="GetAccount")


def test_get_send_quota_answers_where_get_account_does_not() -> None:
    with MotoServer() as moto:  # moto has no GetAccount: the v1 call answers
        account = read_account(moto.client("sesv2"), moto.client("ses"))
    assert account == AccountLimits(200, 1.0, source="GetSendQuota")


def test_a_running_sender_paces_by_the_sandboxed_account_and_says_why(
        tmp_path: Path, instances: Callable[..., Instance]) -> None:
    """fleet.yaml says 20 a day at 50/s; the account (moto's, a sandbox's) 200 a day at 1/s: the quota report
    shows the lower of each, with the warnings, once the sender has read the account."""
    stack = write_stack(tmp_path)
    with MotoServer() as moto, SmtpSink() as sink:
        inst = instances(stack, write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port, moto_url=moto.url))
        def report() -> dict[str, object]:
            answer = inst.http.get("/v1/quotas/sesco", headers={"Authorization": f"Bearer {KEYS['sesco']}"})
            ses: dict[str, object] = answer.json()["ses"]
            return ses

        wait_for(lambda: report()["max_send_rate"] == 1.0, 30, "the account's rate")
        ses = report()
    assert ses["daily_quota"] == 20 and ses["max_send_rate"] == 1.0
    warnings = " | ".join(str(w) for w in ses["warnings"])  # type: ignore[attr-defined]
    assert "max_send_rate is 50/s, the account's 1/s (GetSendQuota): pacing by 1/s" in warnings
    assert "daily_quota is 20, the account's 200 (GetSendQuota): pacing by 20" in warnings
