"""A message submitted over SMTP, read into what the queue stores; pure, no I/O.

SMTP clients (MailWizz, Mautic, listmonk, WordPress, most applications) hand over a whole RFC 5322
message.  mailplane keeps its MIME body as it is (attachments and all) and re-writes the headers
that decide identity, routing and trust, exactly as for ``POST /v1/messages``:

* **Read, then written by mailplane**: ``From`` (one address; the sender must be allowed to use it),
  ``Subject``, ``Reply-To`` (one address), the display name of the recipient in ``To``.  The
  recipients are the envelope's (``RCPT TO``), one queued message each, each with ``To`` naming
  its own recipient; ``Cc`` and ``Bcc`` are not copied (a recipient never learns of the others).
  ``Date``, ``Message-ID``, ``MIME-Version`` and ``Sender`` are mailplane's to write.
* **Dropped**: trace headers another MTA on the way added (``Received``, ``Return-Path``,
  ``Delivered-To``...), and the list headers (``List-*``, ``Precedence``): marketing mail gets
  mailplane's own one-click unsubscribe, transactional mail none.  ``X-Mailplane-Stream`` picks the
  stream and ``X-Mailplane-Campaign`` names the campaign (its turns in the queue); both are removed.
* **Refused** (the client learns why, nothing is queued): the headers that would choose a route or
  claim authentication -- PowerMTA's ``X-Virtual-MTA``, ``X-Job`` and the like, ``X-SES-*``,
  ``DKIM-Signature``, ``Authentication-Results``, ``ARC-*``, ``Resent-*``, other ``X-Mailplane-*``.
  No SMTP client can choose a virtual MTA or a pool.
* **Kept**: any other header (``X-Mailer``, a campaign id), under the API's rules for custom headers.

Parts sent as ``8bit`` or ``binary`` (the listener offers 8BITMIME) are re-encoded quoted-printable
(text) or base64 (anything else), so the mail stays 7-bit clean on every route, as the composer's
own mail does.  SMTPUTF8 is not offered: SES takes no internationalised addresses.
"""

from __future__ import annotations

import base64
import email.policy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email._policybase import Compat32
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import Message as Mail
from email.parser import BytesParser
from io import BytesIO
from typing import Any

from mailplane.model.names import CAMPAIGN, CAMPAIGN_HEADER, STREAM_HEADER
from mailplane.sender.core.compose import RESERVED_HEADERS, RESERVED_PREFIXES, is_7bit_clean

READ = frozenset({"from", "to", "cc", "bcc", "subject", "reply-to", "date", "message-id", "mime-version", "sender"})
DROPPED = frozenset({"received", "x-received", "return-path", "delivered-to", "x-original-to", "received-spf",
                     "precedence", STREAM_HEADER.lower(), CAMPAIGN_HEADER.lower()})
DROPPED_PREFIXES = ("list-",)

_ENTITY_POLICY = Compat32(linesep="\r\n")


class Refused(ValueError):
    """The message cannot be queued as it is; ``reply`` is the SMTP reply that says why."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(text)
        self.code, self.enhanced, self.text = code, enhanced, text

    @property
    def reply(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


@dataclass(frozen=True)
class Submission:
    """What a submitted message says, ready for the same checks as an API message."""

    from_addr: str
    from_name: str | None
    subject: str
    stream: str | None
    """From ``X-Mailplane-Stream``; None lets the listener's default decide."""
    campaign: str | None
    reply_to: str | None
    reply_to_name: str | None
    to_names: dict[str, str]
    """Display names of the ``To`` header's addresses, by lower-cased address."""
    headers: dict[str, str]
    """The headers kept, as the API's ``headers``."""
    entity: bytes
    """The MIME body: its ``Content-*`` headers and content, 7-bit clean, CRLF line ends."""
    message_id: str | None
    """The client's ``Message-ID``: its retries of the same message are recognised by it."""
    fingerprint: str = field(default="")


def _single_address(read: Mapping[str, Any], name: str) -> Address | None:
    header = read[name]
    if header is None:
        return None
    addresses = list(getattr(header, "addresses", ()))
    if len(addresses) != 1 or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        raise Refused(550, "5.6.0", f"{name} must hold exactly one address, not {str(header)!r}")
    return addresses[0]


def _classify(name: str) -> str:
    """``read``, ``dropped``, ``entity`` (``Content-*``), ``refused`` or ``kept``."""
    lowered = name.lower()
    if lowered in READ:
        return "read"
    if lowered in DROPPED or lowered.startswith(DROPPED_PREFIXES):
        return "dropped"
    if lowered.startswith("content-"):
        return "entity"
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES):
        return "refused"
    return "kept"


def _seven_bit(mail: Mail) -> None:
    """Re-encode every ``8bit`` or ``binary`` leaf part: quoted-printable for text, base64 otherwise."""
    for part in mail.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        if cte in ("8bit", "binary") or (cte == "7bit" and not is_7bit_clean(raw.decode("latin-1"))):
            del part["Content-Transfer-Encoding"]
            if part.get_content_maintype() == "text":
                part["Content-Transfer-Encoding"] = "quoted-printable"
                part.set_payload(_quoted_printable(raw))
            else:
                part["Content-Transfer-Encoding"] = "base64"
                part.set_payload(base64.encodebytes(raw).decode("ascii").replace("\n", "\r\n"))


