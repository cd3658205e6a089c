"""A real HTTP endpoint on loopback that keeps what is POSTed to it: an alert webhook, an SNS subscriber.

The sender's alerts and SNS's deliveries are plain HTTP POSTs; the tests read what arrived here
rather than what the code meant to send.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Answers every POST with 204 and keeps its body, raw and as JSON (``None`` where it is not JSON)."""

    def __init__(self, path: str = "/alerts") -> None:
        self.raw: list[bytes] = []
        self.bodies: list[Any] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                outer.raw.append(body)
                outer.bodies.append(parsed)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}{path}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def kinds(self) -> list[str]:
        """The ``kind`` of each alert received, in order."""
        return [body["kind"] for body in self.bodies if isinstance(body, dict) and "kind" in body]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
