"""Amazon SNS HTTP(S) messages: signature verification and the topic allow-list.

``POST /v1/webhooks/ses`` is reachable from the internet, so anyone can post a JSON body that looks like
SNS. Nothing in a message is trusted until :class:`SnsVerifier` has checked, in this order (cheap checks
first, and none of them fetches anything until the signing certificate's URL is known to be Amazon's):

1. the body is a JSON object of a known ``Type`` with every field the signature covers;
2. its ``TopicArn`` is one of the fleet's topics (the caller's allow-list, :func:`fleet_topics`);
3. ``SignatureVersion`` is 2 (SHA256withRSA): the topics mailplane creates sign with it
   (``signature_version=2`` in the Pulumi program), so a version 1 (SHA1withRSA) message on them is forged
   or replayed from before;
4. ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com/<name>.pem`` with the topic's own region and
   partition (``.amazonaws.com.cn`` only for an ``arn:aws-cn:`` topic) — checked *before* fetching, so the
   service never becomes a fetcher of attacker-chosen URLs;
5. ``Timestamp`` is recent (default: at most one hour old, five minutes of clock skew ahead), which bounds
   replays of captured messages;
6. the RSA signature over AWS's canonical string verifies with the certificate's public key (certificate
   fetched through an injectable fetcher and kept in a bounded LRU cache by URL; a failed fetch is
   remembered for a while and fetches are rate-limited, so forged messages cannot make the service
   fetch once per POST).

Every failure raises :class:`SnsRejected` with a :class:`RejectReason` for the log; the HTTP layer answers
403 for all of them and shows no reason. A ``SubscriptionConfirmation`` yields ``subscribe_url`` (to be
fetched with GET by the caller) only after all of the above and only if it points at the same SNS endpoint.
With ``insecure_skip_signature`` (tests against moto) the URL must still be HTTPS on an SNS host, and the
default fetcher connects only to public addresses (:class:`PublicHttpsHandler`), never to a loopback,
private or link-local one, nor to anything but ``https://``.

What a verified notification says (the SES events inside): :mod:`mailplane.sender.events.ses_events`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailplane.model.names import topic_name

if TYPE_CHECKING:
    from mailplane.model.tenant import Tenant

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields AWS signs, in the order AWS concatenates them ("Verifying the signatures of Amazon SNS
# messages"). ``Subject`` is signed only when the notification has one.
_SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_OPTIONAL_SIGNED = frozenset({"Subject"})

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
SIGNATURE_VERSIONS = ("2",)
"""What the verifier accepts by default: the fleet's topics are created with ``SignatureVersion`` 2."""

# SNS messages are at most 256 KiB; the envelope and JSON escaping add a little. Anything bigger is not SNS.
MAX_BODY_BYTES = 512 * 1024
MAX_CERT_BYTES = 64 * 1024

_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}"
_SNS_HOST = re.compile(rf"sns\.(?P<region>{_REGION})\.amazonaws\.com(?P<cn>\.cn)?")
_CERT_PATH = re.compile(r"/[A-Za-z0-9][A-Za-z0-9._-]*\.pem")
_TOPIC_ARN = re.compile(
    rf"arn:(?P<partition>aws(?:-cn|-us-gov)?):sns:(?P<region>{_REGION}):\d{{12}}:[A-Za-z0-9_-]{{1,256}}")

CertFetcher = Callable[[str], bytes]


class RejectReason(enum.StrEnum):
    """Why a message was refused: for logs and metrics only, never shown to the caller."""

    MALFORMED = "malformed"  # not JSON, not an object, a field missing or of the wrong type, too big
    UNKNOWN_TYPE = "unknown-type"
    TYPE_MISMATCH = "type-mismatch"  # x-amz-sns-message-type header differs from the body's Type
    UNKNOWN_TOPIC = "unknown-topic"
    UNKNOWN_SIGNATURE_VERSION = "unknown-signature-version"
    BAD_CERT_URL = "bad-cert-url"
    STALE = "stale"  # Timestamp too old, too far ahead, or unreadable
    CERT_UNAVAILABLE = "cert-unavailable"  # fetch failed, not a PEM certificate, not RSA, expired
    BAD_SIGNATURE = "bad-signature"
    BAD_SUBSCRIBE_URL = "bad-subscribe-url"


