"""The SES events inside a verified SNS notification: one :class:`SesEvent` per recipient.

:func:`parse_ses_events` reads the ``Message`` of a notification (SES event publishing, ``eventType``,
or identity feedback notifications, ``notificationType``); :attr:`SesEvent.suppress` says which ones
must put the address on the tenant's suppression list.  Whether the notification is genuine is
:mod:`mailplane.sender.events.sns`'s to say, before this reads it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from typing import Any


class EventKind(enum.StrEnum):
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    SEND = "send"
    REJECT = "reject"
    DELIVERY_DELAY = "delivery-delay"
    OPEN = "open"
    CLICK = "click"
    RENDERING_FAILURE = "rendering-failure"
    SUBSCRIPTION = "subscription"


# eventType (event publishing) / notificationType (feedback notifications) → kind and the key of its details.
_KINDS: dict[str, tuple[EventKind, str]] = {
    "Bounce": (EventKind.BOUNCE, "bounce"),
    "Complaint": (EventKind.COMPLAINT, "complaint"),
    "Delivery": (EventKind.DELIVERY, "delivery"),
    "Send": (EventKind.SEND, "send"),
    "Reject": (EventKind.REJECT, "reject"),
    "DeliveryDelay": (EventKind.DELIVERY_DELAY, "deliveryDelay"),
    "Open": (EventKind.OPEN, "open"),
    "Click": (EventKind.CLICK, "click"),
    "Rendering Failure": (EventKind.RENDERING_FAILURE, "failure"),
    "Subscription": (EventKind.SUBSCRIPTION, "subscription"),
}


class SesEventError(ValueError):
    """The Message of a verified notification is not an SES event (log it; retrying will not help)."""


@dataclass(frozen=True)
class SesEvent:
    """One recipient's share of one SES event."""

    kind: EventKind
    recipient: str
    ses_message_id: str | None = None
    timestamp: str | None = None
    configuration_set: str | None = None
    bounce_type: str | None = None  # Permanent | Transient | Undetermined
    bounce_subtype: str | None = None  # General, NoEmail, Suppressed, OnAccountSuppressionList, ...
    feedback_type: str | None = None  # complaintFeedbackType: abuse, fraud, not-spam, ...
    diagnostic: str | None = None  # diagnosticCode, smtpResponse or status: for the log only
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def suppress(self) -> bool:
        """Permanent bounces and complaints stop all further mail to the address for the tenant.

        Transient and Undetermined bounces do not (the mailbox may come back; the per-IP rates still count
        them). A complaint whose feedback type is ``not-spam`` is the recipient saying the opposite of a
        complaint, so it does not suppress either.
        """
        if self.kind is EventKind.BOUNCE:
            return self.bounce_type == "Permanent"
        if self.kind is EventKind.COMPLAINT:
            return self.feedback_type != "not-spam"
        return False


