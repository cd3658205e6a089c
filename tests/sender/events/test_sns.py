"""SNS webhook verification with a certificate generated here, signed the way AWS signs; SES event parsing."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sns_signer import CERT_URL, Signer, new_signer, sign

from mailplane.model.tenant import Tenant
from mailplane.sender.events.ses_events import EventKind, SesEventError, parse_ses_events
from mailplane.sender.events.sns import (
    MAX_CERT_BYTES,
    RejectReason,
    SnsRejected,
    SnsVerifier,
    canonical_string,
    fleet_topics,
    urllib_fetcher,
)

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
REGION = "eu-north-1"
ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:mailplane-acme-ses-events"
OTHER_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:someone-elses-topic"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return new_signer()


@dataclass
class Fetcher:
    """Serves the test certificate for any URL; records what was asked so tests can count fetches."""

    pem: bytes
    urls: list[str] = field(default_factory=list)
    fail: bool = False

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.fail:
            raise TimeoutError("timed out")
        return self.pem


def notification(message: str = "hello", *, topic: str = TOPIC, subject: str | None = "Subject line",
                 timestamp: datetime = NOW - timedelta(minutes=1)) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": topic,
        "Message": message, "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:x",
    }
    if subject is not None:
        msg["Subject"] = subject
    return msg


def confirmation(kind: str = "SubscriptionConfirmation", *, topic: str = TOPIC,
                 subscribe_url: str | None = None) -> dict[str, Any]:
    return {
        "Type": kind, "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b", "TopicArn": topic,
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02",
        "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the "
                   "SubscribeURL included in this message.",
        "SubscribeURL": subscribe_url or (f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription"
                                          f"&TopicArn={topic}&Token=2336412f37fb"),
        "Timestamp": "2026-11-25T11:59:30.000Z",
    }


def verifier(fetcher: Fetcher, **kwargs: Any) -> SnsVerifier:
    return SnsVerifier({TOPIC: "acme"}, fetcher=fetcher, clock=lambda: NOW, **kwargs)


def rejected(v: SnsVerifier, msg: dict[str, Any] | str | bytes, **kwargs: Any) -> RejectReason:
    body = msg if isinstance(msg, str | bytes) else json.dumps(msg)
    with pytest.raises(SnsRejected) as info:
        v.verify(body, **kwargs)
    return info.value.reason


# --- canonical string and valid messages ---------------------------------------------------------------------


def test_canonical_string_is_aws_order_key_newline_value_newline() -> None:
    msg = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "x\ny", "Timestamp": "ts",
           "Subject": "s", "UnsubscribeURL": "u", "SignatureVersion": "1"}
    expected = b"Message\nx\ny\nMessageId\nm\nSubject\ns\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    assert canonical_string(msg) == expected
    del msg["Subject"]
    assert canonical_string(msg) == expected.replace(b"Subject\ns\n", b"")
    conf = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "k", "TopicArn": "t", "Message": "x",
            "SubscribeURL": "s", "Timestamp": "ts", "SignatureVersion": "2"}
    assert canonical_string(conf) == (b"Message\nx\nMessageId\nm\nSubscribeURL\ns\nTimestamp\nts\nToken\nk\n"
                                      b"TopicArn\nt\nType\nSubscriptionConfirmation\n")


@pytest.mark.parametrize("subject", ["Amazon SES Email Event Notification", None])
def test_signed_notification_verifies(signer: Signer, subject: str | None) -> None:
    fetcher = Fetcher(signer.pem)
    result = verifier(fetcher).verify(json.dumps(sign(notification("ünïcode", subject=subject), signer.key)),
                                      message_type_header="Notification")
    assert (result.type, result.tenant, result.topic_arn, result.message) == ("Notification", "acme", TOPIC, "ünïcode")
    assert result.subject == subject and result.is_notification and result.signature_checked
    assert result.subscribe_url is None
    assert fetcher.urls == [CERT_URL]


# --- forged and wrongly signed -------------------------------------------------------------------------------


def test_changed_message_after_signing_is_rejected(signer: Signer) -> None:
    msg = sign(notification('{"eventType":"Delivery"}'), signer.key)
    msg["Message"] = '{"eventType":"Complaint"}'
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize("field_name", ["Subject", "Timestamp", "MessageId", "Type"])
def test_any_signed_field_changed_or_added_is_rejected(signer: Signer, field_name: str) -> None:
    msg = sign(notification(subject=None if field_name == "Subject" else "s"), signer.key)
    msg[field_name] = {"Subject": "added", "Timestamp": "2026-11-25T11:59:30.000Z", "MessageId": "other",
                       "Type": "Notification"}[field_name]
    expected = RejectReason.BAD_SIGNATURE
    if field_name == "Type":  # unchanged Type, so sign a confirmation and relabel it instead
        msg = sign(confirmation(), signer.key)
        msg["Type"] = "UnsubscribeConfirmation"
    assert rejected(verifier(Fetcher(signer.pem)), msg) is expected


def test_signature_by_another_key_is_rejected(signer: Signer) -> None:
    other = new_signer()
    assert rejected(verifier(Fetcher(signer.pem)), sign(notification(), other.key)) is RejectReason.BAD_SIGNATURE


def test_sha1_signature_claimed_as_version_2_is_rejected(signer: Signer) -> None:
    msg = sign(notification(), signer.key, "1")
    msg["SignatureVersion"] = "2"
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.BAD_SIGNATURE


def test_signature_not_base64_is_rejected(signer: Signer) -> None:
    msg = sign(notification(), signer.key)
    msg["Signature"] = "not base64!"
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.BAD_SIGNATURE


def test_a_sha1_signature_version_1_is_refused_the_fleets_topics_sign_with_version_2(signer: Signer) -> None:
    """SNS signs with SHA1withRSA only on topics set to version 1, which the fleet's never are: such a
    message is forged (or older than the topic's setting), and SHA-1 is not trusted."""
    fetcher = Fetcher(signer.pem)
    assert rejected(verifier(fetcher), sign(notification(), signer.key, "1")) is RejectReason.UNKNOWN_SIGNATURE_VERSION
    assert fetcher.urls == []
    v1 = verifier(Fetcher(signer.pem), signature_versions=("1", "2"))  # only where it is asked for
    assert v1.verify(json.dumps(sign(notification(), signer.key, "1"))).tenant == "acme"


@pytest.mark.parametrize("version", ["3", "0", 1, 2, None])
def test_unknown_signature_version_is_rejected_without_fetching(signer: Signer, version: object) -> None:
    fetcher = Fetcher(signer.pem)
    msg = sign(notification(), signer.key)
    if version is None:
        del msg["SignatureVersion"]
    else:
        msg["SignatureVersion"] = version
    assert rejected(verifier(fetcher), msg) is RejectReason.UNKNOWN_SIGNATURE_VERSION
    assert fetcher.urls == []


# --- certificate URL pinning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"https://sns.{REGION}.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
    "https://evil.example/SimpleNotificationService-1.pem",
    f"http://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.txt",
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem?x=.pem",
    f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem#frag",
    f"https://sns.{REGION}.amazonaws.com/../evil/cert.pem",
    f"https://sns.{REGION}.amazonaws.com:8443/SimpleNotificationService-1.pem",
    f"https://user@sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
    f"https://evil.example#@sns.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem",  # not the topic's region
    f"https://sns.{REGION}.amazonaws.com.cn/SimpleNotificationService-1.pem",  # not the topic's partition
    f"https://SNS.{REGION.upper()}.AMAZONAWS.COM/SimpleNotificationService-1.pem",
    f"https://sqs.{REGION}.amazonaws.com/SimpleNotificationService-1.pem",
])
def test_certificate_from_anywhere_else_is_rejected_before_fetching(signer: Signer, url: str) -> None:
    fetcher = Fetcher(signer.pem)
    assert rejected(verifier(fetcher), sign(notification(), signer.key, cert_url=url)) is RejectReason.BAD_CERT_URL
    assert fetcher.urls == []


