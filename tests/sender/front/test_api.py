"""The sender's HTTP API over real HTTP: uvicorn on a loopback port, httpx, a SQLite file per test."""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sender_http import serve
from sqlalchemy import func, select, update

from mailplane.model.stack import Fleet
from mailplane.sender.config import AwsSettings, SenderConfig, hash_api_key, new_api_key
from mailplane.sender.core.gates import Granted
from mailplane.sender.core.submit import MAX_BATCH, address, from_allowed
from mailplane.sender.core.templating import MAX_OUTPUT_CHARS, TemplateProblems, render
from mailplane.sender.core.unsubscribe import make_token
from mailplane.sender.db.counters import LockScope
from mailplane.sender.db.schema import daily_counters, messages
from mailplane.sender.db.store import Store
from mailplane.sender.front.api import MAX_REQUEST_BYTES, create_app
from mailplane.sender.service import Service

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC).timestamp()
TODAY = datetime.date(2026, 11, 25)
UNSUB_KEY = "unsubscribe-key-for-tests-0123456789"
SENDERS = ("sos-expat/app", "sos-expat/newsletter", "globex/billing")


@dataclasses.dataclass
class Api:
    """A running instance: its base URL, service, database URL and one key per sender."""

    url: str
    service: Service
    db_url: str
    keys: dict[str, str]

    def client(self, sender: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[sender]}"} if sender else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stored(self) -> list[Any]:
        """Every queued row, read through a NEW store on the same file: what survived the request."""
        store = Store(self.db_url, create=False)
        try:
            with store.reading() as conn:
                return list(conn.execute(select(messages).order_by(messages.c.id)))
        finally:
            store.close()


def _service(fleet: Fleet, db_url: str) -> tuple[Service, dict[str, str]]:
    keys = {name: new_api_key() for name in SENDERS}
    config = SenderConfig(database_url=db_url, aws=AwsSettings(account_id="123456789012"),
                          api_keys={name: hash_api_key(key) for name, key in keys.items()},
                          unsubscribe_keys=[UNSUB_KEY])
    return Service(fleet, config, stack_name="prod", clock=CLOCK), keys


