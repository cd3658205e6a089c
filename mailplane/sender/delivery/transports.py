"""Hand a composed mail to PowerMTA (SMTP) or to Amazon SES, and say what became of it.

Both transports answer with an :data:`Outcome` instead of raising, because the worker's next step
depends on more than success or failure:

* ``TemporaryFailure.refund`` says whether the pacing reservation may be given back.  It is True
  only when the provider certainly did not take the message (see ``pacing``): the connection
  failed, a 4xx came at MAIL, RCPT or the DATA command itself, or SES refused the call for rate or
  quota.  Once the content has been sent, a 4xx to the final dot, a timeout awaiting that reply or
  a lost connection may all hide a delivered message, so the reservation keeps counting: a cap may
  then be under-used, never overshot.
* ``TemporaryFailure.mta_config`` says PowerMTA refused the hand-over for its own configuration
  (an unknown virtual MTA, relaying denied, a source or listener rule): the message waits, its
  reservation is given back, and the IP is held after a few such refusals in a row
  (:mod:`mailplane.sender.delivery.handover`).
* No outcome of a hand-over is a recipient's bounce.  PowerMTA queues mail for remote domains and
  reports the remote verdict later (accounting ``b`` and ``rb`` records, the bounce and
  feedback-loop processors), so a reply it gives at the hand-over is its own decision and says
  nothing of the mailbox; through SES a refused call is SES's verdict on the request.  Only remote
  evidence suppresses an address (:mod:`mailplane.sender.events.side`).  A ``PermanentFailure`` fails
  the message alone: a size or content refusal, PowerMTA's own suppression list.

The SMTP side keeps persistent connections per MTA host (PowerMTA listens on loopback or a
private network, so there is no TLS and no login): connecting per message would cost a round
trip and a PowerMTA session each time, which is most of the work on a local submission.  The
DATA phase is driven step by step (the ``DATA`` command, then the content) rather than through
``aiosmtplib.SMTP.data``, because only that tells a 4xx before the content was sent (refund)
from one after it (no refund).
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message as Mail
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiosmtplib
import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from mailplane.model.addresses import parse_listener
from mailplane.sender.core.compose import envelope_sender, wire_bytes
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message

if TYPE_CHECKING:
    from mailplane.model.stack import Fleet
    from mailplane.sender.config import SenderConfig


@dataclass(frozen=True)
class Delivered:
    detail: str
    """The provider's acceptance: the final SMTP reply, or the SES message id."""


@dataclass(frozen=True)
class TemporaryFailure:
    error: str
    refund: bool
    """True only when the provider certainly did not take the message (give the reservation back)."""
    retry_after: float | None = None
    """Seconds the transport suggests waiting; None leaves it to the worker's backoff."""
    mta_config: bool = False
    """PowerMTA refused the hand-over for its configuration: counts towards holding the IP."""


@dataclass(frozen=True)
class PermanentFailure:
    error: str
    """What was said: the message fails with it, and nobody is suppressed for it."""


Outcome = Delivered | TemporaryFailure | PermanentFailure

# -- classification of SMTP replies --------------------------------------------------------------

Stage = Literal["connect", "mail", "rcpt", "data", "content"]
"""Where a session stopped: ``data`` is the DATA command (before 354), ``content`` the final dot."""

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_CONFIGURATION_TEXT = re.compile(r"relay|virtual[- ]?mta|\bvmta\b|\bsource\b", re.I)
"""Words of PowerMTA's refusals about its own configuration: relaying, the VMTA named, a source rule."""
_SUPPRESSION_TEXT = re.compile(r"suppress", re.I)
"""PowerMTA's own suppression list refused the recipient: final for this message, not ours to suppress."""
_FINAL_FOR_MESSAGE = frozenset({("1", "3"), ("3", "4"), ("2", "3")})
"""Enhanced status (subject, detail) final for one message: bad address syntax (5.1.3), too big for
the system (5.3.4) or over the length limit (5.2.3); the whole of 5.6.x (the content) is too."""


def _enhanced(text: str) -> tuple[str, str] | None:
    found = _ENHANCED.match(text.lstrip())
    return None if found is None or (found.group(2), found.group(3)) == ("0", "0") else (found.group(2),
                                                                                        found.group(3))


