"""Hold an IP whose hand-overs PowerMTA keeps refusing for its configuration; let it go at the first success.

A refusal about PowerMTA's configuration (an unknown virtual MTA, relaying denied, a source rule:
``TemporaryFailure.mta_config``) says every message of that IP will be refused the same way until
the config changes -- the daily Ansible run deploys the VMTA, an operator fixes a source.  Sending
on would only turn the queue over and fill the log.  So after ``after`` such refusals in a row on
one IP, the IP is *held*: an IP pause (source ``handover``) until ``hold_seconds`` from now, with
the reply as its reason, a log line and an alert.  Mail waits in the queue under it, as under any
pause.  When the hold ends, mail flows again; the first hand-over PowerMTA accepts ends the run of
refusals (and a hold still in force) and says so.  No message is failed or suppressed for any of
this: the messages themselves were retried with their reservations given back.

The run of refusals is this instance's memory: an instance submits to its own host's PowerMTA,
so no other instance sees the same replies; after a restart a run starts again from none.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mailplane.model.addresses import canonical_ip
from mailplane.sender.core.pauses import PauseRequest
from mailplane.sender.db.store import Store

log = logging.getLogger(__name__)

SOURCE = "handover"
"""The ``source`` of the pauses this module makes: the quota API and ``/metrics`` show it."""

Alert = Callable[[Mapping[str, Any]], None]
"""Deliver one alert (the JSON the webhook gets); must not raise."""


@dataclass
class _Run:
    refusals: int = 0
    last_reply: str = ""
    pause_id: int | None = None
    until: float = 0.0


class HandoverHolds:
    """Counts configuration refusals per IP and holds the IP after ``after`` in a row (see the module docstring)."""

    def __init__(self, store: Store, *, after: int, hold_seconds: float, alert: Alert, stack: str) -> None:
        self.store = store
        self.after = after
        self.hold_seconds = hold_seconds
        self.alert = alert
        self.stack = stack
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def refused(self, tenant: str, address: str, host: str, reply: str) -> bool:
        """Count one refusal; True when it held the IP (a hold was not already in force)."""
        ip = canonical_ip(address)
        now = self.store.clock()
        with self._lock:
            run = self._runs.setdefault(ip, _Run())
            run.refusals += 1
            run.last_reply = reply
            if run.refusals < self.after or run.until > now:
                return False
            reason = (f"PowerMTA on {host} refused {run.refusals} hand-overs in a row for its configuration, "
                      f"last: {reply[:300]}; held {self.hold_seconds:.0f} s, then tried again")
            row = self.store.pauses.add(PauseRequest("ip", tenant, ip, "pause", reason, now + self.hold_seconds),
                                        source=SOURCE)
            run.pause_id, run.until = row.id, now + self.hold_seconds
        log.warning("IP %s of %s held: %s", ip, tenant, reason)
        self.alert({"kind": "ip-handover-held", "stack": self.stack, "tenant": tenant, "ip": ip, "host": host,
                    "reason": reason, "text": f"mailplane: IP {ip} of {tenant} held: {reason}"})
        return True

    def succeeded(self, tenant: str, address: str, host: str) -> None:
        """A hand-over on the IP was accepted: the run of refusals ends, and with it a hold in force."""
        if not self._runs:  # the hot path: nothing was ever refused
            return
        ip = canonical_ip(address)
        with self._lock:
            run = self._runs.pop(ip, None)
        if run is None:
            return
        if run.pause_id is not None and run.until > self.store.clock():
            self.store.pauses.end(run.pause_id)
        if run.pause_id is None:
            log.info("PowerMTA on %s accepts mail for IP %s of %s again, after %d refusals", host, ip, tenant,
                     run.refusals)
            return
        log.warning("IP %s of %s released: PowerMTA on %s accepts its mail again", ip, tenant, host)
        self.alert({"kind": "ip-handover-released", "stack": self.stack, "tenant": tenant, "ip": ip, "host": host,
                    "text": f"mailplane: IP {ip} of {tenant} released: PowerMTA on {host} accepts its mail again"})
