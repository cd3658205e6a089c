"""Reading an SMTP-submitted message (``mailplane.sender.core.mime_in``) and composing it again, judged by Python's
``email`` parser with ``policy.default`` as a receiver would read it."""

from __future__ import annotations

import base64
import datetime
import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from mailplane.model.loader import load_stack
from mailplane.sender.core.compose import build_message, wire_bytes
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message
from mailplane.sender.core.mime_in import Refused, read_submission
from mailplane.sender.core.submit import Checked, check_submission

ROOT = Path(__file__).resolve().parents[3]
GRANT = Granted("pmta", "203.0.113.21", "sos-expat-203-0-113-21", datetime.date(2026, 12, 4))


def raw(*headers: str, body: bytes = b"Hello.\r\n", content: str = "text/plain; charset=utf-8",
        cte: str = "7bit") -> bytes:
    head = ["From: Shop <no-reply@mail1.example.com>", "To: Jane <jane@example.org>", "Subject: Receipt",
            "MIME-Version: 1.0", f"Content-Type: {content}", f"Content-Transfer-Encoding: {cte}", *headers]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def test_identity_headers_are_read_trace_and_list_headers_dropped_others_kept() -> None:
    got = read_submission(raw("X-Mailer: MailWizz 2.5", "Received: from app by relay", "List-Unsubscribe: <x>",
                              "Message-ID: <abc@app>", "X-Mailplane-Stream: Marketing"))
    assert (got.from_addr, got.from_name, got.subject, got.stream) == (
        "no-reply@mail1.example.com", "Shop", "Receipt", "marketing")
    assert got.headers == {"X-Mailer": "MailWizz 2.5"} and got.to_names == {"jane@example.org": "Jane"}
    assert got.message_id == "<abc@app>"
    assert got.entity.startswith(b"Content-Type: text/plain; charset=utf-8\r\n")
    assert b"Received" not in got.entity and b"Subject" not in got.entity


@pytest.mark.parametrize("header", ["X-Virtual-MTA: other-vmta", "x-job: 7", "X-SES-Configuration-Set: other",
                                    "DKIM-Signature: v=1", "Authentication-Results: mx; dkim=pass",
                                    "ARC-Seal: i=1", "Resent-From: a@b.example", "X-Mailplane-Tenant: other"])
def test_headers_that_choose_a_route_or_claim_authentication_are_refused(header: str) -> None:
    with pytest.raises(Refused) as refused:
        read_submission(raw(header))
    assert refused.value.code == 550 and refused.value.enhanced == "5.7.1"


@pytest.mark.parametrize(("message", "why"), [
    (raw().replace(b"From: Shop <no-reply@mail1.example.com>", b"From: a@x.example, b@y.example"), "exactly one"),
    (raw().replace(b"Subject: Receipt\r\n", b""), "no Subject"),
    (raw("Subject: again"), "more than once"),
    (raw("X-Tag: 1", "x-tag: 2"), "given twice"),
    (raw(body=b"a\x00b\r\n"), "NUL"),
    (raw("X-Mailplane-Campaign: spring sale"), "X-Mailplane-Campaign must be"),
    (raw("X-Mailplane-Campaign: " + "c" * 65), "X-Mailplane-Campaign must be"),
    (raw("X-Mailplane-Campaign: a", "X-Mailplane-Campaign: b"), "more than once"),
])
def test_malformed_submissions_are_refused_with_the_reason(message: bytes, why: str) -> None:
    with pytest.raises(Refused) as refused:
        read_submission(message)
    assert why in refused.value.text


def test_eight_bit_parts_are_made_seven_bit_and_read_back_the_same() -> None:
    got = read_submission(raw(body="Ça arrive bientôt\r\n".encode(), cte="8bit"))
    assert got.entity.isascii() and b"Content-Transfer-Encoding: quoted-printable" in got.entity
    part = BytesParser(policy=email.policy.default).parsebytes(got.entity)
    assert part.get_content() == "Ça arrive bientôt\r\n"


def test_the_fingerprint_is_the_message_not_its_trace() -> None:
    one = read_submission(raw("Received: from a"))
    two = read_submission(raw("Received: from b"))
    other = read_submission(raw(body=b"Another body.\r\n"))
    assert one.fingerprint == two.fingerprint != other.fingerprint


def _compose(checked: Checked) -> EmailMessage:
    new = checked.new
    message = Message(id=7, tenant=new.tenant, sender=new.sender, stream=new.stream, from_addr=new.from_addr,
                      to_addr=new.to_addr, payload=new.payload, idempotency_key=new.idempotency_key, state="queued",
                      attempts=0, next_attempt_at=0.0, claimed_by=None, claimed_until=None, transport=None, ip=None,
                      last_error=None)
    wire = wire_bytes(build_message(message, GRANT, public_url="https://mailplane.example.com",
                                    unsubscribe_key="k" * 32))
    parsed = BytesParser(policy=email.policy.default).parsebytes(wire)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_submission_composes_with_mailplanes_headers_and_the_clients_body() -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    tenant = fleet.tenant("sos-expat")
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Shop <no-reply@mail1.example.com>", "jane@example.org", "Menu"
    msg["X-Campaign"] = "dec"
    msg["X-Mailplane-Campaign"] = "menu-2026.12"
    msg.set_content("See the menu.")
    msg.add_attachment(b"\x89PNG\r\n", maintype="image", subtype="png", filename="menu.png")
    submission = read_submission(msg.as_bytes())
    checked = check_submission(0, submission, "jane@example.org", "marketing", tenant, "app", fleet)
    assert isinstance(checked, Checked)
    assert base64.b64decode(checked.new.payload["mime"]) == submission.entity
    assert checked.new.idempotency_key is None  # no Message-ID: nothing to recognise a retry by
    assert checked.new.campaign == "menu-2026.12"  # its turns in the queue
    mail = _compose(checked)
    assert "X-Mailplane-Campaign" not in mail
    assert mail["From"] == "Shop <no-reply@mail1.example.com>" and mail["To"] == "jane@example.org"
    assert mail["X-Virtual-MTA"] == GRANT.vmta and mail["X-Campaign"] == "dec"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" and mail["MIME-Version"] == "1.0"
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content() == b"\x89PNG\r\n"


def test_a_submission_gets_the_apis_refusals() -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    tenant = fleet.tenant("sos-expat")
    submission = read_submission(raw().replace(b"no-reply@mail1.example.com", b"ceo@globex.example.net"))
    problems = check_submission(0, submission, "jane@example.org", "transactional", tenant, "app", fleet)
    assert isinstance(problems, list) and [p.code for p in problems] == ["from_not_allowed"]
    retry = read_submission(raw("Message-ID: <same@app>"))
    first = check_submission(0, retry, "jane@example.org", "transactional", tenant, "app", fleet)
    again = check_submission(0, retry, "jane@example.org", "transactional", tenant, "app", fleet)
    other = check_submission(0, retry, "joe@example.org", "transactional", tenant, "app", fleet)
    assert isinstance(first, Checked) and isinstance(again, Checked) and isinstance(other, Checked)
    assert first.new.idempotency_key == again.new.idempotency_key != other.new.idempotency_key
