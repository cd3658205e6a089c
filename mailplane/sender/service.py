"""One sender instance's parts, wired once: fleet, config, store, pacer, metrics, events.

The HTTP app, the delivery workers and the event ingestion all take this object, so each of
them can be built and tested alone against a real database while sharing one set of counters.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mailplane.model.names import vmta_name
from mailplane.model.stack import Fleet
from mailplane.model.tenant import Tenant
from mailplane.sender.config import SenderConfig, hash_api_key
from mailplane.sender.core.limits import Limits
from mailplane.sender.db.store import Store
from mailplane.sender.delivery.deployed import DeployedConfigs
from mailplane.sender.delivery.handover import HandoverHolds
from mailplane.sender.delivery.pacing import IpOverride, Pacer
from mailplane.sender.events.alerts import Post, post_json, send_alert
from mailplane.sender.front.render_pool import RenderBudget, RenderPool
from mailplane.sender.metrics import Health, Metrics

if TYPE_CHECKING:
    from mailplane.sender.events.side import Events

log = logging.getLogger(__name__)


def mismatches(fleet: Fleet, config: SenderConfig) -> list[str]:
    """What the config names that the stack does not have: a typo there would silently refuse
    a sender's key or never deliver through a host, so the service does not start with one."""
    hosts = set(fleet.settings.mta_hosts)
    senders = {f"{t.name}/{s.name}" for t in fleet.tenants for s in t.senders}
    problems = [f"mta_hosts: {h!r} is not an MTA host of stack {fleet.stack}" for h in config.mta_hosts or ()
                if h not in hosts]
    for field_name, named in (("smtp_endpoints", config.smtp_endpoints), ("deployed_records", config.deployed_records)):
        problems += [f"{field_name}: {h!r} is not an MTA host of stack {fleet.stack}" for h in named if h not in hosts]
    for field, names in (("api_keys", config.api_keys), ("ses_credentials", config.ses_credentials)):
        problems += [f"{field}: {n!r} is not a sender of stack {fleet.stack}" for n in sorted(names)
                     if n not in senders]
    return problems