def _address(value: Any) -> str | None:
    """The bare address: SES reports plain addresses, but be safe with ``"Name" <a@b>`` forms."""
    if not isinstance(value, str):
        return None
    address = parseaddr(value)[1].strip()
    return address if "@" in address else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one: SES's JSON is read defensively."""
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _decoded(message: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """The Message as a JSON object: SNS delivers it as a string, tests and replays may pass it parsed."""
    if isinstance(message, str):
        try:
            data = json.loads(message)
        except ValueError as exc:
            raise SesEventError("Message is not JSON") from exc
    else:
        data = message
    if not isinstance(data, Mapping):
        raise SesEventError("Message is not a JSON object")
    return data


def _common(kind: EventKind, mail: Mapping[str, Any], detail: Mapping[str, Any]) -> SesEvent:
    """What every recipient's event shares: the ``mail`` object's id, tags and configuration set, and the time."""
    tags = {str(k): tuple(str(x) for x in v) for k, v in _mapping(mail.get("tags")).items() if isinstance(v, list)}
    return SesEvent(kind, "", ses_message_id=_str(mail.get("messageId")),
                    timestamp=_str(detail.get("timestamp")) or _str(mail.get("timestamp")),
                    configuration_set=(tags.get("ses:configuration-set") or (None,))[0], tags=tags)


def _recipients(items: Any, address_key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The recipients of a list SES gives either as addresses or as objects with the address at ``address_key``."""
    out = []
    for item in items if isinstance(items, list) else []:
        entry = item if isinstance(item, Mapping) else {}
        address = _address(entry.get(address_key) if entry else item)
        if address:
            out.append((address, entry))
    return out


_Split = Callable[[SesEvent, Mapping[str, Any], Mapping[str, Any]], list[SesEvent]]
"""One event's share per recipient, from the shared part, the kind's details and the ``mail`` object."""


def _bounces(common: SesEvent, detail: Mapping[str, Any], _mail: Mapping[str, Any]) -> list[SesEvent]:
    """A bounce's type is the notification's, its diagnostic each recipient's."""
    return [replace(common, recipient=address, bounce_type=_str(detail.get("bounceType")),
                    bounce_subtype=_str(detail.get("bounceSubType")),
                    diagnostic=_str(entry.get("diagnosticCode")) or _str(entry.get("status")))
            for address, entry in _recipients(detail.get("bouncedRecipients"), "emailAddress")]


def _complaints(common: SesEvent, detail: Mapping[str, Any], _mail: Mapping[str, Any]) -> list[SesEvent]:
    """A complaint's feedback type decides whether it suppresses (``not-spam`` does not)."""
    return [replace(common, recipient=address, feedback_type=_str(detail.get("complaintFeedbackType")))
            for address, _entry in _recipients(detail.get("complainedRecipients"), "emailAddress")]


def _deliveries(common: SesEvent, detail: Mapping[str, Any], _mail: Mapping[str, Any]) -> list[SesEvent]:
    """A delivery lists bare addresses and one SMTP response for all."""
    return [replace(common, recipient=address, diagnostic=_str(detail.get("smtpResponse")))
            for address, _entry in _recipients(detail.get("recipients"), "")]


def _delays(common: SesEvent, detail: Mapping[str, Any], _mail: Mapping[str, Any]) -> list[SesEvent]:
    """A delay gives each recipient its own diagnostic."""
    return [replace(common, recipient=address, diagnostic=_str(entry.get("diagnosticCode")))
            for address, entry in _recipients(detail.get("delayedRecipients"), "emailAddress")]


def _to_destination(common: SesEvent, detail: Mapping[str, Any], mail: Mapping[str, Any]) -> list[SesEvent]:
    """The other kinds name no recipients of their own: the event is every destination's of the message."""
    destination = mail.get("destination") if isinstance(mail.get("destination"), list) else []
    diagnostic = _str(detail.get("reason")) or _str(detail.get("errorMessage"))
    return [replace(common, recipient=address, diagnostic=diagnostic)
            for address, _entry in _recipients(destination, "")]


_SPLITS: dict[EventKind, _Split] = {
    EventKind.BOUNCE: _bounces,
    EventKind.COMPLAINT: _complaints,
    EventKind.DELIVERY: _deliveries,
    EventKind.DELIVERY_DELAY: _delays,
}
"""The kinds whose details list their recipients; any other goes to the message's destination."""


def parse_ses_events(message: str | Mapping[str, Any]) -> list[SesEvent]:
    """SES event publishing (``eventType``) or feedback (``notificationType``) JSON → one event per recipient.

    Unknown event types (AWS adds some now and then) and SES's ``AmazonSnsSubscriptionSucceeded`` notice
    give an empty list rather than an error, so a new kind never stops the webhook; a Message that is not a
    JSON object raises :class:`SesEventError`.
    """
    data = _decoded(message)
    name = data.get("eventType", data.get("notificationType"))
    if name not in _KINDS:
        return []
    kind, key = _KINDS[name]
    mail = _mapping(data.get("mail"))
    detail = _mapping(data.get(key))
    return _SPLITS.get(kind, _to_destination)(_common(kind, mail, detail), detail, mail)
