"""A client holding a valid key attacks a real `mailplane serve`, which delivers to a real SMTP sink.

Each test is an attack that once worked: header injection through a subject, a template variable, a
display name or a custom header; renders that ran forever or took a gigabyte; an idempotency key
reused for another message; NUL and other controls going out raw; ids that were not ASCII digits;
sequential Message-IDs; a non-JSON body.  What reaches the sink is read back with
``email.policy.default`` and must parse without defects, with exactly the headers mailplane writes.
"""

from __future__ import annotations

import concurrent.futures
import email
import email.policy
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from sender_instance import KEYS, Instance, wait_for, write_config, write_stack
from smtp_sink import SmtpSink

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parents[2]
RENDER = "render: {cpu_seconds: 0.5, memory_mb: 256, wall_seconds: 3, workers: 2, queue_seconds: 60}\n"
CONTROLS = {"VT": "\x0b", "FF": "\x0c", "FS": "\x1c", "GS": "\x1d", "RS": "\x1e", "NEL": "\x85",
            "LS": "\u2028", "PS": "\u2029", "DEL": "\x7f", "NUL": "\x00", "ESC": "\x1b", "CR": "\r", "LF": "\n"}
INJECTED = "X-Virtual-MTA : bravo-192-0-2-41"


@pytest.fixture
def served(tmp_path: Path, instances: Callable[..., Instance]) -> Iterator[tuple[Instance, SmtpSink]]:
    stack = write_stack(tmp_path)
    with SmtpSink() as sink:
        config = write_config(tmp_path / "sender.yaml", db=f"sqlite:///{tmp_path / 'q.db'}", sink_port=sink.port)
        config.write_text(config.read_text() + RENDER)
        yield instances(stack, config), sink


def msg(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"from": "app@acme.example.com", "to": f"rcpt{n}@example.org", "subject": f"hello {n}",
            "text": f"message {n}", **extra}


def problems(response: httpx.Response, status: int = 422) -> list[dict[str, Any]]:
    assert response.status_code == status, response.text
    found = response.json()["problems"]
    assert isinstance(found, list) and found
    return found


def delivered(sink: SmtpSink, count: int) -> list[EmailMessage]:
    wait_for(lambda: len(sink.messages) >= count, 30, f"{count} messages at the sink")
    out = []
    for received in sink.messages:
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append(parsed)
    return out


def assert_clean(raw: bytes, parsed: EmailMessage) -> None:
    """Parses without a defect, every line within 998 octets, no NUL, only the headers mailplane writes."""
    assert b"\x00" not in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    defects = list(parsed.defects) + [d for part in parsed.walk() for d in part.defects]
    defects += [d for _, value in parsed.items() for d in getattr(value, "defects", ())]
    assert defects == [], defects
    names = [name.lower() for name, _ in parsed.items()]
    assert names.count("x-virtual-mta") == 1
    assert not {"bcc", "authentication-results", "received-spf", "x-job"} & set(names)


# --- headers are built, never smuggled ---------------------------------------------------------


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_a_control_character_in_any_header_value_is_refused(served: tuple[Instance, SmtpSink], control: str) -> None:
    inst, _ = served
    c = CONTROLS[control]
    attacks = {
        "subject": msg(subject=f"Hi there{c}{INJECTED}"),
        "template.subject": {k: v for k, v in msg().items() if k not in ("subject", "text")}
        | {"template": {"subject": "Hi {{ name }}", "text": "x"}, "variables": {"name": f"there{c}{INJECTED}"}},
        "headers": msg(headers={"X-Note": f"a{c}{INJECTED}"}),
        "from_name": msg(from_name=f"Shop{c}Bcc : victim@example.net"),
        "to_name": msg(to_name=f"Ann{c}Content-Type : text/html"),
    }
    for where, body in attacks.items():
        found = problems(inst.post("acme", body))
        assert any(p["field"].startswith(where.split(".")[0]) for p in found), (where, found)
    assert inst.http.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", ["X-Virtual-MTA", "Bcc", "Return-Path", "Received", "DKIM-Signature",
                                  "Authentication-Results", "ARC-Seal", "ARC-Message-Signature", "Received-SPF",
                                  "X-Job", "Content-Type", "List-Unsubscribe", "Resent-From", "Sender"])
