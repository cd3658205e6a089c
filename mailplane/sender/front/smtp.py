"""SMTP submission into the sender's queue, for applications that speak SMTP rather than the JSON API.

A listener of ``mailplane serve`` (``submission:`` in the sender config): 587 with STARTTLS, 465 with
implicit TLS, plain text only on a loopback address.  A client logs in with AUTH PLAIN or LOGIN --
user name ``tenant/sender``, password that sender's API key -- only once the session is encrypted
(on a plain-text loopback listener, at once).  Each message then takes the way of
``POST /v1/messages``: read (``mailplane.sender.core.mime_in``), checked per recipient
(``mailplane.sender.core.submit.check_submission``), queued all or nothing in one committed transaction
(``mailplane.sender.front.intake``: concurrent sessions' messages share one commit), and only then
``250``; the same gates pace it after.

Replies say what happened: 535 bad credentials, 550 5.7.1 a From the sender may not use or a header
that would pick a route, 553 a recipient address that is not one, 550 5.1.1 a suppressed recipient,
552 too large, 451 the queue could not commit (nothing queued: send again), 451 4.7.1 a stream being
drained.  Sessions are bounded in all and per client address, and a client address that fails to log
in ``max_failed_logins`` times is refused logins for a while.

The listener runs its own event loop in a thread of the serve process; checks and the queue's
transaction run in that loop's worker threads, so one slow commit holds no other session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailplane.model.addresses import parse_listener
from mailplane.model.tenant import Tenant
from mailplane.sender.config import SubmissionListener, SubmissionSettings
from mailplane.sender.core.mime_in import Refused, read_submission
from mailplane.sender.core.refusal import ApiError
from mailplane.sender.core.submit import Checked, Problem, address, check_submission
from mailplane.sender.front.intake import GroupCommitter
from mailplane.sender.front.tenant_budget import TenantBudgets, TenantSessions
from mailplane.sender.service import Service

log = logging.getLogger("mailplane.sender.smtp")

INLINE_CHECK_BYTES = 256 * 1024
"""Messages up to this size are checked in the listener's loop (a few milliseconds); larger ones in a thread."""
STREAMS = ("transactional", "marketing")
DEFAULT_STREAM = "transactional"

_PROBLEM_REPLIES: dict[str, str] = {
    "from_not_allowed": "550 5.7.1",
    "invalid_address": "553 5.1.3",
    "suppressed": "550 5.1.1",
    "stream_not_allowed": "550 5.7.1",
    "no_unsubscribe_endpoint": "550 5.7.1",
    "header_refused": "550 5.7.1",
    "invalid_header_value": "550 5.6.0",
    "unsendable": "554 5.6.0",
}
"""The SMTP reply of a check's problem code (``mailplane.sender.core.submit``)."""


def problem_reply(problem: dict[str, Any] | Problem) -> str:
    """One SMTP reply line for a check's problem."""
    data = problem.as_json() if isinstance(problem, Problem) else problem
    code = _PROBLEM_REPLIES.get(str(data.get("code")), "550 5.7.0")
    return f"{code} {data.get('message')}"


def api_error_reply(error: ApiError) -> str:
    """The queue's refusal as an SMTP reply: the first problem, as the client can fix only one at a time."""
    first = error.problems[0] if error.problems else {}
    if error.status == 409 and first.get("code") == "draining":
        return f"451 4.7.1 {first.get('message')}: send again later"
    if error.status == 409:
        return f"550 5.7.0 {first.get('message') or error.message}"
    if first:
        return problem_reply(first)
    return f"550 5.7.0 {error.message}"


