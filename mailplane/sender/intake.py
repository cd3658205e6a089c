"""Queue checked messages, all or nothing: the one way in for the HTTP API and the SMTP listener alike.

Both front ends check each message first (``mailplane.sender.submit``); here the checks that need
the store run -- suppressed recipients, drains in force -- and the batch is committed in one
transaction, or an :class:`~mailplane.sender.api.errors.ApiError` says why not (422 with every
problem, 409 for a drain or an idempotency conflict).  The SMTP listener turns those into replies.
"""

from __future__ import annotations

from mailplane.sender.api.errors import ApiError
from mailplane.sender.service import Service
from mailplane.sender.store import Enqueued, IdempotencyConflict
from mailplane.sender.submit import Checked, Problem, suppression_problems


def queue_checked(service: Service, tenant: str, sender: str, checked: list[tuple[int, Checked]],
                  problems: list[Problem]) -> list[Enqueued]:
    """Queue ``checked`` (index, message) unless anything stops the batch; ``problems`` are the checks' own."""
    problems = list(problems)
    # A retry of a message already queued (same idempotency key) gets its "duplicate" answer even if
    # the recipient was suppressed since: the first request's outcome is the one that counts.
    retries = service.store.known_keys(tenant, sender, [c.new.idempotency_key for _, c in checked
                                                        if c.new.idempotency_key])
    fresh = [(i, c) for i, c in checked if c.new.idempotency_key not in retries]
    for stream in sorted({c.new.stream for _, c in fresh}):
        same = [(i, c) for i, c in fresh if c.new.stream == stream]
        suppressed = service.store.suppressed(tenant, [c.new.to_addr for _, c in same], stream=stream)
        problems.extend(suppression_problems(same, suppressed))
    drains = service.store.pauses.in_force()
    for i, c in checked:
        drain = drains.drain(tenant, c.new.stream)
        if drain is not None:
            raise ApiError(409, f"{tenant}'s {c.new.stream} mail is being drained: nothing was queued", [
                {"index": i, "field": "stream", "code": "draining",
                 "message": f"new mail is refused until an operator resumes it ({drain.reason})"}])
    if problems:
        problems.sort(key=lambda p: (p.index or 0, p.field))
        raise ApiError(422, "invalid messages: nothing was queued", [p.as_json() for p in problems])
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
