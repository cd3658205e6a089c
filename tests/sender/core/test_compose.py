"""compose.build_message: the mail a queued message becomes, parsed back as a receiver would."""

from __future__ import annotations

import datetime
import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from mailplane.model.loader import load_stack
from mailplane.model.names import parse_verp
from mailplane.sender.core.compose import (
    RESERVED_HEADERS,
    build_message,
    check_headers,
    envelope_sender,
    wire_bytes,
)
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message
from mailplane.sender.core.unsubscribe import read_token

ROOT = Path(__file__).resolve().parents[3]

KEY = "unsubscribe-key-0123456789"
PUBLIC = "https://send.example.com"
NOW = datetime.datetime(2026, 3, 1, 12, 30, tzinfo=datetime.UTC)
DAY = datetime.date(2026, 3, 1)
PMTA = Granted(transport="pmta", ip="192.0.2.10", vmta="acme-192-0-2-10", day=DAY)
SES = Granted(transport="ses", ip=None, vmta=None, day=DAY)


def queued(stream: str = "transactional", message_id: int = 42, **payload: Any) -> Message:
    body: dict[str, Any] = {"subject": "Your receipt", "text": "Thanks for your order.\n", "html": None}
    body.update(payload)
    return Message(id=message_id, tenant="acme", sender="shop", stream=stream, from_addr="orders@acme.example.com",
                   to_addr="jane@example.org", payload=body, idempotency_key=None, state="sending", attempts=0,
                   next_attempt_at=0.0, claimed_by=None, claimed_until=None, transport=None, ip=None,
                   last_error=None)


def build(message: Message, granted: Granted = SES, public_url: str | None = PUBLIC) -> EmailMessage:
    return build_message(message, granted, public_url=public_url, unsubscribe_key=KEY, now=NOW)


def text_of(part: EmailMessage) -> str:
    """Decoded content with the wire's CRLF line ends back as newlines, as a mail reader shows it."""
    return str(part.get_content()).replace("\r\n", "\n")


