"""``mailplane ses status``: judged from SES's answers -- botocore's Stubber with the real service model for
GetAccount (moto lacks it) and a whole-account picture, moto in server mode for real HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import Stubber
from moto_server import MotoServer
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model.loader import load_stack
from mailplane.ses.status import exit_status, gather, judge

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "stacks" / "dev"


def _account(production: bool, daily: float = 200.0, rate: float = 1.0) -> dict[str, Any]:
    return {"ProductionAccessEnabled": production, "SendingEnabled": True, "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY", "SendQuota": {"Max24HourSend": daily, "MaxSendRate": rate,
                                                          "SentLast24Hours": 0.0},
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}}


TENANT_ARN = "arn:aws:ses:eu-west-1:111122223333:tenant/acme/tn-0123456789abcdef"


def _tenant(status: str = "ENABLED", policy: str = "standard") -> tuple[dict[str, Any], dict[str, Any]]:
    """GetTenant's and GetReputationEntity's answers for dev's one tenant."""
    return ({"Tenant": {"TenantName": "acme", "TenantArn": TENANT_ARN, "TenantId": "tn-0123456789abcdef",
                        "SendingStatus": status}},
            {"ReputationEntity": {"ReputationEntityReference": TENANT_ARN, "ReputationEntityType": "RESOURCE",
                                  "ReputationManagementPolicy": f"arn:aws:ses:eu-west-1:aws:reputation-policy/{policy}",
                                  "SendingStatusAggregate": status}})


