"""A stand-in sender process for the queue tests: several threads claim, reserve and "send".

Run as ``python tests/support/sender_worker.py MODE DB_URL STACK_DIR THREADS [SENT_LOG]`` by the tests, so
that concurrency is real (separate processes sharing one database) and ``kill -9`` is real.
Sending is appending a line to SENT_LOG (when given): what a real SMTP server would have received.

Modes: ``drain`` sends until nothing is due within two seconds; ``bucket`` runs for 1.5 s;
``crash`` works through its batches slowly, printing ``SENT <id>`` so the test can kill it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, or_, select

from mailplane.model.loader import load_stack
from mailplane.sender.core.gates import Deferred, Granted
from mailplane.sender.db.schema import messages
from mailplane.sender.db.store import Store
from mailplane.sender.delivery.pacing import Pacer


def _idle(store: Store) -> bool:
    """Nothing claimable now or in the next two seconds, and nothing held by anyone."""
    soon = store.clock() + 2.0
    with store.reading() as conn:
        busy = conn.execute(select(func.count()).select_from(messages).where(or_(
            (messages.c.state == "queued") & (messages.c.next_attempt_at <= soon),
            messages.c.state == "sending"))).scalar_one()
    return busy == 0


def work(mode: str, store: Store, pacer: Pacer, name: str, log: Path | None, lock: threading.Lock,
         lease: float) -> None:
    stop_at = time.time() + 1.5
    while True:
        if mode == "bucket" and time.time() > stop_at:
            return
        batch = store.claim(name, 5, lease=lease)
        if not batch:
            if mode == "drain" and _idle(store):
                return
            time.sleep(0.002)
            continue
        for message in batch:
            outcome = pacer.reserve(name, message)
            wait = outcome.until - time.time() if isinstance(outcome, Deferred) else 1.0
            if wait < 0.05:  # a token soon: wait for it rather than spin on the bucket
                time.sleep(max(wait, 0.0))
            if not isinstance(outcome, Granted):
                continue
            if log is not None:
                with lock, log.open("a") as f:
                    f.write(f"{message.id}\n")
            if mode == "crash":
                print(f"SENT {message.id}", flush=True)
                time.sleep(0.1)
            store.complete(name, message.id, "sent")


def main(argv: list[str]) -> None:
    mode, url, stack, threads = argv[0], argv[1], argv[2], int(argv[3])
    log = Path(argv[4]) if len(argv) > 4 else None
    lease = float(os.environ.get("LEASE", "30"))
    store = Store(url, create=False)
    pacer = Pacer(store, load_stack(stack))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(mode, store, pacer, f"{os.getpid()}-{i}", log, lock, lease)
        except BaseException as err:  # reported by the exit status: a thread's death must fail the test
            errors.append(err)
            raise

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    print("READY", flush=True)
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    store.close()
    if errors:
        sys.exit(f"{len(errors)} worker thread(s) failed: {errors[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
