"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from webhook_receiver import WebhookReceiver


@pytest.fixture
def alerts() -> Iterator[WebhookReceiver]:
    """A webhook on loopback the sender's alerts are sent to; what arrived is in ``bodies``."""
    with WebhookReceiver() as receiver:
        yield receiver
