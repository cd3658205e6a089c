"""The two transports against real servers: an aiosmtpd sink for PowerMTA, moto in server mode for SES.

What is checked is what the worker relies on: the outcome type, and above all the refund flag,
which decides whether a warmup reservation is given back (a wrong True overshoots an IP's cap).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from moto_server import REGION, MotoServer, ses_sent
from smtp_sink import Faults, SmtpSink

from mailplane.model.loader import load_stack
from mailplane.sender.config import AwsSettings, SenderConfig
from mailplane.sender.core.compose import build_message, wire_bytes
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.messages import Message
from mailplane.sender.delivery.transports import (
    Delivered,
    Outcome,
    PermanentFailure,
    SesTransport,
    SmtpPool,
    TemporaryFailure,
    classify_reply,
    classify_ses_error,
    data_block,
    endpoints_for,
)

ROOT = Path(__file__).resolve().parents[3]
KEY = "unsubscribe-key-0123456789"
DAY = datetime.date(2026, 3, 1)
PMTA = Granted(transport="pmta", ip="192.0.2.10", vmta="acme-192-0-2-10", day=DAY)
SES = Granted(transport="ses", ip=None, vmta=None, day=DAY)
SENDER = "orders@acme.example.com"

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def mail_for(to: str = "jane@example.org", message_id: int = 42, granted: Granted = PMTA,
             stream: str = "transactional") -> Any:
    message = Message(id=message_id, tenant="acme", sender="shop", stream=stream, from_addr=SENDER, to_addr=to,
                      payload={"subject": "Receipt", "text": "Thanks.\n.a line that starts with a dot\n"},
                      idempotency_key=None, state="sending", attempts=0, next_attempt_at=0.0, claimed_by=None,
                      claimed_until=None, transport=None, ip=None, last_error=None)
    return build_message(message, granted, public_url="https://send.example.com", unsubscribe_key=KEY)


def pool_for(sink: SmtpSink, connections: int = 4, timeout: float = 5.0) -> SmtpPool:
    return SmtpPool({"mta1": (sink.host, sink.port)}, connections_per_host=connections, timeout=timeout)


async def send_all(pool: SmtpPool, recipients: list[str]) -> list[Outcome]:
    """Sends one after the other (on one connection when nothing breaks it), then closes the pool."""
    try:
        return [await pool.send("mta1", mail_for(to), SENDER, to) for to in recipients]
    finally:
        await pool.close()


# -- SMTP ----------------------------------------------------------------------------------------


def test_delivered_mail_reaches_the_mta_intact_with_its_virtual_mta() -> None:
    mail = mail_for(stream="marketing")
    with SmtpSink() as sink:
        pool = pool_for(sink)

        async def go() -> Outcome:
            try:
                return await pool.send("mta1", mail, SENDER, "jane@example.org")
            finally:
                await pool.close()

        outcome = run(go())
        assert isinstance(outcome, Delivered) and outcome.detail.startswith("250")
        [got] = sink.messages
    assert (got.mail_from, got.rcpt_tos) == (SENDER, ["jane@example.org"])
    assert got.data == wire_bytes(mail)  # byte for byte, the leading dot un-stuffed by the server
    assert got.message["X-Virtual-MTA"] == "acme-192-0-2-10"
    assert got.message["List-Unsubscribe"].startswith("<https://send.example.com/v1/unsubscribe/")
    assert got.message["Message-ID"] == "<mp-42@acme.example.com>"


def test_connections_are_reused_and_bounded_per_host() -> None:
    recipients = [f"user{i}@example.org" for i in range(100)]
    with SmtpSink() as sink:
        pool = pool_for(sink, connections=4)

        async def go() -> list[Outcome]:
            try:
                return list(await asyncio.gather(*(pool.send("mta1", mail_for(to, i), SENDER, to)
                                                   for i, to in enumerate(recipients))))
            finally:
                await pool.close()

        outcomes = run(go())
        assert all(isinstance(o, Delivered) for o in outcomes)
        assert sink.received == 100
        assert 1 <= sink.sessions <= 4
        assert sorted(m.rcpt_tos[0] for m in sink.messages) == sorted(recipients)


def test_451_at_rcpt_is_refunded_and_the_connection_kept() -> None:
    with SmtpSink(Faults(rcpt_every=2)) as sink:
        outcomes = run(send_all(pool_for(sink), ["a@example.org", "b@example.org", "c@example.org"]))
        assert isinstance(outcomes[0], Delivered) and isinstance(outcomes[2], Delivered)
        assert outcomes[1] == TemporaryFailure(outcomes[1].error, refund=True)
        assert outcomes[1].error.startswith("rcpt: 451")
        assert sink.sessions == 1  # RSET, not a reconnect
        assert [m.rcpt_tos for m in sink.messages] == [["a@example.org"], ["c@example.org"]]


def test_421_at_rcpt_is_refunded_and_the_connection_replaced() -> None:
    with SmtpSink(Faults(rcpt_every=2, rcpt_code=421)) as sink:
        outcomes = run(send_all(pool_for(sink), ["a@example.org", "b@example.org", "c@example.org"]))
        assert isinstance(outcomes[1], TemporaryFailure) and outcomes[1].refund
        assert outcomes[1].error.startswith("rcpt: 421")
        assert isinstance(outcomes[2], Delivered)
        assert sink.sessions == 2


def test_451_to_the_data_command_is_refunded() -> None:
    with SmtpSink(Faults(data_command_every=1)) as sink:
        [outcome] = run(send_all(pool_for(sink), ["a@example.org"]))
        assert sink.received == 0
    assert isinstance(outcome, TemporaryFailure) and outcome.refund
    assert outcome.error.startswith("data: 451")


@pytest.mark.parametrize("code", [451, 421])
def test_temporary_failure_after_the_content_is_not_refunded(code: int) -> None:
    with SmtpSink(Faults(data_every=2, data_code=code)) as sink:
        outcomes = run(send_all(pool_for(sink), ["a@example.org", "b@example.org", "c@example.org"]))
        assert sink.sessions == (2 if code == 421 else 1)
    assert isinstance(outcomes[1], TemporaryFailure) and not outcomes[1].refund
    assert outcomes[1].error.startswith(f"content: {code}")
    assert isinstance(outcomes[2], Delivered)


def test_a_refusal_at_rcpt_is_powermtas_so_the_message_waits_and_the_connection_survives() -> None:
    """PowerMTA queues mail for remote domains: a 550 5.1.1 at the hand-over is its own decision (relaying, a
    rule), not the mailbox's, so the message is retried with its reservation back and nobody is suppressed."""
    with SmtpSink(Faults(reject=r"^nobody@")) as sink:
        outcomes = run(send_all(pool_for(sink), ["nobody@example.org", "jane@example.org"]))
        assert sink.sessions == 1
    assert outcomes[0] == TemporaryFailure(outcomes[0].error, refund=True, mta_config=True)
    assert outcomes[0].error.startswith("rcpt: 550 5.1.1")
    assert isinstance(outcomes[1], Delivered)


