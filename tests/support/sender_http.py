"""Run an ASGI app under a real uvicorn server on a loopback ephemeral port, in a thread.

Tests of the sender's HTTP API (and anything that must talk to it, such as SNS deliveries from
moto) use this rather than an in-process test client, so headers, body limits, chunking and
the thread pool behave as in production.  The socket is bound here, before uvicorn starts, so
the port is known without parsing logs and no other process can take it in between.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


@contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", startup_timeout: float = 10.0) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL, ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                          server_header=False))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as err:  # surfaced in the test thread below
            errors.append(err)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if errors or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start: {errors[0] if errors else 'thread ended'}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {startup_timeout} s")
        time.sleep(0.01)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 10 s")
