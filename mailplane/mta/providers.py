"""Mailbox-provider groups and every number PowerMTA's config is derived from.

One module on purpose: a deliverability change (Microsoft wants fewer connections, a new Yahoo
deferral reply, more headroom over the sender's gate) is one reviewed diff here, and both
renderers of the config (``mailplane render`` and the Ansible role, through the same template)
pick it up.  How the numbers combine into per-VMTA throttles is :func:`mailplane.mta.view.throttles`.

PowerMTA syntax used here is the documented one (``docs/powermta.md`` lists each directive with
its section of the PowerMTA v5.0 User's Guide): providers are grouped by their **MX hosts** in an
``<mx-rollup-list>`` (guide, pub 10.17), so a Google Workspace or Microsoft 365 domain joins its
provider's queue like gmail.com or outlook.com do, and each group is throttled in its
``<domain NAME.rollup>`` queue.  There is no ``mx-rollup`` directive.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class MxRollup:
    """One ``mx MX-PATTERN NAME.rollup [rollup-by-ip]`` line of the ``<mx-rollup-list>``.

    An explicit MX host routes the rollup queue to that host; a wildcard needs ``rollup-by-ip``
    (PowerMTA then matches on the resolved addresses and sets the hosts itself) or the rollup
    domain's own ``smtp-hosts``, which would pin one provider's many MX hosts by hand.
    """

    pattern: str
    by_ip: bool = False


@dataclass(frozen=True)
class Provider:
    """A mailbox provider whose domains share MX hosts, throttled as one queue per VMTA."""

    group: str
    """Name used in the view (``gmail``); ``*`` is every other recipient domain."""
    domain: str
    """The queue the whole group is throttled in: ``<group>.rollup`` (a rollup name must end in
    ``.rollup``), its own ``<domain>`` block at the top level and in every VMTA; ``*`` for the rest."""
    mx: tuple[MxRollup, ...]
    """The group's best-preference MX hosts: every recipient domain whose MX is one of them is
    queued in ``domain`` (``<mx-rollup-list>``), so the group's rate bounds all of them together."""
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
    group="gmail", domain="gmail.rollup",
    mx=(MxRollup("gmail-smtp-in.l.google.com"),   # gmail.com, googlemail.com
        MxRollup("aspmx.l.google.com"),           # Google Workspace domains
        MxRollup("smtp.google.com")),             # Workspace domains set up with the single MX
    share=Fraction(2, 5),
    max_smtp_out=20, max_msg_per_connection=50, warm_msg_per_hour=20_000,
    retry_after="10m", backoff_retry_after="30m", backoff_to_normal_after="1h",
)
MICROSOFT = Provider(
    group="microsoft", domain="microsoft.rollup",
    mx=(MxRollup("*.olc.protection.outlook.com", by_ip=True),    # outlook.com, hotmail.*, live.*, msn.com
        MxRollup("*.mail.protection.outlook.com", by_ip=True)),  # Microsoft 365 tenants' domains
    share=Fraction(3, 10), max_smtp_out=8, max_msg_per_connection=20, warm_msg_per_hour=10_000,
    retry_after="15m", backoff_retry_after="1h", backoff_to_normal_after="2h",
)
YAHOO = Provider(
    group="yahoo", domain="yahoo.rollup",
    mx=(MxRollup("*.yahoodns.net", by_ip=True),),  # yahoo.*, ymail.com, rocketmail.com, aol.com
    share=Fraction(1, 5), max_smtp_out=10, max_msg_per_connection=20, warm_msg_per_hour=10_000,
    retry_after="15m", backoff_retry_after="1h", backoff_to_normal_after="2h",
)
DEFAULT = Provider(
    group="*", domain="*", mx=(), share=1 - GMAIL.share - MICROSOFT.share - YAHOO.share,
    max_smtp_out=10, max_msg_per_connection=100, warm_msg_per_hour=5_000,
    retry_after="10m", backoff_retry_after="30m", backoff_to_normal_after="1h",
)
"""Every other domain.  PowerMTA keeps one queue per recipient domain, so this rate bounds each
long-tail domain, not their sum: the sum is bounded by the VMTA's own ``max-smtp-msg-rate``."""

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


def rate_text(per_hour: int) -> str:
    """PowerMTA's spelling of a rate: ``N/h``.  Zero has no spelling (``0/h`` is outside the
    grammar and a bare ``0`` is undefined): an IP that may not send has no VMTA at all."""
    if per_hour <= 0:
        raise ValueError(f"no PowerMTA rate for {per_hour}/h: an IP that may not send is left out of the config")
    return f"{per_hour}/{RATE_UNIT}"


# --- backoff: replies that switch a queue to its backoff rate -----------------------------------

BACKOFF_PATTERN_LIST = "mailplane-backoff"


@dataclass(frozen=True)
class BackoffReply:
    """A provider's deferral or rate-limit reply, and the pattern that sends its queue into backoff."""

    provider: str
    pattern: str
    """PCRE between slashes, as ``<smtp-pattern-list>`` takes it (case-insensitive, first match wins)."""
    examples: tuple[str, ...]
    """Real replies (addresses made documentation ones) the pattern must match: the tests hold it to them."""


