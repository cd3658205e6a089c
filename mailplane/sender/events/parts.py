"""What the event side is built from: the instance's fleet, config, store, metrics and clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailplane.model.stack import Fleet
    from mailplane.sender.config import SenderConfig
    from mailplane.sender.db.store import Store
    from mailplane.sender.metrics import Metrics


@dataclass(frozen=True)
class EventParts:
    """What the event side is built from: the instance's fleet, config, store, metrics and clock.

    Handed over when :meth:`Service.attach_events` builds it; the event side never reaches back into
    the service (the service asks it for holds through
    :meth:`Events.override <mailplane.sender.events.side.Events.override>`).
    """

    fleet: Fleet
    config: SenderConfig
    store: Store
    metrics: Metrics
    clock: Callable[[], float]
    stack_name: str
