"""``stacks/<stack>/fleet.yaml``: what all tenants of a stack share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mailplane.model.base import Model
from mailplane.model.types import DomainName, EmailAddress, HttpsUrl, IPAddress, Listener, Slug

DnsProvider = Literal["route53", "external"]
ReputationPolicy = Literal["none", "standard", "strict"]
"""SES's managed reputation policies for a tenant: how readily SES itself pauses the tenant when its
bounce or complaint findings are bad (``strict`` soonest; ``none`` never, leaving it to mailplane's
guard and to the account-wide review)."""


REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-\d$"
"""An AWS region's name (eu-north-1, us-gov-west-1)."""


class SesAccount(Model):
    """The Amazon SES account of the stack; the sender service paces all tenants within it."""

    region: str = Field(pattern=REGION_PATTERN, description="AWS region, e.g. eu-north-1.")
    max_send_rate: float = Field(gt=0, description="Account limit in messages per second.")
    daily_quota: int = Field(gt=0, description="Account limit in messages per 24 hours.")
    reputation_policy: ReputationPolicy = Field(
        "standard", description="Default SES reputation policy of each tenant (`none`, `standard`, `strict`): "
        "how readily SES pauses one tenant on its own findings; a tenant's `ses.reputation_policy` replaces it.")


class DnsDefaults(Model):
    default_provider: DnsProvider = Field(
        "route53", description="Provider of domains that name none: `route53` creates records; "
        "`external` prints them for a human to publish.")
    ttl: int = Field(300, ge=60, le=86400, description="TTL in seconds of the records mailplane manages.")


class ScheduleStep(Model):
    day: int = Field(ge=1, le=366, description="Day of the plan, 1 for the first day.")
    daily: int = Field(gt=0, description="Messages per IP per day from this day on.")
    hourly: int | None = Field(None, gt=0, description="Per-hour ceiling; default daily / spread_hours.")


class HoldThresholds(Model):
    """Rates above which an IP stops advancing in its plan (its cap stays where it is)."""

    bounce_rate: float = Field(0.05, gt=0, le=1, description="Share of sent mail that hard-bounced.")
    complaint_rate: float = Field(0.001, gt=0, le=1, description="Share of sent mail reported as spam.")
    deferral_rate: float = Field(0.20, gt=0, le=1, description="Share of attempts deferred (4xx).")


class TenantGuard(Model):
    """The rates at which a tenant's sending pauses, on both routes, before the shared SES account suffers.

    SES reviews an account at a 5 % bounce or 0.1 % complaint rate and may pause all of it at 10 % or
    0.5 %: every tenant stops.  The defaults stop one tenant well before its mail drags the account there.
    """

    bounce_rate: float = Field(0.03, gt=0, le=1, description="Share of the tenant's sent mail that hard-bounced "
                               "over the window (SES reviews an account at 5 %).")
    complaint_rate: float = Field(0.0008, gt=0, le=1, description="Share reported as spam over the window "
                                  "(SES reviews at 0.1 %).")
    min_volume: int = Field(200, ge=1, description="Messages sent in the window before the rates are judged: a few "
                            "bounces of a handful of messages say nothing.")
    window_hours: int = Field(24, ge=1, le=24 * 14, description="The rolling window the rates are taken over.")


class WarmupPlanSpec(Model):
    """A warmup plan: a built-in ``preset`` (possibly with other thresholds) or a written ``schedule``."""

    preset: str | None = Field(None, description="Name of a built-in plan to start from.")
    schedule: list[ScheduleStep] | None = Field(
        None, min_length=1, description="Daily caps by plan day; a day not listed keeps the previous day's cap, "
        "and after the last step the cap stays at its value.")
    spread_hours: int | None = Field(
        None, ge=1, le=24, description="The day's cap is spread over at least this many hours: the "
        "hourly ceiling is daily / spread_hours (default: the preset's, else 12).")
    hold_when: HoldThresholds | None = Field(None, description="Hold thresholds (default: the preset's).")
    burst_seconds: int | None = Field(
        None, ge=1, le=3600, description="How much of the hourly ceiling may leave at once: the sender spends the "
        "ceiling as a steady rate (one send every 3600 / ceiling seconds) with a burst of this many seconds' "
        "worth (default 60: the busiest minute is at most twice the even rate). 3600 lets the whole hour's "
        "ceiling go at once, as a clock-hour window would.")


