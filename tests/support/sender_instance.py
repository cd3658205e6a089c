"""A real `mailplane serve` process and the small stack and config the end-to-end tests share.

acme has two IPs (and SES for marketing), bravo one IP, sesco none (SES only); the caps are
small, so a test reaches them in seconds. One place, so the service, submission, hostile-client,
OpenAPI, guard and scheduling tests start the service the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from ports import free_port
from smtp_sink import SmtpSink

from mailplane.sender.config import hash_api_key, new_api_key

MAILPLANE = str(Path(sys.executable).parent / "mailplane")
REGION = "eu-west-1"
CAPS = {"192.0.2.31": 40, "192.0.2.32": 25, "192.0.2.41": 30}  # acme: two IPs; bravo: one
ACME_QUOTA = 55  # acme's tenant quota binds before its IPs' caps (65)
SES_QUOTA = 20  # sesco has no IP: SES
BIG = 100_000


def write_stack(root: Path, caps: dict[str, int] = CAPS, *, acme_quota: int | None = ACME_QUOTA) -> Path:
    stack = root / "stack"
    (stack / "tenants").mkdir(parents=True)
    plans = "\n".join(f"  cap{n}:\n    burst_seconds: 3600\n    schedule: [{{day: 1, daily: {n}, hourly: {n}}}]"
                      for n in sorted(set(caps.values())))
    (stack / "fleet.yaml").write_text(textwrap.dedent(f"""\
        ses: {{region: {REGION}, max_send_rate: 50, daily_quota: {SES_QUOTA}}}
        dns: {{default_provider: external}}
        mta_hosts:
          mta1: {{ansible_host: 192.0.2.10}}
        sender: {{public_url: "https://mailplane.test"}}
        warmup_plans:
        """) + plans + "\n")
    addresses = list(caps)

    def tenant(name: str, ips: list[str], quota: int | None = None, streams: str = "[transactional]") -> None:
        lines = [f"name: {name}", f"streams: {streams}",
                 f"domains: [{{name: {name}.example.com, dkim: {{mode: easy}}}}]"]
        if quota:  # the whole day's quota at once: these tests are not about its pace
            lines += [f"daily_quota: {quota}", "quota_burst_seconds: 86400"]
        if ips:
            lines.append("ips:")
            lines += [f"  - {{address: {a}, hostname: o{i}.{name}.example.com, host: mta1, "
                      f"warmup: {{plan: cap{caps[a]}, started: 2020-01-01}}}}" for i, a in enumerate(ips)]
        lines.append(f"senders: [{{name: app, from: [app@{name}.example.com]}}]")
        (stack / "tenants" / f"{name}.yaml").write_text("\n".join(lines) + "\n")

    tenant("acme", addresses[:2], acme_quota, "[transactional, marketing]")
    tenant("bravo", addresses[2:3])
    tenant("sesco", [])
    return stack


KEYS = {name: new_api_key() for name in ("acme", "bravo", "sesco")}


ADMIN_KEY = new_api_key()
"""An operator's key for the admin API, in every test config."""


def write_config(path: Path, *, db: str, sink_port: int, moto_url: str | None = None, workers: int = 2,
                 batch: int = 8, lease: float = 60.0) -> Path:
    keys = "\n".join(f'  {t}/app: "{hash_api_key(k)}"' for t, k in KEYS.items())
    keys += f'\nadmin_keys:\n  ops: "{hash_api_key(ADMIN_KEY)}"'

    endpoint = f"endpoint_url: {moto_url}" if moto_url else ""
    path.write_text(textwrap.dedent("""\
        database_url: "{db}"
        listen: 127.0.0.1:{port}
        aws: {{account_id: "123456789012", {endpoint}}}
        unsubscribe_keys: ["a-test-key-of-32-bytes-0123456789"]
        smtp_endpoints: {{mta1: "127.0.0.1:{sink_port}"}}
        workers: {workers}
        batch_size: {batch}
        claim_lease_seconds: {lease}
        retry_base_seconds: 0.2
        retry_max_seconds: 1.0
        api_keys:
        """).format(db=db, port=free_port(), endpoint=endpoint, sink_port=sink_port, workers=workers,
                    batch=batch, lease=lease) + keys + "\n")
    return path


class Instance:
    """One `mailplane serve` process."""

    def __init__(self, stack: Path, config: Path, log: Path) -> None:
        import yaml

        self.url = "http://" + yaml.safe_load(config.read_text())["listen"]
        self.log = log
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.proc = subprocess.Popen([MAILPLANE, "serve", str(stack), "--config", str(config),
                                      "--log-level", "warning"], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mailplane serve did not come up:\n{log.read_text()}")
            time.sleep(0.1)

    def post(self, tenant: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/v1/messages", json=body, headers={"Authorization": f"Bearer {KEYS[tenant]}"})

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def message(tenant: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"from": f"app@{tenant}.example.com", "to": f"rcpt{n}@example.org", "subject": f"hello {n}",
            "text": f"message {n}", **extra}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def message_ids(sink: SmtpSink) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for m in list(sink.messages))


def vmta_counts(sink: SmtpSink) -> Counter[str]:
    return Counter(str(m.message["X-Virtual-MTA"]) for m in list(sink.messages))