def _stubbed(account: dict[str, Any], identity: dict[str, Any],
             tenant: tuple[dict[str, Any], dict[str, Any]] | None = None) -> list[Any]:
    fleet = load_stack(DEV)
    [dev_tenant] = fleet.tenants
    sesv2 = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    ses = boto3.client("ses", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    got_tenant, entity = tenant or _tenant()
    with Stubber(sesv2) as stub:
        stub.add_response("get_email_identity", identity, {"EmailIdentity": "dev.example.org"})
        stub.add_response("get_tenant", got_tenant, {"TenantName": dev_tenant.ses_tenant})
        stub.add_response("get_reputation_entity", entity, {"ReputationEntityType": "RESOURCE",
                                                            "ReputationEntityReference": TENANT_ARN})
        stub.add_response("get_account", account, {})
        stub.add_response("get_account", account, {})
        items = judge(fleet, gather(fleet, sesv2, ses))
        stub.assert_no_pending_responses()
    return items


GOOD_IDENTITY = {"IdentityType": "DOMAIN", "VerifiedForSendingStatus": True,
                 "DkimAttributes": {"SigningEnabled": True, "Status": "SUCCESS"},
                 "MailFromAttributes": {"MailFromDomain": "bounce.dev.example.org", "MailFromDomainStatus": "SUCCESS",
                                        "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}}


def test_a_healthy_account_and_identity_pass_every_item() -> None:
    items = _stubbed(_account(production=True), GOOD_IDENTITY)
    assert {(i.subject, i.check, i.status) for i in items} == {
        ("dev.example.org", "identity", "ok"), ("dev.example.org", "dkim", "ok"),
        ("dev.example.org", "mail-from", "ok"),
        ("tenant acme", "ses-tenant", "ok"), ("tenant acme", "reputation-policy", "ok"),
        ("account", "production-access", "ok"), ("account", "sending", "ok"), ("account", "quota", "ok"),
        ("account", "suppression", "ok")}
    assert exit_status(items) == 0


def test_a_sandbox_and_a_pending_mail_from_fail() -> None:
    pending = {**GOOD_IDENTITY, "MailFromAttributes": {**GOOD_IDENTITY["MailFromAttributes"],
                                                       "MailFromDomainStatus": "PENDING"}}
    items = _stubbed(_account(production=False), pending)
    failed = {(i.check, i.detail) for i in items if i.status == "fail"}
    assert failed == {("mail-from", "MAIL FROM bounce.dev.example.org: PENDING"),
                      ("production-access", "in the sandbox: only verified recipients, 200 a day at 1/s")}
    assert exit_status(items) == 1


def test_a_tenant_ses_paused_fails_and_another_policy_than_the_yamls_warns() -> None:
    items = _stubbed(_account(production=True), GOOD_IDENTITY, _tenant("DISABLED", "strict"))
    by_check = {i.check: i for i in items if i.subject == "tenant acme"}
    assert by_check["ses-tenant"].status == "fail" and "SES has paused" in by_check["ses-tenant"].detail
    assert by_check["reputation-policy"].status == "warn"
    assert by_check["reputation-policy"].detail.startswith("reputation policy strict, the YAML says standard")
    assert exit_status(items) == 1


def test_a_missing_ses_tenant_fails() -> None:
    fleet = load_stack(DEV)
    sesv2 = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    ses = boto3.client("ses", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sesv2) as stub:
        stub.add_response("get_email_identity", GOOD_IDENTITY, {"EmailIdentity": "dev.example.org"})
        stub.add_client_error("get_tenant", "NotFoundException", "Tenant acme does not exist", 404,
                              expected_params={"TenantName": "acme"})
        stub.add_response("get_account", _account(production=True), {})
        stub.add_response("get_account", _account(production=True), {})
        items = judge(fleet, gather(fleet, sesv2, ses))
        stub.assert_no_pending_responses()
    [item] = [i for i in items if i.check == "ses-tenant"]
    assert item.status == "fail" and item.detail.startswith("no SES tenant: `pulumi up` has not created it")


def test_the_command_against_a_real_ses_endpoint_says_what_is_missing_and_exits_1(tmp_path: Path) -> None:
    with MotoServer() as moto:
        moto.client("sesv2", "eu-north-1").create_email_identity(EmailIdentity="mail1.example.com")
        done = CliRunner().invoke(app, ["ses", "status", str(ROOT / "stacks" / "prod"), "--endpoint-url", moto.url,
                                        "--format", "json"])
    assert done.exit_code == 1, done.output
    items = {(i["subject"], i["check"]): i for i in json.loads(done.stdout)}
    assert items[("mail1.example.com", "identity")]["status"] == "fail"  # moto's is not verified for sending
    assert "not verified" in items[("mail1.example.com", "identity")]["detail"]
    missing = [i for i in items.values() if i["detail"].startswith("no SES identity")]
    assert len(missing) >= 3 and all(i["status"] == "fail" for i in missing)
    assert items[("account", "quota")]["status"] == "warn"  # 200 at 1/s against prod's 50,000 at 14/s
    assert "(GetSendQuota)" in items[("account", "quota")]["detail"]


def test_a_bad_format_is_a_usage_error() -> None:
    assert CliRunner().invoke(app, ["ses", "status", str(DEV), "--format", "xml"]).exit_code == 2


# -- the production-access request ----------------------------------------------------------------

def test_the_production_request_is_composed_from_the_fleet() -> None:
    import datetime

    from mailplane.ses.production import compose

    fleet = load_stack(ROOT / "stacks" / "prod")
    request = compose(fleet, "https://example.com", datetime.date(2026, 12, 4), ("ops@example.com",))
    assert request.mail_type == "MARKETING"  # some tenant sends marketing mail
    for tenant in fleet.tenants:
        assert (tenant.display_name or tenant.name) in request.use_case
        assert all(d.name in request.use_case for d in tenant.domains)
    assert "RFC 8058" in request.use_case and "suppresses" in request.use_case and len(request.use_case) <= 5000
    dev = compose(load_stack(DEV), "https://example.org", datetime.date(2026, 12, 4))
    assert dev.mail_type == "TRANSACTIONAL" and "RFC 8058" not in dev.use_case


def test_submit_sends_put_account_details_in_the_shape_ses_takes(monkeypatch: Any) -> None:
    sesv2 = boto3.client("sesv2", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sesv2)
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: sesv2)
    import datetime

    from mailplane.ses.production import compose
    expected = compose(load_stack(DEV), "https://example.org", datetime.datetime.now(datetime.UTC).date(),
                       ("ops@example.org",)).as_params()
    stub.add_response("put_account_details", {}, expected)  # the Stubber checks them against the service model
    with stub:
        printed = CliRunner().invoke(app, ["ses", "request-production", str(DEV), "--website", "https://example.org",
                                           "--contact", "ops@example.org"])
        assert printed.exit_code == 0 and "not sent" in printed.stdout  # review first: nothing sent
        sent = CliRunner().invoke(app, ["ses", "request-production", str(DEV), "--website", "https://example.org",
                                        "--contact", "ops@example.org", "--submit"])
        assert sent.exit_code == 0, sent.output
        stub.assert_no_pending_responses()
    bad = CliRunner().invoke(app, ["ses", "request-production", str(DEV), "--website", "example.org"])
    assert bad.exit_code == 2 and "http(s) URL" in bad.stderr
