"""The sender service's HTTP API: ``create_app(service)`` builds the FastAPI application.

Routes (every error is JSON ``{"error": str, "problems": [{"message": ..., ...}]}``):

* ``GET /healthz`` 200 / 503: a trivial database read, so a load balancer drops an instance that
  lost its database rather than one that merely runs.
* ``GET /metrics``: Prometheus exposition of the instance's registry.
* ``POST /v1/messages`` (Bearer key) 202 / 401 / 413 / 422: one message or ``{"messages": [...]}``
  (at most :data:`~mailplane.sender.submit.MAX_BATCH`), checked by ``submit``, all queued in one
  committed transaction or none.
* ``GET /v1/messages/{id}`` (Bearer key) 200 / 404: another tenant's message is a 404, not a
  403, so ids cannot be probed across tenants.
* ``GET /v1/quotas/{tenant}`` (Bearer key of that tenant) 200 / 404.
* ``GET|POST /v1/unsubscribe/{token}`` (no auth): RFC 8058, decided by ``unsubscribe.respond``;
  the suppression is committed before the 200 goes out (500 if it cannot be).
* ``POST /v1/webhooks/ses``: SNS deliveries, handed raw to ``service.events`` (503 without it).

Handlers that touch the database are plain ``def``: FastAPI runs them in its thread pool, so a
slow commit never blocks the event loop.  Request bodies are bounded before anything parses
them (:class:`BodyLimit`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import anyio
from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailplane.model.tenant import Tenant
from mailplane.sender import unsubscribe
from mailplane.sender.quotas import QuotaReport, quota_report
from mailplane.sender.render_pool import RenderRefused
from mailplane.sender.service import Service
from mailplane.sender.store import IdempotencyConflict, messages
from mailplane.sender.submit import (
    MAX_BATCH,
    Checked,
    MessageIn,
    Problem,
    SubmitBody,
    check_message,
    suppression_problems,
)
from mailplane.sender.templating import Rendered, TemplateProblems

MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""Largest request body anywhere; a batch of big messages has to be split."""
MAX_WEBHOOK_BYTES = 1024 * 1024
"""SNS messages are at most 256 KB; their JSON envelope escapes and signs them."""
MAX_UNSUBSCRIBE_BYTES = unsubscribe.MAX_BODY_BYTES + 1
"""One byte over what ``respond`` accepts, so it (not this layer) says why a long body is refused."""

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _version() -> str:
    try:
        return version("mailplane")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def error(status: int, message: str, problems: list[dict[str, Any]] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the API."""
    return JSONResponse({"error": message, "problems": problems or []}, status_code=status, headers=headers)


def body_limit_for(path: str) -> int:
    if path.startswith(unsubscribe.PATH_PREFIX):
        return MAX_UNSUBSCRIBE_BYTES
    if path.startswith("/v1/webhooks/"):
        return MAX_WEBHOOK_BYTES
    return MAX_REQUEST_BYTES


class BodyLimit:
    """Read at most the path's limit of the body, then replay it to the app; 413 past it.

    Checked on ``Content-Length`` first and on the bytes actually received as well (chunked
    uploads declare no length), so no handler ever holds more than the limit in memory.
    """

    def __init__(self, app: AsgiApp, limit_for: Callable[[str], int] = body_limit_for) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> AsgiMessage:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as Starlette expects

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error(413, "request body too large",
                         [{"field": "body", "code": "too_large", "message": f"at most {limit} bytes"}])
        await response(scope, receive, send)


JSON_ROUTES = ("/v1/messages",)
"""POST routes whose body is JSON: any other content type is a 415 before anything parses it."""


class JsonOnly:
    """415 for a body that does not say it is JSON: ``curl -d`` sends form encoding by default, and a
    422 about "invalid JSON" would not tell the client that the header is what is missing."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope["path"] in JSON_ROUTES:
            raw = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
            media = raw.split(";", 1)[0].strip().lower()
            if media != "application/json":
                response = error(415, "the body must be JSON", [{
                    "field": "body", "code": "unsupported_media_type",
                    "message": f"send Content-Type: application/json (got {raw or 'none'!r})"}])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- responses (for the OpenAPI document as much as for the code) -------------------------


MESSAGE_ID = re.compile(r"[0-9]{1,18}")
"""A message id in a path: ASCII digits, within a signed 64-bit integer."""


class ProblemOut(BaseModel):
    index: int | None = Field(None, description="The message's position in the request (0 for a single one).")
    field: str | None = Field(None, description="e.g. `from`, `to`, `template.text`, `headers`.")
    code: str | None = Field(None, description="e.g. `from_not_allowed`, `suppressed`, `undefined_variable`.")
    message: str
    original_id: str | None = Field(None, description="With `idempotency_conflict`: the message the key belongs to.")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer of the JSON routes."""

    error: str
    problems: list[ProblemOut]


def _fails(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses (status to description), each with the error body."""
    return {status: {"model": ErrorBody, "description": text} for status, text in described.items()}


class Queued(BaseModel):
    id: str = Field(description="The message's id (decimal string).")
    status: str = Field(description="`queued`, or `duplicate` when the idempotency key matched an earlier message.")


class QueuedBatch(BaseModel):
    messages: list[Queued]


class MessageStatus(BaseModel):
    id: str
    state: str = Field(description="queued, sending, sent, failed or suppressed.")
    stream: str
    from_: str = Field(alias="from")
    to: str
    attempts: int
    transport: str | None = Field(description="`ses` or `pmta` once a send was reserved.")
    ip: str | None
    last_error: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclass(frozen=True)
class Caller:
    """Who an API key belongs to."""

    tenant: Tenant
    sender: str


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer mpk_...`, one key per tenant sender.")


class _Unauthorized(Exception):
    pass


def caller(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The dependency of every authenticated route: the key's tenant and sender, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _Unauthorized
    service: Service = request.app.state.service
    found = service.authenticate(credentials.credentials)
    if found is None:
        raise _Unauthorized
    return Caller(*found)


Authenticated = Annotated[Caller, Depends(caller)]


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _known_keys(service: Service, who: Caller, keys: list[str]) -> set[str]:
    """Those of ``keys`` this sender already used (the store's idempotency scope: tenant and sender)."""
    if not keys:
        return set()
    with service.store.reading() as conn:
        rows = conn.execute(select(messages.c.idempotency_key).where(
            messages.c.tenant == who.tenant.name, messages.c.sender == who.sender,
            messages.c.idempotency_key.in_(sorted(set(keys)))))
        return {row.idempotency_key for row in rows}


def _validation_problems(err: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error locations (``body, batch, messages, 3, to``) as the API's index and field."""
    problems = []
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ())]
        if loc and loc[0] == "body":
            loc = loc[1:]
        index: int | None = None
        if loc[:1] == ["single"]:
            loc, index = loc[1:], 0
        elif loc[:2] == ["batch", "messages"] and len(loc) > 2 and loc[2].isdigit():
            loc, index = loc[3:], int(loc[2])
        elif loc[:1] == ["batch"]:
            loc = loc[1:]
        code, message = item.get("type", "invalid"), item.get("msg", "invalid")
        if code == "json_invalid":  # the location is a character offset, not a field
            loc, message = [], f"{message} at character {loc[0] if loc else 0}"
        problems.append({"index": index, "field": ".".join(loc) or "body", "code": code, "message": message})
    return problems


def create_app(service: Service) -> FastAPI:
    """The API of one instance over ``service`` (tests build several, each with its own database)."""
    app = FastAPI(
        title="mailplane sender",
        version=_version(),
        description="Submit mail for a tenant of the fleet; every message is paced by its IP's warmup plan, "
        "the tenant's quota and the SES account's limits.",
    )
    app.state.service = service

    # -- errors ------------------------------------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid request: nothing was queued", _validation_problems(exc))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, _exc: Exception) -> JSONResponse:
        # Uvicorn logs the traceback; the client gets the API's shape and no internals.
        return error(500, "internal error")

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_request: Request, _exc: _Unauthorized) -> JSONResponse:
        return error(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})

    # -- operations ------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        """200 when the database answers a trivial read, 503 otherwise."""
        try:
            with service.store.reading() as conn:
                conn.execute(select(1)).scalar()
        except Exception as exc:  # any driver error means "not ready"; its text goes nowhere public
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format; the queue and IP gauges are read from the database at each scrape."""
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- messages --------------------------------------------------------------------------

    @app.post("/v1/messages", status_code=202, tags=["messages"], response_model=Queued | QueuedBatch,
              responses=_fails({401: "missing or invalid API key",
                                409: "an idempotency key already used for another message: nothing queued; the "
                                "problem's `original_id` names that message",
                                413: f"request body over {MAX_REQUEST_BYTES} bytes",
                                415: "the body is not `Content-Type: application/json`",
                                422: f"a problem in any message (or over {MAX_BATCH} of them): nothing queued; "
                                "`problems` lists each with its index"}))
    async def submit(who: Authenticated, body: Annotated[SubmitBody, Body()]) -> JSONResponse:
        """Queue one message, or a batch of at most 500, all or nothing.

        Suppressed recipients are refused here (problem code `suppressed`) rather than queued.
        Templates render in bounded worker processes (the config's `render` budgets): one over its
        CPU, memory or time budget is a 422 with code `render_budget`, and nothing keeps running.
        The same idempotency key with the same message returns the first id (`duplicate`); with
        another message it is a 409 naming that id.
        """
        items = [body] if isinstance(body, MessageIn) else body.messages
        rendered: dict[int, Rendered | TemplateProblems] = {}
        refused: list[Problem] = []
        if any(m.template is not None for m in items):
            pool = await run_in_threadpool(service.renderer)
            for i, m in enumerate(items):
                if m.template is None:
                    continue
                t = m.template
                try:
                    rendered[i] = await anyio.to_thread.run_sync(
                        pool.render, t.subject, t.text, t.html, m.variables or {}, limiter=service.render_limiter)
                except TemplateProblems as err:
                    rendered[i] = err
                except RenderRefused as err:
                    refused.append(Problem(i, "template", "render_budget", str(err)))
        return await run_in_threadpool(_accept, who, body, items, rendered, refused)

    def _accept(who: Caller, body: Any, items: list[MessageIn], rendered: dict[int, Rendered | TemplateProblems],
                refused: list[Problem]) -> JSONResponse:
        problems: list[Problem] = list(refused)
        skip = {p.index for p in refused}
        checked: list[tuple[int, Checked]] = []
        for i, message in enumerate(items):
            if i in skip:
                continue
            result = check_message(i, message, who.tenant, who.sender, service.fleet, rendered.get(i))
            if isinstance(result, Checked):
                checked.append((i, result))
            else:
                problems.extend(result)
        # A retry of a message already queued (same idempotency key) gets its "duplicate" answer even if
        # the recipient was suppressed since: the first request's outcome is the one that counts.
        retries = _known_keys(service, who, [c.new.idempotency_key for _, c in checked if c.new.idempotency_key])
        fresh = [(i, c) for i, c in checked if c.new.idempotency_key not in retries]
        for stream in sorted({c.new.stream for _, c in fresh}):
            same = [(i, c) for i, c in fresh if c.new.stream == stream]
            suppressed = service.store.suppressed(who.tenant.name, [c.new.to_addr for _, c in same], stream=stream)
            problems.extend(suppression_problems(same, suppressed))
        if problems:
            problems.sort(key=lambda p: (p.index or 0, p.field))
            return error(422, "invalid messages: nothing was queued", [p.as_json() for p in problems])
        try:
            results = service.store.enqueue([c.new for _, c in checked])
        except IdempotencyConflict as err:
            index = checked[err.index][0]
            return error(409, f"{err}: nothing was queued", [
                {"index": index, "field": "idempotency_key", "code": "idempotency_conflict", "message": str(err),
                 "original_id": str(err.original) if err.original is not None else None}])
        for (_, c), queued in zip(checked, results, strict=True):
            if queued.created:
                service.metrics.accepted.labels(c.new.tenant, c.new.stream).inc()
        out = [{"id": str(r.id), "status": "queued" if r.created else "duplicate"} for r in results]
        return JSONResponse(out[0] if isinstance(body, MessageIn) else {"messages": out}, status_code=202)

    @app.get("/v1/messages/{message_id}", tags=["messages"], response_model=MessageStatus,
             responses=_fails({401: "missing or invalid API key",
                               404: "no such message for this key's tenant (or an id not of 1 to 18 ASCII digits)"}))
    def message_status(who: Authenticated, message_id: str) -> JSONResponse:
        """Where a message stands; only the keys of the tenant that queued it see it."""
        row = None
        if MESSAGE_ID.fullmatch(message_id):  # ASCII digits only: `³` and `١` are digits to str.isdigit
            with service.store.reading() as conn:
                row = conn.execute(select(messages).where(messages.c.id == int(message_id))).first()
        if row is None or row.tenant != who.tenant.name:
            return error(404, "no such message")
        status = MessageStatus.model_validate({
            "id": str(row.id), "state": row.state, "stream": row.stream, "from": row.from_addr, "to": row.to_addr,
            "attempts": row.attempts, "transport": row.transport, "ip": row.ip, "last_error": row.last_error,
            "created_at": _utc(row.created_at), "updated_at": _utc(row.updated_at)})
        return JSONResponse(status.model_dump(mode="json", by_alias=True))

    # -- quotas ----------------------------------------------------------------------------

    @app.get("/v1/quotas/{tenant}", tags=["quotas"], response_model=QuotaReport,
             responses=_fails({401: "missing or invalid API key", 404: "not this key's tenant"}))
    def quotas(who: Authenticated, tenant: str) -> JSONResponse:
        """Today's caps, counts and what remains, per IP, for the tenant and for the SES account."""
        if tenant != who.tenant.name:
            return error(404, "no such tenant for this key")
        day = service.today()
        events = service.events
        held: dict[str, int] = {}
        overrides = {}
        for ip in who.tenant.ips:
            if events is not None:
                held[ip.address] = int(events.held_days(tenant, ip.address, day))  # type: ignore[attr-defined]
            override = service.override(tenant, ip.address, day)
            if override is not None:
                overrides[ip.address] = override
        report = quota_report(service.fleet, who.tenant, day,
                              lambda kind, key: service.store.counter(kind, key, day),
                              held_days=held, overrides=overrides)
        return JSONResponse(report.model_dump(mode="json"))

    # -- one-click unsubscribe (RFC 8058) ----------------------------------------------

    async def one_click(token: str, request: Request) -> Response:
        body = await request.body() if request.method == "POST" else b""
        answer = unsubscribe.respond(request.method, token, keys=service.config.unsubscribe_keys,
                                     content_type=request.headers.get("content-type"), body=body)
        if answer.unsubscribe is not None:
            sub = answer.unsubscribe
            try:
                added = await run_in_threadpool(service.store.suppress, sub.tenant, sub.address,
                                                "unsubscribe", "one-click")
            except Exception:  # the promise is "unsubscribed": never say it unless it is committed
                return Response("Unsubscribing failed; please try again.\n", status_code=500,
                                media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})
            if added:
                service.metrics.suppressed.labels(sub.tenant, "unsubscribe").inc()
        return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))

    unsubscribe_path = unsubscribe.PATH_PREFIX + "{token}"

    @app.get(unsubscribe_path, tags=["unsubscribe"], response_class=HTMLResponse,
             responses={404: {"description": "bad token (whatever is wrong with it)"}})
    async def unsubscribe_page(token: str, request: Request) -> Response:
        """A confirmation page whose form POSTs the one-click body; a GET never unsubscribes (link scanners)."""
        return await one_click(token, request)

    app.add_api_route(unsubscribe_path, one_click, methods=["HEAD"], include_in_schema=False)

    @app.post(unsubscribe_path, tags=["unsubscribe"], response_class=PlainTextResponse,
              responses={400: {"description": "the body is not `List-Unsubscribe=One-Click`"},
                         404: {"description": "bad token"},
                         500: {"description": "the suppression could not be committed"}})
    async def unsubscribe_one_click(token: str, request: Request) -> Response:
        """RFC 8058 one-click: with the body `List-Unsubscribe=One-Click`, suppresses the address at once.

        No authentication, cookie or redirect: the signed token is the credential.  200 plain text.
        """
        return await one_click(token, request)

    # -- SES events through SNS ------------------------------------------------------------

    @app.post("/v1/webhooks/ses", tags=["events"],
              responses=_fails({400: "not an SNS message this service knows", 403: "the signature or the topic "
                                "is not the fleet's", 413: f"body over {MAX_WEBHOOK_BYTES} bytes",
                                503: "event handling is not attached to this instance"}))
    async def ses_webhook(request: Request) -> JSONResponse:
        """An SNS HTTPS delivery (subscription confirmation or notification), verified by ``events``."""
        events = service.events
        if events is None:
            return error(503, "SES event handling is not running on this instance")
        body = await request.body()
        status, payload = await run_in_threadpool(
            events.handle_sns, body, request.headers.get("x-amz-sns-message-type"))  # type: ignore[attr-defined]
        if status >= 400:  # the API's one error shape
            return error(status, str(payload.get("error", "refused")))
        return JSONResponse(payload, status_code=status)

    app.add_middleware(JsonOnly)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit)  # type: ignore[arg-type]
    return app