def test_china_partition_topic_takes_its_cn_certificate(signer: Signer) -> None:
    topic = f"arn:aws-cn:sns:cn-north-1:{ACCOUNT}:mailplane-acme-ses-events"
    url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem"
    v = SnsVerifier({topic: "acme"}, fetcher=Fetcher(signer.pem), clock=lambda: NOW)
    assert v.verify(json.dumps(sign(notification(topic=topic), signer.key, cert_url=url))).tenant == "acme"
    bad = sign(notification(topic=topic), signer.key, cert_url="https://sns.cn-north-1.amazonaws.com/x.pem")
    assert rejected(v, bad) is RejectReason.BAD_CERT_URL


# --- topic allow-list, age, shape ----------------------------------------------------------------------------


def test_unknown_topic_is_rejected_before_fetching(signer: Signer) -> None:
    fetcher = Fetcher(signer.pem)
    assert rejected(verifier(fetcher), sign(notification(topic=OTHER_TOPIC), signer.key)) is RejectReason.UNKNOWN_TOPIC
    assert fetcher.urls == []


@pytest.mark.parametrize("timestamp", [NOW - timedelta(hours=1, seconds=1), NOW - timedelta(days=3),
                                       NOW + timedelta(minutes=6)])
def test_stale_or_future_timestamp_is_rejected(signer: Signer, timestamp: datetime) -> None:
    msg = sign(notification(timestamp=timestamp), signer.key)
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.STALE