def _final_for_message(code: int, text: str) -> bool:
    """Does a 5xx of PowerMTA refuse this message only (its size, its content, its address's form, PowerMTA's own
    suppression list) rather than every message the same way (its configuration)?"""
    if _SUPPRESSION_TEXT.search(text):
        return True
    if _CONFIGURATION_TEXT.search(text):
        return False
    enhanced = _enhanced(text)
    if enhanced is None:
        return code == 552  # no detail: 552 is "exceeded storage allocation", the size refusal
    return enhanced in _FINAL_FOR_MESSAGE or enhanced[0] == "6"


def _configuration(code: int, text: str) -> bool:
    """A refusal about PowerMTA's configuration: any 5xx not final for the message, and a 4xx about
    security or policy (x.7.x) or naming relaying or the VMTA (``relay-debug`` answers 4xx to relaying)."""
    if 500 <= code < 600:
        return True
    enhanced = _enhanced(text)
    return (enhanced is not None and enhanced[0] == "7") or bool(_CONFIGURATION_TEXT.search(text))


def classify_reply(stage: Stage, code: int, text: str) -> Outcome:
    """Map PowerMTA's reply at the hand-over (or its final 250) to an outcome; see the module docstring.

    * 2xx to the content: handed over;
    * a 5xx final for this message (:func:`_final_for_message`): failed, nobody suppressed;
    * a refusal about PowerMTA's configuration (:func:`_configuration`), a 5xx greeting included:
      temporary, reservation given back, counted towards the IP's hold;
    * any other 4xx (a busy host, a spool short of space, a reload under way): temporary, refunded
      unless the content was already sent.
    """
    error = f"{stage}: {code} {text}".strip()
    if stage == "content" and 200 <= code < 300:
        return Delivered(f"{code} {text}".strip())
    if 500 <= code < 600 and stage != "connect" and _final_for_message(code, text):
        return PermanentFailure(error)
    if _configuration(code, text):
        return TemporaryFailure(error, refund=True, mta_config=True)
    return TemporaryFailure(error, refund=stage != "content")


def _lost(stage: Stage, exc: BaseException) -> TemporaryFailure:
    """A connection lost or timed out: only after the content was sent may the MTA have taken it."""
    return TemporaryFailure(f"{stage}: {type(exc).__name__}: {exc}", refund=stage != "content")


# -- SMTP ----------------------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_LINK_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError)


def _raw(mail: Mail | bytes) -> bytes:
    """The worker serialises in a thread and hands over bytes; tests and tools may pass the message."""
    return mail if isinstance(mail, bytes) else wire_bytes(mail)


def data_block(data: bytes) -> bytes:
    """The content as it goes after 354: CRLF line ends, leading dots doubled, then the final dot."""
    data = _LINE_END.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


async def _rset(smtp: aiosmtplib.SMTP) -> None:
    """End a half-done transaction so the connection can carry the next one; drop it if RSET fails."""
    if not smtp.is_connected:
        return
    try:
        reply = await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
        return
    if reply.code != 250:
        smtp.close()


async def _transaction(smtp: aiosmtplib.SMTP, block: bytes, sender: str, recipient: str,
                       timeout: float) -> tuple[Outcome, Stage | None]:
    """One MAIL/RCPT/DATA transaction on an open connection, and the stage where the link broke, if it did.

    Closes the connection when it is unusable and resets it after a refusal mid-transaction.
    """
    stage: Stage = "mail"
    try:
        await smtp.mail(sender)
        stage = "rcpt"
        await smtp.rcpt(recipient)
        stage = "data"
        reply = await smtp.execute_command(b"DATA")
        if reply.code != 354:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the content")
        protocol.write(block)  # raises, having sent nothing, if the connection is already closing
        stage = "content"
        reply = await protocol.read_response(timeout=timeout)
    except aiosmtplib.SMTPResponseException as exc:
        if stage == "content":  # a garbled final reply: the session's state is unknown
            smtp.close()
        else:
            await _rset(smtp)
        return classify_reply(stage, exc.code, exc.message), None
    except _LINK_ERRORS as exc:
        smtp.close()
        return _lost(stage, exc), stage
    if reply.code == 421:  # the server is closing: nothing more will go over this connection
        smtp.close()
    return classify_reply("content", reply.code, reply.message), None


