"""The SES account as it is: its real daily quota and send rate, read from SES, and the limits the pacer uses.

fleet.yaml says what the account *should* allow (``ses.daily_quota``, ``ses.max_send_rate``); SES
says what it *does*: a sandboxed account allows 200 a day at 1 a second whatever the file says,
and a quota raised by AWS is not in the file until someone edits it.  The sender reads the
account at start and periodically (SES v2 ``GetAccount``, falling back to v1 ``GetSendQuota``)
and paces by the lower of the two, warning when they differ: pacing by the file alone would
send into refusals ("Daily message quota exceeded", throttling) that every tenant shares.

:func:`~mailplane.sender.core.limits.effective` is pure; :func:`read_account` asks SES.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailplane.sender.core.limits import AccountLimits

log = logging.getLogger(__name__)

REFRESH_SECONDS = 600.0
"""How often a running sender reads the account again."""


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