def test_unreadable_timestamp_is_rejected(signer: Signer) -> None:
    msg = notification()
    msg["Timestamp"] = "yesterday"
    assert rejected(verifier(Fetcher(signer.pem)), sign(msg, signer.key)) is RejectReason.STALE


def test_timestamp_within_the_window_and_configurable_max_age(signer: Signer) -> None:
    msg = json.dumps(sign(notification(timestamp=NOW - timedelta(minutes=59)), signer.key))
    assert verifier(Fetcher(signer.pem)).verify(msg).tenant == "acme"
    assert rejected(verifier(Fetcher(signer.pem), max_age=timedelta(minutes=10)), msg) is RejectReason.STALE


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", RejectReason.MALFORMED),
    ("[1, 2]", RejectReason.MALFORMED),
    (b"\xff\xfe", RejectReason.MALFORMED),
    ('{"Type": "Notification"}', RejectReason.MALFORMED),
    ('{"Type": "Hello"}', RejectReason.UNKNOWN_TYPE),
    ("{}", RejectReason.UNKNOWN_TYPE),
    ("x" * (600 * 1024), RejectReason.MALFORMED),
])
def test_malformed_bodies_are_rejected(signer: Signer, body: str | bytes, reason: RejectReason) -> None:
    assert rejected(verifier(Fetcher(signer.pem)), body) is reason


def test_non_string_field_is_rejected(signer: Signer) -> None:
    msg = sign(notification(), signer.key)
    msg["Message"] = {"eventType": "Bounce"}
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.MALFORMED


def test_message_type_header_must_match_body(signer: Signer) -> None:
    msg = sign(notification(), signer.key)
    reason = rejected(verifier(Fetcher(signer.pem)), msg, message_type_header="SubscriptionConfirmation")
    assert reason is RejectReason.TYPE_MISMATCH


# --- certificate cache ---------------------------------------------------------------------------------------


def test_certificate_is_fetched_once_for_many_messages(signer: Signer) -> None:
    fetcher = Fetcher(signer.pem)
    v = verifier(fetcher)
    for i in range(50):
        v.verify(json.dumps(sign(notification(f"message {i}"), signer.key)))
    assert fetcher.urls == [CERT_URL]
    assert v.cache.fetches == 1


