"""Turn a queued message into the RFC 5322 mail a transport hands over, without I/O.

Why it looks like this:

* The HTTP API stores the payload already rendered (subject, text and/or HTML, a few headers),
  so composing is deterministic apart from ``Date`` and the MIME boundary, and a retry sends
  the same mail.  ``Message-ID`` is a random token made at submission (``<TOKEN@from-domain>``)
  and kept with the message: a message sent twice (a lease that ran out, a timeout after DATA)
  carries the same id both times, and receivers that deduplicate on it show it once.
* Bodies are made 7-bit clean (quoted-printable or base64 for UTF-8 text) rather than relying
  on 8BITMIME, so no relay on the way has to downgrade, and downgrading would break DKIM.
* Marketing mail carries RFC 8058 one-click unsubscribe (Gmail and Yahoo require it of bulk
  senders); transactional mail carries none, because an unsubscribe link on a password reset
  invites people to opt out of mail they need.
* Applications may add headers, but never ones that decide routing, identity, structure, trace
  or the unsubscribe promise (:data:`RESERVED_HEADERS`): a tenant must not be able to pick another
  tenant's virtual MTA, forge a DKIM signature or an Authentication-Results, or drop the
  unsubscribe header.  :func:`check_headers` is the one rule, called by the API at submission and
  here again; every value bound for a header passes :func:`header_value_problem` (no control
  character a reader could break a line on).
* Headers are built, never smuggled: the wire form is parsed back with ``email.policy.default`` and
  must show exactly the header names written (:func:`verify_wire`), at submission (a trial
  composition) and on every attempt.
"""

from __future__ import annotations

import base64
import datetime
import email.policy
import re
import secrets
from collections.abc import Mapping
from email import message_from_bytes
from email._policybase import Compat32
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message as Mail
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, parseaddr
from io import BytesIO
from typing import Any

from mailplane.model.names import VMTA_HEADER, return_path_domain, verp_address
from mailplane.model.stack import Fleet
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message
from mailplane.sender.core.unsubscribe import make_token, unsubscribe_headers

RESERVED_HEADERS: frozenset[str] = frozenset({
    # identity and structure: mailplane writes them
    "from", "to", "cc", "bcc", "sender", "subject", "date", "message-id", "reply-to", "mime-version",
    # routing: PowerMTA reads these from the sender's source (a tenant must not pick another's VMTA)
    "x-virtual-mta", "x-job", "x-envid", "x-dkim-options", "x-dkim-key", "x-schedule", "x-mailmerge",
    # trace and authentication: receivers trust them, so only the MTAs on the way write them
    "received", "return-path", "delivered-to", "dkim-signature", "domainkey-signature", "authentication-results",
    "received-spf", "x-original-to", "x-received", "x-google-dkim-signature",
    # the unsubscribe promise and the list
    "list-id", "list-unsubscribe", "list-unsubscribe-post", "precedence",
})
"""Lower-cased header names a caller may not set; so are the prefixes in :data:`RESERVED_PREFIXES`."""

RESERVED_PREFIXES: tuple[str, ...] = ("content-", "x-ses-", "arc-", "resent-", "list-", "x-mailplane-")
"""``Content-*`` describe the MIME structure we build; ``X-SES-*`` are SES control headers (one picks
the configuration set, which would route a tenant's events to another tenant's topic); ``ARC-*`` and
``Resent-*`` are trace headers; ``List-*`` belong to the list mailplane runs."""

MARKETING = "marketing"

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
_FORBIDDEN_IN_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 controls but TAB, DEL, C1 controls and the Unicode line and paragraph separators: the email
package (and many readers) break lines on VT, FF, FS, GS, RS, NEL and U+2028/9 as on CRLF, so any of
them in a value would start a header of the attacker's choosing."""
MAX_HEADERS = 50
MAX_HEADER_VALUE = 998  # RFC 5322 §2.1.1 line limit; the policy folds, but nobody needs more
MAX_LINE = 998
"""RFC 5322 §2.1.1: octets of a line, CRLF excluded."""

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


def header_value_problem(value: str) -> str | None:
    """Why ``value`` may not go into a header, or None: the one rule for subjects, names, list ids,
    custom headers and template output alike."""
    if _has_line_break(value):
        return "contains a line break (CR or LF)"
    found = _FORBIDDEN_IN_HEADER.search(value)
    if found:
        return f"contains the control character U+{ord(found.group()):04X}"
    if len(value) > MAX_HEADER_VALUE:
        return f"is longer than {MAX_HEADER_VALUE} characters"
    return None


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
        elif (why := header_value_problem(value)) is not None:
            problems.append(f"{name}: the value {why}")
    return problems