class _Clock:
    """Fixed at ``NOW`` unless a test moves it on (past an IP's paced send)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += seconds


CLOCK = _Clock()


@pytest.fixture(autouse=True)
def _clock_at_now() -> None:
    CLOCK.now = NOW


@pytest.fixture
def api(fleet: Fleet, tmp_path: Path) -> Iterator[Api]:
    db_url = f"sqlite:///{tmp_path / 'sender.db'}"
    service, keys = _service(fleet, db_url)
    with serve(create_app(service)) as url:
        yield Api(url, service, db_url, keys)
    service.close()


def _msg(**fields: Any) -> dict[str, Any]:
    base = {"from": "no-reply@mail1.example.com", "to": "alice@example.net", "subject": "Your receipt",
            "text": "Thank you."}
    return {**base, **fields}


def _problems(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "problems"}
    return body["problems"]


# -- operations --------------------------------------------------------------------------------


def test_healthz_and_openapi_docs(api: Api) -> None:
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        doc = c.get("/openapi.json").json()
        assert doc["info"]["title"] == "mailplane sender" and doc["info"]["version"]
        assert {"/v1/messages", "/v1/messages/{message_id}", "/v1/quotas/{tenant}", "/v1/webhooks/ses"} \
            <= set(doc["paths"])
        assert "MessageIn" in doc["components"]["schemas"] and "BatchIn" in doc["components"]["schemas"]
        assert c.get("/docs").status_code == 200


def test_healthz_is_503_when_the_database_is_gone(fleet: Fleet, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    service, _ = _service(fleet, f"sqlite:///{folder / 'sender.db'}")
    with serve(create_app(service)) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        service.store.close()  # drop pooled connections, then the file's folder: nothing to reconnect to
        shutil.rmtree(folder)
        response = httpx.get(url + "/healthz")
        assert response.status_code == 503 and response.json()["status"] == "unavailable"


def test_metrics_expose_the_instance_registry(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        assert c.post("/v1/messages", json=_msg()).status_code == 202
        response = c.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in ("mailplane_sender_accepted_total", "mailplane_sender_messages", "mailplane_sender_ip_remaining"):
        assert name in text
    assert 'mailplane_sender_accepted_total{stream="transactional",tenant="sos-expat"} 1.0' in text
    assert 'mailplane_sender_messages{state="queued"} 1.0' in text


# -- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer mpk_not-a-key", "Basic dXNlcjpwYXNz", "Bearer"])
def test_requests_without_a_valid_key_get_401(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with api.client() as c:
        for response in (c.post("/v1/messages", json=_msg(), headers=headers),
                         c.get("/v1/messages/1", headers=headers),
                         c.get("/v1/quotas/sos-expat", headers=headers)):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "missing or invalid API key"
    assert api.stored() == []


# -- submission ----------------------------------------------------------------------------------


def test_single_message_is_committed_before_202(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        response = c.post("/v1/messages", json=_msg(html="<p>Thank you.</p>", reply_to="help@mail1.example.com",
                                                     headers={"X-Order": "42"}))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["id"].isdigit()
    [row] = api.stored()
    assert (str(row.id), row.tenant, row.sender, row.stream, row.state) == \
        (body["id"], "sos-expat", "app", "transactional", "queued")
    assert (row.from_addr, row.to_addr) == ("no-reply@mail1.example.com", "alice@example.net")
    token, fingerprint = row.payload.pop("token"), row.payload.pop("fingerprint")
    assert re.fullmatch(r"[0-9a-f]{32}", token) and re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    assert row.payload == {"subject": "Your receipt", "text": "Thank you.", "html": "<p>Thank you.</p>",
                           "headers": {"X-Order": "42"}, "reply_to": "help@mail1.example.com", "list_id": None,
                           "from_name": None, "to_name": None, "reply_to_name": None}


def test_batch_is_queued_in_order_and_readable(api: Api) -> None:
    batch = [_msg(to=f"user{i}@example.net") for i in range(5)]
    with api.client("sos-expat/app") as c:
        response = c.post("/v1/messages", json={"messages": batch})
        assert response.status_code == 202
        ids = [m["id"] for m in response.json()["messages"]]
        assert [m["status"] for m in response.json()["messages"]] == ["queued"] * 5
        status = c.get(f"/v1/messages/{ids[3]}").json()
    assert [r.to_addr for r in api.stored()] == [f"user{i}@example.net" for i in range(5)]
    assert [str(r.id) for r in api.stored()] == ids
    assert status["id"] == ids[3] and status["to"] == "user3@example.net" and status["state"] == "queued"
    assert status["attempts"] == 0 and status["transport"] is None and status["ip"] is None
    assert status["last_error"] is None
    assert datetime.datetime.fromisoformat(status["created_at"]).timestamp() == NOW


def test_a_campaign_is_kept_with_its_messages_and_a_bad_name_is_refused(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        ok = c.post("/v1/messages", json={"messages": [_msg(campaign="spring-2027"), _msg(to="b@example.net")]})
        assert ok.status_code == 202
        bad = _problems(c.post("/v1/messages", json=_msg(campaign="spring sale")))
    assert [(r.to_addr, r.campaign) for r in api.stored()] == [("alice@example.net", "spring-2027"),
                                                               ("b@example.net", "")]
    assert (bad[0]["field"], bad[0]["code"]) == ("campaign", "string_pattern_mismatch")


def test_a_tenants_concurrent_submissions_wait_on_its_own_bound_only(fleet: Fleet, tmp_path: Path) -> None:
    """Twelve batches of one tenant at once: at most three are worked on together (its requests' bound),
    the rest wait their turn and are all queued; another tenant's request meanwhile is answered 202."""
    service, keys = _service(fleet, f"sqlite:///{tmp_path / 'sender.db'}")
    service.config = service.config.model_copy(update={"max_requests_per_tenant": 3})
    app = create_app(service)
    batch = {"messages": [_msg(to=f"u{i}@example.net", text="x" * 2000) for i in range(200)]}
    start = threading.Barrier(13)

    def post(sender: str, body: dict[str, Any]) -> int:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys[sender]}"}, timeout=120) as c:
            start.wait()
            return c.post("/v1/messages", json=body).status_code

    with serve(app) as url, ThreadPoolExecutor(13) as pool:
        heavy = [pool.submit(post, "sos-expat/app", batch) for _ in range(12)]
        light = pool.submit(post, "globex/billing", _msg(**{"from": "billing@globex.example.net"}))
        assert light.result() == 202 and [f.result() for f in heavy] == [202] * 12
    intake = app.state.intake
    assert intake.requests.peak["sos-expat"] == 3  # twelve came together: the bound held them to three
    assert intake.requests.peak["globex"] == 1 and intake.requests.in_flight["sos-expat"] == 0
    assert len(Api("", service, service.config.database_url, keys).stored()) == 12 * 200 + 1
    service.close()


