"""``GET /healthz`` and ``GET /metrics``: what a load balancer and Prometheus ask an instance."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from mailplane.sender.front.api.deps import ServiceDep

router = APIRouter(tags=["operations"])


class HealthOut(BaseModel):
    status: str
    error: str | None = None


@router.get("/healthz", response_model=HealthOut, response_model_exclude_none=True,
            responses={503: {"model": HealthOut, "description": "the database does not answer"}})
def healthz(service: ServiceDep, response: Response) -> HealthOut:
    """200 when the database answers a trivial read, 503 otherwise: a load balancer drops an instance that
    lost its database rather than one that merely runs."""
    try:
        service.store.ping()
    except Exception as exc:  # any driver error means "not ready"; its text goes nowhere public
        response.status_code = 503
        return HealthOut(status="unavailable", error=type(exc).__name__)
    return HealthOut(status="ok")


@router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    """Prometheus text format; the queue and IP gauges are read from the database at each scrape."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
