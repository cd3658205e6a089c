"""Turn a queued message into the RFC 5322 mail a transport hands over, without I/O.

Why it looks like this:

* The HTTP API stores the payload already rendered (subject, text and/or HTML, a few headers),
  so composing is deterministic apart from ``Date`` and the MIME boundary, and a retry sends
  the same mail.  ``Message-ID`` is derived from the queue id (``<mp-ID@from-domain>``) for the
  same reason: a message sent twice (a lease that ran out, a timeout after DATA) carries the same
  id both times, and receivers that deduplicate on it show it once.
* Bodies are made 7-bit clean (quoted-printable or base64 for UTF-8 text) rather than relying
  on 8BITMIME, so no relay on the way has to downgrade, and downgrading would break DKIM.
* Marketing mail carries RFC 8058 one-click unsubscribe (Gmail and Yahoo require it of bulk
  senders); transactional mail carries none, because an unsubscribe link on a password reset
  invites people to opt out of mail they need.
* Applications may add headers, but never ones that decide routing, identity, structure or the
  unsubscribe promise (:data:`RESERVED_HEADERS`): a tenant must not be able to pick another
  tenant's virtual MTA, forge a DKIM signature or drop the unsubscribe header.
  :func:`check_headers` is the one rule, called by the API at submission and here again.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from email._policybase import Compat32
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message as Mail
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, parseaddr
from io import BytesIO
from typing import Any

from mailplane.model.routes import return_path_domain, verp_address
from mailplane.model.stack import Fleet
from mailplane.sender.pacing import Granted
from mailplane.sender.store import Message
from mailplane.sender.unsubscribe import make_token, unsubscribe_headers

RESERVED_HEADERS: frozenset[str] = frozenset({
    "from", "to", "cc", "bcc", "sender", "subject", "date", "message-id", "return-path",
    "x-virtual-mta", "list-unsubscribe", "list-unsubscribe-post", "dkim-signature",
    "mime-version", "received",
})
"""Lower-cased header names a caller may not set; so are the prefixes in :data:`RESERVED_PREFIXES`."""

RESERVED_PREFIXES: tuple[str, ...] = ("content-", "x-ses-")
"""``Content-*`` describe the MIME structure we build; ``X-SES-*`` are SES control headers (one picks
the configuration set, which would route a tenant's events to another tenant's topic)."""

MARKETING = "marketing"

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab is folding whitespace; CR/LF reported apart
MAX_HEADERS = 50
MAX_HEADER_VALUE = 998  # RFC 5322 §2.1.1 line limit; the policy folds, but nobody needs more

# Built with the email package's plain (compat32) message API: header values are stored as given
# (each one checked here) instead of parsed into objects, which made composing the largest cost of
# delivery (2 ms a message, against 0.4 ms now).  Serialised with CRLF and lines of at most 78.
class _WirePolicy(Compat32):
    """Lines folded at 78 where they can be; an ASCII value with no space in it is left whole.

    Folding a value without spaces (an unsubscribe URL) only moves it to a continuation line,
    and some readers then keep the folding space in the value.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (isinstance(value, str) and value.isascii() and " " not in value.strip()
                and len(name) + 2 + len(value) <= MAX_HEADER_VALUE):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_WIRE_POLICY = _WirePolicy(linesep="\r\n", max_line_length=78)
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable and 7-bit clean; base64 would hide the text from filters' eyes
_UTF8_QP.header_encoding = QP


def _reserved(name: str) -> bool:
    lowered = name.lower()
    return lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIXES)


def _has_line_break(value: str) -> bool:
    """CR or LF anywhere in a value would start a new header (or the body): header injection."""
    return "\r" in value or "\n" in value


def check_headers(headers: Any) -> list[str]:
    """Problems with caller-supplied headers, one sentence each; empty when they may be used."""
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        return ["headers must be an object of header name to value"]
    if len(headers) > MAX_HEADERS:
        return [f"at most {MAX_HEADERS} headers, got {len(headers)}"]
    problems: list[str] = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            problems.append(f"{name!r} is not a header name (printable ASCII without ':' or spaces)")
            continue
        if _reserved(name):
            problems.append(f"{name}: reserved header, set by mailplane")
        elif name.lower() in seen:
            problems.append(f"{name}: given twice (header names are case-insensitive)")
        seen.add(name.lower())
        if not isinstance(value, str):
            problems.append(f"{name}: the value must be a string")
        elif _has_line_break(value):
            problems.append(f"{name}: the value contains a line break (CR or LF)")
        elif _CONTROL.search(value):
            problems.append(f"{name}: the value contains a control character")
        elif len(value) > MAX_HEADER_VALUE:
            problems.append(f"{name}: the value is longer than {MAX_HEADER_VALUE} characters")
    return problems


def envelope_sender(message: Message, fleet: Fleet, ip: str) -> str:
    """The SMTP MAIL FROM of mail handed to PowerMTA for ``ip``: an address of its own at the route's
    return path.

    ``mp-<queue id>-<IP in hex>@<stream>.<return_path>`` (:func:`mailplane.model.routes.verp_address`):
    aligned with the From domain for DMARC, authorised by that domain's SPF for exactly the
    route's IPs, and its MX brings asynchronous bounces to the MTA hosts, where PowerMTA's bounce
    processor records them with this address, which names the message and the IP.  A From domain
    the fleet no longer has keeps the From address.  (SES mail needs none: SES sets the
    identity's MAIL FROM itself.)
    """
    domain = message.from_addr.rpartition("@")[2].lower()
    found = fleet.domains.get(domain)
    if found is None:
        return message.from_addr
    return verp_address(message.id, ip, return_path_domain(found[1], message.stream))