@pytest.mark.parametrize(("code", "final"), [(554, True), (550, False), (552, True)])
def test_content_refusals_fail_only_when_final_for_the_message(code: int, final: bool) -> None:
    # The sink's 554 says 5.6.0 (the content) and its 552 5.3.4 (the size): final for that message.  Its 550
    # says 5.7.1 (a policy): PowerMTA refuses every message so until its config changes, so the message waits.
    with SmtpSink(Faults(data_every=1, data_code=code)) as sink:
        [outcome] = run(send_all(pool_for(sink), ["jane@example.org"]))
        assert sink.received == 0
    if final:
        assert outcome == PermanentFailure(outcome.error)
    else:
        assert outcome == TemporaryFailure(outcome.error, refund=True, mta_config=True)


def test_connection_refused_is_refunded() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        pool = SmtpPool({"mta1": ("127.0.0.1", port)}, timeout=2.0)
        [outcome] = run(send_all(pool, ["jane@example.org"]))
    assert isinstance(outcome, TemporaryFailure) and outcome.refund
    assert outcome.error.startswith("connect:")


@pytest.mark.parametrize("greeting", [b"554 5.3.2 not accepting mail\r\n", b"421 4.3.2 busy, try later\r\n"])
def test_a_refusing_greeting_is_a_refunded_temporary_failure(greeting: bytes) -> None:
    """A real TCP server that answers the connection with a refusal: the host, not the message, is at fault
    (even a 554), so the message waits and its counters are given back."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def greet() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(greeting)
                conn.recv(1024)  # QUIT, or the close

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        pool = SmtpPool({"mta1": ("127.0.0.1", port)}, timeout=2.0)
        [outcome] = run(send_all(pool, ["jane@example.org"]))
        thread.join(5)
    assert isinstance(outcome, TemporaryFailure) and outcome.refund and outcome.error.startswith("connect:")


def test_connection_cut_after_the_content_is_not_refunded() -> None:
    with SmtpSink(Faults(drop_every=2)) as sink:
        outcomes = run(send_all(pool_for(sink), ["a@example.org", "b@example.org", "c@example.org"]))
        assert sink.sessions == 2
    assert isinstance(outcomes[1], TemporaryFailure) and not outcomes[1].refund
    assert outcomes[1].error.startswith("content:")
    assert isinstance(outcomes[2], Delivered)


def test_timeout_awaiting_the_final_reply_is_not_refunded() -> None:
    with SmtpSink(Faults(delay=1.0)) as sink:
        [outcome] = run(send_all(pool_for(sink, timeout=0.3), ["jane@example.org"]))
    assert isinstance(outcome, TemporaryFailure) and not outcome.refund
    assert outcome.error.startswith("content:")


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    with SmtpSink() as first:
        port = first.port
        pool = SmtpPool({"mta1": ("127.0.0.1", port)}, connections_per_host=1, timeout=5.0)

        async def go() -> list[Outcome]:
            outcomes = [await pool.send("mta1", mail_for(), SENDER, "a@example.org")]
            await asyncio.to_thread(first.stop)
            with SmtpSink(port=port) as second:
                outcomes.append(await pool.send("mta1", mail_for(), SENDER, "b@example.org"))
                await pool.close()
                assert second.received == 1
            return outcomes

        outcomes = run(go())
    assert all(isinstance(o, Delivered) for o in outcomes)


def test_a_send_cancelled_mid_session_never_leaves_its_connection_for_reuse() -> None:
    with SmtpSink(Faults(delay=0.4)) as sink:
        pool = pool_for(sink, connections=1)

        async def go() -> Outcome:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.send("mta1", mail_for(), SENDER, "a@example.org"), 0.1)
            try:
                return await pool.send("mta1", mail_for(), SENDER, "b@example.org")
            finally:
                await pool.close()

        outcome = run(go())
        assert isinstance(outcome, Delivered)
        assert sink.sessions == 2  # a fresh session, not the one left waiting for its final reply
        assert [m.rcpt_tos for m in sink.messages][-1] == ["b@example.org"]


def test_the_sink_runs_as_a_process_for_benchmarks() -> None:
    sink = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "smtp_sink.py"), "--port", "0",
                             "--reject", "^nobody@"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        pool = SmtpPool({"mta1": ("127.0.0.1", port)}, timeout=5.0)
        outcomes = run(send_all(pool, ["jane@example.org", "nobody@example.org", "joe@example.org"]))
    finally:
        sink.terminate()
        out, _ = sink.communicate(timeout=10)
    assert [type(o) for o in outcomes] == [Delivered, TemporaryFailure, Delivered]
    assert out.strip() == "received=2 sessions=1"
    assert sink.returncode == 0


def test_unknown_host_is_a_programming_error() -> None:
    pool = SmtpPool({"mta1": ("127.0.0.1", 1)})
    with pytest.raises(ValueError, match="mta9"):
        run(pool.send("mta9", mail_for(), SENDER, "jane@example.org"))


def _config(error: str) -> TemporaryFailure:
    return TemporaryFailure(error, refund=True, mta_config=True)


@pytest.mark.parametrize(("stage", "code", "text", "expected"), [
    ("content", 250, "2.0.0 Ok", Delivered("250 2.0.0 Ok")),
    ("mail", 451, "4.3.0 try later", TemporaryFailure("mail: 451 4.3.0 try later", refund=True)),
    ("rcpt", 452, "4.2.2 mailbox full", TemporaryFailure("rcpt: 452 4.2.2 mailbox full", refund=True)),
    ("data", 421, "4.3.2 bye", TemporaryFailure("data: 421 4.3.2 bye", refund=True)),
    ("content", 451, "4.3.0 later", TemporaryFailure("content: 451 4.3.0 later", refund=False)),
    # PowerMTA's configuration: the message waits, its reservation back, and the IP counts a refusal
    ("connect", 554, "no service", _config("connect: 554 no service")),
    ("rcpt", 550, "5.7.1 relaying denied", _config("rcpt: 550 5.7.1 relaying denied")),
    ("rcpt", 451, "4.7.1 relaying denied, try later", _config("rcpt: 451 4.7.1 relaying denied, try later")),
    ("content", 550, "5.7.1 invalid virtual MTA acme-203-0-113-5",
     _config("content: 550 5.7.1 invalid virtual MTA acme-203-0-113-5")),
    ("content", 550, "5.1.1 unknown virtual-mta x", _config("content: 550 5.1.1 unknown virtual-mta x")),
    ("content", 451, "4.3.0 no such vmta", _config("content: 451 4.3.0 no such vmta")),
    ("mail", 550, "5.1.8 bad sender domain", _config("mail: 550 5.1.8 bad sender domain")),
    ("rcpt", 550, "no such user", _config("rcpt: 550 no such user")),
    ("rcpt", 551, "user not local", _config("rcpt: 551 user not local")),
    ("rcpt", 554, "5.1.2 bad domain", _config("rcpt: 554 5.1.2 bad domain")),
    ("rcpt", 550, "5.7.1 blocked by policy", _config("rcpt: 550 5.7.1 blocked by policy")),
    ("content", 550, "5.1.1 user unknown", _config("content: 550 5.1.1 user unknown")),
    ("data", 554, "5.5.1 no valid recipients", _config("data: 554 5.5.1 no valid recipients")),
    # final for this message alone: it fails, nobody is suppressed
    ("content", 554, "5.6.0 spam", PermanentFailure("content: 554 5.6.0 spam")),
    ("content", 552, "5.3.4 message too big", PermanentFailure("content: 552 5.3.4 message too big")),
    ("mail", 552, "message size exceeds fixed limit", PermanentFailure("mail: 552 message size exceeds fixed limit")),
    ("content", 554, "5.2.3 message length exceeds administrative limit",
     PermanentFailure("content: 554 5.2.3 message length exceeds administrative limit")),
    ("rcpt", 501, "5.1.3 bad recipient address syntax",
     PermanentFailure("rcpt: 501 5.1.3 bad recipient address syntax")),
    ("rcpt", 550, "5.1.1 recipient is on the suppression list",
     PermanentFailure("rcpt: 550 5.1.1 recipient is on the suppression list")),
])
def test_reply_classification(stage: Any, code: int, text: str, expected: Outcome) -> None:
    assert classify_reply(stage, code, text) == expected


def test_data_block_stuffs_dots_and_ends_with_the_final_dot() -> None:
    assert data_block(b"a\r\n.b\r\n..c\nd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_block(b".\r\n") == b"..\r\n.\r\n"


def test_endpoints_come_from_the_fleet_unless_the_config_overrides_them() -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    config = SenderConfig(aws=AwsSettings(account_id="123456789012"), unsubscribe_keys=[KEY],
                          smtp_endpoints={"mta2": "127.0.0.1:2600"})
    assert endpoints_for(fleet, config) == {"mta1": ("127.0.0.1", 2525), "mta2": ("127.0.0.1", 2600),
                                            "mta3": ("::1", 2525)}
    bad = SenderConfig(aws=AwsSettings(account_id="123456789012"), unsubscribe_keys=[KEY],
                       smtp_endpoints={"mta9": "127.0.0.1:2600"})
    with pytest.raises(ValueError, match="mta9"):
        endpoints_for(fleet, bad)


# -- SES -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        server.verify_identity("acme.example.com")
        server.create_configuration_set("acme")
        yield server


async def ses_send(transport: SesTransport, sender: str = SENDER, to: str = "jane@example.org") -> Outcome:
    try:
        return await transport.send(mail_for(to, granted=SES), configuration_set="acme", ses_tenant="acme",
                                    sender=sender, recipient=to)
    finally:
        await transport.close()


def test_ses_sends_the_raw_mail_from_a_verified_domain(moto: MotoServer) -> None:
    before = len(ses_sent())
    outcome = run(ses_send(SesTransport(REGION, endpoint_url=moto.url), to="ses-reader@example.org"))
    assert isinstance(outcome, Delivered) and outcome.detail.startswith("SES MessageId ")
    [sent] = ses_sent()[before:]
    assert sent.source == SENDER
    assert "ses-reader@example.org" in sent.destinations
    assert "Message-ID: <mp-42@acme.example.com>" in sent.raw_data
    assert "X-Virtual-MTA" not in sent.raw_data


def test_ses_refuses_an_unverified_sender_permanently(moto: MotoServer) -> None:
    outcome = run(ses_send(SesTransport(REGION, endpoint_url=moto.url), sender="someone@unverified.example.net"))
    assert isinstance(outcome, PermanentFailure)
    assert "MessageRejected" in outcome.error


def test_ses_unreachable_endpoint_is_refunded(moto: MotoServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        outcome = run(ses_send(SesTransport(REGION, endpoint_url=url, timeout=2.0)))
    assert isinstance(outcome, TemporaryFailure) and outcome.refund


def test_ses_read_timeout_is_not_refunded(moto: MotoServer) -> None:
    """An endpoint that takes the request and never answers: SES may have sent it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        outcome = run(ses_send(SesTransport(REGION, endpoint_url=url, timeout=0.5)))
        thread.join(5)
        for conn in accepted:
            conn.close()
    assert isinstance(outcome, TemporaryFailure) and not outcome.refund
    assert "after the request was sent" in outcome.error


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")


