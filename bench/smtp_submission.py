"""Messages per second submitted over SMTP to ``mailplane serve``, durably queued, against two yardsticks.

Why: MailWizz and most applications hand their mail over SMTP, one message per transaction, and
the listener answers ``250`` only once the message is committed to the queue (SQLite with
synchronous=FULL by default: one fsync per message).  The same concurrent clients send the same
messages to

1. the sender's SMTP listener (AUTH, the checks of ``POST /v1/messages``, one committed transaction
   per message), while its delivery workers run into an SMTP sink as in production;
2. a bare aiosmtpd server that only writes each message to a file and fsyncs it: what any durable
   SMTP server on this disk pays (goal: the listener reaches at least 0.8 of its rate);
3. batched ``POST /v1/messages`` (100 a request) from as many clients: the API's way.

Every server runs in its own process, on loopback, in plain text (TLS costs both the same).  The
tenant's one IP is early in its warmup (50 a day), as a campaign's usually is, so delivery soon
waits; ``--deliver`` lets it send without limit, and then delivery's own transactions compete with
the submissions for SQLite's one writer.
Prints figures and the ratio; never asserts: machines differ.

    .venv/bin/python bench/smtp_submission.py [--clients 8] [--messages 250] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import textwrap
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
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


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Bench <app@bench.example.com>"
    msg["To"] = f"rcpt{n}@example.org"
    msg["Subject"] = f"Your order {n}"
    msg["Message-ID"] = f"<bench-{n}@client.example>"
    msg.set_content(f"Dear customer {n},\n\nyour order {n} is on its way.\n" + "Thanks for shopping. " * 40)
    return msg


async def smtp_clients(port: int, clients: int, per_client: int, login: tuple[str, str] | None) -> float:
    async def client(c: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120, start_tls=False)
        await smtp.connect()
        if login is not None:
            await smtp.login(*login)
        for i in range(per_client):
            n = c * per_client + i
            await smtp.send_message(message(n))
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return clients * per_client / (time.perf_counter() - start)


async def api_clients(url: str, key: str, clients: int, per_client: int) -> float:
    async def client(c: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as http:
            for first in range(0, per_client, 100):
                batch = [{"from": "app@bench.example.com", "to": f"api{c}-{n}@example.org",
                          "subject": f"Your order {n}", "text": f"Dear customer {n}, your order is on its way."
                          + " Thanks." * 40}
                         for n in range(first, min(first + 100, per_client))]
                (await http.post("/v1/messages", json={"messages": batch})).raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return clients * per_client / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=250, help="messages per client")
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--deliver", action="store_true", help="let the IP send without limit while clients submit "
                        "(delivery then competes with submission for SQLite's one writer)")
    args = parser.parse_args()
    key = new_api_key()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = args.db or f"sqlite:///{root / 'queue.db'}"
        smtp_port, bare_port = free_port(), free_port()

        def edit(stack: Path, config: Path) -> None:
            if not args.deliver:  # an IP early in its warmup: 50 a day, so delivery soon waits, as a campaign's does
                fleet = stack / "fleet.yaml"
                fleet.write_text(fleet.read_text().replace("daily: 10000000, hourly: 10000000",
                                                           "daily: 50, hourly: 50"))
            with config.open("a") as out:
                out.write(f'submission:\n  listeners: [{{listen: "127.0.0.1:{smtp_port}", tls: none}}]\n'
                          "  max_connections_per_client: 64\n")

        (root / "bare").mkdir()
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(root / "bare"), str(bare_port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert bare.stdout is not None
        try:
            assert bare.stdout.readline().strip() == "ready"
            with serving(root, db, key, edit=edit) as (_, _, url):
                smtp_rate = asyncio.run(smtp_clients(smtp_port, args.clients, args.messages, ("bench/app", key)))
                bare_rate = asyncio.run(smtp_clients(bare_port, args.clients, args.messages, None))
                api_rate = asyncio.run(api_clients(url, key, args.clients, args.messages))
        finally:
            bare.terminate()
            bare.wait(30)
        store = Store(db, create=False)
        queued = sum(store.counts().values())
        store.close()
        stored = len(list((root / "bare").iterdir()))
    total = args.clients * args.messages
    print(f"clients:                 {args.clients} concurrent, {args.messages} messages each ({total} in all)")
    print(f"SMTP to mailplane:       {smtp_rate:8.1f} msg/s (AUTH, the API's checks, a commit shared by sessions)")
    print(f"SMTP to a bare server:   {bare_rate:8.1f} msg/s (aiosmtpd writing and fsyncing each to a file)")
    print(f"ratio:                   {smtp_rate / bare_rate:8.2f} (goal: at least 0.8)")
    print(f"batched POST /v1/messages: {api_rate:6.1f} msg/s (100 a request)")
    print(f"in mailplane's queue:    {queued} (SMTP and API; expected {2 * total})")
    print(f"on the bare server's disk: {stored}")


if __name__ == "__main__":
    main()
