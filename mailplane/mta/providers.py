"""Mailbox-provider groups and every number PowerMTA's config is derived from.

One module on purpose: a deliverability change (Microsoft wants fewer connections, a new Yahoo
domain, more headroom over the sender's gate) is one reviewed diff here, and both renderers of
the config (``mailplane render`` and the Ansible role, through the same template) pick it up.
How the numbers combine into per-VMTA throttles is :func:`mailplane.mta.view.throttles`.

Sources: the public PowerMTA configs and operator guides summed up in
``/work/shared/reference/powermta.md`` (Gmail 10-20 connections and about 50 messages per
connection, Yahoo about 20 per connection, Microsoft few connections while warming).  Values
marked *unconfirmed* are assumptions about PowerMTA that no installed copy could check.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Provider:
    """A mailbox provider whose domains share MX hosts, throttled as one queue per VMTA."""

    group: str
    """Name used in the view (``gmail``); ``*`` is every other recipient domain."""
    domain: str
    """The queue the whole group is throttled in: its own ``<domain>`` block in every VMTA."""
    rollup: tuple[str, ...]
    """Other domains of the group, rolled up into ``domain``'s queue (``mx-rollup``): without it
    each would get a queue, and so a rate, of its own, and the group's total would multiply."""
    share: Fraction
    """Part of an IP's hourly ceiling this group may use (shares add up to 1)."""
    max_smtp_out: int
    """Most simultaneous connections one VMTA opens to the group, however warm the IP."""
    max_msg_per_connection: int
    warm_msg_per_hour: int
    """Rate of an IP without a warmup plan (declared warm): generous, but still a ceiling."""
    retry_after: str
    backoff_retry_after: str
    backoff_to_normal_after: str


GMAIL = Provider(
    group="gmail", domain="gmail.com", rollup=("googlemail.com",), share=Fraction(2, 5),
    max_smtp_out=20, max_msg_per_connection=50, warm_msg_per_hour=20_000,
    retry_after="10m", backoff_retry_after="30m", backoff_to_normal_after="1h",
)
MICROSOFT = Provider(
    group="microsoft", domain="outlook.com",
    rollup=("hotmail.co.uk", "hotmail.com", "hotmail.de", "hotmail.es", "hotmail.fr", "hotmail.it",
            "live.co.uk", "live.com", "live.fr", "msn.com", "outlook.de", "outlook.fr"),
    share=Fraction(3, 10), max_smtp_out=8, max_msg_per_connection=20, warm_msg_per_hour=10_000,
    retry_after="15m", backoff_retry_after="1h", backoff_to_normal_after="2h",
)
YAHOO = Provider(
    group="yahoo", domain="yahoo.com",
    rollup=("aol.com", "rocketmail.com", "yahoo.co.uk", "yahoo.de", "yahoo.es", "yahoo.fr", "yahoo.it",
            "ymail.com"),
    share=Fraction(1, 5), max_smtp_out=10, max_msg_per_connection=20, warm_msg_per_hour=10_000,
    retry_after="15m", backoff_retry_after="1h", backoff_to_normal_after="2h",
)
DEFAULT = Provider(
    group="*", domain="*", rollup=(), share=1 - GMAIL.share - MICROSOFT.share - YAHOO.share,
    max_smtp_out=10, max_msg_per_connection=100, warm_msg_per_hour=5_000,
    retry_after="10m", backoff_retry_after="30m", backoff_to_normal_after="1h",
)
"""Every other domain.  PowerMTA keeps one queue per recipient domain, so this rate bounds each
long-tail domain, not their sum: the sum is bounded by the sender service's gate only."""

PROVIDERS: tuple[Provider, ...] = (GMAIL, MICROSOFT, YAHOO, DEFAULT)
"""In config order; the wildcard last, as people read configs."""

assert sum(p.share for p in PROVIDERS) == 1, "provider shares must add up to the whole ceiling"
assert all(p.share > 0 for p in PROVIDERS), "every provider needs a share, or its rate would be 0"

# --- the ceiling over the sender service's gate (see mailplane.mta.view.ceiling) ---------------

HEADROOM_FACTOR = Fraction(11, 10)
"""PowerMTA's hourly ceiling is 10 % above the sender's hourly cap (exact arithmetic: no float
rounding can push a ceiling one message up or down between two machines)."""
HEADROOM_EXTRA = 2
"""Plus two messages, so a cap of 1 or 2 per hour still has a ceiling strictly above it."""
BACKOFF_DIVISOR = 4
"""In backoff mode (a provider said "slow down") a queue sends at most a quarter of its rate."""
MSGS_PER_CONNECTION_HOUR = 300
"""A connection carries about this many messages an hour: one more is opened per 300/h of rate,
up to the provider's ``max_smtp_out``.  Few connections while warming is what providers expect."""

RATE_UNIT = "h"
"""Every rate is written per hour (``N/h``), the unit the warmup plans' hourly caps are in."""
NOTHING_RATE = "1/h"
"""``max-msg-rate`` of an IP whose plan has not started: the smallest rate the reference's syntax
(``N/h``, ``N/m``, ``N/s``) can write, which ``mailplane pmta-lint`` checks against.  PowerMTA's own
directive table is said to allow ``max-msg-rate 0`` as a value distinct from ``unlimited``
(unconfirmed): once confirmed, ``"0"`` here makes the rate itself send nothing."""
NOT_STARTED_SMTP_OUT = 0
"""Connections of an IP whose plan has not started: none, so nothing leaves it even at 1/h (that
``max-smtp-out 0`` opens no connection is unconfirmed; if a build read 0 as "no limit", the rate
above still holds it to one message an hour per queue, and the sender's gate sends it none)."""


def rate_text(per_hour: int) -> str:
    """PowerMTA's spelling of a rate: ``N/h``, or :data:`NOTHING_RATE` for an IP that may not send."""
    return f"{per_hour}/{RATE_UNIT}" if per_hour > 0 else NOTHING_RATE


# --- backoff: replies that switch a queue to its backoff rate (pattern syntax unconfirmed) ------

BACKOFF_PATTERN_LIST = "mailplane-backoff"
BACKOFF_REPLIES: tuple[str, ...] = (
    r"/421 .*rate limit/",
    r"/4\.7\.28/",             # Gmail: unusual rate of unsolicited mail from this IP
    r"/421 .*\[TS0[1-4]\]/",   # Yahoo: temporarily deferred for reputation or volume
    r"/4\.7\.650/",            # Microsoft: the IP is throttled while it builds reputation
)

# --- the host: who may submit, who may manage ----------------------------------------------------

LOOPBACK: tuple[str, ...] = ("127.0.0.1", "::1")
"""The sender service runs on the MTA host and submits over loopback (either family)."""
DENY_SOURCES: tuple[str, ...] = ("0/0", "::/0")
"""Everyone else: no relaying, no SMTP service, no management.  ``0/0`` is PowerMTA's spelling
of "any IPv4 client"; whether it also covers IPv6 is unconfirmed, hence ``::/0`` as well."""
HTTP_MGMT_PORT = 8080
"""Web monitor and the ``pmta`` command's management port; ``http-access`` keeps it to loopback."""
