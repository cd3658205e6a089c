"""RFC 8058 one-click unsubscribe: signed tokens, the two headers, and what the endpoint answers.

Why it looks like this:

* The token is the only credential (RFC 8058: the POST carries no cookie, login or other context), so it is
  HMAC-SHA256 over (tenant, address, list, issued-at) with a secret from the configuration, compared in
  constant time. It is opaque to the receiver's software and cannot be forged or edited to unsubscribe
  somebody else. Several keys may be given to :func:`read_token` so the signing key can be rotated without
  breaking links already in mailboxes; the first one signs.
* Links in old mail should keep working (refusing them breeds spam complaints), so there is no expiry
  unless the caller passes ``max_age``.
* Mail software and link scanners fetch header URLs, which is why RFC 8058 exists: a GET only shows a page
  whose form POSTs the one-click body to the same URL; only a POST with exactly
  ``List-Unsubscribe=One-Click`` (form-encoded or multipart) unsubscribes, and it answers 200 plain text,
  never a redirect, never a cookie.
* A bad token gets the same 404 whatever was wrong with it, so the endpoint is no oracle for forgers.

:func:`respond` is pure: it decides; the HTTP layer performs ``response.unsubscribe`` (adds the address to
the tenant's suppression list) before sending the response, and answers 500 if that fails.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import html
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl, urlsplit

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
PATH_PREFIX = "/v1/unsubscribe/"
# RFC 8058 §3: receivers offer one-click only if the DKIM signature covers both headers (h=). The signer of
# the transports must include these.
DKIM_SIGNED_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")

_VERSION = 1
_CONTEXT = b"mailplane/unsubscribe/v1\x00"  # domain separation: the key may one day sign other things
_MAC_BYTES = 32
MIN_KEY_BYTES = 16
MAX_TOKEN_CHARS = 2048
MAX_BODY_BYTES = 8 * 1024  # the one-click body is 26 bytes; multipart adds a boundary and a few headers

Key = bytes | str


class TokenError(Exception):
    """The token cannot be used; subclasses say why, for logs only."""


class MalformedToken(TokenError):
    pass


class BadSignature(TokenError):
    pass


class ExpiredToken(TokenError):
    pass


@dataclass(frozen=True)
class Unsubscription:
    """What a valid token names: who stops receiving which mail of which tenant."""

    tenant: str
    address: str
    list_id: str  # the stream ("marketing") or a list name within it
    issued_at: int  # Unix seconds


def _key_bytes(key: Key) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"unsubscribe key must be at least {MIN_KEY_BYTES} bytes")
    return raw


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _CONTEXT + payload, hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if len(text) > MAX_TOKEN_CHARS or not text.isascii():
        raise MalformedToken("token too long or not ASCII")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("not URL-safe base64") from exc


def make_token(key: Key, *, tenant: str, address: str, list_id: str, issued_at: int | None = None) -> str:
    """URL-safe token (no padding, so it is a single path segment) = base64url(payload ‖ HMAC-SHA256)."""
    issued = int(time.time()) if issued_at is None else issued_at
    payload = json.dumps([_VERSION, tenant, address, list_id, issued], separators=(",", ":"),
                         ensure_ascii=False).encode("utf-8")
    return _b64encode(payload + _mac(_key_bytes(key), payload))


def read_token(token: str, keys: Key | Sequence[Key], *, max_age: int | None = None,
               now: float | None = None) -> Unsubscription:
    """Check the MAC against each key (constant time), then the payload, then the age.

    The MAC is checked before the payload is parsed, so nothing an attacker wrote is ever interpreted.
    """
    key_list = [keys] if isinstance(keys, bytes | str) else list(keys)
    if not key_list:
        raise ValueError("no unsubscribe key configured")
    raw = _b64decode(token)
    if len(raw) <= _MAC_BYTES:
        raise MalformedToken("too short")
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    # Every key is tried even after a match, so the time taken does not tell which key (if any) matched.
    matched = False
    for key in key_list:
        matched |= hmac.compare_digest(_mac(_key_bytes(key), payload), mac)
    if not matched:
        raise BadSignature("MAC does not match any key")
    try:
        version, tenant, address, list_id, issued = json.loads(payload.decode("utf-8"))
    except (ValueError, TypeError) as exc:  # signed by us, so only a bug or a future version lands here
        raise MalformedToken("payload not understood") from exc
    if (version != _VERSION or not all(isinstance(v, str) for v in (tenant, address, list_id))
            or not isinstance(issued, int) or isinstance(issued, bool)):
        raise MalformedToken("payload not understood")
    current = time.time() if now is None else now
    if max_age is not None and current - issued > max_age:
        raise ExpiredToken(f"issued {int(current - issued)} s ago")
    return Unsubscription(tenant=tenant, address=address, list_id=list_id, issued_at=issued)


def unsubscribe_url(base_url: str, token: str) -> str:
    """``https://BASE/v1/unsubscribe/TOKEN``; RFC 8058 requires HTTPS for the one-click URI."""
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"unsubscribe base URL must be https://host[/path], got {base_url!r}")
    return base_url.rstrip("/") + PATH_PREFIX + token