class _Host:
    """The idle connections of one MTA host and the slots that bound how many exist at once."""

    def __init__(self, address: str, port: int, size: int) -> None:
        self.address, self.port = address, port
        self.idle: list[aiosmtplib.SMTP] = []
        self.slots = asyncio.Semaphore(size)


class SmtpPool:
    """Persistent SMTP connections to the fleet's PowerMTA hosts, at most N per host.

    Used from one event loop (a worker's).  A connection goes back to the pool after a transaction
    unless the error left it unusable (lost, timed out, 421); a reused connection that turns out
    to have been closed by the server while idle is replaced once, transparently, since nothing
    of the message was sent on it.
    """

    def __init__(self, endpoints: Mapping[str, tuple[str, int]], connections_per_host: int = 16,
                 timeout: float = 30.0, *, local_hostname: str | None = None) -> None:
        if connections_per_host < 1:
            raise ValueError("connections_per_host must be at least 1")
        self.timeout = timeout
        # socket.getfqdn (aiosmtplib's default) can wait on reverse DNS: resolve the EHLO name once.
        self.local_hostname = local_hostname or socket.gethostname() or "localhost"
        self._hosts = {name: _Host(address, port, connections_per_host)
                       for name, (address, port) in endpoints.items()}
        self._closed = False

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise ValueError(f"no SMTP endpoint for MTA host {name!r}") from None

    async def _connect(self, host: _Host) -> aiosmtplib.SMTP | Outcome:
        """A connection greeted and ready, or the outcome of the refusal (a 4xx or 5xx greeting, a lost line)."""
        smtp = aiosmtplib.SMTP(hostname=host.address, port=host.port, timeout=self.timeout, use_tls=False,
                               start_tls=False, local_hostname=self.local_hostname)
        try:
            await smtp.connect()
            await _greet(smtp)
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            return classify_reply("connect", exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            return _lost("connect", exc)
        return smtp

    def _checkout(self, host: _Host) -> aiosmtplib.SMTP | None:
        """An idle connection still open, closing the ones the server hung up on meanwhile."""
        while host.idle:
            smtp = host.idle.pop()
            if smtp.is_connected:
                return smtp
            smtp.close()
        return None

    async def send(self, host: str, mail: Mail | bytes, sender: str, recipient: str) -> Outcome:
        """Submit ``mail`` (or its wire bytes) to MTA ``host`` for one recipient; waits for a free slot."""
        pool = self._host(host)
        block = data_block(_raw(mail))
        async with pool.slots:
            smtp = self._checkout(pool)
            reused = smtp is not None
            try:
                for _attempt in range(2):
                    if smtp is None:
                        connected = await self._connect(pool)
                        if not isinstance(connected, aiosmtplib.SMTP):
                            return connected
                        smtp = connected
                    outcome, lost_at = await _transaction(smtp, block, sender, recipient, self.timeout)
                    if not (reused and lost_at == "mail"):
                        break
                    smtp, reused = None, False  # the idle connection had died: one fresh try
            except BaseException:
                if smtp is not None:  # cancelled mid-session: its state is unknown, never reuse it
                    smtp.close()
                raise
            self._checkin(pool, smtp)
            return outcome

    def _checkin(self, host: _Host, smtp: aiosmtplib.SMTP | None) -> None:
        if smtp is None:
            return
        if self._closed or not smtp.is_connected:
            smtp.close()
        else:
            host.idle.append(smtp)

    async def close(self) -> None:
        """QUIT every idle connection; connections in use are closed when their send returns."""
        self._closed = True
        for host in self._hosts.values():
            idle, host.idle = host.idle, []
            await asyncio.gather(*(_quit(smtp) for smtp in idle))


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO now, so a host that refuses sessions fails at connect (refund) rather than at MAIL."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit(timeout=2.0)
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def endpoints_for(fleet: Fleet, config: SenderConfig) -> dict[str, tuple[str, int]]:
    """Each MTA host's submission endpoint: its ``smtp_listener``, unless the sender config overrides it."""
    hosts = fleet.settings.mta_hosts
    unknown = sorted(set(config.smtp_endpoints) - set(hosts))
    if unknown:
        raise ValueError(f"smtp_endpoints names MTA hosts the fleet does not have: {', '.join(unknown)}")
    endpoints = {name: parse_listener(host.smtp_listener) for name, host in hosts.items()}
    endpoints.update({name: parse_listener(value) for name, value in config.smtp_endpoints.items()})
    return endpoints


# -- Amazon SES ------------------------------------------------------------------------------------

_THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"})
_PAUSED = frozenset({"SendingPausedException", "AccountSuspendedException"})
_REFUSED = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "NotFoundException",
                      "BadRequestException"})