@pytest.mark.parametrize(("error", "kind", "refund_or_hard", "retry_after"), [
    (client_error("TooManyRequestsException", "Too many requests", 429), TemporaryFailure, True, 1.0),
    (client_error("Throttling", "Maximum sending rate exceeded."), TemporaryFailure, True, 1.0),
    (client_error("LimitExceededException", "Daily message quota exceeded."), TemporaryFailure, True, None),
    (client_error("Throttling", "Daily message quota exceeded."), TemporaryFailure, True, None),
    (client_error("SendingPausedException", "Sending is paused"), TemporaryFailure, True, 3600.0),
    (client_error("AccountSuspendedException", "Suspended"), TemporaryFailure, True, 3600.0),
    (client_error("MessageRejected", "Email address is not verified."), PermanentFailure, False, None),
    (client_error("MailFromDomainNotVerifiedException", "no"), PermanentFailure, False, None),
    (client_error("NotFoundException", "no such configuration set", 404), PermanentFailure, False, None),
    (client_error("BadRequestException", "bad"), PermanentFailure, False, None),
    (client_error("InternalFailure", "oops", 500), TemporaryFailure, False, None),
    (client_error("ServiceUnavailable", "later", 503), TemporaryFailure, False, None),
    (client_error("AccessDeniedException", "not allowed", 403), TemporaryFailure, True, None),
    (EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"), TemporaryFailure, True, None),
    (ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), TemporaryFailure, True, None),
    (NoCredentialsError(), TemporaryFailure, True, None),
    (ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), TemporaryFailure, False, None),
    (ConnectionClosedError(endpoint_url="https://email.us-east-1.amazonaws.com"), TemporaryFailure, False, None),
])
def test_ses_error_classification(error: Exception, kind: type, refund_or_hard: bool,
                                  retry_after: float | None) -> None:
    outcome = classify_ses_error(error)  # type: ignore[arg-type]
    assert isinstance(outcome, kind)
    if isinstance(outcome, TemporaryFailure):
        assert (outcome.refund, outcome.retry_after) == (refund_or_hard, retry_after)
    else:
        assert isinstance(outcome, PermanentFailure) and not refund_or_hard


