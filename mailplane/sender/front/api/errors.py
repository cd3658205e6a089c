"""The API's one error shape, ``{"error": str, "problems": [...]}``, for every 4xx and 5xx it answers.

Routes raise :class:`ApiError`; :func:`install` maps it, FastAPI's own validation and HTTP errors,
and anything unforeseen (a 500 with no internals) to that shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailplane.sender.core.refusal import ApiError

__all__ = ["ApiError", "ErrorBody", "ProblemOut", "error", "fails", "install"]


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



def error(status: int, message: str, problems: list[dict[str, Any]] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape of the API, as a response (for middleware, which cannot raise to a handler)."""
    return JSONResponse({"error": message, "problems": problems or []}, status_code=status, headers=headers)


def fails(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses (status to description), each with the error body."""
    return {status: {"model": ErrorBody, "description": text} for status, text in described.items()}


def validation_problems(err: RequestValidationError) -> list[dict[str, Any]]:
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


def install(app: FastAPI) -> None:
    """Answer every error in the one shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message, exc.problems, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid request: nothing was queued", validation_problems(exc))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, _exc: Exception) -> JSONResponse:
        # Uvicorn logs the traceback; the client gets the API's shape and no internals.
        return error(500, "internal error")
