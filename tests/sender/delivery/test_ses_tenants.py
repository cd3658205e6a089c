"""SES tenants: every send names the tenant, a refusal for a missing association says what to do, and the
reputation policy's dynamic provider calls SES as its service model says.

moto implements neither tenants nor reputation entities, so botocore's ``Stubber`` checks each request
against the real ``sesv2`` service model (operation, parameter names, types, required members).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import boto3
import dill
import pytest
from botocore.stub import Stubber
from pulumi.dynamic.dynamic import serialize_provider

from mailplane.cloud.reputation import ReputationPolicyProvider
from mailplane.sender.delivery.transports import NOT_ASSOCIATED_RETRY, Delivered, SesTransport, TemporaryFailure

REGION = "eu-north-1"
TENANT_ARN = f"arn:aws:ses:{REGION}:111122223333:tenant/acme/tn-0123456789abcdef0123456789abcd"
MAIL = b"From: orders@acme.example.com\r\nTo: jane@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def sesv2() -> Any:
    return boto3.client("sesv2", region_name=REGION, aws_access_key_id="AKIAEXAMPLE0000000000",
                        aws_secret_access_key="secret-0000000000000000000000000000000000")


@pytest.fixture
def transport() -> Iterator[tuple[SesTransport, Stubber]]:
    ses = SesTransport(REGION)
    ses._client = sesv2()  # the service's own client, stubbed: no request leaves the process
    with Stubber(ses._client) as stub:
        yield ses, stub
        stub.assert_no_pending_responses()


def send(ses: SesTransport) -> Any:
    async def go() -> Any:
        try:
            return await ses.send(MAIL, configuration_set="acme-cs", ses_tenant="acme",
                                  sender="orders@acme.example.com", recipient="jane@example.org")
        finally:
            await ses.close()
    return asyncio.run(go())


def test_every_ses_send_names_the_tenant(transport: tuple[SesTransport, Stubber]) -> None:
    ses, stub = transport
    stub.add_response("send_email", {"MessageId": "m-1"}, expected_params={
        "FromEmailAddress": "orders@acme.example.com", "Destination": {"ToAddresses": ["jane@example.org"]},
        "Content": {"Raw": {"Data": MAIL}}, "ConfigurationSetName": "acme-cs", "TenantName": "acme"})
    outcome = send(ses)
    assert isinstance(outcome, Delivered) and outcome.detail == "SES MessageId m-1"


def test_a_send_refused_for_a_missing_association_says_so_and_waits(transport: tuple[SesTransport, Stubber]) -> None:
    """SES's words are kept; what to do is added; nothing is dropped and the reservation is given back."""
    ses, stub = transport
    refusal = f"Tenant not associated with resources [arn:aws:ses:{REGION}:111122223333:configuration-set/acme-cs]"
    stub.add_client_error("send_email", service_error_code="AccessDeniedException", service_message=refusal,
                          http_status_code=403)
    outcome = send(ses)
    assert isinstance(outcome, TemporaryFailure)
    assert outcome.refund and outcome.retry_after == NOT_ASSOCIATED_RETRY
    assert refusal in outcome.error and "AccessDeniedException (HTTP 403)" in outcome.error
    assert "run `pulumi up`" in outcome.error and "not have every resource the send names" in outcome.error


def test_another_access_denial_is_not_called_an_association_problem(transport: tuple[SesTransport, Stubber]) -> None:
    ses, stub = transport
    stub.add_client_error("send_email", service_error_code="AccessDeniedException", http_status_code=403,
                          service_message="User is not authorized to perform ses:SendEmail")
    outcome = send(ses)
    assert isinstance(outcome, TemporaryFailure) and outcome.retry_after is None and "pulumi up" not in outcome.error


# -- the reputation policy's dynamic provider ------------------------------------------------------

class StubbedProvider(ReputationPolicyProvider):
    def __init__(self, client: Any) -> None:
        super().__init__()
        self._stubbed = client

    def client(self, region: str) -> Any:
        assert region == REGION
        return self._stubbed


