"""Delivery: claim queued messages, reserve their sends, hand them over, record what happened.

One asyncio loop (its own thread) runs ``config.workers`` claim loops over one SMTP connection
pool per MTA host and one SES client: the work is waiting on sockets, which one loop does for
hundreds of messages at a time, while the database calls and message composition (megabytes,
for a large HTML mail) go to threads, so the loop and the lease renewals never stall.  Every database step is
batched -- one transaction claims a batch, one reserves it, one records the outcomes -- because on
SQLite each commit is an fsync and per-message commits would cap delivery far below the MTA's
pace.

Outcomes (``transports``) map to the queue like this:

* delivered: ``sent``;
* permanent failure: ``failed``, with one log line (id, tenant, route, IP, reply); nobody is
  suppressed for it: only remote evidence suppresses (accounting records, SES events), never a
  reply at the hand-over (:mod:`mailplane.sender.delivery.transports`);
* temporary failure: back in the queue after an exponential backoff (or the provider's hint),
  with the reservation refunded only when the provider certainly did not take the message
  (``pacing.Pacer.release``); still failing ``give_up_after_seconds`` after acceptance: ``failed``.
  A refusal about PowerMTA's configuration also counts towards holding the IP, and an accepted
  hand-over ends that count (:mod:`mailplane.sender.delivery.handover`).

Every ``DEPLOYED_CHECK`` seconds the loop also asks which IPs may send today but have no VMTA on
their host's PowerMTA, to log and alert them (:meth:`Service.check_deployed`).

A worker that dies leaves its claims to expire (``store``); one that stops gives back what it
has not reserved and finishes what it has.  A payload that cannot be composed fails alone; an
outcome that cannot be recorded (database outage) is retried while the claims are renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from mailplane.sender.core.compose import build_message, wire_bytes
from mailplane.sender.core.gates import Deferred, Granted
from mailplane.sender.core.messages import Message, State, canonical_address
from mailplane.sender.delivery.transports import (
    Delivered,
    Outcome,
    PermanentFailure,
    TemporaryFailure,
    Transport,
    transports_for,
)
from mailplane.sender.service import Service

log = logging.getLogger("mailplane.sender.delivery.worker")

KEEP_WITHIN = 2.0
"""How far ahead a worker books the SES rate's slots for the messages it claimed (sending each at its
slot), and keeps a claimed message an IP's pace lets go that soon, instead of putting it back in the
queue: see ``Pacer.reserve_many``."""
IDLE_POLL = 0.5
"""Seconds between two looks at an empty queue."""
DEPLOYED_CHECK = 30.0
"""Seconds between two looks at which VMTAs the hosts' PowerMTA lacks (for the log and the alerts)."""
MIN_ATTEMPTS_TO_GIVE_UP = 5
"""A message that waited days for warmup room is not failed on its first temporary error."""


def backoff(attempts: int, base: float, ceiling: float, hint: float | None = None) -> float:
    """Delay before attempt ``attempts + 1``: doubling from ``base``, at most ``ceiling``, jittered.

    The jitter (±20 %) keeps messages deferred together by one outage from all coming back in
    the same second; a provider's own hint (``retry_after``) wins when it is longer.
    """
    delay = min(base * (2 ** min(attempts, 30)), ceiling) * random.uniform(0.8, 1.2)
    return max(delay, hint or 0.0)


@dataclass(frozen=True)
class _Result:
    message: Message
    granted: Granted
    outcome: Outcome


