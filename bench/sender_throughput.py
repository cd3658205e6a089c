"""Delivery throughput of the sender into a local SMTP sink, against a bare aiosmtplib client.

Why: the service adds a durable queue, batched reservations under the pacing gates, MIME
composition and outcome records to every send; this measures what that costs.  Both runs send
the same number of messages over the same number of persistent connections into the same sink,
an aiosmtpd server in another process (``tests/support/smtp_sink.py``), so the ratio is the service's
overhead alone.  The service side is the real ``Delivery`` over a SQLite (WAL, synchronous=FULL)
queue, with warmup caps high enough not to bind.  One run is at the mercy of whatever else the
machine does, so the two alternate over ``--repeat`` repetitions in a rotating order (the bare
client first in even repetitions, the service first in odd ones), each of the service's runs on a
fresh queue; prints min / median / max of each, the ratio of the medians and the load average.
Never asserts (machines differ).

    .venv/bin/python bench/sender_throughput.py [--messages 4000] [--connections 16] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent

from mailplane.model.loader import load_stack  # noqa: E402
from mailplane.sender.config import SenderConfig  # noqa: E402
from mailplane.sender.db.store import NewMessage  # noqa: E402
from mailplane.sender.delivery.worker import Delivery  # noqa: E402
from mailplane.sender.service import Service  # noqa: E402

BODY = "Hello,\n\nyour invoice is attached to your account page.\n\n" + "Lorem ipsum dolor sit amet. " * 20


def start_sink() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "support" / "smtp_sink.py"), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def stop_sink(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out.strip()


async def bare_client(port: int, messages: int, connections: int) -> float:
    """The baseline: persistent aiosmtplib connections, a prepared message each, nothing else."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(messages):
        queue.put_nowait(n)

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            mail = EmailMessage()
            mail["From"], mail["To"], mail["Subject"] = "app@bench.example.com", f"rcpt{n}@example.org", f"hello {n}"
            mail.set_content(BODY)
            await client.send_message(mail)
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return messages / (time.perf_counter() - start)


def write_stack(root: Path, port: int) -> Path:
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: eu-west-1, max_send_rate: 14, daily_quota: 50000}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10, smtp_listener: "127.0.0.1:{port}"}}
        warmup_plans:
          open: {{schedule: [{{day: 1, daily: 10000000, hourly: 10000000}}]}}
        """))
    (stack / "tenants" / "bench.yaml").write_text(textwrap.dedent("""\
        name: bench
        domains: [{name: bench.example.com, dkim: {mode: easy}}]
        ips:
          - {address: 192.0.2.31, hostname: o1.bench.example.com, host: mta1, warmup: {plan: open, started: 2020-01-01}}
          - {address: 192.0.2.32, hostname: o2.bench.example.com, host: mta1, warmup: {plan: open, started: 2020-01-01}}
        senders: [{name: app, from: [app@bench.example.com]}]
        """))
    return stack


def service_run(port: int, messages: int, connections: int, workers: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fleet = load_stack(write_stack(root, port))
        config = SenderConfig.model_validate({
            "database_url": f"sqlite:///{root / 'queue.db'}", "aws": {"account_id": "123456789012"},
            "unsubscribe_keys": ["bench-key-0123456789abcdef"], "workers": workers, "batch_size": batch,
            "smtp_connections": connections}, strict=False)
        service = Service(fleet, config)
        for first in range(0, messages, 500):
            service.store.enqueue([NewMessage("bench", "app", "transactional", "app@bench.example.com",
                                              f"rcpt{n}@example.org", {"subject": f"hello {n}", "text": BODY})
                                   for n in range(first, min(first + 500, messages))])
        delivery = Delivery(service, idle_poll=0.05)
        done = threading.Event()

        def watch() -> None:
            while service.store.counts().get("sent", 0) < messages:
                time.sleep(0.02)
            done.set()

        start = time.perf_counter()
        delivery.start()
        threading.Thread(target=watch, daemon=True).start()
        done.wait()
        elapsed = time.perf_counter() - start
        delivery.stop()
        service.close()
        return messages / elapsed


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def figures(rates: list[float]) -> str:
    return f"{min(rates):8.1f} {statistics.median(rates):8.1f} {max(rates):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="the service's claim loops")
    parser.add_argument("--batch", type=int, default=64, help="messages a claim loop takes at once")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions, each running both once")
    args = parser.parse_args()

    start_load = loadavg()
    sink, port = start_sink()
    runs: dict[str, Callable[[], float]] = {
        "bare": lambda: asyncio.run(bare_client(port, args.messages, args.connections)),
        "ours": lambda: service_run(port, args.messages, args.connections, args.workers, args.batch)}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    try:
        for rep in range(args.repeat):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                rates[name].append(runs[name]())
    finally:
        sink_report = stop_sink(sink)
    ratio = statistics.median(rates["ours"]) / statistics.median(rates["bare"])
    print(f"messages per run:          {args.messages} over {args.connections} connections (sink: {sink_report})")
    print(f"repetitions:               {args.repeat}, both once in each, in rotating order")
    print(f"{'':<26} {'min':>8} {'median':>8} {'max':>8}  msg/s")
    print(f"{'bare aiosmtplib client:':<26} {figures(rates['bare'])}")
    print(f"{'mailplane delivery:':<26} {figures(rates['ours'])}  "
          f"({args.workers} claim loops, batches of {args.batch})")
    print(f"ratio of medians:          {ratio:8.2f}  (goal: at least 1.0)")
    print(f"load average:              {start_load} at start, {loadavg()} at end")


if __name__ == "__main__":
    main()
