"""Pacing at the SES account's max send rate: 14 msg/s for 60 s through the real delivery path.

Why: SES refuses (throttles) an account that sends faster than its rate, and one that paces too
cautiously wastes its quota; the rate is one schedule shared by every worker and instance
(``pacing.RateSchedule``).  This queues more mail than a minute can take for a tenant without
dedicated IPs, runs the real ``Delivery`` (several claim loops) sending through SES v2 to moto
in server mode (its own process), and reads back when each send was granted.  It prints the
highest count in any 1-second window (must be at most the rate) and the mean rate (goal at
least 13.5).  Never asserts on times: machines differ.

    .venv/bin/python bench/sender_pacing.py [--rate 14] [--seconds 60] [--workers 4]
"""

from __future__ import annotations

import argparse
import bisect
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import boto3
from sqlalchemy import select

from mailplane.model.loader import load_stack
from mailplane.sender.config import SenderConfig
from mailplane.sender.core.messages import NewMessage
from mailplane.sender.db.schema import messages
from mailplane.sender.delivery.worker import Delivery
from mailplane.sender.service import Service

REGION = "eu-west-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def write_stack(root: Path, rate: float) -> Path:
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: {REGION}, max_send_rate: {rate}, daily_quota: 1000000}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
        """))
    (stack / "tenants" / "paced.yaml").write_text(textwrap.dedent("""\
        name: paced
        domains: [{name: paced.example.com, dkim: {mode: easy}}]
        senders: [{name: app, from: [app@paced.example.com]}]
        """))
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=14.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4, help="claim loops competing for the rate")
    args = parser.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION,
                       "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    moto, url = start_moto()
    try:
        ses = boto3.client("sesv2", region_name=REGION, endpoint_url=url)
        ses.create_email_identity(EmailIdentity="paced.example.com")
        ses.create_configuration_set(ConfigurationSetName="paced")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            config = SenderConfig.model_validate({
                "database_url": f"sqlite:///{root / 'queue.db'}",
                "aws": {"account_id": "123456789012", "endpoint_url": url},
                "unsubscribe_keys": ["bench-key-0123456789abcdef"], "workers": args.workers, "batch_size": 32},
                strict=False)
            service = Service(load_stack(write_stack(root, args.rate)), config)
            total = int(args.rate * args.seconds * 1.5)
            service.store.enqueue([NewMessage("paced", "app", "transactional", "app@paced.example.com",
                                              f"rcpt{n}@example.org", {"subject": f"n{n}", "text": "paced"})
                                   for n in range(total)])
            delivery = Delivery(service)
            start = time.time()
            delivery.start()
            time.sleep(args.seconds)
            delivery.stop()
            with service.store.reading() as conn:
                granted = sorted(t for t in conn.execute(select(messages.c.reserved_at).where(
                    messages.c.reserved_at.is_not(None), messages.c.reserved_at <= start + args.seconds)).scalars())
            sent = service.store.counts().get("sent", 0)
            service.close()
    finally:
        moto.terminate()
        moto.wait(10)
    busiest = max(bisect.bisect_left(granted, t + 1.0) - i for i, t in enumerate(granted))
    mean = (len(granted) - 1) / (granted[-1] - granted[0])
    print(f"configured rate:                 {args.rate:g} msg/s, {args.workers} claim loops, {args.seconds:g} s")
    print(f"sends granted:                   {len(granted)} ({sent} handed to SES when stopped)")
    print(f"highest count in a 1-s window:   {busiest} (must be <= {int(args.rate)})")
    print(f"mean rate:                       {mean:.2f} msg/s (goal >= 13.5)")


if __name__ == "__main__":
    main()
