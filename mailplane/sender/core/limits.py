"""The SES account's limits the pacer enforces: the lower of what fleet.yaml says and what SES reports.

Pure (:func:`effective`); :mod:`mailplane.sender.delivery.account` asks SES.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountLimits:
    """What SES reports for the account: ``None`` where the call used does not say."""

    max_24_hour_send: int
    max_send_rate: float
    production_access: bool | None = None
    """False: the account is in the sandbox (only verified recipients, 200 a day)."""
    sending_enabled: bool | None = None
    source: str = "GetAccount"


@dataclass(frozen=True)
class Limits:
    """The limits the pacer enforces for the whole account, and why they are what they are."""

    daily_quota: int
    max_send_rate: float
    warnings: tuple[str, ...] = ()


def effective(fleet_daily: int, fleet_rate: float, account: AccountLimits | None) -> Limits:
    """The lower of fleet.yaml's limits and the account's, with a warning for each difference."""
    if account is None:
        return Limits(fleet_daily, fleet_rate)
    warnings: list[str] = []
    if account.production_access is False:
        warnings.append("the SES account is in the sandbox: only verified recipients, "
                        f"{account.max_24_hour_send} a day at {account.max_send_rate:g}/s "
                        "(`mailplane ses request-production` asks for production access)")
    if account.sending_enabled is False:
        warnings.append("sending is disabled for the whole SES account (PutAccountSendingAttributes)")
    daily = min(fleet_daily, account.max_24_hour_send)
    rate = min(fleet_rate, account.max_send_rate)
    if account.max_24_hour_send != fleet_daily:
        warnings.append(f"fleet.yaml's ses.daily_quota is {fleet_daily}, the account's {account.max_24_hour_send} "
                        f"({account.source}): pacing by {daily}")
    if account.max_send_rate != fleet_rate:
        warnings.append(f"fleet.yaml's ses.max_send_rate is {fleet_rate:g}/s, the account's "
                        f"{account.max_send_rate:g}/s ({account.source}): pacing by {rate:g}/s")
    return Limits(daily, rate, tuple(warnings))