def test_reserved_headers_are_refused(served: tuple[Instance, SmtpSink], name: str) -> None:
    inst, _ = served
    found = problems(inst.post("acme", msg(headers={name: "value"})))
    assert found[0]["code"] == "header_refused" and "reserved" in found[0]["message"]


def test_what_is_accepted_arrives_parsing_back_to_exactly_what_was_sent(served: tuple[Instance, SmtpSink]) -> None:
    inst, sink = served
    subject = "Grüße from ACME — your order " + "very long words " * 20 + "¡fin!"
    ok = [
        msg(1, subject=subject, from_name="ACME Shop, Inc.", to_name="Jörg Müller", headers={"X-Order": "42"},
            reply_to="help@acme.example.com", reply_to_name="ACME Help"),
        msg(2, text="page one\fpage two " + "x" * 1200 + "\n.single dot line\n"),  # a form feed is no line end
        msg(3, stream="marketing", list_id="spring-sale"),
        {k: v for k, v in msg(4).items() if k != "text"} | {"html": "<p>" + "y" * 3000 + "</p>"},
    ]
    for body in ok:
        response = inst.post("acme", body)
        assert response.status_code == 202, response.text
    mails = delivered(sink, len(ok))
    by_rcpt = {str(m["To"]).rsplit("<", 1)[-1].strip(">"): (m, r.data) for m, r in zip(mails, sink.messages,
                                                                                        strict=True)}
    for parsed, raw in by_rcpt.values():
        assert_clean(raw, parsed)
    first, _ = by_rcpt["rcpt1@example.org"]
    assert str(first["Subject"]) == subject
    assert first["From"].addresses[0].display_name == "ACME Shop, Inc."
    assert first["To"].addresses[0].display_name == "Jörg Müller"
    assert first["Reply-To"].addresses[0].display_name == "ACME Help"
    assert [n.lower() for n, _ in first.items()] == [
        "from", "to", "subject", "date", "message-id", "reply-to", "x-virtual-mta", "x-order", "mime-version",
        "content-type", "content-transfer-encoding"]
    second, _ = by_rcpt["rcpt2@example.org"]
    assert second["Content-Transfer-Encoding"] == "quoted-printable"
    assert second.get_content().replace("\r\n", "\n") == "page one\fpage two " + "x" * 1200 + "\n.single dot line\n"
    third, _ = by_rcpt["rcpt3@example.org"]
    assert third["List-Id"] == "<spring-sale.acme.example.com>" and third["List-Unsubscribe"]
    fourth, _ = by_rcpt["rcpt4@example.org"]
    assert fourth.get_content().startswith("<p>yyy")
    ids = [str(m["Message-ID"]) for m, _ in by_rcpt.values()]
    assert len(set(ids)) == 4 and all(re.fullmatch(r"<[0-9a-f]{32}@acme\.example\.com>", i) for i in ids)


def test_nul_anywhere_is_refused(served: tuple[Instance, SmtpSink]) -> None:
    inst, _ = served
    for body in (msg(text="a\x00b"), {k: v for k, v in msg().items() if k != "text"} | {"html": "<p>\x00</p>"},
                 msg(idempotency_key="key\x00one")):
        problems(inst.post("acme", body))


# --- bounded rendering ---------------------------------------------------------------------------

HOSTILE = {
    "cpu": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    "memory": "{{ ('a'*10000)|replace('a','b'*100000) }}",
    "lipsum": "{{ lipsum(100000) }}",
}


