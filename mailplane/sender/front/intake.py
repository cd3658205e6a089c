"""Queue checked messages, all or nothing: the one way in for the HTTP API and the SMTP listener alike.

Both front ends check each message first (``mailplane.sender.core.submit``); here the checks that need
the store run -- suppressed recipients, drains in force -- and the batch is committed in one
transaction, or an :class:`~mailplane.sender.front.api.errors.ApiError` says why not (422 with every
problem, 409 for a drain or an idempotency conflict).  The SMTP listener turns those into replies.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from mailplane.sender.core.messages import Enqueued, IdempotencyConflict
from mailplane.sender.core.pauses import InForce
from mailplane.sender.core.refusal import ApiError
from mailplane.sender.core.submit import Checked, Problem, suppression_problems
from mailplane.sender.db.store import Store
from mailplane.sender.service import Service


def queue_checked(service: Service, tenant: str, sender: str, checked: list[tuple[int, Checked]],
                  problems: list[Problem]) -> list[Enqueued]:
    """Queue ``checked`` (index, message) unless anything stops the batch; ``problems`` are the checks' own."""
    check_store(service, tenant, sender, checked, problems)
    return commit(service, checked)


def check_store(service: Service, tenant: str, sender: str, checked: list[tuple[int, Checked]],
                problems: list[Problem]) -> None:
    """The checks that read the store (suppressions, drains), with the checks' own ``problems``: raise the
    refusal, or return to commit."""
    [refusal] = check_store_many(service, [(tenant, sender, checked, problems)])
    if refusal is not None:
        raise refusal


Submission = tuple[str, str, list[tuple[int, Checked]], list[Problem]]
"""(tenant, sender, checked messages, the checks' own problems) of one request or one SMTP message."""


def check_store_many(service: Service, submissions: list[Submission]) -> list[ApiError | None]:
    """:func:`check_store` for several submissions at once, each judged by itself, with one look at the
    store per kind: the drains in force, the idempotency keys of each sender, the suppressions of each
    tenant and stream (the SMTP listener's committer judges a batch of sessions' messages so)."""
    store = service.store
    retries = _retries(store, submissions)
    suppressed = _suppressed(store, submissions, retries)
    drains = store.pauses.in_force()
    out: list[ApiError | None] = []
    for tenant, sender, checked, own in submissions:
        refusal = _drain_refusal(tenant, checked, drains)
        problems = [*own, *_suppression_problems(checked, retries[(tenant, sender)], suppressed, tenant)]
        if refusal is None and problems:
            problems.sort(key=lambda p: (p.index or 0, p.field))
            refusal = ApiError(422, "invalid messages: nothing was queued", [p.as_json() for p in problems])
        out.append(refusal)
    return out


def _retries(store: Store, submissions: list[Submission]) -> dict[tuple[str, str], set[str]]:
    """The idempotency keys of each (tenant, sender) already queued, one look at the store per sender.

    A retry of a message already queued (same idempotency key) gets its "duplicate" answer even if
    the recipient was suppressed since: the first request's outcome is the one that counts."""
    keys: dict[tuple[str, str], set[str]] = {}
    for tenant, sender, checked, _ in submissions:
        keys.setdefault((tenant, sender), set()).update(c.new.idempotency_key for _, c in checked
                                                        if c.new.idempotency_key)
    return {who: store.known_keys(who[0], who[1], sorted(wanted)) if wanted else set()
            for who, wanted in keys.items()}


def _suppressed(store: Store, submissions: list[Submission],
                retries: dict[tuple[str, str], set[str]]) -> dict[tuple[str, str], set[str]]:
    """The suppressed addresses among the new messages' recipients, one look per (tenant, stream)."""
    addresses: dict[tuple[str, str], set[str]] = {}
    for tenant, sender, checked, _ in submissions:
        for _, c in checked:
            if c.new.idempotency_key not in retries[(tenant, sender)]:
                addresses.setdefault((tenant, c.new.stream), set()).add(c.new.to_addr)
    return {(tenant, stream): store.suppressed(tenant, sorted(found), stream=stream)
            for (tenant, stream), found in addresses.items()}


def _suppression_problems(checked: list[tuple[int, Checked]], retries: set[str],
                          suppressed: dict[tuple[str, str], set[str]], tenant: str) -> list[Problem]:
    """One submission's suppressed recipients, stream by stream; retries are left out (see :func:`_retries`)."""
    problems: list[Problem] = []
    fresh = [(i, c) for i, c in checked if c.new.idempotency_key not in retries]
    for stream in sorted({c.new.stream for _, c in fresh}):
        same = [(i, c) for i, c in fresh if c.new.stream == stream]
        problems.extend(suppression_problems(same, suppressed[(tenant, stream)]))
    return problems