def test_certificate_cache_is_a_bounded_lru(signer: Signer) -> None:
    fetcher = Fetcher(signer.pem)
    v = verifier(fetcher, cache_size=2)
    urls = [f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-{n}.pem" for n in "abc"]
    for url in [urls[0], urls[1], urls[0], urls[2], urls[0], urls[1]]:
        v.verify(json.dumps(sign(notification(), signer.key, cert_url=url)))
    # a, b cached; a used again (most recent); c evicts b; a still cached; b fetched again.
    assert fetcher.urls == [urls[0], urls[1], urls[2], urls[1]]


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_fetch_is_remembered_for_a_while_then_tried_again(signer: Signer) -> None:
    fetcher, ticks = Fetcher(signer.pem, fail=True), Ticks()
    v = verifier(fetcher, failure_ttl=300, monotonic=ticks)
    msg = json.dumps(sign(notification(), signer.key))
    for _ in range(100):  # a flood of messages naming one certificate that cannot be fetched
        assert rejected(v, msg) is RejectReason.CERT_UNAVAILABLE
    assert len(fetcher.urls) == 1
    fetcher.fail = False
    ticks.now += 299
    assert rejected(v, msg) is RejectReason.CERT_UNAVAILABLE and len(fetcher.urls) == 1
    ticks.now += 2
    assert v.verify(msg).tenant == "acme"
    assert len(fetcher.urls) == 2


def test_certificate_fetches_are_rate_limited_whatever_urls_forged_messages_name(signer: Signer) -> None:
    """100 forged POSTs, each naming another (well-formed, pinned) certificate URL: at most the minute's
    fetches happen, then a fetch a minute / rate, and a real message still gets through later."""
    fetcher, ticks = Fetcher(b"not a certificate"), Ticks()
    v = verifier(fetcher, fetches_per_minute=10, monotonic=ticks)
    forged = new_signer()
    for n in range(100):
        url = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-{n:032x}.pem"
        assert rejected(v, sign(notification(), forged.key, cert_url=url)) is RejectReason.CERT_UNAVAILABLE
    assert len(fetcher.urls) == 10 and v.cache.fetches == 10
    fetcher.pem = signer.pem
    assert rejected(v, sign(notification(), signer.key)) is RejectReason.CERT_UNAVAILABLE  # no token left
    ticks.now += 6  # one token a 6 s at 10 a minute
    assert v.verify(json.dumps(sign(notification(), signer.key))).tenant == "acme"
    assert len(fetcher.urls) == 11


@pytest.mark.parametrize("pem", [b"not a certificate", b""])
def test_garbage_certificate_is_rejected(signer: Signer, pem: bytes) -> None:
    reason = rejected(verifier(Fetcher(pem)), sign(notification(), signer.key))
    assert reason is RejectReason.CERT_UNAVAILABLE


def test_expired_certificate_is_rejected() -> None:
    old = new_signer(days_valid=30, start=NOW - timedelta(days=60))
    assert rejected(verifier(Fetcher(old.pem)), sign(notification(), old.key)) is RejectReason.CERT_UNAVAILABLE


# --- subscription confirmation -------------------------------------------------------------------------------


def test_confirmation_of_an_allowed_topic_gives_the_subscribe_url(signer: Signer) -> None:
    msg = sign(confirmation(), signer.key)
    result = verifier(Fetcher(signer.pem)).verify(json.dumps(msg), message_type_header="SubscriptionConfirmation")
    assert result.subscribe_url == msg["SubscribeURL"]
    assert result.tenant == "acme" and not result.is_notification


def test_confirmation_of_another_topic_is_rejected(signer: Signer) -> None:
    fetcher = Fetcher(signer.pem)
    msg = sign(confirmation(topic=OTHER_TOPIC), signer.key)
    assert rejected(verifier(fetcher), msg) is RejectReason.UNKNOWN_TOPIC
    assert fetcher.urls == []


@pytest.mark.parametrize("url", [
    "https://evil.example/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
    f"http://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
    f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
    f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={OTHER_TOPIC}",
    f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&TopicArn={TOPIC}",
    f"https://sns.{REGION}.amazonaws.com.evil.example/?Action=ConfirmSubscription&TopicArn={TOPIC}",
])
def test_signed_confirmation_pointing_elsewhere_is_rejected(signer: Signer, url: str) -> None:
    msg = sign(confirmation(subscribe_url=url), signer.key)
    assert rejected(verifier(Fetcher(signer.pem)), msg) is RejectReason.BAD_SUBSCRIBE_URL


def test_unsubscribe_confirmation_verifies_but_gives_no_url_to_fetch(signer: Signer) -> None:
    msg = sign(confirmation("UnsubscribeConfirmation"), signer.key, "2")
    result = verifier(Fetcher(signer.pem)).verify(json.dumps(msg))
    assert result.type == "UnsubscribeConfirmation" and result.subscribe_url is None


def test_insecure_mode_skips_signatures_but_still_allow_lists_topics() -> None:
    fetcher = Fetcher(b"")
    v = verifier(fetcher, insecure_skip_signature=True)
    unsigned = notification()  # no Signature nor SigningCertURL: moto-style fake
    unsigned["SignatureVersion"] = "2"
    result = v.verify(json.dumps(unsigned))
    assert result.tenant == "acme" and not result.signature_checked
    assert rejected(v, notification(topic=OTHER_TOPIC) | {"SignatureVersion": "2"}) is RejectReason.UNKNOWN_TOPIC
    assert rejected(v, unsigned | {"SignatureVersion": "1"}) is RejectReason.UNKNOWN_SIGNATURE_VERSION
    assert fetcher.urls == []
    assert SnsVerifier({TOPIC: "acme"}).insecure_skip_signature is False


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "http://127.0.0.1:8080/?Action=ConfirmSubscription",
    "https://169.254.169.254/latest/meta-data/?Action=ConfirmSubscription",
    "https://evil.example/?Action=ConfirmSubscription&TopicArn=" + TOPIC,
    f"http://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}",
    f"https://sns.{REGION}.amazonaws.com:444/?Action=ConfirmSubscription&TopicArn={TOPIC}",
    f"https://sns.{REGION}.amazonaws.com/?Action=Subscribe&TopicArn={TOPIC}",
    f"https://sns.{REGION}.amazonaws.com/admin?Action=ConfirmSubscription&TopicArn={TOPIC}",
])
def test_insecure_mode_still_confirms_only_through_an_https_sns_host(url: str) -> None:
    """A forged confirmation cannot make an insecure (test) service fetch a file, a loopback or metadata
    address or any other host: the SubscribeURL must still be SNS's, over HTTPS."""
    v = verifier(Fetcher(b""), insecure_skip_signature=True)
    forged = confirmation(subscribe_url=url) | {"SignatureVersion": "2"}
    assert rejected(v, forged) is RejectReason.BAD_SUBSCRIBE_URL