class SnsRejected(Exception):
    """A message that must not be acted upon; the HTTP layer answers 403 without the reason."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VerifiedMessage:
    """An SNS message whose signature, certificate host, topic and age were all checked."""

    type: str
    message_id: str
    topic_arn: str
    tenant: str  # from the allow-list: whose suppression list the events belong to
    timestamp: datetime
    message: str
    subject: str | None = None
    # Only for a SubscriptionConfirmation of an allowed topic, pointing at that topic's SNS endpoint:
    # the caller confirms by GETting it. Never set for UnsubscribeConfirmation (GETting that URL would
    # subscribe again, which is for an operator to decide).
    subscribe_url: str | None = None
    signature_checked: bool = True

    @property
    def is_notification(self) -> bool:
        return self.type == NOTIFICATION


def canonical_string(body: Mapping[str, Any]) -> bytes:
    """The bytes AWS signs: ``Key\\nValue\\n`` for each signed field of the type, in AWS's order.

    Raises ``KeyError``/``TypeError`` for an unknown type or a missing/non-string field; the verifier turns
    those into ``MALFORMED`` after checking them itself, so this is also usable on its own (tests sign with it).
    """
    out: list[str] = []
    for key in _SIGNED_FIELDS[body["Type"]]:
        if key in _OPTIONAL_SIGNED and key not in body:
            continue
        value = body[key]
        if not isinstance(value, str):
            raise TypeError(f"{key} is not a string")
        out.append(f"{key}\n{value}\n")
    return "".join(out).encode("utf-8")


def check_cert_url(url: str, *, partition: str, region: str) -> None:
    """Refuse any SigningCertURL but ``https://sns.<region>.amazonaws.com[.cn]/<name>.pem`` of the topic's region.

    Pinning the region (and the ``.cn`` suffix to the ``aws-cn`` partition) to the topic's ARN is stricter than
    the host pattern alone and costs nothing: SNS signs with the certificate of the topic's own region.
    """
    parts = urlsplit(url)
    match = _SNS_HOST.fullmatch(parts.netloc)
    if (parts.scheme != "https" or match is None or parts.query or parts.fragment
            or not _CERT_PATH.fullmatch(parts.path)):
        raise SnsRejected(RejectReason.BAD_CERT_URL, url[:200])
    if match["region"] != region or bool(match["cn"]) != (partition == "aws-cn"):
        raise SnsRejected(RejectReason.BAD_CERT_URL, f"{url[:200]} is not the endpoint of {partition}/{region}")


def check_subscribe_url(url: str, *, topic_arn: str, partition: str, region: str, pinned: bool = True) -> None:
    """The URL to GET must be the topic's SNS endpoint confirming this very topic, nothing else (no SSRF).

    ``pinned=False`` (only with the signature check off) still wants ``https://`` on an SNS host of any region,
    a ``ConfirmSubscription`` action and no user, port or fragment: the least a forged confirmation can be
    made to fetch.
    """
    parts = urlsplit(url)
    match = _SNS_HOST.fullmatch(parts.netloc)
    query = parse_qs(parts.query)
    if (parts.scheme != "https" or match is None or parts.path not in ("", "/") or parts.fragment
            or query.get("Action") != ["ConfirmSubscription"]):
        raise SnsRejected(RejectReason.BAD_SUBSCRIBE_URL, url[:200])
    if pinned and (match["region"] != region or bool(match["cn"]) != (partition == "aws-cn")
                   or query.get("TopicArn") != [topic_arn]):
        raise SnsRejected(RejectReason.BAD_SUBSCRIBE_URL, url[:200])


def public_address(host: str, port: int) -> tuple[str, int]:
    """The first address ``host`` resolves to, refused unless every one is a public unicast address.

    Checked at connection time, on the address then used (no second look-up a DNS answer could change):
    loopback, private, link-local (the cloud metadata service among them), multicast, reserved and
    unspecified addresses are never connected to.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from exc
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise PermissionError(f"{host} resolves to {address}, not a public address: not fetched")
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses[0], port


