"""The routes' dependencies: the instance's service, and the caller an API key authenticates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailplane.model.tenant import Tenant
from mailplane.sender.front.api.errors import ApiError
from mailplane.sender.service import Service


def get_service(request: Request) -> Service:
    """The service this application was built over (``create_app``): one per instance, several in tests."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


@dataclass(frozen=True)
class Caller:
    """Who an API key belongs to."""

    tenant: Tenant
    sender: str


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer mpk_...`, one key per tenant sender.")


def unauthorized() -> ApiError:
    return ApiError(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


def caller(service: ServiceDep,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The dependency of every authenticated route: the key's tenant and sender, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    found = service.authenticate(credentials.credentials)
    if found is None:
        raise unauthorized()
    return Caller(*found)


Authenticated = Annotated[Caller, Depends(caller)]
