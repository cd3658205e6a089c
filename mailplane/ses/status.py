"""``mailplane ses status``: the fleet's identities and the account as SES reports them, checked item by item.

Per domain of the fleet: the identity exists and is verified for sending, its DKIM status is
SUCCESS (Easy DKIM or BYODKIM alike), and its custom MAIL FROM domain, when the fleet sets one, is
SUCCESS.  Per tenant: its SES tenant exists and SES lets it send (SES pauses one tenant on its
own findings, per the tenant's reputation policy), and that policy is the one the YAML asks for.
For the account: production access (not the sandbox), sending enabled, the daily quota and
rate against fleet.yaml's, and the account-level suppression list.  Each item is ok, warn or fail;
the exit status is 1 with a fail, so cron can alert on it.

:func:`judge` is pure over what :func:`gather` read; only :func:`gather` talks to SES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from mailplane.model.stack import Fleet
from mailplane.sender.core.limits import AccountLimits, effective
from mailplane.sender.delivery.account import read_account

T = TypeVar("T")

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Item:
    subject: str
    check: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Identity:
    """What SES says of one domain identity; ``missing`` when it has none by that name."""

    domain: str
    missing: bool = False
    verified: bool = False
    dkim_status: str | None = None
    mail_from_status: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SesTenant:
    """What SES says of one tenant; ``missing`` when it has none by that name."""

    name: str
    missing: bool = False
    sending_status: str | None = None
    """``ENABLED``, ``REINSTATED`` or ``DISABLED`` (SES's or an operator's pause)."""
    policy: str | None = None
    """The managed reputation policy's name (``none``, ``standard``, ``strict``), when SES said."""
    error: str | None = None


@dataclass(frozen=True)
class Observed:
    identities: list[Identity]
    account: AccountLimits | None
    account_error: str | None = None
    suppressed_reasons: tuple[str, ...] | None = None
    tenants: tuple[SesTenant, ...] = ()


def gather(fleet: Fleet, sesv2: Any, ses: Any) -> Observed:
    """Ask SES about every domain of the fleet and about the account."""
    identities = [_identity(sesv2, d.name) for t in fleet.tenants for d in t.domains]
    tenants = tuple(_ses_tenant(sesv2, t.ses_tenant) for t in fleet.tenants)
    account = error = None
    try:
        account = read_account(sesv2, ses)
    except (ClientError, BotoCoreError) as err:
        error = str(err)
    reasons = None
    try:
        reply = sesv2.get_account()
        reasons = tuple((reply.get("SuppressionAttributes") or {}).get("SuppressedReasons") or ())
    except (ClientError, BotoCoreError):
        pass  # an endpoint without GetAccount: the suppression settings are not known
    return Observed(sorted(identities, key=lambda i: i.domain), account, error, reasons, tenants)


@dataclass(frozen=True)
class _Failed:
    """Why SES did not answer about one item: it has no such resource, or the call failed."""

    missing: bool = False
    error: str | None = None


def _ask(call: Callable[[], T]) -> T | _Failed:
    """``call()``'s reply, or why there is none (never raised: one unreadable item is reported beside the others)."""
    try:
        return call()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NotFoundException":
            return _Failed(missing=True)
        return _Failed(error=str(err))
    except BotoCoreError as err:
        return _Failed(error=str(err))


def _ses_tenant(sesv2: Any, name: str) -> SesTenant:
    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        tenant = sesv2.get_tenant(TenantName=name).get("Tenant") or {}
        return tenant, sesv2.get_reputation_entity(
            ReputationEntityType="RESOURCE", ReputationEntityReference=tenant.get("TenantArn", "")).get(
            "ReputationEntity") or {}

    answer = _ask(read)
    if isinstance(answer, _Failed):
        return SesTenant(name, missing=answer.missing, error=answer.error)
    tenant, entity = answer
    policy = str(entity.get("ReputationManagementPolicy") or "").rpartition("/")[2] or None
    status = entity.get("SendingStatusAggregate") or tenant.get("SendingStatus")
    return SesTenant(name, sending_status=status, policy=policy)


def _identity(sesv2: Any, domain: str) -> Identity:
    reply = _ask(lambda: sesv2.get_email_identity(EmailIdentity=domain))
    if isinstance(reply, _Failed):
        return Identity(domain, missing=reply.missing, error=reply.error)
    dkim = reply.get("DkimAttributes") or {}
    mail_from = reply.get("MailFromAttributes") or {}
    return Identity(domain, verified=bool(reply.get("VerifiedForSendingStatus")), dkim_status=dkim.get("Status"),
                    mail_from_status=mail_from.get("MailFromDomainStatus"))


def judge(fleet: Fleet, seen: Observed) -> list[Item]:
    """Every item of the checklist with its status."""
    return [*_identity_items(fleet, seen.identities), *_tenant_items(fleet, seen.tenants),
            *_account_items(fleet, seen)]


