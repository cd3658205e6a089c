"""The sender service's HTTP API: ``create_app(service)`` builds the FastAPI application.

One router per resource (``routers/``): messages (``POST /v1/messages``, ``GET /v1/messages/{id}``),
quotas (``GET /v1/quotas/{tenant}``), webhooks (``POST /v1/webhooks/ses``), unsubscribe
(``GET|POST /v1/unsubscribe/{token}``), operations (``GET /healthz``, ``GET /metrics``) and admin
(``/v1/admin/...``: pauses, drains and queues, with operators' own keys).  The
routes get the service and the authenticated caller as dependencies (``deps``), return response
models that FastAPI validates, and raise :class:`~mailplane.sender.front.api.errors.ApiError` for every
4xx, answered in the one error shape ``{"error": str, "problems": [...]}`` (``errors``).  Before a
route sees a request, its body is bounded (413) and a JSON route's content type checked (415)
(``limits``).

Handlers that touch the database are plain ``def`` (or hand their work to a thread): FastAPI runs
them in its thread pool, so a slow commit never blocks the event loop.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from mailplane.sender.front.api import errors
from mailplane.sender.front.api.limits import MAX_REQUEST_BYTES, BodyLimit, JsonOnly
from mailplane.sender.front.api.routers import admin, messages, operations, quotas, stats, unsubscribe, webhooks
from mailplane.sender.front.tenant_budget import TenantIntake
from mailplane.sender.service import Service

__all__ = ["MAX_REQUEST_BYTES", "create_app"]


def _version() -> str:
    try:
        return version("mailplane")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def create_app(service: Service) -> FastAPI:
    """The API of one instance over ``service`` (tests build several, each with its own database)."""
    app = FastAPI(
        title="mailplane sender",
        version=_version(),
        description="Submit mail for a tenant of the fleet; every message is paced by its IP's warmup plan, "
        "the tenant's quota and the SES account's limits.",
    )
    app.state.service = service
    app.state.intake = TenantIntake(service.config.max_requests_per_tenant,
                                    service.config.max_request_bytes_per_tenant)
    errors.install(app)
    for router in (operations.router, messages.router, quotas.router, stats.router, unsubscribe.router,
                   webhooks.router, admin.router, stats.admin_router):
        app.include_router(router)
    app.add_middleware(JsonOnly)  # type: ignore[arg-type]
    app.add_middleware(BodyLimit)  # type: ignore[arg-type]
    return app
