"""``POST /v1/webhooks/ses``: SNS deliveries of the tenants' SES events, handed raw to the event side."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from mailplane.model.names import WEBHOOK_PATH
from mailplane.sender.front.api.deps import ServiceDep
from mailplane.sender.front.api.errors import ApiError, fails
from mailplane.sender.front.api.limits import MAX_WEBHOOK_BYTES

router = APIRouter(tags=["events"])


class SnsAck(BaseModel):
    """What the event side answered: ``status`` (ok, confirmed, unsubscribed, ignored) and, for events,
    how many were read and how many addresses they newly suppressed."""

    model_config = ConfigDict(extra="allow")
    status: str | None = None
    events: int | None = None
    suppressed: int | None = None


@router.post(WEBHOOK_PATH, response_model=SnsAck, response_model_exclude_none=True,
             responses=fails({400: "not an SNS message this service knows", 403: "the signature or the topic "
                              "is not the fleet's", 413: f"body over {MAX_WEBHOOK_BYTES} bytes",
                              502: "confirming the subscription failed (SNS sends it again)",
                              503: "event handling is not attached to this instance"}))
async def ses_webhook(request: Request, response: Response, service: ServiceDep) -> SnsAck:
    """An SNS HTTPS delivery (subscription confirmation or notification), verified by the event side."""
    events = service.events
    if events is None:
        raise ApiError(503, "SES event handling is not running on this instance")
    body = await request.body()
    status, payload = await run_in_threadpool(events.handle_sns, body, request.headers.get("x-amz-sns-message-type"))
    if status >= 400:  # the API's one error shape
        raise ApiError(status, str(payload.get("error", "refused")))
    response.status_code = status
    return SnsAck.model_validate(payload)