def envelope_sender(message: Message, fleet: Fleet, ip: str) -> str:
    """The SMTP MAIL FROM of mail handed to PowerMTA for ``ip``: an address of its own at the route's
    return path.

    ``mp-<tag>-<IP in hex>@<stream>.<return_path>`` (:func:`mailplane.model.names.verp_address`, the tag
    being the first 16 hex digits of the message's random token, or its queue id for a message
    queued before tokens):
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
    token = message.payload.get("token")
    tag = token[:16] if isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token) else str(message.id)
    return verp_address(tag, ip, return_path_domain(found[1], message.stream))


def new_token() -> str:
    """A random message token (128 bits, hex), made once at submission and kept in the payload:
    the Message-ID's left part, the same on every attempt and unique on any database."""
    return secrets.token_hex(16)


def message_id(message: Message) -> str:
    """``<TOKEN@DOMAIN>``: random (it leaks no volume, never repeats on a new database) and the same on
    every attempt, so receivers can deduplicate a resend.  Messages queued before tokens existed keep
    ``mp-ID``."""
    domain = message.from_addr.rpartition("@")[2] or "mailplane.invalid"
    token = message.payload.get("token")
    left = token if isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token) else f"mp-{message.id}"
    return f"<{left}@{domain}>"


_HEADER_FIELDS = ("subject", "reply_to", "list_id", "from_name", "to_name", "reply_to_name")


def _payload_problems(message: Message) -> list[str]:
    payload = message.payload
    return [*_body_problems(payload), *_value_problems(payload), *_address_problems(message),
            *_header_problems(payload)]


def _body_problems(payload: Mapping[str, Any]) -> list[str]:
    """A subject and one kind of body: text and/or HTML from the API, or the MIME body of an SMTP submission."""
    problems: list[str] = []
    if not isinstance(payload.get("subject"), str):
        problems.append("payload.subject must be a string")
    text, html = payload.get("text"), payload.get("html")
    if payload.get("mime") is not None:
        if text is not None or html is not None or not isinstance(payload["mime"], str):
            problems.append("payload.mime (an SMTP submission's MIME body) stands alone, as a base64 string")
    elif text is None and html is None:
        problems.append("payload needs text, html or both")
    return problems


def _value_problems(payload: Mapping[str, Any]) -> list[str]:
    """Every text of the payload a string, those bound for a header free of line breaks and controls, the
    bodies free of NUL."""
    problems: list[str] = []
    for key in ("text", "html", *_HEADER_FIELDS[1:]):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            problems.append(f"payload.{key} must be a string")
    for key in _HEADER_FIELDS:
        if isinstance(payload.get(key), str) and (why := header_value_problem(payload[key])) is not None:
            problems.append(f"payload.{key} {why}")
    for key in ("text", "html"):
        if isinstance(payload.get(key), str) and "\x00" in payload[key]:
            problems.append(f"payload.{key} contains NUL")
    return problems


def _address_problems(message: Message) -> list[str]:
    """The envelope's addresses go into headers as they are: plain ASCII local@domain, on one line."""
    problems: list[str] = []
    for label, address in (("from", message.from_addr), ("to", message.to_addr)):
        if _has_line_break(address) or not address.isascii() or "@" not in address:
            problems.append(f"{label} address {address!r} is not an ASCII local@domain address")
    return problems


def _header_problems(payload: Mapping[str, Any]) -> list[str]:
    """The application's own headers (:func:`check_headers`), and no second Reply-To beside payload.reply_to."""
    problems = check_headers(payload.get("headers"))
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


_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_7bit_clean(text: str) -> bool:
    """Sendable as ``7bit`` as it is: ASCII, no control character but TAB and line ends, and every
    CRLF-delimited line at most 998 octets.  ``str.splitlines`` would also split on FF, VT, FS...,
    which are not line ends on the wire: a form feed does not shorten a line."""
    if not text.isascii() or _BODY_CONTROL.search(text):
        return False
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return all(len(line) <= MAX_LINE for line in lines)


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    if is_7bit_clean(text):
        part.set_payload(text, "us-ascii")  # 7bit as it is
    else:
        part.set_payload(text, _UTF8_QP)  # quoted-printable: 76-octet lines, controls as =XX
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


def _mime_body(encoded: str) -> Mail:
    """An SMTP submission's MIME body as stored (``mailplane.sender.core.mime_in``): its ``Content-*`` headers
    and content, parsed back as they were written; ``MIME-Version`` added, as the composer's bodies have."""
    mail = message_from_bytes(base64.b64decode(encoded, validate=True), policy=Compat32(linesep="\r\n"))
    if mail["MIME-Version"] is None:
        mail["MIME-Version"] = "1.0"
    return mail