def _quoted_printable(raw: bytes) -> str:
    import quopri

    return quopri.encodestring(raw).decode("ascii").replace("\r\n", "\n").replace("\n", "\r\n")


def _head(raw: bytes) -> Mail:
    """The header block, parsed alone (the body is left to :func:`_entity`); refused unless it parses cleanly."""
    if b"\x00" in raw:
        raise Refused(550, "5.6.0", "the message contains NUL")
    head = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    if head.defects:
        raise Refused(550, "5.6.0", "the message header does not parse cleanly: "
                      + ", ".join(sorted({type(d).__name__ for d in head.defects})))
    return head


def _kept_headers(head: Mail, names: list[str]) -> dict[str, str]:
    """The headers kept as the API's ``headers``, each once; a header that would choose a route or claim
    authentication refuses the message, at the first one met."""
    headers: dict[str, str] = {}
    for name in names:
        kind = _classify(name)
        if kind == "refused":
            hint = " (turn off DKIM signing in the application: mailplane's routes sign)" \
                if name.lower() == "dkim-signature" else ""
            raise Refused(550, "5.7.1", f"header {name} is not allowed: it would choose a route or claim "
                          f"authentication, which mailplane decides{hint}")
        if kind == "kept":
            if name.lower() in {n.lower() for n in headers}:
                raise Refused(550, "5.6.0", f"header {name} given twice")
            headers[name] = str(head[name])
    return headers


def _each_once(names: list[str]) -> None:
    """The headers mailplane reads a single value of: a second one would be silently ignored, so it refuses."""
    for name in ("From", "Subject", "Reply-To", STREAM_HEADER, CAMPAIGN_HEADER):
        if sum(n.lower() == name.lower() for n in names) > 1:
            raise Refused(550, "5.6.0", f"header {name} given more than once")


def _text(header: Any) -> str | None:
    """A header's value, stripped; None when the message has no such header (an empty one gives "")."""
    return str(header).strip() if header is not None else None


def _campaign(header: Any) -> str | None:
    """``X-Mailplane-Campaign``: it names the campaign's turns in the queue, so only a name the API would take."""
    campaign = _text(header)
    if campaign is not None and not re.fullmatch(CAMPAIGN, campaign):
        raise Refused(550, "5.6.0", f"header {CAMPAIGN_HEADER} must be letters, digits and ._:- (at most 64, "
                      "starting with a letter or digit)")
    return campaign


def _entity(raw: bytes) -> bytes:
    """The MIME body: the whole message with every header but ``Content-*`` removed, made 7-bit clean."""
    body = message_from_bytes(raw, policy=_ENTITY_POLICY)
    for name in {n for n in body if not n.lower().startswith("content-")}:
        del body[name]
    _seven_bit(body)
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_ENTITY_POLICY).flatten(body)
    return out.getvalue()


def _fingerprint(submission: Submission) -> str:
    """What makes two submissions the same message (a client's retry): all that is queued but the recipient."""
    campaign = submission.campaign
    return hashlib.sha256(json.dumps(
        [submission.from_addr, submission.from_name, submission.subject, submission.stream, submission.reply_to,
         sorted(submission.headers.items()), *([campaign] if campaign is not None else [])],
        separators=(",", ":")).encode() + b"\n" + submission.entity).hexdigest()


def read_submission(raw: bytes) -> Submission:
    """Read a submitted message; :class:`Refused` says why it cannot be queued."""
    head = _head(raw)
    names = head.keys()  # names only: a value is parsed (the costly part) only where it is read, once
    headers = _kept_headers(head, names)
    _each_once(names)
    read = {name: head[name] for name in ("From", "Reply-To", "Subject", "To", "Message-ID", STREAM_HEADER,
                                          CAMPAIGN_HEADER)}
    sender = _single_address(read, "From")
    if sender is None:
        raise Refused(550, "5.6.0", "the message has no From header")
    reply_to = _single_address(read, "Reply-To")
    subject = str(read["Subject"] or "").strip()
    if not subject:
        raise Refused(550, "5.6.0", "the message has no Subject")
    to_names = {a.addr_spec.lower(): a.display_name for a in getattr(read["To"], "addresses", ()) if a.display_name}
    stream = _text(read[STREAM_HEADER])
    campaign = _campaign(read[CAMPAIGN_HEADER])
    submission = Submission(
        from_addr=sender.addr_spec, from_name=sender.display_name or None, subject=subject,
        stream=stream.lower() if stream is not None else None, campaign=campaign,
        reply_to=reply_to.addr_spec if reply_to else None,
        reply_to_name=(reply_to.display_name or None) if reply_to else None, to_names=to_names, headers=headers,
        entity=_entity(raw), message_id=_text(read["Message-ID"]) or None)
    return Submission(**{**submission.__dict__, "fingerprint": _fingerprint(submission)})