RATE_RETRY = 1.0
"""Seconds to wait after a rate refusal: SES's send rate is per second."""
NOT_ASSOCIATED_RETRY = 300.0
"""Seconds to wait when SES refuses a send because a resource it names is not associated with the
SES tenant: ``pulumi up`` makes the associations, and the mail goes once it has run."""
_NOT_ASSOCIATED = re.compile(r"not associated", re.I)
"""SES's refusal of a tenant-named send whose identity or configuration set is not the tenant's
(``AccessDeniedException``: "Tenant not associated with resources [<ARNs>]")."""
PAUSED_RETRY = 3600.0
"""Seconds to wait when sending is paused or the account suspended: a human has to act first."""


def classify_ses_error(exc: BotoCoreError | ClientError) -> Outcome:
    """Map a failed ``send_email`` call to an outcome; see the module docstring for the refund rule."""
    if isinstance(exc, ClientError):
        return _classify_client_error(exc)
    if isinstance(exc, BotoConnectionError | NoCredentialsError):
        # Could not connect (refused, DNS, TLS handshake, connect timeout) or could not sign: never sent.
        return TemporaryFailure(f"SES: {exc}", refund=True)
    if isinstance(exc, ParamValidationError):
        return PermanentFailure(f"SES: {exc}")
    # HTTPClientError (read timeout, connection closed) and anything else: the request may have arrived.
    kind = "after the request was sent" if isinstance(exc, HTTPClientError) else "unclassified"
    return TemporaryFailure(f"SES ({kind}): {exc}", refund=False)


