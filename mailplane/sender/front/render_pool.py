"""Template renders with a CPU and a memory budget, in worker processes that can be stopped.

Why processes: a Jinja template is a program.  The sandbox (:mod:`mailplane.sender.core.templating`)
keeps it from reaching Python's internals and bounds what single operations produce, but nested
loops still burn CPU, and a render running in a thread of the API process cannot be stopped: it
holds that thread (and, 48 such requests later, every thread ``/healthz`` needs) until it ends,
and SIGTERM waits for it.  A worker process can be given limits by the kernel and killed.

Each worker:

- runs with ``RLIMIT_AS`` at the memory budget, so an allocation past it fails with MemoryError
  inside the worker, never in the API process;
- arms a CPU-time timer (``ITIMER_VIRTUAL``) for each render, so a render over the CPU budget is
  interrupted in the worker, which then takes the next one;
- is killed by the parent if no answer comes within the wall-clock budget (a render stuck in C code,
  or the worker gone), and a fresh one takes its place.

The API awaits renders through its own small thread limiter (one thread per worker), so hostile
renders queue behind each other, not in front of the health check or of submissions without a
template, and a render that waits longer than ``queue_seconds`` for a worker is refused too.
Closing the pool kills its workers at once, so shutdown never waits for a render.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import select
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailplane.sender.core.templating import Rendered, TemplateProblems

log = logging.getLogger("mailplane.sender.render")


@dataclass(frozen=True)
class RenderBudget:
    """What one render may use (the sender config's ``render`` section)."""

    cpu_seconds: float = 2.0
    memory_mb: int = 512
    """Address space of a worker, the Python interpreter included (about 60 MB of it)."""
    wall_seconds: float = 5.0
    workers: int = 2
    queue_seconds: float = 10.0


class RenderRefused(Exception):
    """A render went over its budget (``budget`` names which) and was stopped."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


class _Worker:
    """One ``python -m mailplane.sender.front.render_worker`` process, spoken to in JSON lines on its pipes.

    A plain subprocess rather than ``multiprocessing``: nothing of the API process (its threads, its
    sockets, its ``__main__``) is forked or re-imported, and the worker sets its own limits.
    """

    def __init__(self, budget: RenderBudget) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailplane.sender.front.render_worker", str(budget.cpu_seconds),
             str(budget.memory_mb * 1024 * 1024)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one render and wait up to ``timeout`` s for its answer; None when none came."""
        self.stdin.write(json.dumps(request).encode() + b"\n")
        self.stdin.flush()
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.stdout.readline()
        if not line:
            raise EOFError("the render worker exited")
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()


class RenderPool:
    """A fixed number of render workers; :meth:`render` is thread-safe and blocks for one render."""

    def __init__(self, budget: RenderBudget = RenderBudget()) -> None:
        self.budget = budget
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(budget.workers):
            self._add()

    def _add(self) -> None:
        worker = _Worker(self.budget)
        with self._lock:
            self._all.append(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            closed = self._closed
        if not closed:
            self._add()

    def render(self, subject: str, text: str | None, html: str | None, variables: Mapping[str, Any]) -> Rendered:
        """Render in a worker; raises TemplateProblems (the template's fault) or RenderRefused (a budget)."""
        if self._closed:
            raise RenderRefused("shutdown", "the service is shutting down")
        b = self.budget
        try:
            worker = self._idle.get(timeout=b.queue_seconds)
        except queue.Empty:
            raise RenderRefused("queue", f"no render worker was free within {b.queue_seconds:g} s "
                                "(render.queue_seconds)") from None
        healthy = True
        try:
            answer = worker.ask({"subject": subject, "text": text, "html": html, "variables": dict(variables)},
                                b.wall_seconds)
            if answer is None:
                healthy = False
                raise RenderRefused("wall", f"the template did not finish within {b.wall_seconds:g} s "
                                    "(render.wall_seconds)")
            healthy = answer["kind"] != "memory"  # that worker exits: after a MemoryError its heap is suspect
        except (EOFError, OSError, ValueError):
            healthy = False
            raise RenderRefused("memory", f"the template's worker died, most likely over "
                                f"{b.memory_mb} MB (render.memory_mb)") from None
        finally:
            if healthy:
                self._idle.put(worker)
            else:
                self._replace(worker)
        kind = answer["kind"]
        if kind == "ok":
            return Rendered(**answer["value"])
        if kind == "problems":
            raise TemplateProblems([(part, text) for part, text in answer["value"]])
        if kind == "memory":
            raise RenderRefused("memory", f"the template needed more than {b.memory_mb} MB (render.memory_mb)")
        raise RenderRefused("cpu", f"the template used more than {b.cpu_seconds:g} s of CPU (render.cpu_seconds)")

    def close(self) -> None:
        """Kill every worker now: a render in progress is abandoned (its request gets a refusal)."""
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for worker in workers:
            worker.kill()
