"""``GET /v1/quotas/{tenant}``: today's caps, counts and what remains, for the key's own tenant."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from mailplane.sender.core.forecast import QuotaAnswer, forecast
from mailplane.sender.core.gates import quota_pace_key
from mailplane.sender.core.quotas import quota_report
from mailplane.sender.front.api.deps import Authenticated, ServiceDep
from mailplane.sender.front.api.errors import ApiError, fails

router = APIRouter(tags=["quotas"])


@router.get("/v1/quotas/{tenant}", response_model=QuotaAnswer,
            responses=fails({401: "missing or invalid API key", 404: "not this key's tenant",
                             422: "a stream the tenant does not send, or `messages` without `stream`"}))
def quotas(who: Authenticated, tenant: str, service: ServiceDep,
           stream: Annotated[str | None, Query(max_length=32, description="With `messages`: the stream asked about.")]
           = None,
           messages: Annotated[int | None, Query(ge=1, le=100_000_000, description="Can this many messages of "
                                                 "`stream` go today, and by when.")] = None) -> QuotaAnswer:
    """Today's caps, counts and what remains, per IP, for the tenant and for the SES account; with `stream` and
    `messages`, whether that many can go today and by when."""
    if tenant != who.tenant.name:
        raise ApiError(404, "no such tenant for this key")
    if (stream is None) != (messages is None):
        raise ApiError(422, "ask with both `stream` and `messages`, or neither")
    if stream is not None and stream not in who.tenant.streams:
        raise ApiError(422, f"{tenant} sends no {stream!r} stream (streams: {', '.join(who.tenant.streams)})")
    day = service.today()
    events = service.events
    held: dict[str, int] = {}
    overrides = {}
    for ip in who.tenant.ips:
        if events is not None:
            held[ip.address] = int(events.held_days(tenant, ip.address, day))
        override = service.override(tenant, ip.address, day)
        if override is not None:
            overrides[ip.address] = override
    now = service.clock()
    hour = int(now // 3600)
    counters = service.store.counters
    report = quota_report(service.fleet, who.tenant, day, lambda kind, key: service.store.counter(kind, key, day),
                          held_days=held, overrides=overrides, in_force=service.store.pauses.in_force(),
                          ses_limits=service.pacer.limits(),
                          not_deployed={ip: why for t, ip, _, _, why in service.undeployed() if t == tenant},
                          ses_shares=service.pacer.ses_limits(),
                          hour_counter=lambda ip: counters.hour_sent("ip", ip, hour),
                          paces=counters.pace_states([ip.address for ip in who.tenant.ips]
                                                     + [quota_pace_key(tenant)]), now=now)
    answer = QuotaAnswer(**report.model_dump())
    if stream is not None and messages is not None:
        answer.forecast = forecast(service.fleet, who.tenant, report, stream, messages,
                                   datetime.datetime.fromtimestamp(now, datetime.UTC))
    return answer
