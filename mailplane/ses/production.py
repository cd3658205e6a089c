"""The SES production-access request, composed from the fleet: what AWS reviews, written from what mailplane
really configures rather than by hand.

SES v2's ``PutAccountDetails`` *is* the request (MailType, WebsiteURL, UseCaseDescription, contact
addresses, ``ProductionAccessEnabled``).  The mail type comes from the streams; the use case from
the tenants, their streams, domains and expected volumes (the warmup forecast in 30 days, or the
tenant's own quota); the bounce, complaint and unsubscribe handling from what the fleet sets up:
SES events to SNS and the suppression lists, one-click unsubscribe for marketing mail, DMARC.
Pure: :func:`compose` builds the request, the command prints it, and sends it only when asked.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from mailplane.model.stack import Fleet
from mailplane.warmup.status import tenant_capacity

MAX_DESCRIPTION = 5000
"""``UseCaseDescription``'s limit in the SES v2 service model."""
FORECAST_DAYS = 30


@dataclass(frozen=True)
class ProductionRequest:
    mail_type: str
    website_url: str
    use_case: str
    contacts: tuple[str, ...] = ()

    def as_params(self) -> dict[str, object]:
        """The keyword arguments of ``sesv2.put_account_details``."""
        params: dict[str, object] = {"MailType": self.mail_type, "WebsiteURL": self.website_url,
                                     "ContactLanguage": "EN", "UseCaseDescription": self.use_case,
                                     "ProductionAccessEnabled": True}
        if self.contacts:
            params["AdditionalContactEmailAddresses"] = list(self.contacts)
        return params


def compose(fleet: Fleet, website: str, on: datetime.date, contacts: tuple[str, ...] = ()) -> ProductionRequest:
    """The request for ``fleet``'s account; ``ValueError`` when it cannot be made (no URL, too many contacts)."""
    if not website.startswith(("https://", "http://")):
        raise ValueError(f"--website must be the http(s) URL of the sending organisation, not {website!r}")
    if len(contacts) > 4:
        raise ValueError("at most 4 additional contact addresses (SES's limit)")
    streams = {s for t in fleet.tenants for s in t.streams}
    mail_type = "MARKETING" if "marketing" in streams else "TRANSACTIONAL"
    ses = fleet.settings.ses
    lines = [f"We send email for {len(fleet.tenants)} product{'s' if len(fleet.tenants) != 1 else ''} from one "
             f"account in {ses.region}, each with its own verified domains, configuration set and IAM send-only "
             "users, managed as code (every change reviewed in a pull request).", ""]
    later = on + datetime.timedelta(days=FORECAST_DAYS)
    for tenant in sorted(fleet.tenants, key=lambda t: t.name):
        capacity = tenant_capacity(fleet, tenant, later).daily if tenant.ips else tenant.daily_quota
        volume = f"up to {capacity:,} messages a day" if capacity is not None else "volume within the account quota"
        domains = ", ".join(d.name for d in tenant.domains)
        lines.append(f"- {tenant.display_name or tenant.name}: {' and '.join(tenant.streams)} mail from {domains}; "
                     f"{volume}.")
    lines += ["",
              "Recipients: only people who signed up or are customers of the product; transactional mail "
              "(receipts, password resets, notifications) is sent on their action.",
              "Bounces and complaints: every configuration set publishes bounce and complaint events to SNS; our "
              "sender service suppresses the address for that product at the first hard bounce or complaint, "
              "and SES's account suppression list is on for bounces and complaints.",
              "Warm-up: dedicated IPs follow written warm-up plans that hold on high bounce, complaint or "
              "deferral rates; the sender paces by the account's quota and rate."]
    if "marketing" in streams:
        lines.append("Unsubscribe: marketing mail carries List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 "
                     "one-click); an unsubscription takes effect at once and stops that product's marketing mail.")
    policies = sorted({d.dmarc.policy for t in fleet.tenants for d in t.domains if d.dmarc is not None})
    lines.append("Authentication: DKIM on every domain, a custom MAIL FROM domain aligned with the From domain, "
                 + (f"DMARC published ({', '.join(f'p={p}' for p in policies)})." if policies else "SPF."))
    text = "\n".join(lines)
    if len(text) > MAX_DESCRIPTION:
        text = text[:MAX_DESCRIPTION - 1] + "…"
    return ProductionRequest(mail_type, website, text, contacts)
