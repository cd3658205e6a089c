"""RFC 8058 one-click unsubscribe: tokens, headers, and the endpoint's POST/GET decisions."""

from __future__ import annotations

import base64
import re
import time

import pytest

from mailplane.sender.core.unsubscribe import (
    DKIM_SIGNED_HEADERS,
    BadSignature,
    ExpiredToken,
    MalformedToken,
    Outcome,
    Unsubscription,
    make_token,
    read_token,
    respond,
    unsubscribe_headers,
)

KEY = b"k" * 32
OLD_KEY = "an older key from the configuration"
T0 = 1_790_000_000
FORM = "application/x-www-form-urlencoded"


def token(**kwargs: object) -> str:
    args: dict[str, object] = {"tenant": "acme", "address": "alice@example.org", "list_id": "marketing",
                               "issued_at": T0} | kwargs
    return make_token(KEY, **args)  # type: ignore[arg-type]


def test_token_round_trip_and_is_url_safe_opaque() -> None:
    t = make_token(KEY, tenant="acme", address="Ålice+news@example.org", list_id="marketing", issued_at=T0)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", t)
    assert read_token(t, KEY) == Unsubscription("acme", "Ålice+news@example.org", "marketing", T0)


def test_token_defaults_to_now() -> None:
    before = int(time.time())
    t = make_token(KEY, tenant="acme", address="a@example.org", list_id="marketing")
    assert before <= read_token(t, KEY).issued_at <= time.time()
    assert read_token(t, KEY, max_age=60).address == "a@example.org"


def _flip(t: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("index", [0, 5, 12, -40, -1])
def test_tampering_anywhere_is_detected(index: int) -> None:
    with pytest.raises(BadSignature):
        read_token(_flip(token(), index), KEY)


def test_swapping_the_address_inside_the_payload_is_detected() -> None:
    good = base64.urlsafe_b64decode(token() + "=" * (-len(token()) % 4))
    forged = good.replace(b"alice@example.org", b"bobby@example.org")
    with pytest.raises(BadSignature):
        read_token(base64.urlsafe_b64encode(forged).rstrip(b"=").decode(), KEY)


def test_other_key_is_rejected_and_rotation_accepts_old_keys() -> None:
    with pytest.raises(BadSignature):
        read_token(token(), b"x" * 32)
    old = make_token(OLD_KEY, tenant="acme", address="a@example.org", list_id="marketing", issued_at=T0)
    assert read_token(old, [KEY, OLD_KEY]).address == "a@example.org"
    with pytest.raises(BadSignature):
        read_token(old, [KEY])


@pytest.mark.parametrize("bad", ["", "abc", "not base64!", "é" * 10, "A" * 5000, "AAAA" * 8])
def test_malformed_tokens(bad: str) -> None:
    with pytest.raises((MalformedToken, BadSignature)):
        read_token(bad, KEY)


def test_short_keys_and_no_keys_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="at least"):
        make_token(b"short", tenant="a", address="a@b", list_id="m")
    with pytest.raises(ValueError, match="no unsubscribe key"):
        read_token(token(), [])


def test_expired_token_only_with_max_age() -> None:
    t = token()
    assert read_token(t, KEY, now=T0 + 10 * 365 * 86400).tenant == "acme"  # default: links never expire
    assert read_token(t, KEY, max_age=3600, now=T0 + 3600).tenant == "acme"
    with pytest.raises(ExpiredToken):
        read_token(t, KEY, max_age=3600, now=T0 + 3601)


