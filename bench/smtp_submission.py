"""Messages per second submitted over SMTP to ``mailplane serve``, durably queued, against its peers in one run.

Why: MailWizz and most applications hand their mail over SMTP, one message per transaction, and
the listener answers ``250`` only once the message is committed to the queue (SQLite with
synchronous=FULL by default: one fsync per message).  Any durable SMTP server pays that fsync, so
the fair yardsticks are servers that pay it too.  The same concurrent clients send the same kind of
message (about 2 KB) to

1. the sender's SMTP listener (AUTH, the checks of ``POST /v1/messages``, one committed transaction
   per message), while its delivery workers run into an SMTP sink as in production;
2. a bare aiosmtpd server that only writes each message to a file and fsyncs it: the floor any
   durable SMTP server written in Python pays on this disk;
3. where Debian's ``postfix`` is installed (and the bench runs as root, which Postfix's master
   needs), a private Postfix instance: its own configuration, queue and data folders in a temporary
   folder, smtpd on a free loopback port, the client's network in ``mynetworks`` (no AUTH), every
   message put on hold at end of data, so it is fsynced into the queue before ``250`` as in
   production and nothing is ever delivered (goal: the listener at least 1.0x its rate);
4. batched ``POST /v1/messages`` (100 a request) from as many clients: the API's way.

The client is the same for every SMTP target and costs little: every message's bytes (and every
API request's JSON) are built before the clock starts, and a minimal asyncio SMTP client writes a
command and reads its reply, no more (aiosmtpd offers no PIPELINING, so none is used).  Machines
drift (other load, the disk's cache, a queue that grows), so each repetition runs every target once
in a rotating order (repetition r starts with target r mod n): no target always runs first or right
after the same one.  Each repetition submits fresh messages (its own Message-IDs and recipients).
Every server runs in its own process, on loopback, in plain text (TLS costs all the same); the
server's CPU is read from /proc for its whole process tree (Postfix's master and its smtpd, cleanup,
qmgr... processes, live or exited), the client's from its own process.

The tenant's one IP is early in its warmup (50 a day), as a campaign's usually is, so delivery soon
waits; ``--deliver`` lets it send without limit, and then delivery's own transactions compete with
the submissions for SQLite's one writer.
Prints min / median / max over the repetitions and the ratios of the medians; never asserts:
machines differ.

    .venv/bin/python bench/smtp_submission.py [--clients 8] [--messages 250] [--repeat 5] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx

from mailplane.sender.config import new_api_key
from mailplane.sender.db.store import Store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from sender_accept import free_port, serving  # noqa: E402  (the same stack and config as that bench)

BARE_SERVER = textwrap.dedent("""\
    import os, sys, time
    from aiosmtpd.controller import Controller

    folder, port = sys.argv[1], int(sys.argv[2])

    class Disk:
        count = 0
        async def handle_DATA(self, server, session, envelope):
            Disk.count += 1
            path = os.path.join(folder, f"{Disk.count}.eml")
            with open(path, "wb") as out:
                out.write(envelope.original_content or envelope.content)
                out.flush()
                os.fsync(out.fileno())
            return "250 2.0.0 stored"

    controller = Controller(Disk(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
    """)

SENDER = "app@bench.example.com"
TEXT = "your order {n} is on its way.\n\n" + "Thank you for shopping with us; we hope to see you again soon.\n" * 28


# --- the prepared client -------------------------------------------------------------------------

@dataclass(frozen=True)
class Mail:
    """One SMTP transaction's commands, built before the clock starts."""

    mail_from: bytes
    rcpt_to: bytes
    data: bytes  # CRLF lines, dot-stuffed, ending with the lone dot


def message(tag: str, n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Bench <{SENDER}>"
    msg["To"] = f"rcpt{n}-{tag}@example.org"
    msg["Subject"] = f"Your order {n}"
    msg["Message-ID"] = f"<bench-{tag}-{n}@client.example>"
    msg.set_content(f"Dear customer {n},\n\n" + TEXT.format(n=n))
    return msg


def prepared(tag: str, n: int) -> Mail:
    msg = message(tag, n)
    data = re.sub(rb"(?m)^\.", b"..", msg.as_bytes(policy=email.policy.SMTP))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return Mail(f"MAIL FROM:<{SENDER}>\r\n".encode(), f"RCPT TO:<{msg['To']}>\r\n".encode(), data + b".\r\n")


async def expect(reader: asyncio.StreamReader, code: int) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError(f"connection closed while waiting for {code}")
        if line[3:4] != b"-":
            break
    if int(line[:3]) != code:
        raise RuntimeError(f"expected {code}, got {line.decode(errors='replace').strip()}")


async def smtp_clients(port: int, work: list[list[Mail]], login: tuple[str, str] | None) -> float:
    """Every client sends its prepared mails over one connection, a transaction at a time."""
    async def client(mails: list[Mail]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await expect(reader, 220)
        writer.write(b"EHLO client.bench.example\r\n")
        await expect(reader, 250)
        if login is not None:
            writer.write(b"AUTH PLAIN " + base64.b64encode(f"\0{login[0]}\0{login[1]}".encode()) + b"\r\n")
            await expect(reader, 235)
        for mail in mails:
            writer.write(mail.mail_from)
            await expect(reader, 250)
            writer.write(mail.rcpt_to)
            await expect(reader, 250)
            writer.write(b"DATA\r\n")
            await expect(reader, 354)
            writer.write(mail.data)
            await expect(reader, 250)
        writer.write(b"QUIT\r\n")
        await expect(reader, 221)
        writer.close()
        await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(client(mails) for mails in work))
    return sum(map(len, work)) / (time.perf_counter() - start)


def api_requests(tag: str, clients: int, per_client: int) -> list[list[bytes]]:
    """Each client's request bodies, JSON-encoded before the clock starts."""
    def body(c: int, first: int) -> bytes:
        return json.dumps({"messages": [
            {"from": SENDER, "to": f"api{c}-{n}-{tag}@example.org", "subject": f"Your order {n}",
             "text": f"Dear customer {n},\n\n" + TEXT.format(n=n)}
            for n in range(first, min(first + 100, per_client))]}).encode()

    return [[body(c, first) for first in range(0, per_client, 100)] for c in range(clients)]


async def api_clients(url: str, key: str, work: list[list[bytes]], messages: int) -> float:
    async def client(bodies: list[bytes]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as http:
            for body in bodies:
                (await http.post("/v1/messages", content=body)).raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(client(bodies) for bodies in work))
    return messages / (time.perf_counter() - start)


# --- CPU of a process tree, from /proc -----------------------------------------------------------

def _stats() -> dict[int, list[str]]:
    """Every process's /proc/<pid>/stat fields from the state on (field 3 of proc(5) is index 0)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = text[text.rindex(")") + 2:].split()
    return stats


def tree(pid: int, stats: dict[int, list[str]]) -> set[int]:
    """``pid`` and its live descendants."""
    found, todo = set(), [pid]
    while todo:
        found.add(parent := todo.pop())
        todo.extend(p for p, fields in stats.items() if int(fields[1]) == parent and p not in found)
    return found


def tree_cpu(pid: int) -> float | None:
    """Seconds of CPU used by ``pid`` and its descendants, the live ones and those already reaped."""
    stats = _stats()
    if pid not in stats:
        return None
    # utime, stime, cutime, cstime: fields 14 to 17 of proc(5)
    ticks = sum(int(stats[p][i]) for p in tree(pid, stats) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def child_pid(word: str) -> int | None:
    """A child of this process whose command line has ``word`` as an argument."""
    me = os.getpid()
    for pid, fields in _stats().items():
        if int(fields[1]) == me:
            with contextlib.suppress(OSError):
                if word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    return pid
    return None


# --- a private Postfix ---------------------------------------------------------------------------

POSTFIX_MASTER = textwrap.dedent("""\
    127.0.0.1:{port} inet n - n - - smtpd
    pickup    unix  n       -       n       60      1       pickup
    cleanup   unix  n       -       n       -       0       cleanup
    qmgr      unix  n       -       n       300     1       qmgr
    rewrite   unix  -       -       n       -       -       trivial-rewrite
    bounce    unix  -       -       n       -       0       bounce
    defer     unix  -       -       n       -       0       bounce
    trace     unix  -       -       n       -       0       bounce
    verify    unix  -       -       n       -       1       verify
    flush     unix  n       -       n       1000?   0       flush
    proxymap  unix  -       -       n       -       -       proxymap
    proxywrite unix -       -       n       -       1       proxymap
    showq     unix  n       -       n       -       -       showq
    error     unix  -       -       n       -       -       error
    retry     unix  -       -       n       -       -       error
    discard   unix  -       -       n       -       -       discard
    anvil     unix  -       -       n       -       1       anvil
    scache    unix  -       -       n       -       1       scache
    postlog   unix-dgram n  -       n       -       1       postlogd
    """)

# Only smtpd listens, on loopback; every message is held at end of data (after smtpd's checks, and
# cleanup fsyncs the queue file before 250 as always); were one released, it would be discarded.
POSTFIX_MAIN = textwrap.dedent("""\
    compatibility_level = 3.6
    queue_directory = {root}/spool
    data_directory = {root}/data
    mail_owner = postfix
    setgid_group = postdrop
    myhostname = postfix.bench.invalid
    mydestination =
    relay_domains =
    inet_interfaces = 127.0.0.1
    inet_protocols = ipv4
    mynetworks = 127.0.0.0/8
    alias_maps =
    alias_database =
    local_recipient_maps =
    biff = no
    smtpd_end_of_data_restrictions = check_client_access static:HOLD
    default_transport = discard:bench
    relay_transport = discard:bench
    local_transport = discard:bench
    maillog_file = {root}/maillog
    maillog_file_prefixes = {root}
    """)

QUEUES = ("hold", "incoming", "active", "deferred", "maildrop")


def postfix_command() -> str | None:
    found = shutil.which("postfix") or "/usr/sbin/postfix"
    return found if os.access(found, os.X_OK) else None


@dataclass
class Postfix:
    command: str
    root: Path
    port: int
    master: int = 0

    @property
    def config(self) -> str:
        return str(self.root / "etc")

    def queued(self) -> dict[str, int]:
        return {name: sum(len(files) for _, _, files in os.walk(self.root / "spool" / name)) for name in QUEUES}

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "maillog").read_text().splitlines()[-5:])
        return ""


@contextlib.contextmanager
def postfix_instance(command: str, port: int) -> Iterator[Postfix]:
    """Postfix's master with its own folders under a temporary one, until the block ends."""
    with tempfile.TemporaryDirectory(prefix="bench-postfix-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the postfix user opens its data folder by path
        (root / "etc").mkdir()
        (root / "spool").mkdir()
        (root / "data").mkdir()
        shutil.chown(root / "data", user="postfix")
        (root / "etc" / "main.cf").write_text(POSTFIX_MAIN.format(root=root))
        (root / "etc" / "master.cf").write_text(POSTFIX_MASTER.format(port=port))
        pf = Postfix(command, root, port)
        started = subprocess.run([command, "-c", pf.config, "start"], capture_output=True, text=True)
        try:
            if started.returncode != 0:
                raise RuntimeError(f"postfix start: {started.stderr.strip()} {pf.log_tail()}")
            pf.master = int((root / "spool" / "pid" / "master.pid").read_text())
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            yield pf
        finally:
            started_pids = tree(pf.master, _stats()) if pf.master else set()
            subprocess.run([command, "-c", pf.config, "stop"], capture_output=True)
            for _ in range(100):  # the master and its children stop on their own...
                stats = _stats()
                left = {pid for pid in started_pids if pid in stats and stats[pid][0] != "Z"}
                if not left:
                    break
                time.sleep(0.1)
            for pid in left:  # ...or not: the leftovers of the processes this instance started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# --- targets, repetitions, figures ---------------------------------------------------------------

@dataclass
class Target:
    name: str
    note: str
    prepare: Callable[[int], Callable[[], float]]  # repetition -> its prepared run, which returns msg/s
    pid: Callable[[], int | None]
    rates: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)

    def measure(self, rep: int, messages: int) -> None:
        go, pid = self.prepare(rep), self.pid()
        before, client = (tree_cpu(pid) if pid else None), time.process_time()
        self.rates.append(go())
        client = time.process_time() - client
        after = tree_cpu(pid) if pid else None
        self.client_ms.append(1000 * client / messages)
        if before is not None and after is not None:
            self.server_ms.append(1000 * (after - before) / messages)

    def median(self) -> float:
        return statistics.median(self.rates)

    def line(self) -> str:
        server = f"{statistics.median(self.server_ms):7.2f}" if len(self.server_ms) == len(self.rates) else "    n/a"
        return (f"{self.name:<25} {min(self.rates):8.1f} {self.median():8.1f} {max(self.rates):8.1f}"
                f"   {server}  {statistics.median(self.client_ms):7.2f}   {self.note}")


def smtp_target(name: str, note: str, tag: str, port: int, args: argparse.Namespace,
                login: tuple[str, str] | None, pid: Callable[[], int | None]) -> Target:
    def prepare(rep: int) -> Callable[[], float]:
        work = [[prepared(f"{tag}{rep}", c * args.messages + i) for i in range(args.messages)]
                for c in range(args.clients)]
        return lambda: asyncio.run(smtp_clients(port, work, login))

    return Target(name, note, prepare, pid)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def ratio(a: Target | None, b: Target | None) -> str:
    return f"{a.median() / b.median():5.2f}" if a and b else "  n/a"


@dataclass
class Run:
    ours: Target
    bare: Target
    postfix: Target | None
    api: Target
    postfix_queued: dict[str, int]
    postfix_skipped: str

    @property
    def targets(self) -> list[Target]:
        return [t for t in (self.ours, self.bare, self.postfix, self.api) if t is not None]


def run_all(args: argparse.Namespace, stack: contextlib.ExitStack, root: Path, db: str, key: str) -> Run:
    """Start every server (each stopped when ``stack`` closes), then the repetitions in rotating order."""
    total = args.clients * args.messages
    smtp_port, bare_port = free_port(), free_port()

    def edit(stack_dir: Path, config: Path) -> None:
        if not args.deliver:  # an IP early in its warmup: 50 a day, so delivery soon waits, as a campaign's does
            fleet = stack_dir / "fleet.yaml"
            fleet.write_text(fleet.read_text().replace("daily: 10000000, hourly: 10000000", "daily: 50, hourly: 50"))
        with config.open("a") as out:
            out.write(f'submission:\n  listeners: [{{listen: "127.0.0.1:{smtp_port}", tls: none}}]\n'
                      "  max_connections_per_client: 64\n")

    (root / "bare").mkdir()
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(root / "bare"), str(bare_port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stack.callback(bare.wait, 30)
    stack.callback(bare.terminate)
    assert bare.stdout is not None
    if bare.stdout.readline().strip() != "ready":
        raise RuntimeError("the bare server did not start")

    command = None if args.no_postfix else postfix_command()
    pf, skipped = None, ("left out (--no-postfix)" if args.no_postfix
                         else "not installed (apt-get install postfix)" if command is None else "")
    if command and os.geteuid() != 0:
        skipped = "installed, but its master needs root to start"
    elif command:
        try:
            pf = stack.enter_context(postfix_instance(command, free_port()))
        except (RuntimeError, OSError, LookupError) as error:  # LookupError: no postfix user
            skipped = f"did not start: {error}"

    _, _, url = stack.enter_context(serving(root, db, key, edit=edit))
    served = child_pid("serve")

    def api_prepare(rep: int) -> Callable[[], float]:
        work = api_requests(f"r{rep}", args.clients, args.messages)
        return lambda: asyncio.run(api_clients(url, key, work, total))

    run = Run(
        smtp_target("SMTP to mailplane", "AUTH, the API's checks, a commit shared by sessions", "mp",
                    smtp_port, args, ("bench/app", key), lambda: served),
        smtp_target("SMTP to a bare server", "aiosmtpd writing and fsyncing each to a file", "bare",
                    bare_port, args, None, lambda: bare.pid),
        None if pf is None else smtp_target(
            "SMTP to Postfix", "a private instance: queue file fsynced, held, never delivered", "pf",
            pf.port, args, None, lambda: pf.master),
        Target("batched POST /v1/messages", "100 a request, to mailplane", api_prepare, lambda: served),
        {}, skipped)
    targets = run.targets
    for rep in range(args.repeat):
        for target in targets[rep % len(targets):] + targets[:rep % len(targets)]:
            target.measure(rep, total)
    if pf is not None:
        run.postfix_queued = pf.queued()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=250, help="messages per client")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions, each running every target once")
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--deliver", action="store_true", help="let the IP send without limit while clients submit "
                        "(delivery then competes with submission for SQLite's one writer)")
    parser.add_argument("--no-postfix", action="store_true", help="leave Postfix out even where it is installed")
    args = parser.parse_args()
    key = new_api_key()
    total = args.clients * args.messages
    start_load = loadavg()
    print(f"load average at start:   {start_load}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = args.db or f"sqlite:///{root / 'queue.db'}"
        with contextlib.ExitStack() as stack:
            run = run_all(args, stack, root, db, key)
        stored = len(list((root / "bare").iterdir()))
        store = Store(db, create=False)
        queued = sum(store.counts().values())
        store.close()
    print(f"clients:                 {args.clients} concurrent, {args.messages} messages each ({total} a run), "
          f"{len(prepared('x', 0).data)}-byte messages prepared before the clock starts")
    print(f"repetitions:             {args.repeat}, every target once in each, in rotating order")
    if run.postfix is None:
        print(f"Postfix:                 {run.postfix_skipped}; that peer is skipped")
    print(f"{'':<25} {'min':>8} {'median':>8} {'max':>8}   {'server':>7}  {'client':>7}")
    print(f"{'':<25} {'msg/s':>8} {'msg/s':>8} {'msg/s':>8}   {'ms CPU':>7}  {'ms CPU':>7}   (CPU a message: median)")
    for target in run.targets:
        print(target.line())
    print(f"mailplane / bare server:  {ratio(run.ours, run.bare)}   (medians)")
    print(f"mailplane / Postfix:      {ratio(run.ours, run.postfix)}   (goal: at least 1.0)")
    print(f"Postfix / bare server:    {ratio(run.postfix, run.bare)}")
    print(f"batched HTTP / Postfix:   {ratio(run.api, run.postfix)}")
    print(f"in mailplane's queue:     {queued} (SMTP and API; expected {2 * args.repeat * total})")
    print(f"on the bare server's disk: {stored} (expected {args.repeat * total})")
    if run.postfix is not None:
        where = ", ".join(f"{name} {count}" for name, count in run.postfix_queued.items() if count)
        print(f"in Postfix's queue:       {sum(run.postfix_queued.values())} "
              f"(expected {args.repeat * total}; {where or 'none'})")
    print(f"load average:             {start_load} at start, {loadavg()} at end")


if __name__ == "__main__":
    main()