class Service:
    """Everything an instance shares between its API, its workers and its event handling."""

    def __init__(self, fleet: Fleet, config: SenderConfig, *, stack_name: str = "stack",
                 clock: Callable[[], float] = time.time, store: Store | None = None) -> None:
        self.fleet = fleet
        self.config = config
        self.stack_name = stack_name
        self.clock = clock
        self.store = store or Store(config.database_url, clock=clock)
        self.store.weights = {t.name: t.ses.share for t in fleet.tenants}
        self.metrics = Metrics()
        problems = mismatches(fleet, config)
        if problems:
            raise ValueError("; ".join(problems))
        self.deployed = DeployedConfigs(config.deployed_records, fleet.stack)
        self.pacer = Pacer(self.store, fleet, overrides=self.override, hosts=config.mta_hosts, deployed=self.deployed)
        self.post_alert: Post = post_json
        """How alerts reach ``alert_webhook_url`` (tests may point it elsewhere)."""
        self.holds = HandoverHolds(self.store, after=config.handover_refusals_before_hold,
                                   hold_seconds=config.handover_hold_seconds, alert=self.alert, stack=stack_name)
        self._undeployed_reported: dict[tuple[str, str], str] = {}
        self._undeployed_lock = threading.Lock()
        self.events: Events | None = None
        """The event side, once :meth:`attach_events` built it (an instance may run without one)."""
        self._keys = [(name, stored) for name, stored in sorted(config.api_keys.items())]
        self._account_read = False
        self._render_lock = threading.Lock()
        self._render_pool: RenderPool | None = None
        self.render_limiter: anyio.CapacityLimiter | None = None
        self.metrics.watch(self.store.counts, self.ip_remaining, self._paused, self.health)
        for host in self.unjudged_hosts():
            log.warning("no deployed record for MTA host %s (deployed_records): its VMTAs are named as the fleet says, "
                        "without knowing that PowerMTA there has them", host)

    @classmethod
    def open(cls, stack_dir: Path | str, config: SenderConfig, **kwargs: object) -> Service:
        from mailplane.model.loader import load_stack

        fleet = load_stack(stack_dir)
        return cls(fleet, config, stack_name=fleet.stack, **kwargs)  # type: ignore[arg-type]

    # -- identity ----------------------------------------------------------------------

    def authenticate(self, key: str) -> tuple[Tenant, str] | None:
        """The (tenant, sender name) an API key belongs to, or None.

        Every stored hash is compared (in constant time each) so the answer's timing does not
        tell which sender, if any, a guessed key came close to.
        """
        found: tuple[Tenant, str] | None = None
        presented = hash_api_key(key)  # once, not once per stored key
        for name, stored in self._keys:
            if hmac.compare_digest(presented, stored) and found is None:
                tenant_name, sender = name.split("/", 1)
                tenant = self.tenant(tenant_name)
                if tenant is not None and any(s.name == sender for s in tenant.senders):
                    found = (tenant, sender)
        return found

    def authenticate_admin(self, key: str) -> str | None:
        """The operator an admin key belongs to, or None (every stored hash compared in constant time)."""
        presented = hash_api_key(key)
        found: str | None = None
        for name, stored in sorted(self.config.admin_keys.items()):
            if hmac.compare_digest(presented, stored) and found is None:
                found = name
        return found

    def tenant(self, name: str) -> Tenant | None:
        try:
            return self.fleet.tenant(name)
        except KeyError:
            return None

    def attach_events(self, **kwargs: Any) -> Events:
        """Build the event side from this instance's parts (``kwargs``: the SNS certificate ``fetcher``, the
        alert ``post``, the subscription ``get``, for tests) and answer holds from it from now on."""
        from mailplane.sender.events.parts import EventParts
        from mailplane.sender.events.side import Events

        parts = EventParts(self.fleet, self.config, self.store, self.metrics, self.clock, self.stack_name)
        self.events = Events(parts, **kwargs)
        return self.events

    # -- pacing ------------------------------------------------------------------------

    def override(self, tenant: str, ip: str, day: datetime.date) -> IpOverride | None:
        """Holds the reputation side imposes on an IP (None until events are attached)."""
        events = self.events
        return events.override(tenant, ip, day) if events is not None else None

    def refresh_account(self) -> Limits:
        """Read the SES account's quota and rate and pace by the lower of them and fleet.yaml's; log what differs
        when it changes.  A failure to ask keeps what was known (fleet.yaml's limits at first)."""
        import boto3
        from botocore.config import Config

        from mailplane.sender.core.limits import effective
        from mailplane.sender.delivery.account import read_account

        region, endpoint = self.fleet.settings.ses.region, self.config.aws.endpoint_url
        config = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2, "mode": "standard"})
        try:
            account = read_account(boto3.client("sesv2", region_name=region, endpoint_url=endpoint, config=config),
                                   boto3.client("ses", region_name=region, endpoint_url=endpoint, config=config))
        except Exception as err:  # no credentials, no network: pace by what is known, say so
            log.error("cannot read the SES account's quota and rate (%s): pacing by %s", err,
                      "the last reading" if self.pacer.account else "fleet.yaml's limits")
            return self.pacer.limits()
        before = self.pacer.limits()
        self.pacer.account = account
        limits = effective(self.fleet.settings.ses.daily_quota, self.fleet.settings.ses.max_send_rate, account)
        if limits != before or not self._account_read:
            for warning in limits.warnings:
                log.warning("SES account: %s", warning)
        self._account_read = True
        return limits

    def _paused(self) -> Iterable[tuple[str, str, str, str, str, str]]:
        """The pauses in force, for the ``mailplane_sender_paused`` gauge."""
        for row in self.store.pauses.active():
            yield row.scope, row.tenant or "*", row.key, row.mode, row.source, row.reason

    # -- what PowerMTA runs --------------------------------------------------------------

    def alert(self, payload: Mapping[str, Any]) -> None:
        """POST one alert to ``alert_webhook_url`` (:func:`~mailplane.sender.events.alerts.send_alert`)."""
        send_alert(self.post_alert, self.config.alert_webhook_url, payload)

    def unjudged_hosts(self) -> list[str]:
        """This instance's MTA hosts with IPs but no deployed record configured."""
        mine = self.config.mta_hosts if self.config.mta_hosts is not None else self.fleet.settings.mta_hosts
        return sorted(h for h in mine if self.fleet.ips_by_host.get(h) and not self.deployed.judged(h))

    def undeployed(self) -> list[tuple[str, str, str, str, str]]:
        """(tenant, IP, host, VMTA, why) of every IP on this instance's hosts that may send today but whose VMTA
        the host's PowerMTA does not run: the gauge, the alerts and the log say these."""
        day, found = self.today(), []
        for tenant in self.fleet.tenants:
            for ip in tenant.ips:
                if self.pacer.hosts is not None and ip.host not in self.pacer.hosts:
                    continue
                gate = self.pacer.ip_gate(tenant, ip, day)
                if gate.missing is not None and (gate.daily_cap is None or gate.daily_cap > 0):
                    found.append((tenant.name, ip.address, ip.host, vmta_name(tenant.name, ip.address), gate.missing))
        return found

    def check_deployed(self) -> None:
        """Log and alert each IP whose VMTA went missing from its host's PowerMTA, and each that came back."""
        with self._undeployed_lock:
            self._report_undeployed({(t, ip): (host, vmta, why) for t, ip, host, vmta, why in self.undeployed()})

    def _report_undeployed(self, now: dict[tuple[str, str], tuple[str, str, str]]) -> None:
        for (tenant, ip), (host, vmta, why) in sorted(now.items()):
            if (tenant, ip) not in self._undeployed_reported:
                log.warning("IP %s of %s: %s; its mail waits", ip, tenant, why)
                self.alert({"kind": "vmta-not-deployed", "stack": self.stack_name, "tenant": tenant, "ip": ip,
                            "host": host, "vmta": vmta, "reason": why,
                            "text": f"mailplane: IP {ip} of {tenant} may send today but {why}; its mail waits"})
        for (tenant, ip) in sorted(set(self._undeployed_reported) - set(now)):
            log.info("IP %s of %s: its VMTA is deployed; its mail goes", ip, tenant)
        self._undeployed_reported = {key: value[2] for key, value in now.items()}

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date()

    def ip_remaining(self) -> Iterable[tuple[str, str, float]]:
        """(tenant, IP, messages left today) for every planned IP: the metrics gauge."""
        day = self.today()
        for tenant in self.fleet.tenants:
            for ip in tenant.ips:
                gate = self.pacer.ip_gate(tenant, ip, day)
                if gate.daily_cap is not None:
                    sent = self.store.counter("ip", ip.address, day)
                    yield tenant.name, ip.address, float(max(gate.daily_cap - sent, 0))

    def health(self) -> Health:
        """The scrape-time gauges of on-call's dashboard and alerts, read from the shared database."""
        from mailplane.sender.events.guard import judged_all

        day = self.today()
        held = tuple((tenant.name, ip.address, override.held_days) for tenant in self.fleet.tenants
                     for ip in tenant.ips if ip.warmup is not None
                     for override in [self.override(tenant.name, ip.address, day)] if override is not None)
        rates = []
        for now in judged_all(self.fleet, self.store):
            sent = now.totals.sent
            rates.append((now.tenant, sent, now.totals.bounced / sent if sent else 0.0, now.guard.bounce_rate,
                          now.totals.complained / sent if sent else 0.0, now.guard.complaint_rate,
                          now.guard.min_volume))
        oldest = self.store.oldest_queued()
        limits = self.pacer.limits()
        return Health(oldest_queued_seconds=max(self.clock() - oldest, 0.0) if oldest is not None else 0.0,
                      ip_held_days=held, tenant_rates=tuple(rates),
                      ses_sent_today=self.store.counter("ses", self.fleet.settings.ses.region, day),
                      ses_daily_quota=limits.daily_quota, ses_max_send_rate=limits.max_send_rate,
                      undeployed=tuple((t, ip, host, vmta) for t, ip, host, vmta, _ in self.undeployed()))

    def renderer(self) -> RenderPool:
        """The render workers, started at the first template (a service that never renders starts none)."""
        with self._render_lock:
            if self._render_pool is None:
                r = self.config.render
                self._render_pool = RenderPool(RenderBudget(r.cpu_seconds, r.memory_mb, r.wall_seconds,
                                                            r.workers, r.queue_seconds))
                self.render_limiter = anyio.CapacityLimiter(r.workers)
            return self._render_pool

    def close(self) -> None:
        with self._render_lock:
            pool, self._render_pool = self._render_pool, None
        if pool is not None:
            pool.close()
        self.store.close()