def test_batch_is_all_or_nothing(api: Api) -> None:
    batch = [_msg(to="ok@example.net"), _msg(to="also-ok@example.net"), _msg(to="not an address"),
             _msg(**{"from": "ceo@globex.example.net"})]
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json={"messages": batch}))
    assert [(p["index"], p["field"], p["code"]) for p in problems] == \
        [(2, "to", "invalid_address"), (3, "from", "from_not_allowed")]
    assert api.stored() == []


def test_a_malformed_message_in_a_batch_names_its_index(api: Api) -> None:
    batch = [_msg(), {"from": "no-reply@mail1.example.com", "to": "x@example.net", "text": "no subject"}]
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json={"messages": batch}))
        assert problems[0]["index"] == 1 and "subject" in problems[0]["message"]
        unknown = _problems(c.post("/v1/messages", json=_msg(htlm="<p>typo</p>")))
        assert unknown[0]["index"] == 0 and unknown[0]["field"] == "htlm"
        broken = _problems(c.post("/v1/messages", content=b'{"from": ', headers={"Content-Type": "application/json"}))
        assert (broken[0]["field"], broken[0]["code"]) == ("body", "json_invalid")
    assert api.stored() == []


def test_batch_over_the_maximum_is_refused(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json={"messages": [_msg()] * (MAX_BATCH + 1)}))
        assert problems[0]["field"] == "messages" and str(MAX_BATCH) in problems[0]["message"]
        assert c.post("/v1/messages", json={"messages": [_msg()] * MAX_BATCH}).status_code == 202
    assert len(api.stored()) == MAX_BATCH