def message_id(message: Message) -> str:
    """``<mp-ID@DOMAIN>``: the same on every attempt, so receivers can deduplicate a resend."""
    domain = message.from_addr.rpartition("@")[2] or "mailplane.invalid"
    return f"<mp-{message.id}@{domain}>"


def _payload_problems(message: Message) -> list[str]:
    payload = message.payload
    problems: list[str] = []
    if not isinstance(payload.get("subject"), str):
        problems.append("payload.subject must be a string")
    text, html = payload.get("text"), payload.get("html")
    if text is None and html is None:
        problems.append("payload needs text, html or both")
    for key in ("text", "html", "reply_to", "list_id"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            problems.append(f"payload.{key} must be a string")
    for key in ("subject", "reply_to", "list_id"):
        if isinstance(payload.get(key), str) and _has_line_break(payload[key]):
            problems.append(f"payload.{key} contains a line break (CR or LF)")
    for label, address in (("from", message.from_addr), ("to", message.to_addr)):
        if _has_line_break(address) or not address.isascii() or "@" not in address:
            problems.append(f"{label} address {address!r} is not an ASCII local@domain address")
    problems.extend(check_headers(payload.get("headers")))
    headers = payload.get("headers")
    if payload.get("reply_to") and isinstance(headers, Mapping) and any(
            isinstance(name, str) and name.lower() == "reply-to" for name in headers):
        problems.append("Reply-To given both as payload.reply_to and in headers")
    return problems


def _unsubscribe(message: Message, public_url: str | None, key: str, issued_at: int) -> dict[str, str]:
    if public_url is None:
        raise ValueError(f"message {message.id}: marketing mail needs the sender's public_url for "
                         "one-click unsubscribe (RFC 8058)")
    token = make_token(key, tenant=message.tenant, address=message.to_addr,
                       list_id=message.payload.get("list_id") or message.tenant, issued_at=issued_at)
    return unsubscribe_headers(public_url, token)


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        part.set_payload(text, "us-ascii")  # 7bit as it is
    else:
        part.set_payload(text, _UTF8_QP)
    return part


def _body(text: str | None, html: str | None) -> Mail:
    if text is not None and html is not None:
        outer = MIMEMultipart("alternative")
        for part in (_text_part(text, "plain"), _text_part(html, "html")):
            del part["MIME-Version"]  # once, at the top
            outer.attach(part)
        return outer
    if text is not None:
        return _text_part(text, "plain")
    assert html is not None
    return _text_part(html, "html")


def _header(value: str) -> str | Header:
    """Unstructured values as they are when ASCII, RFC 2047 encoded words otherwise."""
    return value if value.isascii() else Header(value, _UTF8_QP, header_name="")


def _address_header(value: str) -> str:
    """An address with a display name: the name encoded if it is not ASCII, the address never."""
    name, address = parseaddr(value)
    if not address or "@" not in address or not address.isascii():
        raise ValueError(f"{value!r} is not an address")
    return formataddr((name, address), charset="utf-8")


def build_message(message: Message, granted: Granted, *, public_url: str | None, unsubscribe_key: str,
                  now: datetime.datetime | None = None) -> Mail:
    """The mail for one attempt of ``message`` through the transport ``granted`` chose.

    Raises ``ValueError`` for a payload the API should have refused (reserved or injected headers,
    no body), marketing mail without ``public_url``, or a PowerMTA grant without a virtual MTA.
    ``now`` fixes ``Date`` and the unsubscribe token's issue time (tests).
    """
    problems = _payload_problems(message)
    if problems:
        raise ValueError(f"message {message.id}: " + "; ".join(problems))
    when = now or datetime.datetime.now(datetime.UTC)
    payload = message.payload
    mail = _body(payload.get("text"), payload.get("html"))
    headers: list[tuple[str, str | Header]] = [
        ("From", message.from_addr), ("To", message.to_addr), ("Subject", _header(payload["subject"])),
        ("Date", format_datetime(when)), ("Message-ID", message_id(message))]
    if payload.get("reply_to"):
        headers.append(("Reply-To", _address_header(payload["reply_to"])))
    if message.stream == MARKETING:
        headers.extend(_unsubscribe(message, public_url, unsubscribe_key, int(when.timestamp())).items())
    if granted.transport == "pmta":
        if not granted.vmta:
            raise ValueError(f"message {message.id}: a PowerMTA grant without a virtual MTA")
        headers.append(("X-Virtual-MTA", granted.vmta))
    headers.extend((name, _header(value)) for name, value in (payload.get("headers") or {}).items())
    # The envelope headers first, as mail readers list them; the MIME ones the body part set follow.
    mime = list(mail.items())
    for name in {n for n, _ in mime}:
        del mail[name]
    for name, value in [*headers, *mime]:
        mail[name] = value
    return mail


def wire_bytes(mail: Mail) -> bytes:
    """The bytes both transports send: CRLF line ends, folded headers, encoded once per attempt."""
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(mail)
    return out.getvalue()