def _templated(text: str, n: int = 1) -> dict[str, Any]:
    return {"from": "app@acme.example.com", "to": f"rcpt{n}@example.org",
            "template": {"subject": "Hi", "text": text}, "variables": {}}


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_hostile_renders_are_stopped_and_the_service_stays_up(served: tuple[Instance, SmtpSink],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    inst, sink = served
    for kind, text in HOSTILE.items():
        started = time.monotonic()
        found = problems(inst.post("acme", _templated(text)))
        assert found[0]["code"] == "render_budget", found
        assert ("memory" if kind == "memory" else "CPU") in found[0]["message"], found
        assert time.monotonic() - started < 10

    # 50 at once: /healthz answers within 1 s throughout, and another tenant's mail goes on (acme's own next
    # requests wait their turn behind its renders: max_requests_per_tenant)
    headers = {"Authorization": f"Bearer {KEYS['acme']}"}
    other = {"Authorization": f"Bearer {KEYS['bravo']}"}
    latencies: list[float] = []
    statuses: list[int] = []
    done = threading.Event()

    def hostile(i: int) -> int:
        with httpx.Client(base_url=inst.url, timeout=120) as c:
            return c.post("/v1/messages", json=_templated(HOSTILE["cpu"], i), headers=headers).status_code

    def probe() -> None:
        with httpx.Client(base_url=inst.url, timeout=5) as c:
            while not done.is_set():
                t = time.monotonic()
                assert c.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - t)
                plain = msg(1000 + len(statuses)) | {"from": "app@bravo.example.com"}
                statuses.append(c.post("/v1/messages", json=plain, headers=other).status_code)
                time.sleep(0.2)

    watcher = threading.Thread(target=probe)
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        futures = [pool.submit(hostile, i) for i in range(50)]
        time.sleep(0.5)
        watcher.start()
        results = [f.result() for f in futures]
    done.set()
    watcher.join()
    assert results == [422] * 50
    assert latencies and max(latencies) < 1.0, max(latencies)
    assert statuses and set(statuses) == {202}
    rss = _rss_kb(inst.proc.pid)

    # SIGTERM stops it within its timeout, even with renders in flight
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for i in range(4):
            pool.submit(hostile, 100 + i)
        time.sleep(0.5)
        started = time.monotonic()
        inst.proc.send_signal(signal.SIGTERM)
        inst.proc.wait(30)
        stopped = time.monotonic() - started
    assert stopped < 15
    with capsys.disabled():
        print(f"\nhostile renders: /healthz max {max(latencies) * 1000:.0f} ms over {len(latencies)} probes "
              f"during 50 at once; SIGTERM to exit {stopped:.1f} s; API process peak RSS {rss / 1024:.0f} MB")
    assert rss < 400 * 1024  # the API process never held a hostile render's memory
    del sink


# --- idempotency ---------------------------------------------------------------------------------