def _drain_refusal(tenant: str, checked: list[tuple[int, Checked]], drains: InForce) -> ApiError | None:
    """A 409 for the first message whose stream is being drained: a drain refuses the whole batch, before any
    per-message problem."""
    for i, c in checked:
        drain = drains.drain(tenant, c.new.stream)
        if drain is not None:
            return ApiError(409, f"{tenant}'s {c.new.stream} mail is being drained: nothing was queued", [
                {"index": i, "field": "stream", "code": "draining",
                 "message": f"new mail is refused until an operator resumes it ({drain.reason})"}])
    return None


def commit(service: Service, checked: list[tuple[int, Checked]]) -> list[Enqueued]:
    """Queue ``checked`` in one committed transaction; a 409 when an idempotency key names another message."""
    try:
        results = service.store.enqueue([c.new for _, c in checked])
    except IdempotencyConflict as err:
        index = checked[err.index][0]
        raise ApiError(409, f"{err}: nothing was queued", [
            {"index": index, "field": "idempotency_key", "code": "idempotency_conflict", "message": str(err),
             "original_id": str(err.original) if err.original is not None else None}]) from None
    for (_, c), queued in zip(checked, results, strict=True):
        if queued.created:
            service.metrics.accepted.labels(c.new.tenant, c.new.stream).inc()
    return results


@dataclass(frozen=True)
class _Item:
    tenant: str
    sender: str
    checked: list[tuple[int, Checked]]
    done: Future[list[Enqueued]]
    size: int = 0


class GroupCommitter:
    """Commits what concurrent SMTP sessions hand it, many sessions' messages in one transaction.

    The queue has one writer at a time (SQLite's lock, PostgreSQL's row locks on the counters are
    not involved here, but each commit is a flush to disk): sessions committing one by one wait for
    each other's fsync.  One thread takes everything handed over meanwhile and commits it at once;
    each session still learns its own outcome, and answers ``250`` only after the commit.  A batch
    that hits an idempotency conflict is committed again session by session, so one client's
    conflict refuses only its own message.  Small messages are committed together and first, a large
    one (over ``large`` bytes) alone after them: a receipt never waits for the writing of several
    megabytes it was batched with, only, at worst, for one large commit already under way.
    """

    def __init__(self, service: Service, max_batch: int = 200, large: int = 256 * 1024) -> None:
        self.service, self.max_batch, self.large = service, max_batch, large
        self._todo: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mailplane-smtp-commit", daemon=True)
        self._thread.start()

    def submit(self, tenant: str, sender: str, checked: list[tuple[int, Checked]],
               size: int = 0) -> Future[list[Enqueued]]:
        """Hand ``checked`` (a message of ``size`` bytes) over: the future holds what was queued, or raises the
        refusal (:class:`ApiError`: a suppressed recipient, a drain, an idempotency conflict) or the database's
        error."""
        done: Future[list[Enqueued]] = Future()
        self._todo.put(_Item(tenant, sender, checked, done, size))
        return done

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            first = self._todo.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._todo.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._todo.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            small = [i for i in batch if i.size <= self.large]
            if small:
                self._commit(small)
            for item in batch:
                if item.size > self.large:
                    self._commit([item])

    def _commit(self, batch: list[_Item]) -> None:
        try:  # the store's checks, each submission judged by itself, one look at the store for all
            refusals = check_store_many(self.service, [(i.tenant, i.sender, i.checked, []) for i in batch])
        except Exception as err:
            for item in batch:
                item.done.set_exception(err)
            return
        accepted: list[_Item] = []
        for item, refusal in zip(batch, refusals, strict=True):
            if refusal is not None:
                item.done.set_exception(refusal)
            else:
                accepted.append(item)
        if not accepted:
            return
        try:
            results = commit(self.service, [entry for item in accepted for entry in item.checked])
        except ApiError:  # an idempotency conflict: find whose, one by one
            for item in accepted:
                self._one(item)
            return
        except Exception as err:  # nothing was committed: every session says so
            for item in accepted:
                item.done.set_exception(err)
            return
        start = 0
        for item in accepted:
            item.done.set_result(results[start:start + len(item.checked)])
            start += len(item.checked)

    def _one(self, item: _Item) -> None:
        try:
            item.done.set_result(commit(self.service, item.checked))
        except Exception as err:
            item.done.set_exception(err)