def received(mail: EmailMessage) -> EmailMessage:
    """What the receiving side parses from the bytes a transport sends."""
    parsed = email.message_from_bytes(wire_bytes(mail), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_transactional_text_message_has_the_envelope_headers_and_nothing_else() -> None:
    mail = received(build(queued()))
    assert mail["From"] == "orders@acme.example.com"
    assert mail["To"] == "jane@example.org"
    assert mail["Subject"] == "Your receipt"
    assert mail["Message-ID"] == "<mp-42@acme.example.com>"
    assert parsedate_to_datetime(mail["Date"]) == NOW
    assert mail.get_content_type() == "text/plain"
    assert text_of(mail) == "Thanks for your order.\n"
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None
    assert mail["X-Virtual-MTA"] is None


def test_powermta_mail_gets_a_per_message_return_path_at_its_routes_return_path_domain() -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    message = replace(queued(stream="marketing"), tenant="sos-expat", from_addr="hello@news.example.com")
    sender = envelope_sender(message, fleet, "203.0.113.22")
    assert sender == "mp-42-cb007116@marketing.rp.news.example.com"
    assert parse_verp(sender) == ("42", "203.0.113.22")  # a remote bounce names the message and its IP
    other = replace(queued(), tenant="sos-expat", from_addr="no-reply@mail1.example.com", id=7)
    six = envelope_sender(other, fleet, "2001:db8:100::31")
    assert six == "mp-7-20010db8010000000000000000000031@transactional.rp.mail1.example.com"
    assert len(six.split("@")[0]) <= 64 and parse_verp(six) == ("7", "2001:db8:100::31")
    # a From domain the fleet no longer has (queued before a change) keeps its From address
    assert envelope_sender(queued(), fleet, "203.0.113.21") == "orders@acme.example.com"
    assert parse_verp("orders@acme.example.com") is None and parse_verp("mp-1-zz@x.example") is None
    # a message with its random token: the tag is the token's first 16 hex digits, never the queue id
    tokened = replace(message, payload={**message.payload, "token": "0123456789abcdef" * 2})
    assert envelope_sender(tokened, fleet, "203.0.113.22") == (
        "mp-0123456789abcdef-cb007116@marketing.rp.news.example.com")


def test_text_and_html_become_multipart_alternative_in_7bit_clean_crlf_lines() -> None:
    mail = build(queued(text="Grüße, Jörg\n" + "x" * 200 + "\n.leading dot\n", html="<p>Grüße</p>"))
    raw = wire_bytes(mail)
    assert raw.isascii()  # no 8BITMIME needed anywhere on the way
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    parsed = received(mail)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert text_of(parts[0]) == "Grüße, Jörg\n" + "x" * 200 + "\n.leading dot\n"
    assert text_of(parts[1]).strip() == "<p>Grüße</p>"


def test_html_only_message() -> None:
    parsed = received(build(queued(text=None, html="<h1>Hi</h1>")))
    assert parsed.get_content_type() == "text/html"
    assert text_of(parsed).strip() == "<h1>Hi</h1>"


def test_non_ascii_subject_round_trips() -> None:
    subject = "Ваш заказ № 7 — ready ✓ " + "lang " * 20
    mail = build(queued(subject=subject))
    assert wire_bytes(mail).isascii()
    assert received(mail)["Subject"] == subject


def test_marketing_mail_carries_one_click_unsubscribe_for_its_recipient_and_list() -> None:
    mail = received(build(queued(stream="marketing", list_id="spring-sale")))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = mail["List-Unsubscribe"]
    prefix = f"<{PUBLIC}/v1/unsubscribe/"
    assert value.startswith(prefix) and value.endswith(">")
    token = value[len(prefix):-1]
    sub = read_token(token, KEY)
    assert (sub.tenant, sub.address, sub.list_id) == ("acme", "jane@example.org", "spring-sale")
    assert sub.issued_at == int(NOW.timestamp())


def test_marketing_list_defaults_to_the_tenant() -> None:
    value = received(build(queued(stream="marketing")))["List-Unsubscribe"]
    token = value.rsplit("/", 1)[1].rstrip(">")
    assert read_token(token, KEY).list_id == "acme"


def test_marketing_without_a_public_url_is_refused() -> None:
    with pytest.raises(ValueError, match="public_url"):
        build(queued(stream="marketing"), public_url=None)
    build(queued(stream="transactional"), public_url=None)  # transactional needs none


def test_virtual_mta_is_named_for_powermta_only() -> None:
    assert received(build(queued(), PMTA))["X-Virtual-MTA"] == "acme-192-0-2-10"
    assert "X-Virtual-MTA" not in received(build(queued(), SES))
    with pytest.raises(ValueError, match="virtual MTA"):
        build(queued(), Granted(transport="pmta", ip="192.0.2.10", vmta=None, day=DAY))


def test_message_id_is_stable_across_attempts_while_date_is_not() -> None:
    first = build(queued())
    later = build_message(queued(), PMTA, public_url=PUBLIC, unsubscribe_key=KEY,
                          now=NOW + datetime.timedelta(hours=2))
    assert first["Message-ID"] == later["Message-ID"] == "<mp-42@acme.example.com>"
    assert first["Date"] != later["Date"]
    assert build(queued(message_id=43))["Message-ID"] == "<mp-43@acme.example.com>"


def test_caller_headers_and_reply_to_are_added() -> None:
    mail = received(build(queued(headers={"X-Campaign": "spring", "In-Reply-To": "<a@b>"},
                                 reply_to="help@acme.example.com")))
    assert mail["X-Campaign"] == "spring"
    assert mail["In-Reply-To"] == "<a@b>"
    assert mail["Reply-To"] == "help@acme.example.com"


@pytest.mark.parametrize("name", ["From", "bcc", "X-Virtual-MTA", "x-virtual-mta", "List-Unsubscribe",
                                  "LIST-UNSUBSCRIBE-POST", "DKIM-Signature", "Content-Type",
                                  "content-transfer-encoding", "Content-Disposition", "MIME-Version",
                                  "Message-ID", "Return-Path", "Received", "Sender", "Date", "Subject", "Cc",
                                  "X-SES-CONFIGURATION-SET", "x-ses-message-tags"])
def test_reserved_headers_are_refused(name: str) -> None:
    problems = check_headers({name: "value"})
    assert problems and "reserved" in problems[0]
    with pytest.raises(ValueError, match="reserved"):
        build(queued(headers={name: "value"}), PMTA)


def test_reserved_set_covers_the_identity_and_routing_headers() -> None:
    assert {"from", "to", "x-virtual-mta", "list-unsubscribe", "dkim-signature", "message-id"} <= RESERVED_HEADERS
    assert all(name == name.lower() for name in RESERVED_HEADERS)


@pytest.mark.parametrize("value", ["x\r\nBcc: victim@example.net", "x\nX-Virtual-MTA: other", "x\rY"])
def test_line_breaks_in_header_values_are_refused(value: str) -> None:
    assert any("line break" in p for p in check_headers({"X-Note": value}))
    with pytest.raises(ValueError, match="line break"):
        build(queued(headers={"X-Note": value}))


@pytest.mark.parametrize("field", ["subject", "reply_to", "list_id"])
def test_line_breaks_in_payload_fields_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        build(queued(stream="marketing", **{field: "ok\r\nBcc: victim@example.net"}))


def test_check_headers_reports_every_problem() -> None:
    problems = check_headers({"Bad Name": "x", "X-A": "1", "x-a": "2", "X-N": 5, "To": "x", "X-Nul": "a\x00b",
                              "X-Long": "x" * 999})
    assert len(problems) == 6
    assert check_headers({"X-Campaign": "spring", "In-Reply-To": "<a@acme.example.com>"}) == []
    assert check_headers(None) == []
    assert check_headers(["X-A"]) == ["headers must be an object of header name to value"]


def test_payload_needs_a_body_and_a_subject() -> None:
    with pytest.raises(ValueError, match="text, html or both"):
        build(queued(text=None, html=None))
    with pytest.raises(ValueError, match="subject"):
        build(queued(subject=None))


def test_reply_to_cannot_be_given_twice() -> None:
    with pytest.raises(ValueError, match="Reply-To"):
        build(queued(reply_to="a@acme.example.com", headers={"reply-to": "b@acme.example.com"}))