def test_idempotency_keys_return_the_original_or_a_409_naming_it(served: tuple[Instance, SmtpSink]) -> None:
    inst, _ = served
    first = inst.post("acme", msg(1, idempotency_key="order-1001"))
    assert first.status_code == 202
    original = first.json()["id"]
    again = inst.post("acme", msg(1, idempotency_key="order-1001"))
    assert again.json() == {"id": original, "status": "duplicate"}
    other = inst.post("acme", msg(1, idempotency_key="order-1001", subject="another message"))
    found = problems(other, 409)
    assert found[0]["code"] == "idempotency_conflict" and found[0]["original_id"] == original
    assert original in other.json()["error"]
    # within one batch: the same message twice is one; another message under the same key is a 409
    same = inst.http.post("/v1/messages", json={"messages": [msg(2, idempotency_key="k-2"),
                                                             msg(2, idempotency_key="k-2")]},
                          headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert same.status_code == 202
    ids = [m["id"] for m in same.json()["messages"]]
    assert ids[0] == ids[1]
    clash = inst.http.post("/v1/messages", json={"messages": [msg(3), msg(4, idempotency_key="k-3"),
                                                              msg(5, idempotency_key="k-3")]},
                           headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert problems(clash, 409)[0]["index"] == 2
    # nothing of the refused batch was queued: rcpt3 is not there
    assert inst.post("acme", msg(3, idempotency_key="k-3")).json()["status"] == "queued"


# --- only sendable mail, only documented input ----------------------------------------------------


def test_ids_and_keys_accept_only_documented_characters(served: tuple[Instance, SmtpSink]) -> None:
    inst, _ = served
    headers = {"Authorization": f"Bearer {KEYS['acme']}"}
    for path in ("/v1/messages/³", "/v1/messages/١", "/v1/messages/1x", "/v1/messages/" + "9" * 19):
        assert inst.http.get(path, headers=headers).status_code == 404, path
    for key in ("with space", "tab\tkey", "ümlaut", "x" * 256):
        problems(inst.post("acme", msg(idempotency_key=key)))
    assert inst.post("acme", msg(idempotency_key="3f2c1a9e-4b7d-4e21-9c3a-0d5e6f7a8b9c")).status_code == 202


def test_a_body_that_is_not_json_gets_a_415_saying_what_to_send(served: tuple[Instance, SmtpSink]) -> None:
    inst, _ = served
    headers = {"Authorization": f"Bearer {KEYS['acme']}"}
    for content_type in (None, "application/x-www-form-urlencoded", "text/plain"):
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        response = inst.http.post("/v1/messages", content=b'{"from": "x"}', headers=sent)
        assert response.status_code == 415, (content_type, response.text)
        assert "application/json" in response.json()["problems"][0]["message"]


def test_the_sender_pages_first_curl_works_as_written(served: tuple[Instance, SmtpSink]) -> None:
    inst, sink = served
    page = (ROOT / "docs" / "sender.md").read_text(encoding="utf-8")
    block = page.split("# The sender service", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    command = block[block.index("curl "):].split("#", 1)[0].replace("\\\n", " ")
    command = command.replace("billing@globex.example.net", "app@acme.example.com")  # this test's stack
    command = command.replace("http://127.0.0.1:8025", inst.url)
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "KEY": KEYS["acme"]})
    assert run.returncode == 0, run.stderr
    assert '"status":"queued"' in run.stdout.replace(" ", ""), (shlex.split(command), run.stdout)
    delivered(sink, 1)


def test_message_ids_never_repeat_on_a_new_database(tmp_path: Path, instances: Callable[..., Instance]) -> None:
    stack = write_stack(tmp_path)
    seen: list[str] = []
    with SmtpSink() as sink:
        for run in range(2):
            config = write_config(tmp_path / f"s{run}.yaml", db=f"sqlite:///{tmp_path / f'q{run}.db'}",
                                  sink_port=sink.port)
            inst = instances(stack, config)
            assert inst.post("acme", msg(run)).json()["id"] == "1"  # the same queue id on each new database
            wait_for(lambda n=run: len(sink.messages) > n, 30, "the message at the sink")
            inst.stop()
        seen = [str(m.message["Message-ID"]) for m in sink.messages]
    assert len(set(seen)) == 2 and not any("mp-1@" in s for s in seen)


def _metric(text: str, name: str) -> float:
    """The sum of a metric's samples in a /metrics page (0 when absent)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def test_forged_sns_posts_cannot_make_the_service_fetch_once_per_post(served: tuple[Instance, SmtpSink]) -> None:
    """100 forged notifications on a fleet topic, each naming a well-formed certificate URL of its own (the
    pin allows any ``<name>.pem`` on the region's SNS host): all refused, and the certificate fetches they
    cause stop at the rate limit, then a failed URL is not fetched again."""
    inst, _ = served
    topic = "arn:aws:sns:eu-west-1:123456789012:mailplane-acme-ses-events"
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def forged(n: int) -> dict[str, str]:
        return {"Type": "Notification", "MessageId": f"m-{n}", "TopicArn": topic, "Message": "{}",
                "Timestamp": now, "SignatureVersion": "2", "Signature": "AAAA",
                "SigningCertURL": f"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-{n:032x}.pem"}

    for n in range(100):
        answer = inst.http.post("/v1/webhooks/ses", json=forged(n))
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden"
    again = inst.http.post("/v1/webhooks/ses", json=forged(0))  # the URL that failed first: not fetched again
    assert again.status_code == 403
    metrics = inst.http.get("/metrics").text
    assert _metric(metrics, "mailplane_sender_sns_certificate_fetches_total") == 10
    assert _metric(metrics, 'mailplane_sender_sns_rejected_total{reason="cert-unavailable"}') == 101
    sha1 = {**forged(200), "SignatureVersion": "1"}
    assert inst.http.post("/v1/webhooks/ses", json=sha1).status_code == 403
    metrics = inst.http.get("/metrics").text
    assert _metric(metrics, 'mailplane_sender_sns_rejected_total{reason="unknown-signature-version"}') == 1
    assert _metric(metrics, "mailplane_sender_sns_certificate_fetches_total") == 10