def test_idempotency_key_returns_the_first_id(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        first = c.post("/v1/messages", json=_msg(idempotency_key="order-42")).json()
        again = c.post("/v1/messages", json=_msg(idempotency_key="order-42")).json()
        batch = c.post("/v1/messages", json={"messages": [_msg(idempotency_key="order-42"),
                                                          _msg(idempotency_key="order-43")]}).json()
    assert first["status"] == "queued"
    assert again == {"id": first["id"], "status": "duplicate"}
    assert batch["messages"][0] == {"id": first["id"], "status": "duplicate"}
    assert batch["messages"][1]["status"] == "queued"
    assert len(api.stored()) == 2
    # The recipient bounces after the first request: a retry still gets the first answer, a new key 422.
    api.service.store.suppress("sos-expat", "alice@example.net", "hard_bounce", "test")
    with api.client("sos-expat/app") as c:
        assert c.post("/v1/messages", json=_msg(idempotency_key="order-42")).json() == again
        assert _problems(c.post("/v1/messages", json=_msg(idempotency_key="order-44")))[0]["code"] == "suppressed"
    # Keys are per sender: another sender's identical key is a new message.
    with api.client("sos-expat/newsletter") as c:
        other = c.post("/v1/messages", json=_msg(**{"from": "a@news.example.com"}, to="bob@example.net",
                                                 idempotency_key="order-42")).json()
    assert other["status"] == "queued" and other["id"] != first["id"]


def test_from_must_be_the_senders_own(api: Api) -> None:
    with api.client("sos-expat/newsletter") as news, api.client("sos-expat/app") as app:
        # `*@news.example.com`: any local part, the domain in any case, marketing allowed for this tenant.
        ok = news.post("/v1/messages", json=_msg(**{"from": "Deals@NEWS.Example.COM"}, stream="marketing"))
        assert ok.status_code == 202
        # The same tenant's other sender may not use the newsletter's addresses, nor the other way round.
        assert _problems(app.post("/v1/messages", json=_msg(**{"from": "deals@news.example.com"})))[0]["code"] == \
            "from_not_allowed"
        assert _problems(news.post("/v1/messages", json=_msg()))[0]["code"] == "from_not_allowed"
        # A display name or a second address is not a bare From.
        bad = _problems(app.post("/v1/messages", json=_msg(**{"from": "Shop <no-reply@mail1.example.com>"})))
        assert bad[0]["code"] == "invalid_address"
    assert [r.from_addr for r in api.stored()] == ["Deals@news.example.com"]


def test_from_patterns_match_the_domain_in_any_case_and_the_local_part_exactly() -> None:
    assert from_allowed(["*@news.example.com"], address("Anyone@NEWS.example.com"))
    assert not from_allowed(["*@news.example.com"], address("a@sub.news.example.com"))
    assert not from_allowed(["*@news.example.com"], address("a@example.com"))
    assert from_allowed(["billing@globex.example.net"], address("billing@Globex.Example.Net"))
    assert not from_allowed(["billing@globex.example.net"], address("Billing@globex.example.net"))
    assert not from_allowed([], address("billing@globex.example.net"))


def test_tenants_are_isolated(api: Api) -> None:
    with api.client("globex/billing") as globex, api.client("sos-expat/app") as sos:
        mine = sos.post("/v1/messages", json=_msg()).json()["id"]
        as_other = globex.post("/v1/messages", json=_msg())  # globex's key, sos-expat's From
        assert _problems(as_other)[0]["code"] == "from_not_allowed"
        assert globex.get(f"/v1/messages/{mine}").status_code == 404
        assert globex.get("/v1/messages/999999").status_code == 404
        assert globex.get("/v1/messages/not-a-number").status_code == 404
        assert sos.get(f"/v1/messages/{mine}").status_code == 200
        assert globex.get("/v1/quotas/sos-expat").status_code == 404
        assert globex.get("/v1/quotas/globex").status_code == 200
    assert len(api.stored()) == 1


def test_stream_must_be_the_tenants(fleet: Fleet, tmp_path: Path) -> None:
    globex = fleet.tenant("globex").model_copy(update={"streams": ["transactional"]})
    only = dataclasses.replace(fleet, tenants=tuple(globex if t.name == "globex" else t for t in fleet.tenants))
    service, keys = _service(only, f"sqlite:///{tmp_path / 'sender.db'}")
    with serve(create_app(service)) as url:
        headers = {"Authorization": f"Bearer {keys['globex/billing']}"}
        problems = _problems(httpx.post(url + "/v1/messages", headers=headers,
                                        json=_msg(**{"from": "billing@globex.example.net"}, stream="marketing")))
    service.close()
    assert problems[0]["code"] == "stream_not_allowed"


def test_marketing_needs_a_public_url(fleet: Fleet, tmp_path: Path) -> None:
    without = dataclasses.replace(fleet, settings=fleet.settings.model_copy(update={"sender": None}))
    service, keys = _service(without, f"sqlite:///{tmp_path / 'sender.db'}")
    with serve(create_app(service)) as url:
        headers = {"Authorization": f"Bearer {keys['sos-expat/newsletter']}"}
        marketing = _msg(**{"from": "deals@news.example.com"}, stream="marketing")
        problems = _problems(httpx.post(url + "/v1/messages", json=marketing, headers=headers))
        assert problems[0]["code"] == "no_unsubscribe_endpoint" and "public_url" in problems[0]["message"]
        transactional = httpx.post(url + "/v1/messages", json={**marketing, "stream": "transactional"},
                                   headers=headers)
        assert transactional.status_code == 202
    service.close()


def test_recipient_and_headers_are_checked(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        for to in ("alice", "alice@", "a@b@example.net", "*@example.net", "alice@example.net, bob@example.net",
                   "alice@example.net\r\nBcc: eve@example.net", "alice@-bad-.example"):
            assert _problems(c.post("/v1/messages", json=_msg(to=to)))[0]["code"] == "invalid_address", to
        refused = _problems(c.post("/v1/messages", json=_msg(headers={"X-Virtual-MTA": "globex-pool"})))
        assert refused[0]["field"] == "headers" and refused[0]["code"] == "header_refused"
        injected = _problems(c.post("/v1/messages", json=_msg(headers={"X-Tag": "a\r\nBcc: eve@example.net"})))
        assert injected[0]["code"] == "header_refused"
        assert _problems(c.post("/v1/messages", json=_msg(subject="a\nBcc: x")))[0]["field"] == "subject"
        assert _problems(c.post("/v1/messages", json=_msg(subject="x" * 999)))[0]["field"] == "subject"
    assert api.stored() == []


# -- templates --------------------------------------------------------------------------------


def _templated(variables: dict[str, Any], **template: Any) -> dict[str, Any]:
    return {"from": "no-reply@mail1.example.com", "to": "alice@example.net",
            "template": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}", **template}, "variables": variables}


def test_template_renders_and_escapes_html_only(api: Api) -> None:
    message = _templated({"name": "Tom & <Jerry>", "items": ["a", "b"]},
                         html="<p>Hi {{ name }}</p><ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>")
    with api.client("sos-expat/app") as c:
        assert c.post("/v1/messages", json=message).status_code == 202
    [row] = api.stored()
    assert row.payload["subject"] == "Hello Tom & <Jerry>"
    assert row.payload["text"] == "Hi Tom & <Jerry>"
    assert row.payload["html"] == "<p>Hi Tom &amp; &lt;Jerry&gt;</p><ul><li>a</li><li>b</li></ul>"


def test_missing_template_variable_is_named_and_nothing_is_queued(api: Api) -> None:
    batch = [_templated({"name": "Ann"}), _templated({"name": "Bob"}, text="Your code is {{ code }}")]
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json={"messages": batch}))
    assert len(problems) == 1
    assert (problems[0]["index"], problems[0]["field"], problems[0]["code"]) == \
        (1, "template.text", "undefined_variable")
    assert "'code' is undefined" in problems[0]["message"]
    assert api.stored() == []


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ name.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ 'x' * 100000000 }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ name.upper( }}",
])
def test_sandbox_refuses_unsafe_or_broken_templates(api: Api, source: str) -> None:
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json=_templated({"name": "Ann"}, text=source)))
    assert problems[0]["field"] == "template.text" and problems[0]["code"] == "template_error"
    assert "class '" not in problems[0]["message"]  # nothing of the interpreter leaks into the answer
    assert api.stored() == []


