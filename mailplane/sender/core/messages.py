"""What a message is on its way through the sender: as submitted, as queued, as read back from the queue.

Plain data, shared by every layer: the submission checks build a :class:`NewMessage`, the queue
stores it and hands workers :class:`Message` rows, composing reads them.  Kept apart from the
database code so the pure parts never load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["queued", "sending", "sent", "failed", "suppressed", "cancelled"]
FINAL_STATES: tuple[State, ...] = ("sent", "failed", "suppressed", "cancelled")


@dataclass(frozen=True)
class NewMessage:
    """What the API hands to the queue; ``payload`` is everything the transport needs to build the mail."""

    tenant: str
    sender: str
    stream: str
    from_addr: str
    to_addr: str
    payload: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    campaign: str = ""
    """The campaign it belongs to ("" none): a tenant's campaigns take turns (:mod:`mailplane.sender.db.turns`)."""


class IdempotencyConflict(Exception):
    """An idempotency key came again with another message: nothing of the batch was queued."""

    def __init__(self, index: int, key: str, original: int | None, earlier_index: int | None = None) -> None:
        where = f"message {original}" if original is not None else f"message {earlier_index} of this batch"
        super().__init__(f"idempotency key {key!r} was used for {where} with another message")
        self.index, self.key, self.original, self.earlier_index = index, key, original, earlier_index


@dataclass(frozen=True)
class Enqueued:
    id: int
    created: bool
    """False when the idempotency key matched an earlier message: ``id`` is that message's."""


@dataclass(frozen=True)
class Message:
    id: int
    tenant: str
    sender: str
    stream: str
    from_addr: str
    to_addr: str
    payload: dict[str, Any]
    idempotency_key: str | None
    state: str
    attempts: int
    next_attempt_at: float
    claimed_by: str | None
    claimed_until: float | None
    transport: str | None
    ip: str | None
    last_error: str | None
    created_at: float = 0.0
    updated_at: float = 0.0
    campaign: str = ""
    turn: float = 0.0


def canonical_address(address: str) -> str:
    """The suppression key of an address: lower-cased whole.

    RFC 5321 lets a local part be case-sensitive, but no mailbox provider we send to treats it
    so, and a suppression missed because of case is a complaint; over-suppressing a
    case-variant twin of a bad address costs nothing.
    """
    return address.strip().lower()