Resolve = Callable[[str, int], tuple[str, int]]


class _PublicHttpsConnection(http.client.HTTPSConnection):
    """An HTTPS connection to the address ``resolve`` vetted (:func:`public_address`), TLS verified by host name."""

    resolve: Resolve = staticmethod(public_address)

    def connect(self) -> None:
        address = self.resolve(self.host, self.port or 443)
        sock = socket.create_connection(address, self.timeout)
        context = self._context  # type: ignore[attr-defined]
        self.sock = context.wrap_socket(sock, server_hostname=self.host)


class PublicHttpsHandler(urllib.request.HTTPSHandler):
    """``https://`` only, to public addresses only: the one way the service fetches a URL a message names."""

    def __init__(self, resolve: Resolve = public_address, context: ssl.SSLContext | None = None) -> None:
        super().__init__(context=context)
        self._connection = type("_Connection", (_PublicHttpsConnection,), {"resolve": staticmethod(resolve)})

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self._context)  # type: ignore[arg-type,attr-defined]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would lead away from the host that was pinned; refuse it instead of following."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def urllib_fetcher(timeout: float = 5.0, *, resolve: Resolve = public_address,
                   context: ssl.SSLContext | None = None) -> CertFetcher:
    """Default fetcher: HTTPS GET to a public address with a timeout, TLS verified (the default context), no
    redirects, size-capped; any other scheme (``file://``, ``http://``, ``ftp://``) is refused.

    ``resolve`` and ``context`` exist for tests (a loopback server with a test CA); the service never sets them.
    """
    opener = urllib.request.OpenerDirector()
    for handler in (_NoRedirect(), PublicHttpsHandler(resolve, context), urllib.request.HTTPErrorProcessor(),
                    urllib.request.HTTPDefaultErrorHandler()):
        opener.add_handler(handler)

    def fetch(url: str) -> bytes:
        if urlsplit(url).scheme != "https":
            raise PermissionError(f"only https:// URLs are fetched, not {url[:100]!r}")
        try:
            with opener.open(url, timeout=timeout) as response:  # the URL passed check_cert_url
                data: bytes = response.read(MAX_CERT_BYTES + 1)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, PermissionError):  # an address refused: say so, not "URL error"
                raise exc.reason from None
            raise
        if len(data) > MAX_CERT_BYTES:
            raise ValueError("certificate response too large")
        return data

    return fetch