def test_rendered_output_is_bounded() -> None:
    with pytest.raises(TemplateProblems) as caught:
        render("s", "{% for i in range(100000) %}{{ 'x' * 50 }}{% endfor %}", None, {})
    assert caught.value.problems == [("text", f"rendered text longer than {MAX_OUTPUT_CHARS} characters")]
    with pytest.raises(TemplateProblems) as caught:
        render("{{ a }}", "{{ b }}", "<p>{{ c }}</p>", {})
    assert [part for part, _ in caught.value.problems] == ["subject", "text", "html"]


# -- suppression and unsubscribe -------------------------------------------------------------


def test_suppressed_recipient_is_refused_at_submission(api: Api) -> None:
    api.service.store.suppress("sos-expat", "Bounced@Example.net", "hard_bounce", "test")
    api.service.store.suppress("globex", "other-tenant@example.net", "complaint", "test")
    batch = [_msg(to="fine@example.net"), _msg(to="bounced@example.net"), _msg(to="other-tenant@example.net")]
    with api.client("sos-expat/app") as c:
        problems = _problems(c.post("/v1/messages", json={"messages": batch}))
        assert [(p["index"], p["code"]) for p in problems] == [(1, "suppressed")]
        assert api.stored() == []
        # Another tenant's suppression does not apply here.
        assert c.post("/v1/messages", json={"messages": [batch[0], batch[2]]}).status_code == 202


def _token(address: str = "reader@example.net") -> str:
    return make_token(UNSUB_KEY, tenant="sos-expat", address=address, list_id="marketing", issued_at=int(NOW))


