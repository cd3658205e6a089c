"""End to end against moto in server mode: SNS topics named as the Pulumi program names them, the
real HTTP app under uvicorn subscribed over http, and moto POSTing to it.

What moto (5.2) does, found in its source and checked here:

* An ``http``/``https`` subscription is confirmed at once (``PendingConfirmation`` false): moto
  never POSTs a SubscriptionConfirmation, so that path is covered by ``test_sender_events``.
* A notification is POSTed synchronously inside ``Publish`` (python-requests, ``Content-Type:
  text/plain``, no ``x-amz-sns-message-type`` header), signed with SignatureVersion 2 by a key
  per subscription, with a new certificate (and ``SigningCertURL``) per delivery whose PEM moto
  serves at that URL's path.  So the
  signature path can run against moto too (:func:`test_moto_signed_notifications_verify`).
* SES feedback: only identity notification topics (``ses.set_identity_notification_topic``,
  looked up by the *domain* of the source address) publish; configuration-set event
  destinations are stored but never publish.  ``sesv2.send_email`` goes through the same v1
  code, so both APIs trigger it for the simulator addresses (bounce@, complaint@, success@
  simulator.amazonses.com, matched by substring).  But the published message is a canned
  sample, not a valid SNS delivery: ``Message`` is a JSON *object* instead of a string,
  ``notificationType`` is the placeholder "Bounce, Complaint, or Delivery." and the
  recipients are ``recipient1@example.com``/``recipient2@example.com``, not the simulator
  address.  Real SNS never sends that, so the service refuses it (403, malformed):
  :func:`test_moto_ses_simulator_feedback_is_not_a_valid_sns_message` pins that down, and the
  suppression path is driven by publishing SES event JSON to the tenant's topic, which is what
  the configuration set's event destination does in AWS.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from moto_server import ACCOUNT_ID, MotoServer
from sender_http import serve
from webhook_receiver import WebhookReceiver

from mailplane.model.names import topic_name
from mailplane.model.stack import Fleet
from mailplane.sender.config import SenderConfig
from mailplane.sender.front.api import create_app
from mailplane.sender.service import Service

ROOT = Path(__file__).resolve().parents[3]
WEBHOOK = "/v1/webhooks/ses"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer, fleet: Fleet) -> Callable[[str], Any]:
    """boto3 clients in the fleet's region on a fresh moto (reset before each test)."""
    moto.reset()
    return functools.cache(lambda service: moto.client(service, fleet.settings.ses.region))


@pytest.fixture
def service(fleet: Fleet, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """The sender's service with its events attached; moto cannot sign, so insecure unless told."""
    made: list[Service] = []

    def make(*, insecure: bool = True, fetcher: Callable[[str], bytes] | None = None) -> Service:
        config = SenderConfig(database_url=f"sqlite:///{tmp_path / 'sender.db'}", aws={"account_id": ACCOUNT_ID},
                              unsubscribe_keys=["k" * 32], insecure_skip_sns_signature=insecure)
        svc = Service(fleet, config, stack_name="prod")
        made.append(svc)
        svc.attach_events(fetcher=fetcher)
        return svc

    yield make
    for svc in made:
        svc.close()


def topics(aws: Callable[[str], Any], fleet: Fleet, webhook: str) -> dict[str, str]:
    """Each tenant's topic (the Pulumi program's name), subscribed to the webhook over http."""
    sns = aws("sns")
    arns: dict[str, str] = {}
    for tenant in fleet.tenants:
        arn = sns.create_topic(Name=topic_name(tenant.name))["TopicArn"]
        assert arn == f"arn:aws:sns:{fleet.settings.ses.region}:{ACCOUNT_ID}:{topic_name(tenant.name)}"
        sub = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=webhook, ReturnSubscriptionArn=True)
        attributes = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        assert attributes["PendingConfirmation"] == "false"  # moto confirms http subscriptions itself
        arns[tenant.name] = arn
    return arns