class CertCache:
    """Public keys of signing certificates by URL, bounded LRU, thread-safe; failures remembered, fetches rate-limited.

    Only Amazon's pinned URLs ever reach the fetcher, but anyone can post a message naming one (any
    ``<name>.pem``): a failed fetch is remembered for ``failure_ttl`` seconds (the same URL is not fetched again
    before), and at most ``fetches_per_minute`` fetches start in any minute (a token bucket), so forged
    messages cost the service at most that many requests however many arrive.  A message that finds no
    token is refused like a failed fetch; SNS retries real deliveries for hours.
    """

    def __init__(self, fetcher: CertFetcher | None = None, *, max_entries: int = 32, failure_ttl: float = 300.0,
                 fetches_per_minute: float = 10.0, monotonic: Callable[[], float] = time.monotonic,
                 on_fetch: Callable[[], None] = lambda: None) -> None:
        self._fetch = fetcher or urllib_fetcher()
        self._max = max_entries
        self._keys: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._failure_ttl = failure_ttl
        self._rate = fetches_per_minute / 60.0
        self._burst = max(1.0, fetches_per_minute)
        self._tokens = self._burst
        self._refilled = monotonic()
        self._monotonic = monotonic
        self._on_fetch = on_fetch
        self._lock = threading.Lock()
        self.fetches = 0  # for metrics and tests

    def public_key(self, url: str, now: datetime) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._keys.get(url)
            if key is not None:
                self._keys.move_to_end(url)
                return key
            self._admit(url)
        try:
            key = self._load(url, now)
        except SnsRejected as exc:
            with self._lock:
                self._failures[url] = (self._monotonic() + self._failure_ttl, exc.detail)
                while len(self._failures) > self._max:
                    self._failures.popitem(last=False)
            raise
        with self._lock:
            self._keys[url] = key
            self._keys.move_to_end(url)
            while len(self._keys) > self._max:
                self._keys.popitem(last=False)
        return key

    def _admit(self, url: str) -> None:
        """Called with the lock held: refuse a URL that failed lately, or a fetch over the rate; else take a token."""
        clock = self._monotonic()
        failed = self._failures.get(url)
        if failed is not None:
            if clock < failed[0]:
                raise SnsRejected(RejectReason.CERT_UNAVAILABLE, f"{failed[1]} (failed lately: not fetched again)")
            del self._failures[url]
        self._tokens = min(self._burst, self._tokens + (clock - self._refilled) * self._rate)
        self._refilled = clock
        if self._tokens < 1:
            raise SnsRejected(RejectReason.CERT_UNAVAILABLE, f"{url}: certificate fetches over their rate limit")
        self._tokens -= 1
        self.fetches += 1
        self._on_fetch()

    def _load(self, url: str, now: datetime) -> rsa.RSAPublicKey:
        # Two threads missing the same URL at once may both fetch; rare, harmless, and cheaper than a
        # per-URL lock held across a network call.
        try:
            cert = x509.load_pem_x509_certificate(self._fetch(url))
        except Exception as exc:  # network errors, timeouts, garbage: all the same to the caller
            raise SnsRejected(RejectReason.CERT_UNAVAILABLE, f"{url}: {exc}") from exc
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SnsRejected(RejectReason.CERT_UNAVAILABLE, f"{url}: certificate not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected(RejectReason.CERT_UNAVAILABLE, f"{url}: not an RSA key")
        return key


def fleet_topics(tenants: Iterable[Tenant], *, region: str, account_id: str, partition: str = "aws") -> dict[str, str]:
    """The allow-list: topic ARN → tenant name, from the same ``topic_name`` the Pulumi program uses.

    The names are fixed, so the list is known before the topics exist.
    """
    return {f"arn:{partition}:sns:{region}:{account_id}:{topic_name(t.name)}": t.name for t in tenants}


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp without time zone")
    return parsed.astimezone(UTC)


@dataclass
class SnsVerifier:
    """Checks SNS messages for one fleet; one instance per service process (it owns the certificate cache).

    ``allowed_topics`` maps each accepted topic ARN to its tenant. ``insecure_skip_signature`` exists only for
    tests against moto (whose certificates are not Amazon's): it skips the certificate URL pin, the signature,
    and the region and topic pin of ``SubscribeURL`` (which must still be HTTPS on an SNS host), and nothing
    else; it is off unless the configuration turns it on explicitly.  ``signature_versions`` are the
    ``SignatureVersion`` values accepted: 2 only, as the fleet's topics are created.
    """

    allowed_topics: Mapping[str, str]
    fetcher: CertFetcher | None = None
    max_age: timedelta = timedelta(hours=1)
    max_skew: timedelta = timedelta(minutes=5)
    cache_size: int = 32
    insecure_skip_signature: bool = False
    signature_versions: tuple[str, ...] = SIGNATURE_VERSIONS
    failure_ttl: float = 300.0
    fetches_per_minute: float = 10.0
    monotonic: Callable[[], float] = time.monotonic
    on_fetch: Callable[[], None] = lambda: None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    cache: CertCache = field(init=False)

    def __post_init__(self) -> None:
        self.cache = CertCache(self.fetcher, max_entries=self.cache_size, failure_ttl=self.failure_ttl,
                               fetches_per_minute=self.fetches_per_minute, monotonic=self.monotonic,
                               on_fetch=self.on_fetch)

    def verify(self, body: bytes | str, *, message_type_header: str | None = None) -> VerifiedMessage:
        """Return the verified message or raise :class:`SnsRejected`; see the module docstring for the order.

        ``body`` is the raw request body whatever its Content-Type (SNS posts JSON as ``text/plain``).
        ``message_type_header`` is the ``x-amz-sns-message-type`` header if the request had one: a body whose
        ``Type`` differs is refused, so routing on the header can never disagree with what was verified.
        """
        msg = self._parse(body)
        kind = msg["Type"]
        if message_type_header is not None and message_type_header != kind:
            raise SnsRejected(RejectReason.TYPE_MISMATCH, f"header {message_type_header!r}, body {kind!r}")
        topic_arn = msg["TopicArn"]
        tenant = self.allowed_topics.get(topic_arn)
        arn = _TOPIC_ARN.fullmatch(topic_arn)
        if tenant is None or arn is None:
            raise SnsRejected(RejectReason.UNKNOWN_TOPIC, topic_arn[:300])
        partition, region = arn["partition"], arn["region"]
        version = msg.get("SignatureVersion")
        if version not in _HASHES or version not in self.signature_versions:
            raise SnsRejected(RejectReason.UNKNOWN_SIGNATURE_VERSION, repr(version)[:50])
        if not self.insecure_skip_signature:
            check_cert_url(msg["SigningCertURL"], partition=partition, region=region)
        now = self.clock()
        try:
            timestamp = _parse_time(msg["Timestamp"])
        except ValueError as exc:
            raise SnsRejected(RejectReason.STALE, f"unreadable Timestamp {msg['Timestamp'][:50]!r}") from exc
        if timestamp < now - self.max_age or timestamp > now + self.max_skew:
            raise SnsRejected(RejectReason.STALE, f"Timestamp {msg['Timestamp']}")
        if not self.insecure_skip_signature:
            self._check_signature(msg, version, now)
        subscribe_url = None
        if kind == SUBSCRIPTION_CONFIRMATION:
            subscribe_url = msg["SubscribeURL"]
            check_subscribe_url(subscribe_url, topic_arn=topic_arn, partition=partition, region=region,
                                pinned=not self.insecure_skip_signature)
        return VerifiedMessage(type=kind, message_id=msg["MessageId"], topic_arn=topic_arn, tenant=tenant,
                               timestamp=timestamp, message=msg["Message"], subject=msg.get("Subject"),
                               subscribe_url=subscribe_url, signature_checked=not self.insecure_skip_signature)

    def _parse(self, body: bytes | str) -> dict[str, Any]:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if len(raw) > MAX_BODY_BYTES:
            raise SnsRejected(RejectReason.MALFORMED, f"body of {len(raw)} bytes")
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SnsRejected(RejectReason.MALFORMED, "not JSON") from exc
        if not isinstance(msg, dict):
            raise SnsRejected(RejectReason.MALFORMED, "not a JSON object")
        kind = msg.get("Type")
        if kind not in _SIGNED_FIELDS:
            raise SnsRejected(RejectReason.UNKNOWN_TYPE, repr(kind)[:50])
        needed = [k for k in _SIGNED_FIELDS[kind] if k not in _OPTIONAL_SIGNED]
        needed += [] if self.insecure_skip_signature else ["Signature", "SigningCertURL"]
        for key in needed:
            if not isinstance(msg.get(key), str):
                raise SnsRejected(RejectReason.MALFORMED, f"{key} missing or not a string")
        if "Subject" in msg and not isinstance(msg["Subject"], str):
            raise SnsRejected(RejectReason.MALFORMED, "Subject not a string")
        return msg

    def _check_signature(self, msg: Mapping[str, Any], version: str, now: datetime) -> None:
        try:
            signature = base64.b64decode(msg["Signature"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsRejected(RejectReason.BAD_SIGNATURE, "Signature is not base64") from exc
        key = self.cache.public_key(msg["SigningCertURL"], now)
        try:
            key.verify(signature, canonical_string(msg), padding.PKCS1v15(), _HASHES[version]())
        except InvalidSignature as exc:
            raise SnsRejected(RejectReason.BAD_SIGNATURE, f"MessageId {msg['MessageId'][:80]}") from exc
