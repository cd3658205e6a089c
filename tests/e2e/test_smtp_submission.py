"""SMTP submission end to end: real clients (smtplib, aiosmtplib, swaks) against a real `mailplane serve`
holding a certificate from a test CA, the mail reaching an SMTP sink standing in for PowerMTA.

What the tests count is what the sink received and what the queue holds: a refused message must leave
both untouched.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from ports import free_port
from sender_instance import (
    ACME_QUOTA,
    ADMIN_KEY,
    BIG,
    CAPS,
    KEYS,
    Instance,
    vmta_counts,
    wait_for,
    write_config,
    write_stack,
)
from smtp_sink import SmtpSink
from tls_ca import CaFiles

from mailplane.sender.db.store import Store

pytestmark = pytest.mark.processes

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Listeners:
    starttls: int
    implicit: int
    plain: int


def add_submission(config: Path, ca: CaFiles, ports: Listeners, **limits: int) -> Path:
    extra = "".join(f"  {name}: {value}\n" for name, value in limits.items())
    with config.open("a") as out:
        out.write(textwrap.dedent(f"""\
            submission:
              listeners:
                - {{listen: "127.0.0.1:{ports.starttls}", tls: starttls}}
                - {{listen: "127.0.0.1:{ports.implicit}", tls: implicit}}
                - {{listen: "127.0.0.1:{ports.plain}", tls: none}}
              certificate: "{ca.server_cert}"
              key: "{ca.server_key}"
              hostname: localhost
              max_message_bytes: 200000
            """) + extra)
    return config


def new_ports() -> Listeners:
    return Listeners(free_port(), free_port(), free_port())


@dataclass
class Server:
    inst: Instance
    sink: SmtpSink
    ports: Listeners
    ca: CaFiles
    db: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_cert))

    def queued(self) -> int:
        store = Store(self.db, create=False)
        try:
            return sum(store.counts().values())
        finally:
            store.close()

    def starttls(self, login: str | None = "acme/app", key: str | None = None) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.ports.starttls, local_hostname="client.test", timeout=30)
        smtp.starttls(context=self.client_context())
        smtp.ehlo("client.test")
        if login is not None:
            smtp.login(login, key or KEYS[login.split("/")[0]])
        return smtp


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ca: CaFiles) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("smtp")
    stack = write_stack(root, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    db = f"sqlite:///{root / 'q.db'}"
    ports = new_ports()
    with SmtpSink() as sink:
        config = add_submission(write_config(root / "c.yaml", db=db, sink_port=sink.port), ca, ports)
        inst = Instance(stack, config, root / "serve.log")
        try:
            yield Server(inst, sink, ports, ca, db)
        finally:
            inst.stop()


def mail(sender: str = "app@acme.example.com", to: str = "jane@example.org", subject: str = "Your order",
         **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Acme Shop <{sender}>"
    msg["To"] = f"Jane Doe <{to}>"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.monotonic_ns()}@client.test>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Thank you for your order.\nÇa arrive bientôt.\n")
    return msg


def delivered(server: Server, subject: str) -> list[EmailMessage]:
    return [m.message for m in list(server.sink.messages) if str(m.message["Subject"]) == subject]


def test_smtplib_over_starttls_queues_and_the_mail_leaves_through_the_tenants_ip(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports.starttls, local_hostname="client.test", timeout=30) as smtp:
        smtp.ehlo("client.test")
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")  # no login before TLS
        code, _ = smtp.docmd("MAIL FROM:<app@acme.example.com>")
        assert code == 530  # nor mail
        smtp.starttls(context=server.client_context())
        smtp.ehlo("client.test")
        assert smtp.has_extn("auth") and set(smtp.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
        assert smtp.has_extn("pipelining") and smtp.has_extn("8bitmime") and not smtp.has_extn("smtputf8")
        assert smtp.esmtp_features["size"] == "200000"
        smtp.login("acme/app", KEYS["acme"])
        refused = smtp.send_message(mail(subject="starttls 1", X_Mailer="shop 2.1"),
                                    to_addrs=["jane@example.org", "joe@example.org"])
        assert refused == {}
    wait_for(lambda: len(delivered(server, "starttls 1")) == 2, 30, "both copies")
    copies = sorted(delivered(server, "starttls 1"), key=lambda m: str(m["To"]))
    assert [str(m["To"]) for m in copies] == ["Jane Doe <jane@example.org>", "joe@example.org"]  # one each
    for copy in copies:
        assert str(copy["X-Virtual-MTA"]).startswith("acme-192-0-2-3")  # acme's own IPs, chosen by mailplane
        assert copy["X-Mailer"] == "shop 2.1" and copy["List-Unsubscribe"] is None  # transactional
        assert copy["From"] == "Acme Shop <app@acme.example.com>"
        assert "bientôt" in copy.get_content()


def test_aiosmtplib_over_implicit_tls_sends_marketing_with_one_click_and_keeps_the_attachment(server: Server) -> None:
    msg = mail(subject="newsletter 1", X_Mailplane_Stream="marketing")
    msg.add_alternative("<p>News</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 \x00\xff binary", maintype="application", subtype="pdf", filename="menu.pdf")

    async def send() -> None:
        await aiosmtplib.send(msg, hostname="127.0.0.1", port=server.ports.implicit, use_tls=True,
                              tls_context=server.client_context(), username="acme/app", password=KEYS["acme"],
                              local_hostname="client.test")

    asyncio.run(send())
    wait_for(lambda: len(delivered(server, "newsletter 1")) == 1, 30, "the newsletter")
    [copy] = delivered(server, "newsletter 1")
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(copy["List-Unsubscribe"]).startswith("<https://mailplane.test/v1/unsubscribe/")
    assert copy["X-Mailplane-Stream"] is None
    [attachment] = list(copy.iter_attachments())
    assert attachment.get_filename() == "menu.pdf" and attachment.get_content() == b"%PDF-1.4 \x00\xff binary"


def test_swaks_submits_over_starttls_verifying_the_certificate(server: Server) -> None:
    done = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.ports.starttls), "--tls", "--tls-verify",
         "--tls-ca-path", str(server.ca.ca_cert), "--auth", "LOGIN", "--auth-user", "bravo/app",
         "--auth-password", KEYS["bravo"], "--from", "app@bravo.example.com", "--to", "sam@example.org",
         "--helo", "client.test", "--header", "Subject: swaks 1", "--body", "hello from swaks"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 queued as" in done.stdout
    wait_for(lambda: len(delivered(server, "swaks 1")) == 1, 30, "swaks's mail")
    assert vmta_counts(server.sink)["bravo-192-0-2-41"] >= 1


def test_plain_text_on_loopback_when_configured(server: Server) -> None:
    with smtplib.SMTP("127.0.0.1", server.ports.plain, local_hostname="client.test", timeout=30) as smtp:
        smtp.login("acme/app", KEYS["acme"])
        smtp.send_message(mail(subject="loopback 1"))
    wait_for(lambda: len(delivered(server, "loopback 1")) == 1, 30, "the loopback mail")


def _reply(action: Callable[[], object]) -> tuple[int, str]:
    try:
        action()
    except smtplib.SMTPResponseException as err:
        return err.smtp_code, err.smtp_error.decode()
    except smtplib.SMTPRecipientsRefused as err:
        code, text = next(iter(err.recipients.values()))
        return code, text.decode()
    return 250, "accepted"


def test_refusals_say_why_and_queue_nothing(server: Server) -> None:
    before, received = server.queued(), server.sink.received
    with smtplib.SMTP("127.0.0.1", server.ports.starttls, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=server.client_context())
        smtp.ehlo("client.test")
        assert _reply(lambda: smtp.login("acme/app", "mpk_not-a-key"))[0] == 535
        assert _reply(lambda: smtp.login("acme/app", KEYS["bravo"]))[0] == 535  # bravo's key is not acme's
    with server.starttls() as smtp:
        cases = {
            "another tenant's From": mail(sender="app@bravo.example.com", subject="r1"),
            "a route header": mail(subject="r2", X_Virtual_MTA="bravo-192-0-2-41"),
            "an SES control header": mail(subject="r3", X_SES_CONFIGURATION_SET="bravo"),
            "a DKIM signature": mail(subject="r4", DKIM_Signature="v=1; a=rsa-sha256; d=acme.example.com"),
        }
        replies = {what: _reply(lambda m=m: smtp.send_message(m)) for what, m in cases.items()}
        big = mail(subject="r5")
        big.set_content("x" * 250_000)
        replies["too large"] = _reply(lambda: smtp.send_message(big))
        injected = (b"From: app@acme.example.com\r\nTo: jane@example.org\r\n"
                    b"Subject: hi\rX-Virtual-MTA: bravo-192-0-2-41\r\n\r\nbody\r\n")
        replies["a bare CR in a header"] = _reply(lambda: smtp.sendmail("app@acme.example.com", ["jane@example.org"],
                                                                        injected))
        replies["a bad recipient"] = _reply(lambda: smtp.sendmail("app@acme.example.com", ["not an address"],
                                                                  mail(subject="r6").as_bytes()))
    assert replies["another tenant's From"][0] == 550 and "5.7.1" in replies["another tenant's From"][1]
    assert "may send from" in replies["another tenant's From"][1]
    for what in ("a route header", "an SES control header", "a DKIM signature"):
        assert replies[what][0] == 550 and replies[what][1].startswith("5.7.1 header "), (what, replies[what])
    assert "turn off DKIM signing" in replies["a DKIM signature"][1]
    assert replies["too large"][0] == 552
    assert replies["a bare CR in a header"][0] in (550, 554), replies["a bare CR in a header"]
    assert replies["a bad recipient"][0] in (501, 553)
    time.sleep(1.0)
    assert server.queued() == before and server.sink.received == received


def test_a_client_that_drops_mid_data_queues_nothing(server: Server) -> None:
    before = server.queued()
    raw = socket.create_connection(("127.0.0.1", server.ports.implicit), timeout=30)
    tls = server.client_context().wrap_socket(raw, server_hostname="localhost")
    stream = tls.makefile("rwb")

    def say(line: bytes) -> bytes:
        stream.write(line + b"\r\n")
        stream.flush()
        reply = stream.readline()
        while reply[3:4] == b"-":
            reply = stream.readline()
        return reply

    assert stream.readline().startswith(b"220")
    assert say(b"EHLO client.test").startswith(b"250")
    import base64

    token = base64.b64encode(b"\x00acme/app\x00" + KEYS["acme"].encode())
    assert say(b"AUTH PLAIN " + token).startswith(b"235")
    assert say(b"MAIL FROM:<app@acme.example.com>").startswith(b"250")
    assert say(b"RCPT TO:<jane@example.org>").startswith(b"250")
    assert say(b"DATA").startswith(b"354")
    stream.write(b"From: app@acme.example.com\r\nTo: jane@example.org\r\nSubject: cut\r\n\r\nhalf a mes")
    stream.flush()
    tls.close()
    time.sleep(1.0)
    assert server.queued() == before


def test_a_suppressed_recipient_is_refused(server: Server) -> None:
    store = Store(server.db, create=False)
    try:
        store.suppress("acme", "gone@example.org", "hard_bounce", "test")
    finally:
        store.close()
    with server.starttls() as smtp:
        code, text = _reply(lambda: smtp.send_message(mail(to="gone@example.org", subject="s1")))
    assert code == 550 and text.startswith("5.1.1 gone@example.org is on tenant acme's suppression list")


def test_sessions_and_failed_logins_are_bounded_per_client(tmp_path: Path, ca: CaFiles,
                                                           instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    ports = new_ports()
    with SmtpSink() as sink:
        config = add_submission(write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                             sink_port=sink.port), ca, ports,
                                max_connections_per_client=3, max_failed_logins=2)
        inst = instances(stack, config)
        srv = Server(inst, sink, ports, ca, "")
        open_sessions = [socket.create_connection(("127.0.0.1", ports.plain), timeout=30) for _ in range(3)]
        for sock in open_sessions:
            assert sock.recv(1024).startswith(b"220")
        with socket.create_connection(("127.0.0.1", ports.plain), timeout=30) as fourth:
            assert fourth.recv(1024).startswith(b"421 4.7.0 too many sessions from your address")
        for sock in open_sessions:
            sock.close()
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", ports.starttls, local_hostname="client.test", timeout=30) as smtp:
            smtp.starttls(context=srv.client_context())
            smtp.ehlo("client.test")

            def plain(key: str) -> tuple[int, str]:  # one attempt each (smtplib's login() tries every mechanism)
                smtp.user, smtp.password = "acme/app", key
                return _reply(lambda: smtp.auth("PLAIN", smtp.auth_plain))

            assert [plain("mpk_wrong")[0] for _ in range(2)] == [535, 535]
            code, text = plain(KEYS["acme"])  # right, but too late
        assert code == 454 and "too many failed logins" in text


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_caps_and_pauses_hold_for_smtp_mail_across_two_instances(tmp_path: Path, ca: CaFiles, db_url: str,
                                                                 instances: Callable[..., Instance]) -> None:
    """acme's tenant quota (55) binds SMTP mail submitted to two instances as it binds API mail; a pause of
    bravo holds its SMTP mail until the resume."""
    stack = write_stack(tmp_path, CAPS)
    with SmtpSink() as sink:
        ports = [new_ports(), new_ports()]
        servers = [Server(instances(stack, add_submission(write_config(tmp_path / f"{n}.yaml", db=db_url,
                                                                       sink_port=sink.port), ca, ports[n])),
                          sink, ports[n], ca, db_url) for n in (0, 1)]
        admin = servers[0].inst.http
        pause = admin.post("/v1/admin/pauses", headers=ADMIN, json={"scope": "tenant", "tenant": "bravo",
                                                                     "reason": "list review"}).json()
        for n, srv in enumerate(servers):
            with srv.starttls() as smtp:
                smtp.send_message(mail(subject=f"caps {n}"), to_addrs=[f"r{n}-{i}@example.org" for i in range(40)])
            with srv.starttls("bravo/app") as smtp:
                smtp.send_message(mail(sender="app@bravo.example.com", subject=f"held {n}"))
        wait_for(lambda: sink.received >= ACME_QUOTA, 60, "acme's capped volume")
        time.sleep(1.5)
        counts = vmta_counts(sink)
        assert counts["acme-192-0-2-31"] + counts["acme-192-0-2-32"] == ACME_QUOTA  # 80 submitted, 55 sent
        assert counts["acme-192-0-2-31"] <= CAPS["192.0.2.31"] and counts["acme-192-0-2-32"] <= CAPS["192.0.2.32"]
        assert "bravo-192-0-2-41" not in counts  # paused
        assert servers[1].inst.http.delete(f"/v1/admin/pauses/{pause['id']}", headers=ADMIN).status_code == 200
        wait_for(lambda: vmta_counts(sink)["bravo-192-0-2-41"] == 2, 30, "bravo's mail after the resume")


def test_the_health_check_finds_each_listener_right_and_a_wrong_name_or_port_wrong(server: Server) -> None:
    """``python -m mailplane.sender.front.smtp_check``, which roles/sender runs after a (re)start."""
    import sys

    def check(listen: str, tls: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mailplane.sender.front.smtp_check", listen, tls,
                               "--cafile", str(server.ca.ca_cert), *extra], capture_output=True, text=True, timeout=60)

    ports = server.ports
    for port, tls in ((ports.starttls, "starttls"), (ports.implicit, "implicit"), (ports.plain, "none")):
        done = check(f"127.0.0.1:{port}", tls, "--server-name", "localhost")
        assert done.returncode == 0, done.stderr
        assert "AUTH LOGIN PLAIN, SIZE 200000" in done.stdout
    wrong_name = check(f"127.0.0.1:{ports.starttls}", "starttls", "--server-name", "mail.example.net")
    assert wrong_name.returncode == 1 and "certificate" in wrong_name.stderr.lower()
    http = check(server.inst.url.removeprefix("http://"), "starttls")
    assert http.returncode == 1


# -- in one process: what needs the service's inside (a failing database, the queued rows) ---------

@pytest.fixture
def in_process(tmp_path: Path, ca: CaFiles) -> Iterator[tuple[Any, int]]:
    """A SubmissionServer of a real Service on SQLite, with a plain-text loopback listener."""
    from mailplane.model.loader import load_stack
    from mailplane.sender.config import load_config
    from mailplane.sender.front.smtp import SubmissionServer
    from mailplane.sender.service import Service

    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    ports = new_ports()
    config_path = add_submission(write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                              sink_port=free_port()), ca, ports)
    with config_path.open("a") as out:
        out.write('  streams: {"acme/app": marketing}\n')
    config = load_config(config_path)
    assert config.submission is not None
    service = Service(load_stack(stack), config, stack_name="stack")
    server = SubmissionServer(service, config.submission)
    server.start()
    try:
        yield service, ports.plain
    finally:
        server.stop()
        service.close()


def test_the_senders_configured_stream_applies_without_the_header(in_process: tuple[Any, int]) -> None:
    service, port = in_process
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as smtp:
        smtp.login("acme/app", KEYS["acme"])
        smtp.send_message(mail(subject="default stream"))
        smtp.send_message(mail(subject="chosen stream", to="joe@example.org", X_Mailplane_Stream="transactional"))
    streams = {m.to_addr: m.stream for m in map(service.store.get, (1, 2)) if m}
    assert streams == {"jane@example.org": "marketing", "joe@example.org": "transactional"}


def test_a_queue_that_cannot_commit_is_a_451_and_nothing_is_queued(in_process: tuple[Any, int],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    service, port = in_process

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT INTO messages", {}, Exception("disk I/O error"))

    monkeypatch.setattr(service.store, "enqueue", broken)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as smtp:
        smtp.login("acme/app", KEYS["acme"])
        code, text = _reply(lambda: smtp.send_message(mail(subject="not now")))
    assert code == 451 and text.startswith("4.3.0 the queue could not take the message now")
    monkeypatch.undo()
    assert service.store.counts() == {}


def test_a_large_message_is_checked_off_the_listeners_loop_with_the_same_answers(
        in_process: tuple[Any, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Over ``INLINE_CHECK_BYTES`` the checks run in a worker thread (lowered here to 4 KiB, under the
    listener's SIZE): the same queued message, attachment intact, and the same refusal as inline."""
    import base64
    import email.policy
    import threading
    from email.parser import BytesParser

    from mailplane.sender.front import smtp as smtp_submission

    service, port = in_process
    monkeypatch.setattr(smtp_submission, "INLINE_CHECK_BYTES", 4096)
    threads: list[str] = []
    check = smtp_submission.SubmissionHandler._check

    def spy(self: Any, raw: bytes, *args: Any) -> Any:
        threads.append(f"{'large' if len(raw) > 4096 else 'small'}:{threading.get_ident()}")
        return check(self, raw, *args)

    monkeypatch.setattr(smtp_submission.SubmissionHandler, "_check", spy)
    report = bytes(range(256)) * 64  # 16 KiB of every byte value
    big = mail(subject="large report")
    big.add_attachment(report, maintype="application", subtype="octet-stream", filename="report.bin")
    signed = mail(subject="signed and large")
    signed["DKIM-Signature"] = "v=1; a=rsa-sha256; d=acme.example.com; s=x; b=abc"
    signed.add_attachment(report, maintype="application", subtype="octet-stream", filename="report.bin")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as smtp:
        smtp.login("acme/app", KEYS["acme"])
        smtp.send_message(mail(subject="small"))
        smtp.send_message(big)
        code, text = _reply(lambda: smtp.send_message(signed))
    assert code == 550 and text.startswith("5.7.1 header DKIM-Signature is not allowed")
    loop_thread = next(t.split(":", 1)[1] for t in threads if t.startswith("small:"))
    large_threads = {t.split(":", 1)[1] for t in threads if t.startswith("large:")}
    assert len(threads) == 3 and loop_thread not in large_threads  # the listener's loop never ran a large check
    queued = [m for m in map(service.store.get, (1, 2, 3)) if m]
    assert [m.payload["subject"] for m in queued] == ["small", "large report"]
    entity = BytesParser(policy=email.policy.default).parsebytes(base64.b64decode(queued[1].payload["mime"]))
    [attachment] = list(entity.iter_attachments())
    assert attachment.get_filename() == "report.bin" and attachment.get_content() == report


