"""``POST /v1/messages`` and ``GET /v1/messages/{id}``: queue mail for the key's tenant, and see where it stands.

A submission is all or nothing: every message is checked (``mailplane.sender.core.submit``), templates
render in bounded worker processes, suppressed recipients are refused, and the batch is queued
in one committed transaction before the 202.  Another tenant's message is a 404, not a 403, so
ids cannot be probed across tenants.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from mailplane.sender.core.submit import (
    MAX_BATCH,
    Checked,
    MessageIn,
    Problem,
    SubmitBody,
    check_message,
)
from mailplane.sender.core.templating import Rendered, TemplateProblems
from mailplane.sender.front.api.deps import Authenticated, Caller, ServiceDep
from mailplane.sender.front.api.errors import ApiError, fails
from mailplane.sender.front.api.limits import MAX_REQUEST_BYTES
from mailplane.sender.front.intake import queue_checked
from mailplane.sender.front.render_pool import RenderRefused
from mailplane.sender.front.tenant_budget import TenantIntake
from mailplane.sender.service import Service

router = APIRouter(tags=["messages"])

MESSAGE_ID = re.compile(r"[0-9]{1,18}")
"""A message id in a path: ASCII digits, within a signed 64-bit integer."""


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


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


@router.post("/v1/messages", status_code=202, response_model=Queued | QueuedBatch,
             responses=fails({401: "missing or invalid API key",
                              409: "an idempotency key already used for another message: nothing queued; the "
                              "problem's `original_id` names that message; or the tenant or stream is being "
                              "drained (code `draining`)",
                              413: f"request body over {MAX_REQUEST_BYTES} bytes",
                              415: "the body is not `Content-Type: application/json`",
                              422: f"a problem in any message (or over {MAX_BATCH} of them): nothing queued; "
                              "`problems` lists each with its index"}))
async def submit(who: Authenticated, body: Annotated[SubmitBody, Body()], service: ServiceDep,
                 request: Request) -> Queued | QueuedBatch:
    """Queue one message, or a batch of at most 500, all or nothing.

    Suppressed recipients are refused here (problem code `suppressed`) rather than queued.
    Templates render in bounded worker processes (the config's `render` budgets): one over its
    CPU, memory or time budget is a 422 with code `render_budget`, and nothing keeps running.
    The same idempotency key with the same message returns the first id (`duplicate`); with
    another message it is a 409 naming that id.  A tenant has at most `max_requests_per_tenant`
    submissions (and `max_request_bytes_per_tenant` bytes) being worked on at once; its next one
    waits its turn, and no other tenant's waits on them.
    """
    items = [body] if isinstance(body, MessageIn) else body.messages
    intake: TenantIntake = request.app.state.intake
    async with intake.hold(who.tenant.name, len(await request.body())):
        rendered, refused = await _render(service, items)
        queued = await run_in_threadpool(_accept, service, who, items, rendered, refused)
    return queued[0] if isinstance(body, MessageIn) else QueuedBatch(messages=queued)


async def _render(service: Service, items: list[MessageIn]) -> tuple[dict[int, Rendered | TemplateProblems],
                                                                     list[Problem]]:
    """Each templated message's render (or its template problems), and the renders refused for their budget."""
    rendered: dict[int, Rendered | TemplateProblems] = {}
    refused: list[Problem] = []
    if not any(m.template is not None for m in items):
        return rendered, refused
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
    return rendered, refused


def _checked(service: Service, who: Caller, items: list[MessageIn], rendered: dict[int, Rendered | TemplateProblems],
             refused: list[Problem]) -> tuple[list[tuple[int, Checked]], list[Problem]]:
    """The messages that pass every check, and the problems of the others (suppressions included)."""
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
    return checked, problems


def _accept(service: Service, who: Caller, items: list[MessageIn], rendered: dict[int, Rendered | TemplateProblems],
            refused: list[Problem]) -> list[Queued]:
    """Check, then queue all in one committed transaction, or raise the 422 / 409 that says why not."""
    checked, problems = _checked(service, who, items, rendered, refused)
    results = queue_checked(service, who.tenant.name, who.sender, checked, problems)
    return [Queued(id=str(r.id), status="queued" if r.created else "duplicate") for r in results]


@router.get("/v1/messages/{message_id}", response_model=MessageStatus,
            responses=fails({401: "missing or invalid API key",
                             404: "no such message for this key's tenant (or an id not of 1 to 18 ASCII digits)"}))
def message_status(who: Authenticated, message_id: str, service: ServiceDep) -> MessageStatus:
    """Where a message stands; only the keys of the tenant that queued it see it."""
    # ASCII digits only: `³` and `١` are digits to str.isdigit
    message = service.store.get(int(message_id)) if MESSAGE_ID.fullmatch(message_id) else None
    if message is None or message.tenant != who.tenant.name:
        raise ApiError(404, "no such message")
    return MessageStatus.model_validate({
        "id": str(message.id), "state": message.state, "stream": message.stream, "from": message.from_addr,
        "to": message.to_addr, "attempts": message.attempts, "transport": message.transport, "ip": message.ip,
        "last_error": message.last_error, "created_at": _utc(message.created_at),
        "updated_at": _utc(message.updated_at)})
