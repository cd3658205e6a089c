"""``POST /v1/webhooks/ses``: SES events from each tenant's SNS topic, checked, then acted on.

Permanent bounces and complaints put the address on the tenant's suppression list at once;
bounces, complaints, deliveries and delays are counted for the tenant guard.

* Any refused SNS message gets 403 and the same body, whatever the reason: the reason (unknown
  topic, bad signature, ...) is logged, never told to a caller who may be probing.
* An *authentic* notification whose Message is not an SES event is acknowledged (200, warning
  logged): SNS retries any other status for hours, and the same bytes will never parse.  A
  failure of ours (the database) is not caught: the app answers 500 and SNS retries, which is
  what is wanted there.
* The topic's tenant wins: the topic is what the signature authenticates, the event's own
  configuration set is only logged when it disagrees.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

from mailplane.sender.db.outcomes import SES_ROUTE
from mailplane.sender.events.parts import EventParts
from mailplane.sender.events.ses_events import EventKind, SesEvent, SesEventError, parse_ses_events
from mailplane.sender.events.sns import (
    NOTIFICATION,
    SUBSCRIPTION_CONFIRMATION,
    UNSUBSCRIBE_CONFIRMATION,
    SnsRejected,
    SnsVerifier,
    VerifiedMessage,
    fleet_topics,
    urllib_fetcher,
)

log = logging.getLogger(__name__)

SOURCE_SES = "ses-event"
CONFIRM_TIMEOUT = 5.0
"""Seconds to GET a SubscribeURL: SNS waits for our answer, so this must stay short."""

Get = Callable[[str], Any]
"""GET a URL, raising on failure (confirming an SNS subscription)."""


class SnsWebhook:
    """The SNS endpoint of one instance: verify, then confirm a subscription or act on the events."""

    def __init__(self, parts: EventParts, *, fetcher: Callable[[str], bytes] | None = None,
                 get: Get | None = None) -> None:
        self.store = parts.store
        self.metrics = parts.metrics
        fleet, aws, clock = parts.fleet, parts.config.aws, parts.clock
        self.verifier = SnsVerifier(
            allowed_topics=fleet_topics(fleet.tenants, region=fleet.settings.ses.region,
                                        account_id=aws.account_id, partition=aws.partition),
            fetcher=fetcher, insecure_skip_signature=parts.config.insecure_skip_sns_signature,
            on_fetch=parts.metrics.sns_certificate_fetches.inc,
            clock=lambda: datetime.datetime.fromtimestamp(clock(), datetime.UTC))
        if parts.config.insecure_skip_sns_signature:
            log.warning("insecure_skip_sns_signature is on: SNS messages are accepted WITHOUT checking their "
                        "signature (for tests against moto; never in production)")
        self._get = get or urllib_fetcher(CONFIRM_TIMEOUT)
        self._config_sets = {t.name: t.configuration_set for t in fleet.tenants}

    def handle_sns(self, body: bytes, message_type: str | None) -> tuple[int, dict[str, Any]]:
        """Act on one SNS POST; returns (HTTP status, JSON body) for the route to send back."""
        try:
            message = self.verifier.verify(body, message_type_header=message_type)
        except SnsRejected as exc:
            log.warning("SNS message refused (%s): %s", exc.reason.value, exc.detail or "-")
            self.metrics.sns_rejected.labels(exc.reason.value).inc()
            return 403, {"error": "forbidden"}
        if message.type == SUBSCRIPTION_CONFIRMATION:
            return self._confirm(message)
        if message.type == UNSUBSCRIBE_CONFIRMATION:
            log.warning("SNS unsubscribed this endpoint from %s (%s): its SES events stop arriving",
                        message.topic_arn, message.tenant)
            return 200, {"status": "unsubscribed"}
        if message.type == NOTIFICATION:
            return self._notification(message)
        return 400, {"error": "unknown message type"}  # the verifier knows no other type: unreachable

    def _confirm(self, message: VerifiedMessage) -> tuple[int, dict[str, Any]]:
        """GET the SubscribeURL (already pinned to the topic's SNS endpoint by the verifier)."""
        url = message.subscribe_url
        if url is None:
            return 403, {"error": "forbidden"}
        try:
            self._get(url)
        except Exception as exc:  # network, TLS, HTTP status: SNS sends the confirmation again
            log.error("confirming the subscription to %s failed: %s", message.topic_arn, exc)
            return 502, {"error": "confirmation failed"}
        log.info("confirmed the SNS subscription to %s (%s)", message.topic_arn, message.tenant)
        return 200, {"status": "confirmed"}

    def _notification(self, message: VerifiedMessage) -> tuple[int, dict[str, Any]]:
        try:
            events = parse_ses_events(message.message)
        except SesEventError as exc:
            # Authentic but not an SES event: acknowledged, since SNS would retry the same bytes for hours.
            log.warning("SNS message %s on %s is not an SES event (%s): acknowledged and ignored",
                        message.message_id, message.topic_arn, exc)
            return 200, {"status": "ignored"}
        suppressed = 0
        counted = {"bounced": 0, "complained": 0, "delivered": 0, "deferred": 0}
        for event in events:
            self._check_config_set(message, event)
            if event.suppress and self._suppress(message.tenant, event.recipient, _ses_reason(event), SOURCE_SES):
                suppressed += 1
                counted["bounced" if event.kind is EventKind.BOUNCE else "complained"] += 1
            elif event.kind is EventKind.DELIVERY:  # for people's overview only: SNS may deliver it twice
                counted["delivered"] += 1
            elif event.kind is EventKind.DELIVERY_DELAY:
                counted["deferred"] += 1
        # What the tenant guard judges; counted with the suppression it caused, so SNS delivering a
        # message twice (it delivers at least once) counts it once.
        self.store.outcomes.record(message.tenant, SES_ROUTE, counted)
        return 200, {"status": "ok", "events": len(events), "suppressed": suppressed}

    def _check_config_set(self, message: VerifiedMessage, event: SesEvent) -> None:
        expected = self._config_sets.get(message.tenant)
        if event.configuration_set is not None and event.configuration_set != expected:
            log.warning("SES event on %s names configuration set %r, not %r: counted for %s (the topic's tenant)",
                        message.topic_arn, event.configuration_set, expected, message.tenant)

    def _suppress(self, tenant: str, address: str, reason: str, source: str) -> bool:
        new = self.store.suppress(tenant, address, reason, source)
        if new:
            self.metrics.suppressed.labels(tenant, reason).inc()
        return new


def _ses_reason(event: SesEvent) -> str:
    return "complaint" if event.kind is EventKind.COMPLAINT else "hard_bounce"