def _classify_client_error(exc: ClientError) -> Outcome:
    error: dict[str, Any] = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    text = str(error.get("Message", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    detail = f"SES {code} (HTTP {status}): {text}"
    if "Daily message quota exceeded" in text:
        return TemporaryFailure(detail, refund=True)  # the worker knows when the quota day turns
    if "Maximum sending rate exceeded" in text or code in _THROTTLED:
        return TemporaryFailure(detail, refund=True, retry_after=RATE_RETRY)
    if code in _PAUSED:
        return TemporaryFailure(detail, refund=True, retry_after=PAUSED_RETRY)
    if _NOT_ASSOCIATED.search(text):
        return TemporaryFailure(
            f"{detail}. The SES tenant named on the send does not have every resource the send names: run "
            "`pulumi up` for the stack (it associates each tenant's identities and configuration set with "
            "its SES tenant); the mail waits and is retried", refund=True, retry_after=NOT_ASSOCIATED_RETRY)
    if code in _REFUSED:
        return PermanentFailure(detail)
    if status >= 500 or status == 0:
        return TemporaryFailure(detail, refund=False)  # SES failed while handling it: it may have sent
    # Another 4xx (access denied, bad signature...): SES refused the request, so nothing was sent,
    # and it is a configuration problem that retrying after a fix resolves, not the message's fault.
    return TemporaryFailure(detail, refund=True)


class SesTransport:
    """``sesv2.send_email`` with raw content, from an event loop, through a bounded thread pool.

    boto3 clients are thread-safe and blocking, so one client is shared by ``max_workers``
    threads with as many pooled HTTPS connections.  botocore's own retries are off: a retry after
    a read timeout could send the message twice, and rate refusals are the pacer's business.
    """

    def __init__(self, region: str, endpoint_url: str | None = None, max_workers: int = 16, *,
                 timeout: float = 30.0, credentials: Mapping[str, tuple[str, str]] | None = None) -> None:
        config = Config(max_pool_connections=max_workers, connect_timeout=timeout, read_timeout=timeout,
                        retries={"total_max_attempts": 1, "mode": "standard"})

        def client(key: tuple[str, str] | None = None) -> Any:
            session = boto3.session.Session(*key) if key else boto3.session.Session()
            return session.client("sesv2", region_name=region, endpoint_url=endpoint_url, config=config)

        self._client = client()
        self._clients = {name: client(key) for name, key in sorted((credentials or {}).items())}
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ses-send")

    def client_for(self, sender_name: str | None) -> Any:
        """The sender's own client when its IAM user's keys are configured, else the service's.

        Sending as the sender's IAM user (Pulumi's send-only user: its From addresses and its
        tenant's configuration set only) makes AWS enforce the same isolation the API does.
        """
        return self._clients.get(sender_name or "", self._client)

    async def send(self, mail: Mail | bytes, *, configuration_set: str, ses_tenant: str, sender: str,
                   recipient: str, sender_name: str | None = None) -> Outcome:
        """Send ``mail`` (or its wire bytes) to one recipient through the tenant's configuration set,
        in the name of its SES tenant (whose reputation it counts against, so SES can pause that
        tenant alone), as ``sender_name`` (``tenant/sender``) when that sender has its own credentials."""
        call = functools.partial(
            self.client_for(sender_name).send_email, FromEmailAddress=sender, Destination={"ToAddresses": [recipient]},
            Content={"Raw": {"Data": _raw(mail)}}, ConfigurationSetName=configuration_set, TenantName=ses_tenant)
        try:
            reply = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (ClientError, BotoCoreError) as exc:
            return classify_ses_error(exc)
        return Delivered(f"SES MessageId {reply.get('MessageId', '?')}")

    async def close(self) -> None:
        """Wait for calls in flight, then release the threads and HTTP connections."""
        await asyncio.get_running_loop().run_in_executor(None, functools.partial(self._executor.shutdown, wait=True))
        for client in [self._client, *self._clients.values()]:
            client.close()


# --- one interface for the worker --------------------------------------------------------------------------


class Transport(Protocol):
    """A way out of the sender: the worker looks one up by ``Granted.transport`` and hands it a composed
    message; it answers with the :data:`Outcome`, never raises for the recipient's or the provider's
    refusal."""

    name: str

    async def deliver(self, message: Message, granted: Granted, mail: bytes) -> Outcome: ...

    async def close(self) -> None: ...


class PowerMtaTransport:
    """Mail granted an IP: to the PowerMTA of the IP's host, its return path naming the IP."""

    name = "pmta"

    def __init__(self, pool: SmtpPool, fleet: Fleet) -> None:
        self.pool = pool
        self.fleet = fleet
        self.host_of_ip = {ref.ip.address: ref.ip.host for ref in fleet.ips()}

    async def deliver(self, message: Message, granted: Granted, mail: bytes) -> Outcome:
        if granted.ip is None:
            raise ValueError(f"message {message.id} was granted PowerMTA without an IP")
        return await self.pool.send(self.host_of_ip[granted.ip], mail, envelope_sender(message, self.fleet, granted.ip),
                                    message.to_addr)

    async def close(self) -> None:
        await self.pool.close()


class SesRoute:
    """Mail granted SES: through the tenant's configuration set, as its SES tenant and its sender's IAM user."""

    name = "ses"

    def __init__(self, ses: SesTransport, fleet: Fleet) -> None:
        self.ses = ses
        self.fleet = fleet

    async def deliver(self, message: Message, granted: Granted, mail: bytes) -> Outcome:
        tenant = self.fleet.tenant(message.tenant)
        return await self.ses.send(mail, configuration_set=tenant.configuration_set, ses_tenant=tenant.ses_tenant,
                                   sender=message.from_addr, recipient=message.to_addr,
                                   sender_name=f"{message.tenant}/{message.sender}")

    async def close(self) -> None:
        await self.ses.close()


def transports_for(fleet: Fleet, config: SenderConfig) -> dict[str, Transport]:
    """Every way out of this instance, by the name a grant gives (``Granted.transport``)."""
    pool = SmtpPool(endpoints_for(fleet, config), connections_per_host=config.smtp_connections)
    ses = SesTransport(fleet.settings.ses.region, endpoint_url=config.aws.endpoint_url,
                       max_workers=config.smtp_connections,
                       credentials={name: (key.access_key_id, key.secret_access_key)
                                    for name, key in config.ses_credentials.items()})
    found: list[Transport] = [PowerMtaTransport(pool, fleet), SesRoute(ses, fleet)]
    return {t.name: t for t in found}