class ClientLimits:
    """Sessions at once (in all and per client address) and recent failed logins per client address.

    Used from the listener's one event loop only: no lock.
    """

    def __init__(self, settings: SubmissionSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.sessions: collections.Counter[str] = collections.Counter()
        self.failures: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def open(self, client: str) -> str | None:
        """Count a new session; the 421 reply refusing it, or None."""
        if sum(self.sessions.values()) >= self.settings.max_connections:
            return "421 4.7.0 too many sessions: try again later"
        if self.sessions[client] >= self.settings.max_connections_per_client:
            return "421 4.7.0 too many sessions from your address: try again later"
        self.sessions[client] += 1
        return None

    def close(self, client: str) -> None:
        self.sessions[client] -= 1
        if self.sessions[client] <= 0:
            del self.sessions[client]

    def _recent(self, client: str) -> collections.deque[float]:
        window = self.failures[client]
        horizon = self.clock() - self.settings.failed_login_window_seconds
        while window and window[0] < horizon:
            window.popleft()
        if not window:
            del self.failures[client]
            return collections.deque()
        return window

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.settings.max_failed_logins

    def failed(self, client: str) -> None:
        self._recent(client)
        self.failures[client].append(self.clock())


def _declared_size(envelope: Envelope | None, limit: int | None) -> int:
    """The SIZE a client declared at MAIL FROM, within the listener's limit; the limit when none."""
    ceiling = limit or 0
    for option in (envelope.mail_options if envelope is not None else []) or []:
        name, _, value = str(option).partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return min(int(value), ceiling) if ceiling else int(value)
    return ceiling


class SubmissionSMTP(SMTP):
    """aiosmtpd's session, with the session bounds and a session-level refusal before the greeting."""

    def __init__(self, handler: SubmissionHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._limits = handler.limits
        self._sessions = handler.sessions
        self._budgets = handler.budgets
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._client is None:  # the first call, not the one after STARTTLS
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if peer else "?"
            refusal = self._limits.open(client)
            if refusal is not None:
                log.warning("SMTP session from %s refused: %s", client, refusal)
                self._client = ""
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
            self._client = client
        super().connection_made(transport)

    async def smtp_DATA(self, arg: str) -> None:
        """Reading, checking and committing a message hold its tenant's budget of bytes in flight, from the
        DATA command on: the size it declared (``MAIL FROM:<...> SIZE=n``) or the largest a message may be.
        Another tenant's session never waits on it; this one's ``354`` waits until it fits."""
        who = self.session.auth_data if self.session is not None else None
        if not isinstance(who, tuple):  # not logged in: aiosmtpd refuses the command itself
            await super().smtp_DATA(arg)
            return
        async with self._budgets.hold(who[0].name, _declared_size(self.envelope, self.data_size_limit)):
            await super().smtp_DATA(arg)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client == "":
            return  # refused before the session began
        if self._client is not None:
            self._limits.close(self._client)
            self._client = None
            who = self.session.auth_data if self.session is not None else None
            if isinstance(who, tuple):  # a logged-in session: its tenant's count goes down
                self._sessions.logout(who[0].name)
        super().connection_lost(error)


class SubmissionHandler:
    """aiosmtpd's handler and authenticator: the checks and the queue of ``POST /v1/messages``."""

    def __init__(self, service: Service, settings: SubmissionSettings) -> None:
        self.service, self.settings = service, settings
        self.limits = ClientLimits(settings)
        self.budgets = TenantBudgets(settings.max_tenant_bytes_in_flight)
        self.sessions = TenantSessions(settings.max_sessions_per_tenant)
        self.committer = GroupCommitter(service)

    # -- AUTH ----------------------------------------------------------------------------------

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        client = str(session.peer[0]) if session.peer else "?"
        if self.limits.blocked(client):
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 too many failed logins from your address: try again later")
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            found = self.service.authenticate(auth_data.password.decode("utf-8", "replace"))
            if found is not None and f"{found[0].name}/{found[1]}" == login:
                if not self.sessions.login(found[0].name):
                    return AuthResult(success=False, handled=False, message=(
                        f"454 4.7.0 too many sessions of {found[0].name} at once: close one, or try again later"))
                return AuthResult(success=True, auth_data=found)
        self.limits.failed(client)
        log.warning("SMTP login failed from %s (%s)", client, mechanism)
        return AuthResult(success=False, handled=False)

    # -- the SMTP commands -----------------------------------------------------------------------

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, rcpt: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return f"452 4.5.3 at most {self.settings.max_recipients} recipients a message: send the rest in another"
        try:
            address(rcpt)
        except ValueError as err:
            return f"553 5.1.3 {err}"
        envelope.rcpt_tos.append(rcpt)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        assert isinstance(raw, bytes)
        who = session.auth_data  # what authenticate() put there: auth_required lets no one here without it
        if not isinstance(who, tuple):
            return "530 5.7.0 authentication required"
        tenant, sender = who
        # The checks are pure Python and hold the GIL whatever thread runs them: here, in the loop,
        # they cost no thread hop.  A large message goes to a thread, so the sessions of others do
        # not wait the while.  The store's checks and the commit go to the committer's thread.
        recipients = list(envelope.rcpt_tos)
        if len(raw) > INLINE_CHECK_BYTES:
            checked = await asyncio.to_thread(self._check, raw, recipients, tenant, sender)
        else:
            checked = self._check(raw, recipients, tenant, sender)
        if isinstance(checked, str):
            return checked
        try:
            queued = await asyncio.wrap_future(self.committer.submit(tenant.name, sender, checked, len(raw)))
        except ApiError as err:
            return api_error_reply(err)
        except Exception:  # the database, most likely: nothing was committed, the client keeps the mail
            log.exception("SMTP submission of %s/%s could not be queued", tenant.name, sender)
            return "451 4.3.0 the queue could not take the message now: nothing was queued, send it again"
        return f"250 2.0.0 queued as {' '.join(str(q.id) for q in queued)}"

    def _check(self, raw: bytes, recipients: list[str], tenant: Tenant, sender: str) -> list[tuple[int, Checked]] | str:
        """The message checked for each recipient, or the reply refusing it."""
        try:
            submission = read_submission(raw)
        except Refused as err:
            return err.reply
        stream = submission.stream or self.settings.streams.get(f"{tenant.name}/{sender}", DEFAULT_STREAM)
        if stream not in STREAMS:
            return f"550 5.7.1 X-Mailplane-Stream: {stream!r} is neither {' nor '.join(STREAMS)}"
        checked: list[tuple[int, Checked]] = []
        for i, recipient in enumerate(recipients):
            result = check_submission(i, submission, recipient, stream, tenant, sender, self.service.fleet)
            if not isinstance(result, Checked):
                return problem_reply(result[0])
            checked.append((i, result))
        return checked


def tls_context(settings: SubmissionSettings) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 at least), or None with no TLS listener."""
    if not settings.certificate or not settings.key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.certificate, settings.key)
    return context


class SubmissionServer:
    """Every listener of ``submission:``, on an event loop in a thread of its own."""

    def __init__(self, service: Service, settings: SubmissionSettings) -> None:
        self.settings = settings
        self.handler = SubmissionHandler(service, settings)
        self._context = tls_context(settings)
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, name="mailplane-smtp", daemon=True)

    def _factory(self, listener: SubmissionListener) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns of AUTH without STARTTLS; here the session is TLS from the first byte
            # (implicit) or on a loopback address the config was refused for otherwise (none).
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return SubmissionSMTP(
                self.handler, data_size_limit=self.settings.max_message_bytes, enable_SMTPUTF8=False,
                decode_data=False, hostname=self.settings.hostname, ident="mailplane",
                tls_context=self._context if listener.tls == "starttls" else None,
                require_starttls=listener.tls == "starttls", auth_required=True,
                auth_require_tls=listener.tls == "starttls",
                authenticator=self.handler.authenticate, loop=self._loop)

    async def _listen(self) -> None:
        for listener in self.settings.listeners:
            host, port = parse_listener(listener.listen)
            server = await self._loop.create_server(
                functools.partial(self._factory, listener), host=host, port=port, reuse_address=True,
                ssl=self._context if listener.tls == "implicit" else None)
            self._servers.append(server)
            log.info("SMTP submission on %s (%s)", listener.listen, listener.tls)

    def start(self) -> None:
        """Listen on every address, or raise (a port taken, a certificate unreadable) before serving anything."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=30)

    def stop(self) -> None:
        async def close() -> None:
            for server in self._servers:
                server.close()
            for server in self._servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self.handler.committer.close()