def test_each_tenant_has_its_own_budget_of_sessions_and_bytes_in_flight(tmp_path: Path, ca: CaFiles) -> None:
    """One tenant's concurrent large messages wait on its own budget of bytes in flight (never over it but for a
    message larger than the budget, alone), another tenant's mail on none of it; and a tenant's logged-in
    sessions are bounded whatever its addresses, while another tenant still logs in."""
    from mailplane.model.loader import load_stack
    from mailplane.sender.config import load_config
    from mailplane.sender.front.smtp import SubmissionServer
    from mailplane.sender.service import Service

    stack = write_stack(tmp_path, {"192.0.2.31": BIG, "192.0.2.32": BIG, "192.0.2.41": BIG}, acme_quota=None)
    ports = new_ports()
    config = load_config(add_submission(write_config(tmp_path / "c.yaml", db=f"sqlite:///{tmp_path / 'q.db'}",
                                                     sink_port=free_port()), ca, ports,
                                        max_sessions_per_tenant=5, max_tenant_bytes_in_flight=40_000))
    assert config.submission is not None
    service = Service(load_stack(stack), config, stack_name="stack")
    server = SubmissionServer(service, config.submission)
    server.start()
    budgets = server.handler.budgets
    try:
        def build(tenant: str, n: int, size: int) -> EmailMessage:
            message = mail(sender=f"app@{tenant}.example.com", subject=f"{tenant} {n}", to=f"r{n}@example.org")
            message.add_attachment(b"x" * size, maintype="application", subtype="octet-stream", filename="a.bin")
            return message

        messages = [build("acme", n, 25_000) for n in range(4)] + [build("acme", 9, 60_000), build("bravo", 1, 100)]
        small, large = len(messages[0].as_bytes()), len(messages[4].as_bytes())
        assert 2 * small > 40_000 and large > 40_000  # two small ones do not fit together; the large one alone

        async def send(message: EmailMessage) -> None:
            tenant = str(message["From"]).split("@")[1].split(".")[0]
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports.plain, timeout=60, start_tls=False) as smtp:
                await smtp.login(f"{tenant}/app", KEYS[tenant])
                await smtp.send_message(message)

        async def together() -> None:
            await asyncio.gather(*(send(m) for m in messages))

        asyncio.run(together())
        sent = {(m.tenant, m.to_addr) for m in map(service.store.get, range(1, 7)) if m}
        assert sent == {("acme", f"r{n}@example.org") for n in (0, 1, 2, 3, 9)} | {("bravo", "r1@example.org")}
        assert budgets.peak["acme"] <= max(40_000, large + 2_000), dict(budgets.peak)  # SMTP's line ends
        assert budgets.in_flight == {"acme": 0, "bravo": 0}

        sessions = [smtplib.SMTP("127.0.0.1", ports.plain, local_hostname="client.test", timeout=30)
                    for _ in range(6)]
        try:
            for smtp in sessions[:5]:
                smtp.login("acme/app", KEYS["acme"])
            code, text = _reply(lambda: sessions[5].login("acme/app", KEYS["acme"]))
            assert code == 454 and "too many sessions of acme" in text
            sessions[5].login("bravo/app", KEYS["bravo"])  # another tenant is not held by acme's sessions
            sessions[0].quit()
            time.sleep(0.3)
            with smtplib.SMTP("127.0.0.1", ports.plain, local_hostname="client.test", timeout=30) as again:
                again.login("acme/app", KEYS["acme"])  # a closed session frees its place
        finally:
            for smtp in sessions[1:]:
                smtp.close()
    finally:
        server.stop()
        service.close()
