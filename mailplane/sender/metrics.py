"""Prometheus metrics of one sender instance.

Counters (sent, failed, suppressed, latency) are this process's own, as Prometheus expects of a
scrape target; gauges that describe the shared queue (messages per state, each IP's remaining
cap) are read from the database at scrape time, so every instance reports the same truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
"""Seconds from acceptance to hand-over: a paced message may rightly wait hours."""


class _Gauges(Collector):
    """Gauges computed on each scrape from callables returning ``(labels, value)`` pairs."""

    def __init__(self, queue: Callable[[], dict[str, int]],
                 ip_remaining: Callable[[], Iterable[tuple[str, str, float]]],
                 paused: Callable[[], Iterable[tuple[str, str, str, str, str, str]]]) -> None:
        self.queue = queue
        self.ip_remaining = ip_remaining
        self.paused = paused

    def collect(self) -> Iterable[GaugeMetricFamily]:
        states = GaugeMetricFamily("mailplane_sender_messages", "Messages in the shared queue by state.",
                                   labels=["state"])
        counts = self.queue()
        for state in ("queued", "sending", "sent", "failed", "suppressed", "cancelled"):
            states.add_metric([state], counts.get(state, 0))
        yield states
        remaining = GaugeMetricFamily("mailplane_sender_ip_remaining",
                                      "Messages each IP may still send today under its warmup cap.",
                                      labels=["tenant", "ip"])
        for tenant, ip, value in self.ip_remaining():
            remaining.add_metric([tenant, ip], value)
        yield remaining
        paused = GaugeMetricFamily("mailplane_sender_paused", "Pauses and drains in force (1 each): what, whose, "
                                   "by whom, and why.", labels=["scope", "tenant", "key", "mode", "source", "reason"])
        for labels in self.paused():
            paused.add_metric(list(labels), 1)
        yield paused


class Metrics:
    """The instance's registry (one per service, so tests can run several in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter("mailplane_sender_accepted", "Messages accepted and queued.",
                                ["tenant", "stream"], registry=self.registry)
        self.sent = Counter("mailplane_sender_sent", "Messages handed over to SES or PowerMTA.",
                            ["tenant", "transport"], registry=self.registry)
        self.failed = Counter("mailplane_sender_failed", "Messages failed permanently.",
                              ["tenant", "transport"], registry=self.registry)
        self.retried = Counter("mailplane_sender_retried", "Temporary failures put back in the queue.",
                               ["tenant", "transport"], registry=self.registry)
        self.suppressed = Counter("mailplane_sender_suppressed", "Addresses newly suppressed.",
                                  ["tenant", "reason"], registry=self.registry)
        self.sns_rejected = Counter("mailplane_sender_sns_rejected", "SNS POSTs refused (403), by reason.",
                                    ["reason"], registry=self.registry)
        self.sns_certificate_fetches = Counter(
            "mailplane_sender_sns_certificate_fetches", "SNS signing certificates fetched (forged POSTs cannot "
            "raise this past the fetch rate limit).", registry=self.registry)
        self.guard_pauses = Counter("mailplane_sender_guard_pauses", "Tenants paused by the tenant guard.",
                                    ["tenant"], registry=self.registry)
        self.latency = Histogram("mailplane_sender_send_latency_seconds",
                                 "Seconds from acceptance to hand-over.", ["transport"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def watch(self, queue: Callable[[], dict[str, int]],
              ip_remaining: Callable[[], Iterable[tuple[str, str, float]]],
              paused: Callable[[], Iterable[tuple[str, str, str, str, str, str]]] = lambda: ()) -> None:
        """Register the scrape-time gauges (the service calls this once it has a store)."""
        self.registry.register(_Gauges(queue, ip_remaining, paused))
