"""``GET|POST /v1/unsubscribe/{token}``: RFC 8058 one-click unsubscription, no authentication.

The signed token is the credential (``mailplane.sender.core.unsubscribe.respond`` decides); the
suppression is committed before the 200 goes out (500 if it cannot be).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from mailplane.sender.core import unsubscribe
from mailplane.sender.front.api.deps import ServiceDep

router = APIRouter(tags=["unsubscribe"])
PATH = unsubscribe.PATH_PREFIX + "{token}"


async def one_click(token: str, request: Request, service: ServiceDep) -> Response:
    body = await request.body() if request.method == "POST" else b""
    answer = unsubscribe.respond(request.method, token, keys=service.config.unsubscribe_keys,
                                 content_type=request.headers.get("content-type"), body=body)
    if answer.unsubscribe is not None:
        sub = answer.unsubscribe
        try:
            added = await run_in_threadpool(service.store.suppress, sub.tenant, sub.address, "unsubscribe", "one-click")
        except Exception:  # the promise is "unsubscribed": never say it unless it is committed
            return Response("Unsubscribing failed; please try again.\n", status_code=500,
                            media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})
        if added:
            service.metrics.suppressed.labels(sub.tenant, "unsubscribe").inc()
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


@router.get(PATH, response_class=HTMLResponse,
            responses={404: {"description": "bad token (whatever is wrong with it)"}})
async def unsubscribe_page(token: str, request: Request, service: ServiceDep) -> Response:
    """A confirmation page whose form POSTs the one-click body; a GET never unsubscribes (link scanners)."""
    return await one_click(token, request, service)


router.add_api_route(PATH, one_click, methods=["HEAD"], include_in_schema=False)


@router.post(PATH, response_class=PlainTextResponse,
             responses={400: {"description": "the body is not `List-Unsubscribe=One-Click`"},
                        404: {"description": "bad token"},
                        500: {"description": "the suppression could not be committed"}})
async def unsubscribe_one_click(token: str, request: Request, service: ServiceDep) -> Response:
    """RFC 8058 one-click: with the body `List-Unsubscribe=One-Click`, suppresses the address at once.

    No authentication, cookie or redirect: the signed token is the credential.  200 plain text.
    """
    return await one_click(token, request, service)