def test_unsubscribe_get_shows_a_page_and_suppresses_nothing(api: Api) -> None:
    with api.client() as c:
        response = c.get(f"/v1/unsubscribe/{_token()}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "set-cookie" not in response.headers
    with api.client() as c:
        head = c.head(f"/v1/unsubscribe/{_token()}")
    assert head.status_code == 200 and head.content == b""
    assert api.service.store.suppressed("sos-expat", ["reader@example.net"]) == set()


def test_one_click_post_suppresses_before_answering(api: Api) -> None:
    url = f"{api.url}/v1/unsubscribe/{_token()}"
    # A bare client: no cookie, no auth, nothing but the RFC 8058 body.
    response = httpx.post(url, content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.text == "You have been unsubscribed.\n"
    assert "set-cookie" not in response.headers and "location" not in response.headers
    # Committed: a fresh store on the same file sees it, and the recipient can no longer be sent to.
    fresh = Store(api.db_url, create=False)
    assert fresh.suppressed("sos-expat", ["reader@example.net"]) == {"reader@example.net"}
    fresh.close()
    with api.client("sos-expat/newsletter") as c:
        refused = c.post("/v1/messages", json=_msg(**{"from": "news@news.example.com"}, to="reader@example.net",
                                                   stream="marketing"))
    assert _problems(refused)[0]["code"] == "suppressed"
    assert httpx.post(url, content=b"List-Unsubscribe=One-Click").status_code == 200  # again: still 200


def test_one_click_answers_500_when_the_suppression_cannot_be_committed(fleet: Fleet, tmp_path: Path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    service, _ = _service(fleet, f"sqlite:///{folder / 'sender.db'}")
    with serve(create_app(service)) as url:
        service.store.close()
        shutil.rmtree(folder)
        response = httpx.post(f"{url}/v1/unsubscribe/{_token()}", content=b"List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 500 and "have been unsubscribed" not in response.text


def test_unsubscribe_refuses_bad_tokens_and_bodies(api: Api) -> None:
    good = _token()
    forged = make_token("another-key-0123456789abcdef", tenant="sos-expat", address="victim@example.net",
                        list_id="marketing")
    with api.client() as c:
        for token in ("nonsense", forged, good[:-2]):
            assert c.get(f"/v1/unsubscribe/{token}").status_code == 404
            assert c.post(f"/v1/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click").status_code == 404
        assert c.post(f"/v1/unsubscribe/{good}", content=b"List-Unsubscribe=Yes").status_code == 400
        assert c.post(f"/v1/unsubscribe/{good}", content=b"x" * 100_000).status_code == 413
    assert api.service.store.suppressions.count() == 0


# -- quotas ------------------------------------------------------------------------------------


def test_quotas_match_the_counters(api: Api, fleet: Fleet) -> None:
    tenant = fleet.tenant("sos-expat")
    with api.client("sos-expat/app") as c:
        assert c.post("/v1/messages", json={"messages": [_msg(to=f"u{i}@example.net") for i in range(3)]}
                      ).status_code == 202
    store, pacer = api.service.store, api.service.pacer
    for message in store.claim("test-worker", 10):
        granted = pacer.reserve("test-worker", message)
        assert granted.ip == "203.0.113.21"  # type: ignore[union-attr]  # the only transactional IP
        CLOCK.step(60)  # past the IP's next paced send
    store.counters.ensure(LockScope((("ses", "eu-north-1", TODAY),), (), schedule=False))
    with store.transaction() as conn:
        conn.execute(update(daily_counters).where(daily_counters.c.kind == "ses").values(sent=1234))
    with api.client("sos-expat/app") as c:
        report = c.get("/v1/quotas/sos-expat").json()
    assert report["tenant"] == "sos-expat" and report["day"] == "2026-11-25"
    asked = datetime.datetime.fromtimestamp(CLOCK.now, datetime.UTC)
    # 40,000 a day spent at one send every 86,400 / 40,000 s with an hour's worth (1/24) at once; the three
    # transactional sends a minute apart spent it and it refilled
    assert report["quota"] == {"daily_quota": 40000, "sent": 3, "remaining": 39997, "pace": {
        "interval_seconds": 2.16, "burst": 1667, "in_hand": 1667,
        "next_send_at": asked.isoformat().replace("+00:00", "Z")}}
    assert report["ses"] == {"region": "eu-north-1", "daily_quota": 50000, "sent": 1234, "remaining": 48766,
                             "max_send_rate": 14.0, "warnings": [],  # the account not read: fleet.yaml's limits
                             "share": None, "fair_share": None, "tenant_sent": None, "kept_for_others": None}
    # globex and initech share the account's quota (one stream each through SES), equal shares; at 12:03 UTC
    # half of the day has passed: of initech's 25,000, 12,500 minus what it sent (12) is kept for it
    store.counters.ensure(LockScope((("sesshare", "globex", TODAY), ("sesshare", "initech", TODAY)), (),
                                    schedule=False))
    with store.transaction() as conn:
        conn.execute(update(daily_counters).where(daily_counters.c.kind == "sesshare",
                                                  daily_counters.c.key == "globex").values(sent=40))
        conn.execute(update(daily_counters).where(daily_counters.c.kind == "sesshare",
                                                  daily_counters.c.key == "initech").values(sent=12))
    with api.client("globex/billing") as c:
        shared = c.get("/v1/quotas/globex").json()["ses"]
    elapsed = (CLOCK.now % 86400) / 86400
    assert (shared["share"], shared["fair_share"], shared["tenant_sent"]) == (1, 25000.0, 40)
    assert shared["kept_for_others"] == int(25000 * (1 - elapsed) - 12)
    by_ip = {ip["address"]: ip for ip in report["ips"]}
    assert set(by_ip) == {ip.address for ip in tenant.ips}
    first = by_ip["203.0.113.21"]
    plan = fleet.plans["standard-45d"]
    assert (first["plan"], first["plan_day"], first["state"], first["held_days"]) == \
        ("standard-45d", 24, "warming", 0)  # started 2026-11-02: the 25th is day 24
    assert first["daily_cap"] == plan.daily_cap(24) and first["hourly_cap"] == plan.hourly_cap(24)
    assert (first["sent"], first["remaining"]) == (3, plan.daily_cap(24) - 3)
    hourly = plan.hourly_cap(24)
    assert (first["hour_sent"], first["hour_remaining"]) == (3, hourly - 3)  # 12:00-12:03, this clock hour
    pace = first["pace"]
    assert pace["interval_seconds"] == 3600 / hourly and pace["burst"] == math.ceil(hourly * 60 / 3600)
    assert 0 <= pace["in_hand"] <= pace["burst"]
    assert (datetime.datetime.fromisoformat(pace["next_send_at"]) == asked) == (pace["in_hand"] > 0)
    third = by_ip["203.0.113.23"]  # cautious-3w from 2026-11-20: day 6, 500 a day, nothing sent
    assert (third["plan_day"], third["daily_cap"], third["sent"], third["remaining"]) == (6, 500, 0, 500)
    with Store(api.db_url, create=False).reading() as conn:  # the counters the report read, independently
        assert conn.execute(select(func.sum(daily_counters.c.sent)).where(
            daily_counters.c.kind == "ip", daily_counters.c.key == "203.0.113.21")).scalar() == 3


def test_the_quota_api_says_whether_n_messages_can_go_today_and_by_when(api: Api, fleet: Fleet) -> None:
    """At 12:00 UTC, sos-expat's transactional mail has one IP (standard-45d, day 24): it spends its hourly
    ceiling as a steady rate with a minute's burst, within its daily cap; globex's marketing goes by SES."""
    plan = fleet.plans["standard-45d"]
    daily, hourly = plan.daily_cap(24), plan.hourly_cap(24)
    interval, burst = 3600 / hourly, max(1, -(-hourly * plan.burst_seconds // 3600))
    assert plan.burst_seconds == 60
    noon = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    with api.client("sos-expat/app") as c:
        few = c.get("/v1/quotas/sos-expat", params={"stream": "transactional", "messages": burst + 10}).json()
        many = c.get("/v1/quotas/sos-expat", params={"stream": "transactional", "messages": 10_000_000}).json()
        refusals = [c.get("/v1/quotas/sos-expat", params=params) for params in (
            {"stream": "transactional"}, {"messages": 5}, {"stream": "newsletter", "messages": 5},
            {"stream": "transactional", "messages": 0}, {"stream": "x" * 33, "messages": 5})]
    assert few["forecast"]["route"] == "pmta" and few["forecast"]["today"] == burst + 10
    assert few["forecast"]["all_today"] and few["forecast"]["limited_by"] is None
    by = datetime.datetime.fromisoformat(few["forecast"]["by"])
    assert by == noon + datetime.timedelta(seconds=math.ceil(10 * interval))  # the burst at once, then one each
    capacity = min(daily, int(43200 / interval) + burst)  # half a day at the steady rate, within the day's cap
    assert (many["forecast"]["today"], many["forecast"]["all_today"]) == (capacity, False)
    assert "warmup caps" in many["forecast"]["limited_by"]
    assert few["ips"] == many["ips"] and "forecast" in few and few["forecast"]["messages"] == burst + 10
    assert [r.status_code for r in refusals] == [422] * 5
    assert "sends no 'newsletter' stream" in refusals[2].text
    with api.client("globex/billing") as c:
        ses = c.get("/v1/quotas/globex", params={"stream": "marketing", "messages": 100}).json()["forecast"]
    assert (ses["route"], ses["today"], ses["all_today"]) == ("ses", 100, True)
    assert datetime.datetime.fromisoformat(ses["by"]) == noon + datetime.timedelta(seconds=math.ceil(99 / 14))


class _Events:
    """A stand-in for ``mailplane.sender.events.ingest.Events``: the two calls the API makes of it."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, str | None]] = []

    def held_days(self, tenant: str, ip: str, day: datetime.date) -> int:
        return 2 if (tenant, ip, day) == ("sos-expat", "203.0.113.23", TODAY) else 0

    def override(self, tenant: str, ip: str, day: datetime.date) -> None:
        return None

    def handle_sns(self, body: bytes, message_type: str | None) -> tuple[int, dict[str, Any]]:
        self.deliveries.append((body, message_type))
        return 202, {"handled": message_type}


def test_held_days_slow_the_plan_in_the_report(api: Api) -> None:
    api.service.events = _Events()
    with api.client("sos-expat/app") as c:
        report = c.get("/v1/quotas/sos-expat").json()
    held = {ip["address"]: ip for ip in report["ips"]}["203.0.113.23"]
    assert (held["held_days"], held["plan_day"], held["daily_cap"]) == (2, 4, 200)  # day 4 of cautious-3w


# -- SES webhook and limits ---------------------------------------------------------------------


def test_ses_webhook_is_503_without_events_and_delegated_with_them(api: Api) -> None:
    body = b'{"Type": "Notification", "Message": "{}"}'
    headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}
    with api.client() as c:
        response = c.post("/v1/webhooks/ses", content=body, headers=headers)
        assert response.status_code == 503 and response.json()["error"]
        events = _Events()
        api.service.events = events
        response = c.post("/v1/webhooks/ses", content=body, headers=headers)
    assert (response.status_code, response.json()) == (202, {"handled": "Notification"})
    assert events.deliveries == [(body, "Notification")]


def test_oversized_bodies_get_413(api: Api) -> None:
    huge = b'{"messages": [' + b" " * MAX_REQUEST_BYTES + b"]}"
    with api.client("sos-expat/app") as c:
        declared = c.post("/v1/messages", content=huge, headers={"Content-Type": "application/json"})
        chunked = c.post("/v1/messages", content=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                         headers={"Content-Type": "application/json"})
    for response in (declared, chunked):
        assert response.status_code == 413 and response.json()["problems"][0]["code"] == "too_large"
    assert api.stored() == []


def test_stats_give_per_day_and_route_what_the_guard_judges(api: Api) -> None:
    with api.client("sos-expat/app") as c:
        assert c.post("/v1/messages", json={"messages": [_msg(to=f"s{i}@example.net") for i in range(4)]}
                      ).status_code == 202
    store, pacer = api.service.store, api.service.pacer
    claimed = store.claim("w", 10)
    for message in claimed[:3]:  # the fourth is found suppressed before it is paced, as the worker does
        assert isinstance(pacer.reserve("w", message), Granted)
        CLOCK.step(60)  # past the IP's next paced send
    assert store.complete_many("w", [(m.id, "sent", None) for m in claimed[:3]]
                               + [(claimed[3].id, "suppressed", "recipient suppressed")]) == 4
    store.outcomes.record("sos-expat", "203.0.113.21", {"bounced": 1, "delivered": 2, "deferred": 1})
    with api.client("sos-expat/app") as c:
        report = c.get("/v1/stats/sos-expat?days=3").json()
        assert c.get("/v1/stats/globex").status_code == 404  # another tenant's numbers are not this key's
        assert c.get("/v1/stats/sos-expat?days=0").status_code == 422
    # a suppressed message was kept back before it took a route: its own row, `-`, out of the rates
    assert report["routes"] == [
        {"day": "2026-11-25", "route": "-", "sent": 0, "delivered": 0, "bounced": 0, "complained": 0, "deferred": 0,
         "suppressed": 1, "bounce_rate": None, "complaint_rate": None},
        {"day": "2026-11-25", "route": "203.0.113.21", "sent": 3, "delivered": 2, "bounced": 1, "complained": 0,
         "deferred": 1, "suppressed": 0, "bounce_rate": 1 / 3, "complaint_rate": 0.0}]
    assert report["guard"]["bounce_rate"] == 0.03 and report["days"] == 3
