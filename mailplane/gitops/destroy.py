"""Plans that refuse to destroy: what a change would delete or replace that cannot come back.

A pull request that drops a domain deletes its SES identity (its verification and reputation,
the Easy DKIM tokens published in DNS) and its DKIM keys, which exist nowhere but in Pulumi's
state; one that drops a sender or a tenant deletes IAM users (the applications' credentials), a
configuration set, an event topic or an SES tenant (and with it the
reputation SES keeps for it).  Such a change, or one that deletes a large share of the
stack at once (a tenant file lost in a bad merge), must be meant: ``mailplane plan --base``
exits 1 on it unless ``--allow-destroy`` is given (the ``allow-destroy`` label of the pull
request, in CI).

Pure: the resource changes of a :class:`~mailplane.gitops.diff.StackDiff` and the base plan's size in.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailplane.gitops.diff import ResourceChange

PROTECTED_KINDS: dict[str, str] = {
    "aws:sesv2/emailIdentity:EmailIdentity": "SES identity",
    "tls:index/privateKey:PrivateKey": "DKIM key",
    "aws:iam/user:User": "IAM user",
    "aws:sesv2/configurationSet:ConfigurationSet": "configuration set",
    "aws:sns/topic:Topic": "SNS topic",
    "aws:sesv2/tenant:Tenant": "SES tenant",
}
"""Resource types whose deletion or replacement needs ``--allow-destroy``, with what to call them."""

DEFAULT_MAX_SHARE = 20.0
"""Percent of the base stack's resources a change may delete or replace without ``--allow-destroy``:
a domain or sender leaves a few percent of a stack; a fifth at once is a tenant, or an accident."""

ALLOW_LABEL = "allow-destroy"
"""The pull-request label the plan workflow turns into ``--allow-destroy``."""

DESTROYING = ("delete", "replace")


@dataclass(frozen=True)
class DestroyCheck:
    protected: tuple[ResourceChange, ...]
    """Deletions and replacements of :data:`PROTECTED_KINDS`."""
    destroyed: int
    """Every resource the change deletes or replaces."""
    base_total: int
    """Resources of the base revision's plan (components not counted)."""
    max_share: float
    """Percent."""
    allowed: bool

    @property
    def share(self) -> float:
        return 100.0 * self.destroyed / self.base_total if self.base_total else 0.0

    @property
    def over_share(self) -> bool:
        return self.share > self.max_share

    @property
    def triggered(self) -> bool:
        return bool(self.protected) or self.over_share

    @property
    def blocking(self) -> bool:
        return self.triggered and not self.allowed

    def reasons(self) -> list[str]:
        out = []
        if self.protected:
            out.append(f"{len(self.protected)} protected resource{'s' if len(self.protected) != 1 else ''} "
                       "(SES identities, DKIM keys, IAM users, configuration sets, SNS topics, SES tenants) "
                       "deleted or replaced")
        if self.over_share:
            out.append(f"{self.destroyed} of {self.base_total} resources ({self.share:.0f}%) deleted or replaced, "
                       f"more than {self.max_share:g}%")
        return out

    def headline(self) -> str:
        verdict = "allowed by --allow-destroy" if self.allowed else "blocked without --allow-destroy"
        return "destroys " + " and ".join(self.reasons()) + f": {verdict}"


def kind(change: ResourceChange) -> str:
    return PROTECTED_KINDS.get(change.type, change.type)


def check_destroy(resources: tuple[ResourceChange, ...] | list[ResourceChange], base_total: int, *,
                  max_share: float = DEFAULT_MAX_SHARE, allowed: bool = False) -> DestroyCheck:
    destroying = [r for r in resources if r.action in DESTROYING]
    protected = tuple(r for r in destroying if r.type in PROTECTED_KINDS)
    return DestroyCheck(protected, len(destroying), base_total, max_share, allowed)


def destroyed(resources: tuple[ResourceChange, ...], check: DestroyCheck) -> list[ResourceChange]:
    """What the review lists: the protected ones, or every deletion when the share is what trips it."""
    if check.over_share:
        return [r for r in resources if r.action in DESTROYING]
    return list(check.protected)
