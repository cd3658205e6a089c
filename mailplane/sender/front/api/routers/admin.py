"""``/v1/admin/...``: operators pause, resume and drain, and count or cancel queued mail -- with their own keys.

A pause stops sending on a tenant, one of its streams, one of its IPs or a recipient domain (of one
tenant, or of all): queued mail waits, nothing is dropped.  A drain refuses new mail for a tenant or
stream (409 at submission) while what is queued goes out.  Each has a reason (what the quota API,
``/metrics`` and the logs say) and an optional end.  The admin keys are the config's ``admin_keys``:
no sender's key opens these routes.
"""

from __future__ import annotations

import datetime
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from mailplane.sender.core.pauses import PauseRequest, PauseRow
from mailplane.sender.front.api.deps import ServiceDep
from mailplane.sender.front.api.errors import ApiError, fails

router = APIRouter(tags=["admin"])
log = logging.getLogger("mailplane.sender.admin")

_admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminKey",
                           description="`Authorization: Bearer <admin key>`: an operator's key (`admin_keys`).")


def operator(service: ServiceDep,
             credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]) -> str:
    """The dependency of every admin route: the operator's name, or 401."""
    name = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        name = service.authenticate_admin(credentials.credentials)
    if name is None:
        raise ApiError(401, "missing or invalid admin key", headers={"WWW-Authenticate": "Bearer"})
    return name


Operator = Annotated[str, Depends(operator)]


class PauseIn(BaseModel):
    scope: Literal["tenant", "stream", "ip", "domain"]
    tenant: str | None = Field(None, description="The tenant; for a domain, none pauses mail to it from every tenant.")
    key: str | None = Field(None, description="The stream, the IP address or the recipient domain.")
    mode: Literal["pause", "drain"] = Field("pause", description="pause: sending waits; drain: new mail refused.")
    reason: str = Field(min_length=1, max_length=500)
    until: datetime.datetime | None = Field(None, description="When it ends by itself (with a time zone).")


class PauseOut(BaseModel):
    id: int
    scope: str
    tenant: str | None
    key: str
    mode: str
    reason: str
    source: str = Field(description="`operator` (these routes) or `guard` (the tenant guard).")
    until: datetime.datetime | None
    created_at: datetime.datetime

    @classmethod
    def of(cls, row: PauseRow) -> PauseOut:
        return cls(id=row.id, scope=row.scope, tenant=row.tenant, key=row.key, mode=row.mode, reason=row.reason,
                   source=row.source, until=_utc(row.until) if row.until is not None else None,
                   created_at=_utc(row.created_at))


class Resumed(BaseModel):
    id: int
    resumed: bool


class QueueCounts(BaseModel):
    tenant: str
    streams: dict[str, dict[str, int]] = Field(description="Stream to state to messages.")


class CancelIn(BaseModel):
    stream: str | None = Field(None, description="Only this stream's queued mail; none: all the tenant's.")
    reason: str = Field(min_length=1, max_length=500)


class Cancelled(BaseModel):
    tenant: str
    cancelled: int = Field(description="Queued messages cancelled (mail being sent right now goes on).")


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


UNAUTHORIZED = {401: "missing or invalid admin key"}


@router.get("/v1/admin/pauses", response_model=list[PauseOut], responses=fails(UNAUTHORIZED))
def list_pauses(who: Operator, service: ServiceDep) -> list[PauseOut]:
    """The pauses and drains in force, the oldest first."""
    return [PauseOut.of(row) for row in service.store.pauses.active()]


@router.post("/v1/admin/pauses", status_code=201, response_model=PauseOut,
             responses=fails({**UNAUTHORIZED, 422: "a scope, tenant, stream, IP or domain the fleet does not have, "
                              "no reason, or an end in the past"}))
def add_pause(who: Operator, body: PauseIn, service: ServiceDep) -> PauseOut:
    """Pause (or drain) a scope now; sending there stops at each instance's next reservation."""
    if body.until is not None and body.until.tzinfo is None:
        raise ApiError(422, "invalid pause", [{"field": "until", "code": "naive_time",
                                               "message": "give the time zone (e.g. 2026-12-05T08:00:00Z)"}])
    until = body.until.timestamp() if body.until is not None else None
    try:
        request = PauseRequest.checked(service.fleet, scope=body.scope, tenant=body.tenant, key=body.key,
                                       mode=body.mode, reason=body.reason, until=until, now=service.clock())
    except ValueError as err:
        raise ApiError(422, "invalid pause",
                       [{"field": "body", "code": "invalid_pause", "message": str(err)}]) from None
    row = service.store.pauses.add(request, source="operator")
    log.warning("%s: %s %s %s%s by %s: %s", row.mode, row.scope, row.tenant or "*", row.key,
                f" until {_utc(row.until).isoformat()}" if row.until else "", who, row.reason)
    return PauseOut.of(row)


@router.delete("/v1/admin/pauses/{pause_id}", response_model=Resumed,
               responses=fails({**UNAUTHORIZED, 404: "no such pause in force"}))
def resume(who: Operator, pause_id: int, service: ServiceDep) -> Resumed:
    """End a pause or drain now: waiting mail is sent again within a minute."""
    if not service.store.pauses.end(pause_id):
        raise ApiError(404, "no such pause in force")
    log.warning("pause %d resumed by %s", pause_id, who)
    return Resumed(id=pause_id, resumed=True)


@router.get("/v1/admin/queue/{tenant}", response_model=QueueCounts,
            responses=fails({**UNAUTHORIZED, 404: "no such tenant"}))
def queue_counts(who: Operator, tenant: str, service: ServiceDep) -> QueueCounts:
    """The tenant's messages per stream and state."""
    if service.tenant(tenant) is None:
        raise ApiError(404, "no such tenant")
    return QueueCounts(tenant=tenant, streams=service.store.queue_counts(tenant))


@router.post("/v1/admin/queue/{tenant}/cancel", response_model=Cancelled,
             responses=fails({**UNAUTHORIZED, 404: "no such tenant", 422: "a stream the tenant does not send"}))
def cancel(who: Operator, tenant: str, body: CancelIn, service: ServiceDep) -> Cancelled:
    """Cancel the tenant's queued mail (or one stream's): it is never sent, and says why when asked."""
    found = service.tenant(tenant)
    if found is None:
        raise ApiError(404, "no such tenant")
    if body.stream is not None and body.stream not in found.streams:
        raise ApiError(422, "invalid cancel", [{"field": "stream", "code": "unknown_stream",
                                                "message": f"{tenant} sends no {body.stream!r} stream"}])
    n = service.store.cancel_queued(tenant, body.stream, f"{body.reason} (by {who})")
    log.warning("%d queued messages of %s%s cancelled by %s: %s", n, tenant,
                f"/{body.stream}" if body.stream else "", who, body.reason)
    return Cancelled(tenant=tenant, cancelled=n)
