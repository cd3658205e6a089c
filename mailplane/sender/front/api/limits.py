"""Limits every request meets before a route sees it: a bounded body (413) and JSON where JSON is due (415).

Bodies are bounded before anything parses them (:class:`BodyLimit`), per path: the API's routes,
SNS deliveries, one-click unsubscriptions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mailplane.sender.core import unsubscribe
from mailplane.sender.front.api.errors import error

MAX_REQUEST_BYTES = 10 * 1024 * 1024
"""Largest request body anywhere; a batch of big messages has to be split."""
MAX_WEBHOOK_BYTES = 1024 * 1024
"""SNS messages are at most 256 KB; their JSON envelope escapes and signs them."""
MAX_UNSUBSCRIBE_BYTES = unsubscribe.MAX_BODY_BYTES + 1
"""One byte over what ``respond`` accepts, so it (not this layer) says why a long body is refused."""

AsgiScope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
AsgiApp = Callable[[AsgiScope, Receive, Send], Awaitable[None]]


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

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
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
    async def _refuse(scope: AsgiScope, receive: Receive, send: Send, limit: int) -> None:
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

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
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