def _header(value: str) -> str | Header:
    """Unstructured values as they are when ASCII, RFC 2047 encoded words otherwise."""
    return value if value.isascii() else Header(value, _UTF8_QP, header_name="")


def _address_header(address: str, name: str | None = None) -> str:
    """A bare address, with its display name when given: the name quoted or RFC 2047 encoded as it
    needs, the address never encoded (it is ASCII, checked at submission)."""
    if not address or "@" not in address or not address.isascii() or parseaddr(address)[1] != address:
        raise ValueError(f"{address!r} is not an address")
    return formataddr((name or "", address), charset="utf-8")


def list_id_header(message: Message) -> str:
    """RFC 2919 ``List-Id``: ``<LIST.FROM-DOMAIN>``, the list being ``list_id`` or the tenant; Gmail and
    Yahoo group a bulk sender's feedback by it."""
    label = message.payload.get("list_id") or message.tenant
    return f"<{label}.{message.from_addr.rpartition('@')[2]}>"


def expected_headers(mail: Mail) -> list[str]:
    """The header names ``mail`` was built with, lower-cased, in order: what the wire must parse back to."""
    return [name.lower() for name, _ in mail.items()]


class Smuggled(ValueError):
    """The wire form of a message does not parse back to the headers mailplane wrote."""


def verify_wire(raw: bytes, expected: list[str]) -> None:
    """Parse ``raw`` as a receiver would (``email.policy.default``) and check it is exactly what was
    meant: the same header names in the same order (nothing added by folding or by a value), no
    parser defect, no line over 998 octets, no NUL.  Raises :class:`Smuggled` otherwise.

    Called before a message is queued (on a trial composition) and again on every wire form sent.
    """
    if b"\x00" in raw:
        raise Smuggled("the message contains NUL")
    long = next((i for i, line in enumerate(raw.split(b"\r\n"), 1) if len(line) > MAX_LINE), None)
    if long is not None:
        raise Smuggled(f"line {long} is longer than {MAX_LINE} octets")
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
    got = [name.lower() for name in parsed]  # iterating a message gives its header names, unparsed
    if got != expected:
        extra = sorted(set(got) - set(expected)) or got
        raise Smuggled(f"the headers parse back as {extra}, not as written")
    defects = [*parsed.defects, *(d for part in parsed.walk() for d in part.defects)]
    for value in parsed.values():  # each value parsed once: the header registry is most of the cost
        defects.extend(getattr(value, "defects", ()))
    if defects:
        raise Smuggled(f"the message parses with defects: {', '.join(type(d).__name__ for d in defects)}")


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
    mail = _mime_body(payload["mime"]) if payload.get("mime") is not None else _body(payload.get("text"),
                                                                                   payload.get("html"))
    headers: list[tuple[str, str | Header]] = [
        ("From", _address_header(message.from_addr, payload.get("from_name"))),
        ("To", _address_header(message.to_addr, payload.get("to_name"))),
        ("Subject", _header(payload["subject"])),
        ("Date", format_datetime(when)), ("Message-ID", message_id(message))]
    if payload.get("reply_to"):
        headers.append(("Reply-To", _address_header(payload["reply_to"], payload.get("reply_to_name"))))
    if message.stream == MARKETING:
        headers.extend(_unsubscribe(message, public_url, unsubscribe_key, int(when.timestamp())).items())
        headers.append(("List-Id", list_id_header(message)))
    if granted.transport == "pmta":
        if not granted.vmta:
            raise ValueError(f"message {message.id}: a PowerMTA grant without a virtual MTA")
        headers.append((VMTA_HEADER, granted.vmta))
    headers.extend((name, _header(value)) for name, value in (payload.get("headers") or {}).items())
    # The envelope headers first, as mail readers list them; the MIME ones the body part set follow.
    mime: list[tuple[str, Any]] = list(mail.items())  # header objects: re-set as they are, not re-parsed as text
    for name in {n for n, _ in mime}:
        del mail[name]
    for name, value in [*headers, *mime]:
        mail[name] = value
    return mail


def wire_bytes(mail: Mail) -> bytes:
    """The bytes both transports send: CRLF line ends, folded headers, encoded once per attempt,
    and checked to parse back to exactly the headers written (:func:`verify_wire`)."""
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=_WIRE_POLICY).flatten(mail)
    raw = out.getvalue()
    verify_wire(raw, expected_headers(mail))
    return raw