def test_header_format_is_exact() -> None:
    t = token()
    assert unsubscribe_headers("https://mail.acme.example/", t) == {
        "List-Unsubscribe": f"<https://mail.acme.example/v1/unsubscribe/{t}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    with_mailto = unsubscribe_headers("https://mail.acme.example/sender", t, mailto="unsub@acme.example")
    assert with_mailto["List-Unsubscribe"] == (f"<https://mail.acme.example/sender/v1/unsubscribe/{t}>, "
                                               "<mailto:unsub@acme.example?subject=unsubscribe>")
    assert DKIM_SIGNED_HEADERS == ("List-Unsubscribe", "List-Unsubscribe-Post")


@pytest.mark.parametrize("base", ["http://mail.acme.example", "mail.acme.example", "https://", "https://h/?q=1"])
def test_header_requires_an_https_base(base: str) -> None:
    with pytest.raises(ValueError, match="https"):
        unsubscribe_headers(base, token())


def test_header_refuses_injection_through_mailto() -> None:
    with pytest.raises(ValueError):
        unsubscribe_headers("https://h", token(), mailto="a@b>\r\nBcc: x@y")


def _no_cookie_no_redirect(headers: dict[str, str] | object) -> None:
    names = {name.lower() for name in headers}  # type: ignore[attr-defined]
    assert not names & {"set-cookie", "location", "refresh"}


MULTIPART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n")


@pytest.mark.parametrize(("content_type", "body"), [
    (FORM, b"List-Unsubscribe=One-Click"),
    (FORM + "; charset=utf-8", b"List-Unsubscribe=One-Click\r\n"),
    (None, b"List-Unsubscribe=One-Click"),
    ("multipart/form-data; boundary=XyZ", MULTIPART),
    ('multipart/form-data; boundary="XyZ"', MULTIPART),
])
def test_one_click_post_unsubscribes_with_200_plain_text(content_type: str | None, body: bytes) -> None:
    response = respond("POST", token(), keys=KEY, content_type=content_type, body=body)
    assert (response.status, response.outcome) == (200, Outcome.UNSUBSCRIBED)
    assert response.unsubscribe == Unsubscription("acme", "alice@example.org", "marketing", T0)
    assert response.headers["Content-Type"].startswith("text/plain")
    _no_cookie_no_redirect(response.headers)


@pytest.mark.parametrize(("content_type", "body"), [
    (FORM, b""),
    (FORM, b"List-Unsubscribe=Yes"),
    (FORM, b"List-Unsubscribe=One-Click&List-Unsubscribe=One-Click"),
    (FORM, b"List-Unsubscribe=One-Click&extra=1"),
    (FORM, b"list-unsubscribe=one-click"),
    (FORM, b"List-Unsubscribe=One-Click" + b" " * 9000),
    ("text/plain", b"List-Unsubscribe=One-Click"),
    ("application/json", b'{"List-Unsubscribe": "One-Click"}'),
    ("multipart/form-data; boundary=XyZ", b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n"
                                          b"One-Click\r\n--XyZ--\r\n"),
    ("multipart/form-data; boundary=XyZ", MULTIPART.replace(b"--XyZ--", b"--XyZ\r\nContent-Disposition: "
                                                                     b"form-data; name=\"x\"\r\n\r\n1\r\n--XyZ--")),
    ("multipart/form-data", MULTIPART),
    ("multipart/form-data; boundary=XyZ\r\nX-Evil: 1", MULTIPART),
])
def test_post_without_the_exact_one_click_body_does_not_unsubscribe(content_type: str, body: bytes) -> None:
    response = respond("POST", token(), keys=KEY, content_type=content_type, body=body)
    assert (response.status, response.outcome, response.unsubscribe) == (400, Outcome.BAD_BODY, None)
    _no_cookie_no_redirect(response.headers)


@pytest.mark.parametrize("method", ["GET", "HEAD", "get"])
def test_get_only_shows_a_confirmation_page(method: str) -> None:
    response = respond(method, token(), keys=KEY)
    assert (response.status, response.outcome, response.unsubscribe) == (200, Outcome.CONFIRMATION_PAGE, None)
    _no_cookie_no_redirect(response.headers)
    assert response.headers["Content-Type"].startswith("text/html")
    if method != "HEAD":
        assert '<form method="post"' in response.body and "action=" not in response.body
        assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in response.body
        assert "a***@example.org" in response.body and "alice@" not in response.body
    else:
        assert response.body == ""


def test_confirmation_page_escapes_what_it_shows() -> None:
    t = token(list_id="<script>alert(1)</script>", address="<b>@example.org")
    page = respond("GET", t, keys=KEY).body
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("bad", ["", "garbage", "tampered", "other-key", "expired"])
def test_bad_tokens_get_the_same_404_whatever_the_reason(method: str, bad: str) -> None:
    t = {"": "", "garbage": "!!!", "tampered": _flip(token(), 3), "expired": token(),
         "other-key": make_token(b"z" * 32, tenant="acme", address="a@example.org", list_id="m")}[bad]
    response = respond(method, t, keys=KEY, content_type=FORM, body=b"List-Unsubscribe=One-Click",
                       max_age=60, now=T0 + 61)
    assert (response.status, response.body, response.unsubscribe) == (404, "Not found\n", None)
    assert response.log_detail  # the reason goes to the log only
    _no_cookie_no_redirect(response.headers)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(method: str) -> None:
    response = respond(method, token(), keys=KEY)
    assert (response.status, response.headers["Allow"], response.unsubscribe) == (405, "GET, HEAD, POST", None)


def test_responses_are_not_cached_and_leak_no_referrer() -> None:
    for response in (respond("GET", token(), keys=KEY),
                     respond("POST", token(), keys=KEY, content_type=FORM, body=b"List-Unsubscribe=One-Click")):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
