"""How alerts leave the sender: a JSON POST to the operator's ``alert_webhook_url``.

Apart from the parts that raise alerts (IP holds, the tenant guard, hand-over holds, VMTAs not
deployed) so each of them, and the service that wires them, can send one without importing the
others.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

Post = Callable[[str, Mapping[str, Any], float], None]
"""POST a JSON body to a URL with a timeout; raises on any failure (the alert webhook)."""
ALERT_TIMEOUT = 5.0
"""Seconds an alert POST may take: alerts are sent from the sender's own loops."""

log = logging.getLogger("mailplane.sender")


def post_json(url: str, payload: Mapping[str, Any], timeout: float) -> None:
    """Default alert delivery: urllib POST of JSON; a non-2xx status raises ``HTTPError``."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # the operator's configured URL
        response.read(1024)


def send_alert(post: Post, url: str | None, payload: Mapping[str, Any]) -> bool:
    """POST one alert when a webhook is configured; a failure is logged, never raised: the state an alert
    reports (a pause, a hold) holds whatever the webhook does.  False when it did not go."""
    if url is None:
        return False
    try:
        post(url, payload, ALERT_TIMEOUT)
    except Exception as exc:
        log.error("alert webhook failed for %s: %s", payload.get("kind"), exc)
        return False
    return True
