"""Why mailplane did not take a request: the one refusal both front ends raise and render their way.

The HTTP API answers it as ``{"error", "problems"}`` with its status (``mailplane.sender.front.api.errors``);
the SMTP listener as a reply line (``mailplane.sender.front.smtp``).  Kept apart from both so the
queueing code they share (``mailplane.sender.front.intake``) depends on neither.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with its HTTP ``status``, a sentence, and the problems (``index``, ``field``, ``code``,
    ``message``) that caused it."""

    def __init__(self, status: int, message: str, problems: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.problems, self.headers = status, message, problems or [], headers
