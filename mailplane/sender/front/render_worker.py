"""The render worker process of :mod:`mailplane.sender.front.render_pool`: one JSON line in, one out.

``python -m mailplane.sender.front.render_worker CPU_SECONDS MEMORY_BYTES``.  It limits its own address
space (``RLIMIT_AS``) before reading anything, and arms a CPU-time timer for each render, so a
template over either budget fails here and the API process never feels it.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from typing import Any

from mailplane.sender.core.templating import TemplateProblems, render


class _CpuExceeded(BaseException):
    """Raised by the CPU timer; a BaseException, so nothing on the way catches it as an error."""


def _on_cpu_timer(_signum: int, _frame: Any) -> None:
    raise _CpuExceeded


def answer(request: dict[str, Any], cpu_seconds: float) -> dict[str, Any]:
    try:
        signal.setitimer(signal.ITIMER_VIRTUAL, cpu_seconds)
        try:
            rendered = render(request["subject"], request["text"], request["html"], request["variables"])
        finally:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    except _CpuExceeded:
        return {"kind": "cpu"}
    except MemoryError:
        return {"kind": "memory"}
    except TemplateProblems as err:
        return {"kind": "problems", "value": [list(p) for p in err.problems]}
    except Exception as err:  # a bug in rendering: this message fails, the worker goes on
        return {"kind": "problems", "value": [["template", f"cannot render: {type(err).__name__}"]]}
    return {"kind": "ok", "value": {"subject": rendered.subject, "text": rendered.text, "html": rendered.html}}


def main(argv: list[str]) -> int:
    cpu_seconds, memory_bytes = float(argv[0]), int(argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool stops us; ^C in a terminal is for the service
    signal.signal(signal.SIGVTALRM, _on_cpu_timer)
    for line in sys.stdin.buffer:
        try:
            result = answer(json.loads(line), cpu_seconds)
        except MemoryError:
            result = {"kind": "memory"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
        if result["kind"] == "memory":
            return 0  # after a MemoryError the heap is suspect: the pool starts a fresh worker
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
