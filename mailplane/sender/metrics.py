"""Prometheus metrics of one sender instance.

Counters (sent, failed, suppressed, latency) are this process's own, as Prometheus expects of a
scrape target; gauges that describe the shared queue (messages per state, each IP's remaining
cap) are read from the database at scrape time, so every instance reports the same truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
"""Seconds from acceptance to hand-over: a paced message may rightly wait hours."""


@dataclass(frozen=True)
class Health:
    """What the scrape-time gauges beyond the queue's states show: read from the shared database."""

    oldest_queued_seconds: float = 0.0
    ip_held_days: tuple[tuple[str, str, int], ...] = ()
    """(tenant, IP, days its warmup plan was held)."""
    tenant_rates: tuple[tuple[str, int, float, float, float, float, int], ...] = ()
    """(tenant, sent in the guard's window, bounce rate, its threshold, complaint rate, its threshold,
    the guard's minimum volume)."""
    ses_sent_today: int = 0
    ses_daily_quota: int = 0
    ses_max_send_rate: float = 0.0
    undeployed: tuple[tuple[str, str, str, str], ...] = ()
    """(tenant, IP, MTA host, VMTA) of each IP that may send today whose VMTA its host's PowerMTA does not run."""


class _Gauges(Collector):
    """Gauges computed on each scrape from callables returning ``(labels, value)`` pairs."""

    def __init__(self, queue: Callable[[], dict[str, int]],
                 ip_remaining: Callable[[], Iterable[tuple[str, str, float]]],
                 paused: Callable[[], Iterable[tuple[str, str, str, str, str, str]]],
                 health: Callable[[], Health]) -> None:
        self.queue = queue
        self.ip_remaining = ip_remaining
        self.paused = paused
        self.health = health

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
        yield from self._health(self.health())

    @staticmethod
    def _health(health: Health) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily("mailplane_sender_queue_oldest_seconds",
                                "Age of the oldest queued message (0: none waits).", value=health.oldest_queued_seconds)
        held = GaugeMetricFamily("mailplane_sender_ip_held_days", "Days each IP's warmup plan was held for bad "
                                 "bounce, complaint or deferral rates (a rise: held again).", labels=["tenant", "ip"])
        for tenant, ip, days in health.ip_held_days:
            held.add_metric([tenant, ip], days)
        yield held
        window = GaugeMetricFamily("mailplane_sender_tenant_window_sent", "Messages the tenant sent in its guard's "
                                   "window (rates are judged from the guard's minimum volume on).", labels=["tenant"])
        minimum = GaugeMetricFamily("mailplane_sender_tenant_min_volume", "The guard's minimum volume.",
                                    labels=["tenant"])
        rate = GaugeMetricFamily("mailplane_sender_tenant_rate", "The tenant's bounce or complaint rate over its "
                                 "guard's window, both routes.", labels=["tenant", "kind"])
        threshold = GaugeMetricFamily("mailplane_sender_tenant_rate_threshold", "The rate above which the guard "
                                      "pauses the tenant.", labels=["tenant", "kind"])
        for tenant, sent, bounce, bounce_max, complaint, complaint_max, min_volume in health.tenant_rates:
            window.add_metric([tenant], sent)
            minimum.add_metric([tenant], min_volume)
            rate.add_metric([tenant, "bounce"], bounce)
            rate.add_metric([tenant, "complaint"], complaint)
            threshold.add_metric([tenant, "bounce"], bounce_max)
            threshold.add_metric([tenant, "complaint"], complaint_max)
        yield from (window, minimum, rate, threshold)
        undeployed = GaugeMetricFamily("mailplane_sender_vmta_undeployed", "IPs that may send today whose VMTA the "
                                       "host's PowerMTA does not run (1 each): their mail waits.",
                                       labels=["tenant", "ip", "host", "vmta"])
        for labels in health.undeployed:
            undeployed.add_metric(list(labels), 1)
        yield undeployed
        yield GaugeMetricFamily("mailplane_sender_ses_sent_today", "Messages handed to SES this UTC day (the "
                                "account's 24-hour quota counts a rolling day).", value=health.ses_sent_today)
        yield GaugeMetricFamily("mailplane_sender_ses_daily_quota", "The SES daily quota the sender paces by: the "
                                "lower of fleet.yaml's and the account's.", value=health.ses_daily_quota)
        yield GaugeMetricFamily("mailplane_sender_ses_max_send_rate", "The SES send rate the sender paces by, "
                                "messages a second.", value=health.ses_max_send_rate)


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
              paused: Callable[[], Iterable[tuple[str, str, str, str, str, str]]] = lambda: (),
              health: Callable[[], Health] = Health) -> None:
        """Register the scrape-time gauges (the service calls this once it has a store)."""
        self.registry.register(_Gauges(queue, ip_remaining, paused, health))
