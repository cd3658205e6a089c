"""Accepted messages per second through batched ``POST /v1/messages``, durably queued.

Why: applications hand over campaigns in batches, and the API answers 202 only once a batch is
committed to the queue (SQLite with synchronous=FULL by default: one fsync per batch).  This
starts a real ``mailplane serve`` process on a generated stack, posts batches from several
concurrent clients over HTTP, and prints the accepted rate.  The instance's delivery workers run
as in production, into an SMTP sink in another process.  Never asserts: machines differ.

    .venv/bin/python bench/sender_accept.py [--batches 40] [--batch-size 500] [--clients 4] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from mailplane.sender.config import hash_api_key, new_api_key
from mailplane.sender.db.store import Store

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_files(root: Path, sink_port: int, db: str, key: str) -> tuple[Path, Path, str]:
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent("""\
        ses: {region: eu-west-1, max_send_rate: 14, daily_quota: 50000}
        dns: {default_provider: external}
        mta_hosts:
          mta1: {ansible_host: 192.0.2.10}
        warmup_plans:
          open: {schedule: [{day: 1, daily: 10000000, hourly: 10000000}]}
        """))
    (stack / "tenants" / "bench.yaml").write_text(textwrap.dedent("""\
        name: bench
        domains: [{name: bench.example.com, dkim: {mode: easy}}]
        ips:
          - {address: 192.0.2.31, hostname: o1.bench.example.com, host: mta1, warmup: {plan: open, started: 2020-01-01}}
        senders: [{name: app, from: [app@bench.example.com]}]
        """))
    listen = f"127.0.0.1:{free_port()}"
    config = root / "sender.yaml"
    config.write_text(textwrap.dedent(f"""\
        database_url: "{db}"
        listen: {listen}
        aws: {{account_id: "123456789012"}}
        unsubscribe_keys: ["bench-key-0123456789abcdef"]
        smtp_endpoints: {{mta1: "127.0.0.1:{sink_port}"}}
        api_keys: {{bench/app: "{hash_api_key(key)}"}}
        """))
    return stack, config, "http://" + listen


async def post_all(url: str, key: str, batches: int, size: int, clients: int) -> float:
    todo: asyncio.Queue[int] = asyncio.Queue()
    for b in range(batches):
        todo.put_nowait(b)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120,
                                     headers={"Authorization": f"Bearer {key}"}) as http:
            while True:
                try:
                    b = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                batch = [{"from": "app@bench.example.com", "to": f"rcpt{b}-{n}@example.org",
                          "template": {"subject": "Hello {{ name }}", "text": "Dear {{ name }}, order {{ order }}."},
                          "variables": {"name": f"customer {n}", "order": n}, "idempotency_key": f"{b}-{n}"}
                         for n in range(size)]
                response = await http.post("/v1/messages", json={"messages": batch})
                response.raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return batches * size / (time.perf_counter() - start)


@contextlib.contextmanager
def serving(root: Path, db: str, key: str, *,
            edit: Callable[[Path, Path], None] | None = None) -> Iterator[tuple[Path, Path, str]]:
    """An SMTP sink and ``mailplane serve`` on a one-tenant stack under ``root``, until the block ends.

    ``edit(stack, config)`` changes the files before the service starts; the block gets the stack,
    the config and the API's URL once ``/healthz`` answers.
    """
    sink = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "smtp_sink.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    stack, config, url = write_files(root, int(sink.stdout.readline()), db, key)
    if edit is not None:
        edit(stack, config)
    server = subprocess.Popen([str(Path(sys.executable).parent / "mailplane"), "serve", str(stack), "--config",
                               str(config), "--log-level", "warning"])
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield stack, config, url
    finally:
        server.terminate()
        server.wait(60)
        sink.terminate()
        sink.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in a temporary folder)")
    args = parser.parse_args()
    key = new_api_key()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = args.db or f"sqlite:///{root / 'queue.db'}"
        with serving(root, db, key) as (_, _, url):
            rate = asyncio.run(post_all(url, key, args.batches, args.batch_size, args.clients))
        store = Store(db, create=False)
        queued = sum(store.counts().values())
        store.close()
    print(f"batches:                 {args.batches} x {args.batch_size} messages (templated), {args.clients} clients")
    print(f"messages in the queue:   {queued} (read back after the server stopped)")
    print(f"accepted:                {rate:8.1f} msg/s, durably queued before each 202")


if __name__ == "__main__":
    main()