def test_insecure_mode_accepts_an_sns_host_of_another_region() -> None:
    url = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t"
    v = verifier(Fetcher(b""), insecure_skip_signature=True)
    assert v.verify(json.dumps(confirmation(subscribe_url=url) | {"SignatureVersion": "2"})).subscribe_url == url


def test_fleet_topics_uses_the_cloud_topic_names() -> None:
    topics = fleet_topics([Tenant(name="acme"), Tenant(name="beta")], region=REGION, account_id=ACCOUNT)
    assert topics == {TOPIC: "acme", f"arn:aws:sns:{REGION}:{ACCOUNT}:mailplane-beta-ses-events": "beta"}


# --- SES events ----------------------------------------------------------------------------------------------

MAIL = {
    "timestamp": "2026-11-25T11:58:00.000Z", "source": "news@acme.example",
    "sourceArn": f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/acme.example", "sendingAccountId": ACCOUNT,
    "messageId": "0100018f2b9d7e1c-4c6e1d0b-2f5a-4a5e-9d1e-3a0c7f1b2e4d-000000",
    "destination": ["alice@example.org", "bob@example.net"], "headersTruncated": False,
    "headers": [{"name": "From", "value": "news@acme.example"}],
    "commonHeaders": {"from": ["news@acme.example"], "to": ["alice@example.org", "bob@example.net"],
                      "subject": "November news"},
    "tags": {"ses:configuration-set": ["acme"], "ses:source-ip": ["192.0.2.10"], "campaign": ["november"]},
}

EVENT_BOUNCE = {
    "eventType": "Bounce",
    "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [
            {"emailAddress": "alice@example.org", "action": "failed", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            {"emailAddress": "bob@example.net", "action": "failed", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 mailbox unavailable"},
        ],
        "timestamp": "2026-11-25T11:58:03.000Z", "feedbackId": "0100018f2b9d8a11-feedback-000000",
        "reportingMTA": "dsn; e242-10.smtp-out.eu-north-1.amazonses.com",
    },
    "mail": MAIL,
}