def policy_request(policy: str, arn: str = TENANT_ARN) -> dict[str, str]:
    return {"ReputationEntityType": "RESOURCE", "ReputationEntityReference": arn,
            "ReputationEntityPolicy": f"arn:aws:ses:{REGION}:aws:reputation-policy/{policy}"}


@pytest.mark.parametrize("policy", ["none", "standard", "strict"])
def test_create_applies_the_managed_policy(policy: str) -> None:
    client = sesv2()
    with Stubber(client) as stub:
        stub.add_response("update_reputation_entity_policy", {}, expected_params=policy_request(policy))
        props = {"tenant_arn": TENANT_ARN, "region": REGION, "policy": policy}
        result = StubbedProvider(client).create(props)
        stub.assert_no_pending_responses()
    assert result.id == TENANT_ARN and result.outs == props


def test_a_changed_policy_is_an_update_and_another_tenant_a_replacement() -> None:
    provider = ReputationPolicyProvider()
    old = {"tenant_arn": TENANT_ARN, "region": REGION, "policy": "standard"}
    same = provider.diff(TENANT_ARN, old, dict(old))
    assert not same.changes and not same.replaces
    stricter = provider.diff(TENANT_ARN, old, {**old, "policy": "strict"})
    assert stricter.changes and not stricter.replaces
    moved = provider.diff(TENANT_ARN, old, {**old, "tenant_arn": TENANT_ARN.replace("acme", "acme-prod")})
    assert moved.changes and moved.replaces == ["tenant_arn"]

    client = sesv2()
    with Stubber(client) as stub:
        stub.add_response("update_reputation_entity_policy", {}, expected_params=policy_request("strict"))
        result = StubbedProvider(client).update(TENANT_ARN, old, {**old, "policy": "strict"})
        stub.assert_no_pending_responses()
    assert result.outs is not None and result.outs["policy"] == "strict"


def test_refresh_reads_the_policy_ses_applies() -> None:
    client = sesv2()
    with Stubber(client) as stub:
        stub.add_response("get_reputation_entity", {"ReputationEntity": {
            "ReputationEntityReference": TENANT_ARN, "ReputationEntityType": "RESOURCE",
            "ReputationManagementPolicy": f"arn:aws:ses:{REGION}:aws:reputation-policy/strict",
            "SendingStatusAggregate": "ENABLED"}},
            expected_params={"ReputationEntityType": "RESOURCE", "ReputationEntityReference": TENANT_ARN})
        read = StubbedProvider(client).read(TENANT_ARN, {"tenant_arn": TENANT_ARN, "region": REGION,
                                                         "policy": "standard"})
        stub.assert_no_pending_responses()
    assert read.outs is not None and read.outs["policy"] == "strict"  # changed outside Pulumi: refresh shows it


def test_delete_calls_nothing() -> None:
    client = sesv2()
    with Stubber(client) as stub:  # any call would fail: the stub has no response queued
        StubbedProvider(client).delete(TENANT_ARN, {"tenant_arn": TENANT_ARN, "region": REGION, "policy": "strict"})
        stub.assert_no_pending_responses()


def test_the_provider_survives_pulumis_serialisation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pulumi up`` pickles the provider into the state and runs it in its own process."""
    serialized = serialize_provider(ReputationPolicyProvider())
    assert serialized == serialize_provider(ReputationPolicyProvider())  # no spurious diff between runs
    provider = dill.loads(base64.b64decode(serialized))
    assert type(provider).__name__ == "ReputationPolicyProvider"
    client = sesv2()
    monkeypatch.setattr(boto3, "client", lambda service, region_name: client
                        if (service, region_name) == ("sesv2", REGION) else pytest.fail(service))
    with Stubber(client) as stub:
        stub.add_response("update_reputation_entity_policy", {}, expected_params=policy_request("none"))
        provider.create({"tenant_arn": TENANT_ARN, "region": REGION, "policy": "none"})
        stub.assert_no_pending_responses()
