"""An asyncio server on a loopback port, in its own thread and event loop: what the test SMTP servers share.

The SMTP sink and the PowerMTA stand-in each give the protocol factory; this starts it, reports the
port (``port=0`` picks a free one), and stops it with every task it started cancelled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Self


class LoopServer:
    """Subclasses give :meth:`protocol` and a ``name`` for the thread and errors."""

    name = "loop server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    def protocol(self) -> Callable[[], asyncio.BaseProtocol]:
        """The factory of one connection's protocol (called once, on the server's loop)."""
        raise NotImplementedError

    async def _start(self) -> None:
        self._server = await self._loop.create_server(self.protocol(), self.host, self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