def unsubscribe_headers(base_url: str, token: str, *, mailto: str | None = None) -> dict[str, str]:
    """The two headers for marketing mail (RFC 8058 §3.1), exactly one HTTPS URI, optional mailto after it.

    Both must be covered by the DKIM signature (:data:`DKIM_SIGNED_HEADERS`).
    """
    value = f"<{unsubscribe_url(base_url, token)}>"
    if mailto:
        if any(c in mailto for c in "<>,\r\n"):
            raise ValueError(f"mailto address not allowed in a header: {mailto!r}")
        value += f", <mailto:{mailto}?subject=unsubscribe>"
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": ONE_CLICK_BODY}


# --- the endpoint -----------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    CONFIRMATION_PAGE = "confirmation-page"
    BAD_TOKEN = "bad-token"
    BAD_BODY = "bad-body"
    METHOD_NOT_ALLOWED = "method-not-allowed"


# No caching (the answer depends on a secret URL), no referrer (it would leak the token to other sites),
# nothing else: in particular never Set-Cookie or Location.
_COMMON_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class UnsubscribeResponse:
    """What to answer; ``unsubscribe`` is set only when the address must be suppressed before answering."""

    status: int
    body: str
    headers: Mapping[str, str]
    outcome: Outcome
    unsubscribe: Unsubscription | None = None
    log_detail: str = field(default="", compare=False)  # why a token or body was refused; never sent


def _one_click_form(content_type: str | None, body: bytes) -> bool:
    """True if the body is exactly the single pair ``List-Unsubscribe=One-Click``, form-encoded or multipart."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "multipart/form-data":
        return _one_click_multipart(content_type or "", body)
    if mime not in ("", "application/x-www-form-urlencoded"):
        return False
    try:
        pairs = parse_qsl(body.decode("ascii").strip(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return pairs == [("List-Unsubscribe", "One-Click")]


def _one_click_multipart(content_type: str, body: bytes) -> bool:
    if any(c in content_type for c in "\r\n"):
        return False
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        return False
    parts = message.get_payload()
    if not isinstance(parts, list) or len(parts) != 1 or not isinstance(parts[0], Message):
        return False
    part = parts[0]
    if part.get_content_disposition() != "form-data" or part.get_param("name", header="content-disposition") \
            != "List-Unsubscribe":
        return False
    value = part.get_payload(decode=True)
    return isinstance(value, bytes) and value.strip() == b"One-Click"


def _mask(address: str) -> str:
    """``j***@example.com``: enough for the reader to recognise, little for a link scanner's log."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


def _page(sub: Unsubscription) -> str:
    who = html.escape(_mask(sub.address))
    what = html.escape(sub.list_id)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"robots\" content=\"noindex\"><title>Unsubscribe</title></head>\n<body>\n"
        f"<p>Stop sending <strong>{what}</strong> mail to <strong>{who}</strong>?</p>\n"
        # No action attribute: the form posts to this very URL, with the RFC 8058 body.
        "<form method=\"post\" enctype=\"application/x-www-form-urlencoded\">\n"
        "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n"
        "<button type=\"submit\">Unsubscribe</button>\n</form>\n</body></html>\n"
    )


def respond(method: str, token: str, *, keys: Key | Sequence[Key], content_type: str | None = None,
            body: bytes = b"", max_age: int | None = None, now: float | None = None) -> UnsubscribeResponse:
    """Decide the answer to ``METHOD /v1/unsubscribe/TOKEN``; see the module docstring for the rules.

    The HTTP layer should not read more than :data:`MAX_BODY_BYTES` of the body (a longer one is refused here).
    """
    method = method.upper()
    if method not in ("GET", "HEAD", "POST"):
        return UnsubscribeResponse(405, "Method not allowed\n", {**_COMMON_HEADERS, "Content-Type": _TEXT,
                                                                 "Allow": "GET, HEAD, POST"},
                                   Outcome.METHOD_NOT_ALLOWED)
    try:
        sub = read_token(token, keys, max_age=max_age, now=now)
    except TokenError as exc:
        return UnsubscribeResponse(404, "Not found\n", {**_COMMON_HEADERS, "Content-Type": _TEXT},
                                   Outcome.BAD_TOKEN, log_detail=f"{type(exc).__name__}: {exc}")
    if method == "POST":
        if len(body) > MAX_BODY_BYTES or not _one_click_form(content_type, body):
            return UnsubscribeResponse(400, f"Bad request: the body must be {ONE_CLICK_BODY}\n",
                                       {**_COMMON_HEADERS, "Content-Type": _TEXT}, Outcome.BAD_BODY,
                                       log_detail=f"content type {content_type!r}, {len(body)} bytes")
        return UnsubscribeResponse(200, "You have been unsubscribed.\n", {**_COMMON_HEADERS, "Content-Type": _TEXT},
                                   Outcome.UNSUBSCRIBED, unsubscribe=sub)
    headers = {**_COMMON_HEADERS, "Content-Type": "text/html; charset=utf-8",
               "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'"}
    return UnsubscribeResponse(200, "" if method == "HEAD" else _page(sub), headers, Outcome.CONFIRMATION_PAGE)