FEEDBACK_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "Yahoo!-Mail-Feedback/2.0", "complainedRecipients": [{"emailAddress": "carol@example.com"}],
        "complaintFeedbackType": "abuse", "arrivalDate": "2026-11-25T11:55:00.000Z",
        "timestamp": "2026-11-25T11:58:10.000Z", "feedbackId": "0100018f2b9d9b22-feedback-000000",
    },
    "mail": {**MAIL, "destination": ["carol@example.com"]},
}


def test_permanent_bounce_event_suppresses_every_recipient() -> None:
    events = parse_ses_events(json.dumps(EVENT_BOUNCE))
    assert [(e.kind, e.recipient, e.suppress) for e in events] == [
        (EventKind.BOUNCE, "alice@example.org", True), (EventKind.BOUNCE, "bob@example.net", True)]
    first = events[0]
    assert (first.bounce_type, first.bounce_subtype, first.configuration_set) == ("Permanent", "General", "acme")
    assert first.diagnostic == "smtp; 550 5.1.1 user unknown"
    assert first.ses_message_id == MAIL["messageId"] and first.timestamp == "2026-11-25T11:58:03.000Z"
    assert first.tags["campaign"] == ("november",)


@pytest.mark.parametrize(("bounce_type", "subtype", "suppress"), [
    ("Transient", "MailboxFull", False), ("Undetermined", "Undetermined", False),
    ("Permanent", "Suppressed", True), ("Permanent", "OnAccountSuppressionList", True)])
def test_only_permanent_bounces_suppress(bounce_type: str, subtype: str, suppress: bool) -> None:
    payload = json.loads(json.dumps(EVENT_BOUNCE))
    payload["bounce"].update(bounceType=bounce_type, bounceSubType=subtype)
    assert [e.suppress for e in parse_ses_events(payload)] == [suppress, suppress]


def test_feedback_notification_complaint_suppresses() -> None:
    [event] = parse_ses_events(json.dumps(FEEDBACK_COMPLAINT))
    assert (event.kind, event.recipient, event.feedback_type, event.suppress) == (
        EventKind.COMPLAINT, "carol@example.com", "abuse", True)


def test_not_spam_feedback_does_not_suppress() -> None:
    payload = json.loads(json.dumps(FEEDBACK_COMPLAINT))
    payload["complaint"]["complaintFeedbackType"] = "not-spam"
    assert [e.suppress for e in parse_ses_events(payload)] == [False]


def test_feedback_bounce_shape_and_named_address() -> None:
    payload = {"notificationType": "Bounce", "mail": MAIL, "bounce": {
        "bounceType": "Permanent", "bounceSubType": "NoEmail",
        "bouncedRecipients": [{"emailAddress": '"Dan" <dan@example.org>', "status": "5.1.1"}]}}
    [event] = parse_ses_events(payload)
    assert (event.recipient, event.suppress, event.diagnostic) == ("dan@example.org", True, "5.1.1")


def test_delivery_send_and_delay_events_do_not_suppress() -> None:
    delivery = {"eventType": "Delivery", "mail": MAIL, "delivery": {
        "timestamp": "2026-11-25T11:58:02.000Z", "processingTimeMillis": 812,
        "recipients": ["alice@example.org"], "smtpResponse": "250 2.0.0 OK",
        "reportingMTA": "e242-10.smtp-out.eu-north-1.amazonses.com"}}
    send = {"eventType": "Send", "mail": MAIL, "send": {}}
    delay = {"eventType": "DeliveryDelay", "mail": MAIL, "deliveryDelay": {
        "delayType": "TransientCommunicationFailure", "expirationTime": "2026-11-26T11:58:00.000Z",
        "delayedRecipients": [{"emailAddress": "bob@example.net", "status": "4.4.1",
                               "diagnosticCode": "smtp; 421 4.4.1 try later"}]}}
    assert [(e.kind, e.recipient, e.diagnostic) for e in parse_ses_events(delivery)] == [
        (EventKind.DELIVERY, "alice@example.org", "250 2.0.0 OK")]
    assert [(e.kind, e.recipient) for e in parse_ses_events(send)] == [
        (EventKind.SEND, "alice@example.org"), (EventKind.SEND, "bob@example.net")]
    assert [(e.kind, e.recipient) for e in parse_ses_events(delay)] == [(EventKind.DELIVERY_DELAY, "bob@example.net")]
    assert not any(e.suppress for p in (delivery, send, delay) for e in parse_ses_events(p))


