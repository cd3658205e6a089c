"""A real SMTP server on loopback (aiosmtpd) standing in for PowerMTA's listener, with scripted faults.

In a thread, for tests::

    with SmtpSink(Faults(rcpt_every=3, reject=r"^bounce")) as sink:
        ...send to sink.host, sink.port...
        sink.messages[0].message["X-Virtual-MTA"], sink.sessions

As a process, for benchmarks (the client under test then has the CPU of its own process)::

    python tests/support/smtp_sink.py --port 0 [--mode accept|flaky] [--rcpt-every N ...]

prints the port on its first line, serves until SIGTERM or SIGINT, then prints
``received=N sessions=M`` and exits 0.

Faults are deterministic (every Nth command, counted over the whole server), so a test knows
exactly which sends must fail and how:

* ``rcpt_every`` / ``rcpt_code``: every Nth RCPT answered 451 (or 421, which also closes the
  connection, as a real server does);
* ``data_command_every``: every Nth DATA command answered 451 before 354 (nothing was sent);
* ``data_every`` / ``data_code``: every Nth message answered 451 (or 421, or 5xx) after the dot;
* ``reject``: recipients matching the regular expression get ``550 5.1.1`` at RCPT;
* ``drop_every``: every Nth message is read to the final dot, then the connection is cut with no reply;
* ``delay``: seconds to wait before answering the final dot (to make a client time out).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import itertools
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from loop_server import LoopServer


@dataclass(frozen=True)
class Faults:
    rcpt_every: int = 0
    rcpt_code: int = 451
    data_command_every: int = 0
    data_every: int = 0
    data_code: int = 451
    reject: str | None = None
    drop_every: int = 0
    delay: float = 0.0


MODES = {
    "accept": Faults(),
    "flaky": Faults(rcpt_every=7, data_every=11, reject=r"^bounce"),
}

_REPLY_TEXT = {421: "421 4.3.2 Service shutting down, try later", 451: "451 4.3.0 Temporary failure, try later",
               550: "550 5.7.1 Message refused by policy", 552: "552 5.3.4 Message too big",
               554: "554 5.6.0 Message refused"}


def _reply(code: int) -> str:
    return _REPLY_TEXT.get(code, f"{code} {code // 100}.0.0 Scripted reply")


@dataclass
class Received:
    """One message the sink accepted: the envelope as given and the content as received."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int
    """Which connection (1, 2, ...) carried it: reuse is visible."""

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Every:
    """True on every Nth call (never when N is 0), thread-safe enough for one event loop."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = itertools.count(1)

    def __call__(self) -> bool:
        return self.n > 0 and next(self.count) % self.n == 0


@dataclass
class _State:
    faults: Faults
    keep: bool = True
    messages: list[Received] = field(default_factory=list)
    received: int = 0
    sessions: int = 0
    rcpt_fault: _Every = field(init=False)
    data_command_fault: _Every = field(init=False)
    data_fault: _Every = field(init=False)
    drop_fault: _Every = field(init=False)
    reject: re.Pattern[str] | None = field(init=False)

    def __post_init__(self) -> None:
        f = self.faults
        self.rcpt_fault, self.data_command_fault = _Every(f.rcpt_every), _Every(f.data_command_every)
        self.data_fault, self.drop_fault = _Every(f.data_every), _Every(f.drop_every)
        self.reject = re.compile(f.reject) if f.reject else None


class _Handler:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.state.reject and self.state.reject.search(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if self.state.rcpt_fault():
            return _reply(self.state.faults.rcpt_code)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        state = self.state
        if state.drop_fault():
            assert server.transport is not None
            server.transport.abort()  # abort, not close: the reply written next must never leave
            return "250 2.0.0 never sent"
        if state.faults.delay:
            await asyncio.sleep(state.faults.delay)
        if state.data_fault():
            return _reply(state.faults.data_code)
        state.received += 1
        if state.keep:
            data = envelope.original_content or b""
            state.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data,
                                           getattr(server, "session_number", 0)))
        return f"250 2.0.0 Ok: queued as {state.received}"


class _Server(SMTP):
    """aiosmtpd's SMTP, numbering sessions, closing after a 421 and failing DATA commands on cue."""

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.state = handler.state
        self.state.sessions += 1
        self.session_number = self.state.sessions

    async def push(self, status: Any) -> None:
        await super().push(status)
        text = status.decode() if isinstance(status, bytes) else status
        if text.startswith("421") and self.transport is not None:
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope is not None and self.envelope.rcpt_tos and not arg and self.state.data_command_fault():
            await self.push(_reply(451))
            return
        await super().smtp_DATA(arg)


class SmtpSink(LoopServer):
    """The server on 127.0.0.1, in its own thread and event loop; ``port=0`` picks a free port."""

    name = "SMTP sink"

    def __init__(self, faults: Faults | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 keep: bool = True) -> None:
        super().__init__(host, port)
        self.state = _State(faults or Faults(), keep=keep)

    @property
    def messages(self) -> list[Received]:
        return self.state.messages

    @property
    def sessions(self) -> int:
        """Connections accepted so far."""
        return self.state.sessions

    @property
    def received(self) -> int:
        return self.state.received

    def protocol(self) -> Callable[[], asyncio.BaseProtocol]:
        handler = _Handler(self.state)
        return lambda: _Server(handler, hostname="sink.test", enable_SMTPUTF8=True, decode_data=False,
                            data_size_limit=None)


def _parse(argv: list[str]) -> tuple[argparse.Namespace, Faults]:
    parser = argparse.ArgumentParser(description="SMTP sink with scripted faults (see the module docstring).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the first line)")
    parser.add_argument("--mode", choices=sorted(MODES), default="accept", help="a preset of faults")
    for name in ("rcpt_every", "rcpt_code", "data_command_every", "data_every", "data_code", "drop_every"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--reject", default=None, help="regex of recipients answered 550 5.1.1")
    parser.add_argument("--delay", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="keep messages in memory (not needed for counting)")
    args = parser.parse_args(argv)
    preset = MODES[args.mode]
    overrides = {name: getattr(args, name) for name in Faults.__dataclass_fields__ if getattr(args, name) is not None}
    return args, Faults(**{**preset.__dict__, **overrides})


def main(argv: list[str]) -> int:
    args, faults = _parse(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with SmtpSink(faults, host=args.host, port=args.port, keep=args.keep) as sink:
        print(sink.port, flush=True)
        while not stop.wait(0.5):
            pass
        print(f"received={sink.received} sessions={sink.sessions}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