class Delivery:
    """The delivery side of one instance: start it, stop it; it never touches the HTTP side."""

    def __init__(self, service: Service, *, idle_poll: float = IDLE_POLL) -> None:
        self.service = service
        self.config = service.config
        self.idle_poll = idle_poll
        self.lease = service.config.claim_lease_seconds
        self.routes = service.pacer.routes()
        self.host_of_ip = {ref.ip.address: ref.ip.host for ref in service.fleet.ips()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.transports: dict[str, Transport] = {}
        """The ways out, by ``Granted.transport`` (:func:`~mailplane.sender.delivery.transports.transports_for`)."""
        sender = service.fleet.settings.sender
        self.public_url = sender.public_url if sender else None
        self.node = f"{os.uname().nodename}:{os.getpid()}"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mailplane-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self.run())

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.transports = transports_for(self.service.fleet, self.config)
        try:
            await asyncio.gather(self._watch_deployed(),
                                 *(self._claim_loop(f"{self.node}:{n}") for n in range(self.config.workers)))
        finally:
            for transport in self.transports.values():
                await transport.close()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))

    async def _watch_deployed(self) -> None:
        """Every ``DEPLOYED_CHECK`` seconds: what the hosts run, and the queue's idle flows forgotten."""
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.service.check_deployed)
            except Exception:  # a look that failed: the gates judge every reservation anyway
                log.exception("checking the deployed VMTAs failed")
            try:
                await asyncio.to_thread(self.service.store.turns.forget_idle)
            except Exception:  # rows kept a while longer change no turn
                log.exception("forgetting the queue's idle flows failed")
            await self._sleep(DEPLOYED_CHECK)

    # -- one claim loop ----------------------------------------------------------------

    async def _claim_loop(self, worker: str) -> None:
        store = self.service.store
        while not self._stop.is_set():
            try:
                batch = await asyncio.to_thread(store.claim, worker, self.config.batch_size, self.lease, self.routes)
                if not batch:
                    await self._sleep(self.idle_poll)
                    continue
                await self._process(worker, batch)
            except Exception:  # a database outage: log, wait, go on (claims expire if we cannot)
                log.exception("delivery worker %s: batch failed", worker)
                await self._sleep(5.0)

    async def _process(self, worker: str, batch: list[Message]) -> None:
        store = self.service.store
        held = {m.id for m in batch}
        renew = asyncio.create_task(self._renew(worker, held))
        sends: list[asyncio.Task[_Result]] = []
        try:
            pending = await self._drop_unknown_tenants(worker, batch, held)
            pending = await self._drop_suppressed(worker, pending, held)
            while pending:
                reservations = await asyncio.to_thread(
                    self.service.pacer.reserve_many, worker, pending, keep_within=KEEP_WITHIN)
                kept: list[tuple[Message, float]] = []
                for message, reservation in zip(pending, reservations, strict=True):
                    if isinstance(reservation, Granted):
                        sends.append(asyncio.create_task(self._deliver(message, reservation)))
                    elif isinstance(reservation, Deferred) and reservation.kept:
                        kept.append((message, reservation.until))
                    else:  # back in the queue (a daily or hourly cap), or no longer ours
                        held.discard(message.id)
                if not kept:
                    break
                if self._stop.is_set():
                    await asyncio.to_thread(store.unclaim, worker, [m.id for m, _ in kept])
                    held.difference_update(m.id for m, _ in kept)
                    break
                await self._sleep(min(until for _, until in kept) - self.service.clock())
                pending = [m for m, _ in kept]
        finally:
            # Whatever happened above, sends already started are awaited and their outcomes
            # recorded: an unrecorded send would be sent again when its lease runs out.
            try:
                results = await asyncio.gather(*sends)
                await self._record_with_retries(worker, results)
            finally:
                renew.cancel()

    async def _renew(self, worker: str, held: set[int]) -> None:
        """Extend this batch's claims while it is being worked on (slow hosts, a long SES wait)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            if held:
                try:
                    await asyncio.to_thread(self.service.store.extend_lease, worker, sorted(held), self.lease)
                except Exception:  # the database is away: try again at the next beat
                    log.exception("delivery worker %s: could not renew its claims", worker)

    async def _drop_unknown_tenants(self, worker: str, batch: list[Message], held: set[int]) -> list[Message]:
        """Messages of a tenant removed from the stack since they were queued fail, one by one."""
        gone = [m.id for m in batch if self.service.tenant(m.tenant) is None]
        if gone:
            await asyncio.to_thread(self.service.store.complete_many, worker,
                                    [(i, "failed", "the tenant is no longer in the stack") for i in gone])
            held.difference_update(gone)
        dropped = set(gone)
        return [m for m in batch if m.id not in dropped]

    async def _drop_suppressed(self, worker: str, batch: list[Message], held: set[int]) -> list[Message]:
        """Suppressed recipients are never sent to, even if they were suppressed after acceptance."""
        store = self.service.store
        groups: dict[tuple[str, str], list[Message]] = defaultdict(list)
        for m in batch:
            groups[(m.tenant, m.stream)].append(m)
        suppressed: list[int] = []
        for (tenant, stream), items in groups.items():
            found = await asyncio.to_thread(store.suppressed, tenant, [m.to_addr for m in items], stream=stream)
            suppressed.extend(m.id for m in items if canonical_address(m.to_addr) in found)
        if suppressed:
            await asyncio.to_thread(store.complete_many, worker,
                                    [(i, "suppressed", "recipient is on the tenant's suppression list")
                                     for i in suppressed])
            held.difference_update(suppressed)
        dropped = set(suppressed)
        return [m for m in batch if m.id not in dropped]

    def _compose(self, message: Message, granted: Granted) -> bytes:
        return wire_bytes(build_message(message, granted, public_url=self.public_url,
                                        unsubscribe_key=self.config.unsubscribe_keys[0]))

    async def _deliver(self, message: Message, granted: Granted) -> _Result:
        try:  # in a thread: a message of megabytes must not stall the loop (and the lease renewals)
            mail = await asyncio.to_thread(self._compose, message, granted)
            if granted.at is not None:  # its SES slot, booked a moment ahead (at most KEEP_WITHIN): keep to it
                await asyncio.sleep(max(0.0, granted.at - self.service.clock()))
        except Exception as err:  # whatever the payload does, it fails alone and is never retried
            log.warning("message %s cannot be built: %r", message.id, err)
            return _Result(message, granted, PermanentFailure(f"cannot build the message: {err!r}"[:500]))
        try:
            outcome = await self.transports[granted.transport].deliver(message, granted, mail)
        except Exception as err:  # a bug or an unforeseen error: retry, keep the counters
            log.exception("delivery of message %s raised", message.id)
            outcome = TemporaryFailure(f"unexpected error: {err!r}"[:500], refund=False)
        return _Result(message, granted, outcome)

    # -- recording outcomes ---------------------------------------------------------------

    async def _record_with_retries(self, worker: str, results: Sequence[_Result]) -> None:
        """Record outcomes, retrying through a database outage while the claims are renewed.

        Recording is idempotent (every write checks the claim is still this worker's), so a
        retry after a half-done attempt does not count anything twice.
        """
        delay = 0.5
        for attempt in range(8):
            try:
                counted = await asyncio.to_thread(self._record, worker, results)
            except Exception:
                if attempt == 7:
                    raise
                log.exception("delivery worker %s: recording %d outcomes failed; retrying", worker, len(results))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                self._count(counted)
                return

    def _record(self, worker: str, results: Sequence[_Result]) -> list[tuple[str, Message, str]]:
        """Write every outcome; returns what the metrics count once it has all been written."""
        service, config = self.service, self.config
        now = service.clock()
        final: list[tuple[int, State, str | None]] = []
        counted: list[tuple[str, Message, str]] = []
        handovers: list[tuple[_Result, Outcome]] = []
        for r in results:
            m, transport, outcome = r.message, r.granted.transport, r.outcome
            if r.granted.ip is not None and (isinstance(outcome, Delivered)
                                        or (isinstance(outcome, TemporaryFailure) and outcome.mta_config)):
                handovers.append((r, outcome))
            if isinstance(outcome, Delivered):
                final.append((m.id, "sent", None))
                counted.append(("sent", m, transport))
            elif isinstance(outcome, PermanentFailure):
                final.append((m.id, "failed", outcome.error[:1000]))
                counted.append(("failed", m, transport))
            elif m.attempts + 1 >= MIN_ATTEMPTS_TO_GIVE_UP and now - m.created_at > config.give_up_after_seconds:
                final.append((m.id, "failed", f"gave up after {config.give_up_after_seconds:.0f} s: {outcome.error}"))
                counted.append(("failed", m, transport))
            else:
                delay = backoff(m.attempts, config.retry_base_seconds, config.retry_max_seconds, outcome.retry_after)
                if service.pacer.release(worker, m.id, retry_in=delay, refund=outcome.refund,
                                         error=outcome.error[:1000]):
                    counted.append(("retried", m, transport))
        service.store.complete_many(worker, final)
        failed = {i: error or "" for i, state, error in final if state == "failed"}
        for r in results:
            if r.message.id in failed:
                _log_failed(r, failed[r.message.id])
        for r, outcome in handovers:  # after the outcomes are safe: a hold is a row of its own
            assert r.granted.ip is not None
            host = self.host_of_ip[r.granted.ip]
            if isinstance(outcome, Delivered):
                service.holds.succeeded(r.message.tenant, r.granted.ip, host)
            else:
                service.holds.refused(r.message.tenant, r.granted.ip, host, outcome.error)
        return counted

    def _count(self, counted: list[tuple[str, Message, str]]) -> None:
        metrics, now = self.service.metrics, self.service.clock()
        for what, m, label in counted:
            if what == "sent":
                metrics.sent.labels(m.tenant, label).inc()
                metrics.latency.labels(label).observe(max(now - m.created_at, 0.0))
            elif what == "failed":
                metrics.failed.labels(m.tenant, label).inc()
            else:
                metrics.retried.labels(m.tenant, label).inc()


def _log_failed(result: _Result, error: str) -> None:
    """One line per message that fails: what an operator greps for when a sender asks where a mail went."""
    m, granted = result.message, result.granted
    log.warning("message %s failed: tenant %s, route %s/%s via %s, IP %s: %s", m.id, m.tenant, m.tenant, m.stream,
                granted.transport, granted.ip or "-", error)