def test_unknown_event_types_are_ignored_and_non_json_is_an_error() -> None:
    assert parse_ses_events({"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "ok"}) == []
    assert parse_ses_events({"eventType": "SomethingNew", "mail": MAIL}) == []
    with pytest.raises(SesEventError):
        parse_ses_events("Successfully validated SNS topic for Amazon SES event publishing.")
    with pytest.raises(SesEventError):
        parse_ses_events("[]")


def test_verified_notification_to_suppressions_end_to_end(signer: Signer) -> None:
    msg = sign(notification(json.dumps(EVENT_BOUNCE), subject=None), signer.key, "2")
    verified = verifier(Fetcher(signer.pem)).verify(json.dumps(msg).encode())
    suppress = [(verified.tenant, e.recipient) for e in parse_ses_events(verified.message) if e.suppress]
    assert suppress == [("acme", "alice@example.org"), ("acme", "bob@example.net")]


# --- the default fetcher, against a real local HTTP server ---------------------------------------------------


class _CertHandler(BaseHTTPRequestHandler):
    pem = b""

    def do_GET(self) -> None:
        if self.path == "/redirect.pem":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.end_headers()
            return
        body = self.pem if self.path == "/cert.pem" else b"x" * (MAX_CERT_BYTES + 10)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class TlsServer:
    url: str  # https://localhost:PORT
    port: int
    client_context: ssl.SSLContext  # trusts the server's test certificate only


def _tls_identity() -> tuple[bytes, bytes]:
    """A self-signed certificate for ``localhost`` and its key, PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def cert_server(signer: Signer, tmp_path: Any) -> Iterator[TlsServer]:
    """A real HTTPS server on loopback with a certificate of its own, serving the test certificate."""
    cert_pem, key_pem = _tls_identity()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    handler = type("Handler", (_CertHandler,), {"pem": signer.pem})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield TlsServer(f"https://localhost:{port}", port, ssl.create_default_context(cadata=cert_pem.decode()))
    server.shutdown()
    server.server_close()


def _loopback(host: str, port: int) -> tuple[str, int]:
    return "127.0.0.1", port


def test_default_fetcher_reads_the_certificate_and_refuses_redirects_and_huge_bodies(
        signer: Signer, cert_server: TlsServer) -> None:
    fetch = urllib_fetcher(timeout=5, resolve=_loopback, context=cert_server.client_context)
    assert fetch(f"{cert_server.url}/cert.pem") == signer.pem
    with pytest.raises(urllib.error.HTTPError):
        fetch(f"{cert_server.url}/redirect.pem")
    with pytest.raises(ValueError, match="too large"):
        fetch(f"{cert_server.url}/big.pem")


def test_default_fetcher_never_connects_to_a_loopback_private_or_link_local_address(
        signer: Signer, cert_server: TlsServer) -> None:
    """The real resolver's answer is vetted: the same loopback server is never reached without the test's
    resolver, nor are private or link-local addresses (the cloud metadata service) or other schemes."""
    fetch = urllib_fetcher(timeout=5, context=cert_server.client_context)
    for url in (f"{cert_server.url}/cert.pem", f"https://127.0.0.1:{cert_server.port}/cert.pem",
                "https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/x.pem", "https://[::1]/x.pem"):
        with pytest.raises(PermissionError, match="not a public address"):
            fetch(url)
    for url in ("file:///etc/passwd", f"http://127.0.0.1:{cert_server.port}/cert.pem", "ftp://example.com/x"):
        with pytest.raises(PermissionError, match="only https"):
            fetch(url)