class MtaHost(Model):
    """A host running PowerMTA and the sender service."""

    ansible_host: IPAddress = Field(description="Address Ansible connects to.")
    smtp_listener: Listener = Field(
        "127.0.0.1:2525", description="Where PowerMTA accepts mail from the sender service.")
    private_address: IPAddress | None = Field(
        None, description="Private address the sender service may also submit from.")


DEFAULT_VMTA_LEAD_DAYS = 2
"""Days before an IP's first plan day its VMTA is in the rendered PowerMTA config, when fleet.yaml
has no ``powermta.vmta_lead_days``: the sender names the VMTA from 00:00 UTC of that day, the
daily Ansible run reloads PowerMTA only later that morning, and two days survive one missed run."""


class PowerMta(Model):
    """What every MTA host's PowerMTA shares."""

    postmaster: EmailAddress = Field(
        description="Where PowerMTA sends its own crash and licence-expiry notices (`postmaster`).")
    vmta_lead_days: int = Field(
        DEFAULT_VMTA_LEAD_DAYS, ge=0, le=30, description="Days before an IP's first warmup plan day that its "
        "VMTA and DKIM keys are in the deployed PowerMTA config (in no pool, so idle until that day). The "
        "sender names the VMTA from 00:00 UTC of the first day, before that day's Ansible run reloads "
        "PowerMTA; a lead of 2 still has it there in time when one daily run is missed. 0: only from the "
        "first day's run on (mail handed over before it is refused).")


class SenderService(Model):
    """Where the sender service is reachable from the internet (SNS events, unsubscribe links)."""

    public_url: HttpsUrl = Field(
        description="HTTPS base URL of the sender service; SNS delivers SES events to "
        "`<public_url>/v1/webhooks/ses`.")
    submission_host: DomainName | None = Field(
        None, description="Host name applications submit SMTP to (the sender config's `submission:` listeners; the "
        "name on their TLS certificate). `mailplane render` points MailWizz's delivery servers there.")
    submission_port: int = Field(587, ge=1, le=65535, description="Port of that listener.")
    submission_tls: Literal["starttls", "implicit"] = Field(
        "starttls", description="`starttls` (port 587) or `implicit` (port 465) TLS on that listener.")


# The stack's settings, read as ``Fleet.settings`` (``Fleet``: this file with its tenants, loaded).
class FleetSettings(Model):
    """The whole of ``fleet.yaml``."""

    ses: SesAccount = Field(description="The stack's SES account limits.")
    dns: DnsDefaults = Field(DnsDefaults(), description="DNS defaults for every domain of the stack.")
    warmup_plans: dict[Slug, WarmupPlanSpec] = Field(
        default_factory=dict, description="Plans written for this stack, by name; built-in presets "
        "may be named by IPs directly.")
    mta_hosts: dict[Slug, MtaHost] = Field(description="PowerMTA hosts by name.")
    sender: SenderService | None = Field(None, description="The sender service; without it no SNS "
                                         "subscription is made.")
    guard: TenantGuard = Field(TenantGuard(), description="Default rates at which a tenant's sending pauses "
                               "(a tenant's own `guard:` replaces them).")
    powermta: PowerMta | None = Field(None, description="PowerMTA settings of every MTA host; without "
                                      "`postmaster` PowerMTA's own notices go nowhere.")

    @property
    def vmta_lead_days(self) -> int:
        """``powermta.vmta_lead_days``, or its default when fleet.yaml has no ``powermta:`` section:
        the one value the PowerMTA view reads, so the section's absence never changes the lead."""
        return self.powermta.vmta_lead_days if self.powermta else DEFAULT_VMTA_LEAD_DAYS