def test_ses_sends_as_the_senders_own_iam_user_when_its_keys_are_configured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The request is signed with the sender's access key (so AWS enforces its send-only policy);
    a sender without one signs with the service's own credentials."""
    import http.server
    import json as jsonlib

    seen: list[str] = []

    class SesApi(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Authorization"])
            body = jsonlib.dumps({"MessageId": f"m{len(seen)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASERVICE00000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "service-secret-0000000000")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"

        async def both() -> list[Outcome]:
            transport = SesTransport(REGION, endpoint_url=url,
                                     credentials={"acme/app": ("AKIAACMEAPP00000000", "acme-secret-000000000")})
            try:
                return [await transport.send(mail_for("a@example.org", granted=SES), configuration_set="acme",
                                             ses_tenant="acme", sender=SENDER, recipient="a@example.org",
                                             sender_name=name)
                        for name in ("acme/app", "acme/other")]
            finally:
                await transport.close()

        outcomes = run(both())
    finally:
        server.shutdown()
    assert all(isinstance(o, Delivered) for o in outcomes)
    assert "Credential=AKIAACMEAPP00000000/" in seen[0]
    assert "Credential=AKIASERVICE00000000/" in seen[1]


def test_a_message_granted_an_ip_goes_to_its_hosts_powermta_with_the_ips_return_path() -> None:
    """The worker looks the way out up by the grant's name; the PowerMTA one hands the mail to the IP's host
    with the return path that names the IP (what PowerMTA's bounces are matched by)."""
    from mailplane.sender.core.compose import envelope_sender
    from mailplane.sender.delivery.transports import PowerMtaTransport, SesRoute, transports_for

    fleet = load_stack(ROOT / "stacks" / "prod")
    ref = next(r for r in fleet.ips() if r.tenant.name == "sos-expat")
    granted = Granted(transport="pmta", ip=ref.ip.address, vmta="v", day=DAY)
    message = Message(id=7, tenant="sos-expat", sender="app", stream="transactional",
                      from_addr="no-reply@mail1.example.com", to_addr="jane@example.org", payload={},
                      idempotency_key=None, state="sending", attempts=0, next_attempt_at=0.0, claimed_by=None,
                      claimed_until=None, transport=None, ip=None, last_error=None)
    async def hand_over(port: int) -> Outcome:
        transport = PowerMtaTransport(SmtpPool({ref.ip.host: ("127.0.0.1", port)}, timeout=5.0), fleet)
        try:
            return await transport.deliver(message, granted, wire_bytes(mail_for()))
        finally:
            await transport.close()

    with SmtpSink() as sink:
        assert isinstance(run(hand_over(sink.port)), Delivered)
        [received] = sink.messages
    assert received.mail_from == envelope_sender(message, fleet, ref.ip.address)
    assert received.mail_from.endswith(".example.com") and received.rcpt_tos == ["jane@example.org"]
    config = SenderConfig(aws=AwsSettings(account_id="123456789012"), unsubscribe_keys=["k" * 32])

    async def ways() -> dict[str, type]:
        found = transports_for(fleet, config)
        for transport in found.values():
            await transport.close()
        return {name: type(t) for name, t in found.items()}

    assert run(ways()) == {"pmta": PowerMtaTransport, "ses": SesRoute}