def _identity_items(fleet: Fleet, identities: list[Identity]) -> list[Item]:
    """Per domain: the identity verified, its DKIM set up, and its MAIL FROM domain where the fleet sets one;
    an identity SES did not answer for, or has not, gets that one item alone."""
    mail_from = {d.name: d.mail_from for t in fleet.tenants for d in t.domains}
    items: list[Item] = []
    for identity in identities:
        name = identity.domain
        if identity.error is not None:
            items.append(Item(name, "identity", "fail", f"SES did not answer: {identity.error}"))
            continue
        if identity.missing:
            items.append(Item(name, "identity", "fail", "no SES identity: `pulumi up` has not created it"))
            continue
        items.append(Item(name, "identity", "ok" if identity.verified else "fail",
                          "verified for sending" if identity.verified else "not verified for sending: SES refuses "
                          "mail from it (its DKIM records are not published, or not yet seen)"))
        items.append(Item(name, "dkim", "ok" if identity.dkim_status == "SUCCESS" else "fail",
                          f"DKIM {identity.dkim_status or 'not set up'}"))
        if mail_from.get(name):
            status = identity.mail_from_status
            items.append(Item(name, "mail-from", "ok" if status == "SUCCESS" else "fail",
                              f"MAIL FROM {mail_from[name]}: {status or 'not set'}"))
    return items


def _account_items(fleet: Fleet, seen: Observed) -> list[Item]:
    """The account: out of the sandbox, sending enabled, limits against fleet.yaml's (a shortfall is a warning:
    the sender paces by the lower), and the account-level suppression list; what SES did not say is left out."""
    ses = fleet.settings.ses
    account = seen.account
    if account is None:
        return [Item("account", "quota", "fail", f"SES did not answer: {seen.account_error}")]
    items: list[Item] = []
    if account.production_access is not None:
        items.append(Item("account", "production-access", "ok" if account.production_access else "fail",
                          "production access" if account.production_access else
                          "in the sandbox: only verified recipients, 200 a day at 1/s"))
    if account.sending_enabled is not None:
        items.append(Item("account", "sending", "ok" if account.sending_enabled else "fail",
                          "sending enabled" if account.sending_enabled else "sending is disabled for the account"))
    limits = effective(ses.daily_quota, ses.max_send_rate, account)
    quota_ok = account.max_24_hour_send >= ses.daily_quota and account.max_send_rate >= ses.max_send_rate
    items.append(Item("account", "quota", "ok" if quota_ok else "warn",
                      f"{account.max_24_hour_send} a day at {account.max_send_rate:g}/s ({account.source}); "
                      f"fleet.yaml {ses.daily_quota} at {ses.max_send_rate:g}/s"
                      + ("" if quota_ok else f": the sender paces by {limits.daily_quota} at "
                         f"{limits.max_send_rate:g}/s")))
    if seen.suppressed_reasons is not None:
        wanted = {"BOUNCE", "COMPLAINT"}
        have = set(seen.suppressed_reasons)
        items.append(Item("account", "suppression", "ok" if wanted <= have else "warn",
                          f"account suppression list: {', '.join(sorted(have)) or 'off'}"
                          + ("" if wanted <= have else " (BOUNCE and COMPLAINT recommended)")))
    return items


def _tenant_items(fleet: Fleet, tenants: tuple[SesTenant, ...]) -> list[Item]:
    wanted = {t.ses_tenant: fleet.reputation_policy_for(t) for t in fleet.tenants}
    items: list[Item] = []
    for tenant in tenants:
        subject = f"tenant {tenant.name}"
        if tenant.error is not None:
            items.append(Item(subject, "ses-tenant", "fail", f"SES did not answer: {tenant.error}"))
            continue
        if tenant.missing:
            items.append(Item(subject, "ses-tenant", "fail", "no SES tenant: `pulumi up` has not created it, and "
                              "SES refuses every send that names it"))
            continue
        paused = tenant.sending_status == "DISABLED"
        items.append(Item(subject, "ses-tenant", "fail" if paused else "ok",
                          "SES has paused this tenant's sending (its own findings, or an operator's): queued mail "
                          "waits" if paused else f"sending {(tenant.sending_status or 'enabled').lower()}"))
        if tenant.policy is not None and tenant.policy != wanted.get(tenant.name):
            items.append(Item(subject, "reputation-policy", "warn",
                              f"reputation policy {tenant.policy}, the YAML says {wanted.get(tenant.name)}: "
                              "`pulumi up` sets it"))
        elif tenant.policy is not None:
            items.append(Item(subject, "reputation-policy", "ok", f"reputation policy {tenant.policy}"))
    return items


def exit_status(items: list[Item]) -> int:
    return 1 if any(i.status == "fail" for i in items) else 0