BACKOFF_REPLIES: tuple[BackoffReply, ...] = (
    BackoffReply("gmail", r"/4\.7\.28/", (
        "421-4.7.28 [192.0.2.41] Our system has detected an unusual rate of unsolicited mail originating from "
        "your IP address. To protect our users from spam, mail sent from your IP address has been temporarily "
        "rate limited.",)),
    BackoffReply("gmail", r"/unusual rate of/", (
        "421 4.7.0 [192.0.2.41] Our system has detected an unusual rate of unsolicited mail originating from "
        "your IP address. To protect our users from spam, mail sent from your IP address has been temporarily "
        "blocked.",)),
    BackoffReply("gmail", r"/^421[ -]4\.[47]\.[05] .*try again later/", (
        "421 4.7.0 Try again later, closing connection.",
        "421-4.7.0 Try again later, closing connection. (EHLO)",
        "421 4.4.5 Server busy, try again later.")),
    BackoffReply("yahoo", r"/\[TSS0\d\]/", (
        "421 4.7.0 [TSS04] Messages from 192.0.2.41 temporarily deferred due to unexpected volume or user "
        "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        "421 4.7.0 [TSS05] Messages from 192.0.2.41 temporarily deferred due to user complaints",
        "421 4.7.0 [TSS09] All supported protocols for 192.0.2.41 have been deferred")),
    BackoffReply("yahoo", r"/\[TS0[1-3]\]/", (
        "421 4.7.0 [TS01] Messages from 192.0.2.41 temporarily deferred due to user complaints - 4.16.55.1",
        "421 4.7.0 [TS03] All messages from 192.0.2.41 will be permanently deferred")),
    BackoffReply("yahoo", r"/4\.16\.5[05]/", (
        "421 Message from (192.0.2.41) temporarily deferred - 4.16.50",)),
    BackoffReply("microsoft", r"/4\.7\.65[01]/", (
        "451 4.7.650 The mail server [192.0.2.41] has been temporarily rate limited due to IP reputation. "
        "For e-mail delivery information, see https://postmaster.live.com (S775)",
        "451 4.7.651 The mail server [192.0.2.41] has been temporarily rate limited due to IP reputation. "
        "(S3114)")),
    BackoffReply("microsoft", r"/RP-00[1-3]/", (
        "421 RP-001 (BAY004-MC1F56) Unfortunately, some messages from 192.0.2.41 weren't sent. Please try "
        "again. We have limits for how many messages can be sent per hour and per day.",
        "421 RP-002 (COL004-MC1F4) Unfortunately, some messages from 192.0.2.41 weren't sent.",
        "421 RP-003 (BAY004-MC5F21) Unfortunately, some messages from 192.0.2.41 weren't sent.")),
    BackoffReply("apple", r"/too many errors/", (
        "421 4.7.0 me.com Error: too many errors",)),
    BackoffReply("*", r"/^4\d\d[ -].*rate limit/", (
        "421 4.7.0 Connection rate limit exceeded, try again later",
        "450 4.7.1 Client host rejected: rate limited")),
)
"""Replies that mean "this IP is sending too fast or is not trusted yet": the queue slows to its
backoff rate.  A reply about one recipient (Gmail's ``450 4.2.1 ... receiving mail too quickly``,
a full mailbox) is not one of them: it says nothing about the IP, and backing off the whole queue
for it would stall every other recipient."""

ORDINARY_DEFERRALS: tuple[str, ...] = (
    "450 4.2.1 The user you are trying to contact is receiving mail too quickly. Please resend your "
    "message at a later time.",
    "452 4.2.2 The email account that you tried to reach is over quota.",
    "451 4.3.0 Mail server temporarily rejected message.",
    "450 4.1.8 <bounce@example.org>: Sender address rejected: Domain not found",
    "421 4.3.2 Service not available, closing transmission channel",
)
"""Ordinary 4xx replies that must NOT switch a queue to backoff (held against the patterns by the tests)."""


# --- the host: who may submit, who may manage ----------------------------------------------------

LOOPBACK: tuple[str, ...] = ("127.0.0.1", "::1")
"""The sender service runs on the MTA host and submits over loopback (either family)."""
DENY_SOURCES: tuple[str, ...] = ("0/0", "::/0")
"""Everyone else: no relaying, no SMTP service, no management.  ``0/0`` is PowerMTA's spelling
of "any IPv4 client"; whether it also covers IPv6 is unconfirmed, hence ``::/0`` as well."""
HTTP_MGMT_PORT = 8080
"""Web monitor and the ``pmta`` command's management port; ``http-access`` keeps it to loopback."""
INBOUND_PORT = 25
"""Port of the listeners on the dedicated IPs, where remote bounces and feedback-loop reports arrive
(the return paths' MX names the IPs by their PTR hostnames)."""
UNROUTED_VMTA = "mailplane-unrouted"
"""``default-virtual-mta`` of the sender's source: a message that names no VMTA goes nowhere near a
dedicated IP; that VMTA discards it as a bounce, so the sender sees it fail (``discard-as-bounce``)."""