def ses_event(kind: str, recipient: str, config_set: str) -> str:
    """What an SES configuration set's SNS event destination publishes (event publishing format)."""
    detail: dict[str, Any]
    if kind == "Bounce":
        detail = {"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                             "bouncedRecipients": [{"emailAddress": recipient, "status": "5.1.1"}]}}
    else:
        detail = {"complaint": {"complaintFeedbackType": "abuse",
                                "complainedRecipients": [{"emailAddress": recipient}]}}
    mail = {"messageId": "0100019a-e2e", "destination": [recipient], "tags": {"ses:configuration-set": [config_set]}}
    return json.dumps({"eventType": kind, "mail": mail, **detail})


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_ses_events_published_to_each_tenants_topic_suppress_for_that_tenant(
        aws: Callable[[str], Any], fleet: Fleet, service: Callable[..., Service]) -> None:
    svc = service()
    store = svc.store
    with serve(create_app(svc)) as url:
        arns = topics(aws, fleet, url + WEBHOOK)
        sns = aws("sns")
        for tenant, arn in arns.items():
            sns.publish(TopicArn=arn, Message=ses_event("Bounce", f"gone-{tenant}@example.net", tenant))
        sns.publish(TopicArn=arns["globex"], Message=ses_event("Complaint", "angry@example.net", "globex"))
        assert wait_for(lambda: store.suppressions.count() == len(arns) + 1)
    for tenant in arns:
        others = {t for t in arns if t != tenant}
        assert store.suppressed(tenant, [f"gone-{t}@example.net" for t in arns]) == {f"gone-{tenant}@example.net"}
        assert all(not store.suppressed(o, [f"gone-{tenant}@example.net"]) for o in others)
    assert store.suppressed("globex", ["angry@example.net"]) == {"angry@example.net"}


def test_moto_ses_simulator_feedback_is_not_a_valid_sns_message(
        aws: Callable[[str], Any], fleet: Fleet, service: Callable[..., Service],
        caplog: pytest.LogCaptureFixture) -> None:
    """moto publishes its canned feedback with ``Message`` as a JSON object (see the module
    docstring): the service must refuse it rather than act on a body real SNS never sends.
    If this fails after a moto upgrade, moto may send real feedback now: assert suppression."""
    svc = service()
    tenant = fleet.tenant("sos-expat")
    with serve(create_app(svc)) as url:
        arn = topics(aws, fleet, url + WEBHOOK)[tenant.name]
        ses, sesv2 = aws("ses"), aws("sesv2")
        ses.verify_domain_identity(Domain="mail1.example.com")
        for kind in ("Bounce", "Complaint"):
            ses.set_identity_notification_topic(Identity="mail1.example.com", NotificationType=kind, SnsTopic=arn)
        with caplog.at_level(logging.WARNING, logger="mailplane.sender.events.ingest"):
            for address in ("bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"):
                sesv2.send_email(FromEmailAddress="no-reply@mail1.example.com",
                                 Destination={"ToAddresses": [address]},
                                 Content={"Simple": {"Subject": {"Data": "hello"}, "Body": {"Text": {"Data": "hi"}}}})
            # moto POSTs inside the send call, so both deliveries have been answered by now.
            assert wait_for(lambda: caplog.text.count("SNS message refused (malformed)") == 2)
    assert svc.store.suppressions.count() == 0


def moto_pem_fetcher(moto_url: str, region: str) -> Callable[[str], bytes]:
    """Fetch ``https://sns.<region>.amazonaws.com/<name>.pem`` from the moto server instead.

    moto serves the certificates it signed with at that path; it picks the backend from the
    request's credential scope, hence the unsigned ``Authorization`` header naming sns.
    """
    scope = f"AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/sns/aws4_request, SignedHeaders=host, Signature=0"

    def fetch(url: str) -> bytes:
        request = urllib.request.Request(moto_url + urlsplit(url).path, headers={"Authorization": scope})
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    return fetch


def test_moto_signed_notifications_verify(aws: Callable[[str], Any], fleet: Fleet, moto: MotoServer,
                                          service: Callable[..., Service]) -> None:
    """Signature checking on: moto's SignatureVersion 2 signatures verify with the certificate moto
    serves, and a body altered after signing is refused."""
    region = fleet.settings.ses.region
    svc = service(insecure=False, fetcher=moto_pem_fetcher(moto.url, region))
    received: list[bytes] = []
    with serve(create_app(svc)) as url:
        arns = topics(aws, fleet, url + WEBHOOK)
        # a second subscriber records what moto sends, to replay it altered
        recorder = WebhookReceiver("/")
        with recorder:
            aws("sns").subscribe(TopicArn=arns["initech"], Protocol="http", Endpoint=recorder.url)
            aws("sns").publish(TopicArn=arns["initech"], Message=ses_event("Bounce", "real@example.net", "initech"))
            assert wait_for(lambda: svc.store.suppressed("initech", ["real@example.net"]) == {"real@example.net"})
            received = recorder.raw
        assert len(received) == 1
        forged = json.loads(received[0])
        forged["Message"] = ses_event("Bounce", "forged@example.net", "initech")
        status, _ = svc.events.handle_sns(json.dumps(forged).encode(), None)  # type: ignore[attr-defined]
        assert status == 403
    assert svc.store.suppressed("initech", ["forged@example.net"]) == set()



