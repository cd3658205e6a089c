"""The SES account as it is: its real daily quota and send rate, read from SES, and the limits the pacer uses.

fleet.yaml says what the account *should* allow (``ses.daily_quota``, ``ses.max_send_rate``); SES
says what it *does*: a sandboxed account allows 200 a day at 1 a second whatever the file says,
and a quota raised by AWS is not in the file until someone edits it.  The sender reads the
account at start and periodically (SES v2 ``GetAccount``, falling back to v1 ``GetSendQuota``)
and paces by the lower of the two, warning when they differ: pacing by the file alone would
send into refusals ("Daily message quota exceeded", throttling) that every tenant shares.

:func:`effective` is pure; :func:`read_account` asks SES.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

REFRESH_SECONDS = 600.0
"""How often a running sender reads the account again."""


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


def read_account(sesv2: Any, ses: Any) -> AccountLimits:
    """The account's limits from SES v2 ``GetAccount``; v1 ``GetSendQuota`` where v2 does not answer (an
    endpoint without it).  Raises what the second call raises when neither answers."""
    try:
        reply = sesv2.get_account()
    except (ClientError, BotoCoreError) as err:
        log.info("SES GetAccount failed (%s); reading GetSendQuota instead", err)
    else:
        quota = reply.get("SendQuota") or {}
        return AccountLimits(int(quota["Max24HourSend"]), float(quota["MaxSendRate"]),
                             reply.get("ProductionAccessEnabled"), reply.get("SendingEnabled"), "GetAccount")
    quota = ses.get_send_quota()
    return AccountLimits(int(quota["Max24HourSend"]), float(quota["MaxSendRate"]), source="GetSendQuota")
