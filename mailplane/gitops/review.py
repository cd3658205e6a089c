"""The review of a change: everything ``mailplane plan --base`` reports, built in one call.

A review is several computations in a fixed order, each owned elsewhere: which tenants the change
touches (:mod:`~mailplane.gitops.scope`), the offline Pulumi plan of both sides for those tenants
(:mod:`mailplane.cloud.plan`), what differs (:mod:`~mailplane.gitops.diff`), what would be
destroyed (:mod:`~mailplane.gitops.destroy`) and the policy findings
(:mod:`~mailplane.gitops.policy`).  :func:`build_review` runs them and returns a :class:`Review`;
the formatters (:mod:`~mailplane.gitops.format`) only read it and the command only prints it, so a
test or another caller gets the same review as the pull-request comment without the command line.

Loading the two sides is the caller's: the head is the working tree's stack, the base a
:class:`~mailplane.gitops.revision.Revision` read from git, and how their errors are reported
belongs to whoever asked.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mailplane.cloud import plan as cloud_plan
from mailplane.cloud.inventory import stack_count
from mailplane.gitops.destroy import ALLOW_LABEL, DEFAULT_MAX_SHARE, DestroyCheck, check_destroy, destroyed
from mailplane.gitops.diff import ResourceChange, StackDiff, compare, item_changes
from mailplane.gitops.revision import Revision
from mailplane.gitops.scope import Scope, changed_files, scope_of
from mailplane.model.problems import YamlProblem
from mailplane.model.stack import Fleet


class FindingLike(Protocol):
    """What a review reads of a policy finding (``mailplane.gitops.policy.Finding``): read-only, so
    the frozen finding with its narrower ``severity`` type is one."""

    @property
    def check(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def problem(self) -> YamlProblem: ...
    @property
    def waived(self) -> str | None: ...


PolicyChecks = Callable[..., Sequence[FindingLike]]


def is_blocking(finding: FindingLike) -> bool:
    """An unwaived error: the change may not merge while one remains."""
    return finding.severity == "error" and finding.waived is None


@dataclass(frozen=True)
class Review:
    """Everything one ``plan --base`` run reports."""

    diff: StackDiff
    stack_dir: str
    """As the user wrote it: quoted back in the commands the output suggests."""
    base_ref: str
    base_commit: str
    findings: Sequence[FindingLike] | None
    """None when the policy checks could not run (not installed)."""
    chart_url: str | None = None
    destroy: DestroyCheck | None = None
    """None when the check did not run (a review built by hand)."""
    scope: str | None = None
    """Which tenants the Pulumi program ran for (``mailplane.gitops.scope``); None: not said."""
    changed_files: frozenset[str] | None = None
    """Stack files the change edits (``tenants/acme.yaml``): the pull-request comment shows their findings
    and only counts the others' (blocking errors are shown wherever they are); None: show all."""

    def in_changed_file(self, finding: FindingLike) -> bool:
        if self.changed_files is None:
            return True
        path = finding.problem.file.replace("\\", "/")
        return any(path == f or path.endswith("/" + f) for f in self.changed_files)

    @property
    def destroying(self) -> bool:
        return self.destroy is not None and self.destroy.triggered

    def destroyed(self) -> list[ResourceChange]:
        return destroyed(self.diff.resources, self.destroy) if self.destroy is not None else []

    def allow_destroy_howto(self) -> str:
        """How a reviewer lets it through, and what pulumi up needs then."""
        return (f"If that is meant, add the `{ALLOW_LABEL}` label to the pull request (`mailplane plan "
                f"{self.stack_dir} --base {self.base_ref} --allow-destroy` by hand). SES identities and DKIM "
                "keys are also protected in the Pulumi program: after the merge an operator runs "
                "`pulumi state unprotect` on each before `pulumi up` can delete or replace it.")

    @property
    def blocking(self) -> list[FindingLike]:
        return [f for f in self.findings or () if is_blocking(f)]

    @property
    def chart_command(self) -> str:
        return f"mailplane warmup chart {self.stack_dir} --out warmup.svg"

    def refusals(self) -> list[str]:
        """Why the change may not merge as it is, one line each (empty when it may): the command prints
        them apart from the review and exits 1 on any, so CI can gate on them."""
        out = []
        if self.blocking:
            count = len(self.blocking)
            out.append(f"{count} policy error{'s' if count != 1 else ''}")
        if self.destroy is not None and self.destroy.blocking:
            out.append(self._destroy_refusal(self.destroy))
        return out

    def _destroy_refusal(self, check: DestroyCheck) -> str:
        """The reasons and the first five resources, so a CI log says what without the whole review."""
        listed = self.destroyed()
        names = ", ".join(f"{r.type.rsplit(':', 1)[-1]} {r.name}" for r in listed[:5])
        more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
        return (f"error: this change {' and '.join(check.reasons())} ({names}{more}); if that is meant, "
                f"pass --allow-destroy (in CI: the {ALLOW_LABEL} label of the pull request)")


def policy_checks() -> PolicyChecks | None:
    """``check_policies`` if the policy module is there; None only when the module itself is
    missing (an import error inside it is a bug and surfaces)."""
    try:
        from mailplane.gitops import policy
    except ModuleNotFoundError as err:
        if err.name != "mailplane.gitops.policy":
            raise
        return None
    return policy.check_policies


def planned_diff(scope: Scope, base: Fleet | None, head: Fleet, on: datetime.date) -> StackDiff:
    """Both sides compared, the Pulumi program run only for the tenants in ``scope`` (the others'
    resources are the same on both sides, so leaving them out changes no line of the diff)."""
    planned_base = scope.planned(base)
    base_plan = cloud_plan.plan(planned_base) if planned_base is not None else []
    planned_head = scope.planned(head)
    assert planned_head is not None  # a fleet in, a fleet out
    return compare(base, head, on, base_plan, cloud_plan.plan(planned_head))


def destroy_check(diff: StackDiff, base: Fleet | None, *, allow_destroy: bool,
                  max_destroy: float | None) -> DestroyCheck:
    """The share is of the whole base stack: the tenants the program did not run for are counted
    from the model, so a narrow scope cannot make a deletion look large."""
    return check_destroy(diff.resources, stack_count(base) if base is not None else 0,
                         max_share=DEFAULT_MAX_SHARE if max_destroy is None else max_destroy,
                         allowed=allow_destroy)


def build_review(head: Fleet, base: Revision, *, stack_dir: str, on: datetime.date, chart_url: str | None = None,
                 allow_destroy: bool = False, max_destroy: float | None = None) -> Review:
    """The review of ``head`` against the ``base`` revision on the day ``on``.

    ``stack_dir`` is the stack folder as the user wrote it, quoted back in the commands the review
    suggests; ``max_destroy`` is a percent, None for the default (:data:`DEFAULT_MAX_SHARE`).  The
    policy checks run when their module is installed (:func:`policy_checks`).  Pure apart from
    running the Pulumi program under mocks.
    """
    items = item_changes(base.fleet, head)
    scope = scope_of(items, base.fleet, head)
    diff = planned_diff(scope, base.fleet, head, on)
    destroy = destroy_check(diff, base.fleet, allow_destroy=allow_destroy, max_destroy=max_destroy)
    checks = policy_checks()
    findings = checks(head, today=on, base=base.fleet) if checks is not None else None
    return Review(diff, stack_dir, base.ref, base.commit, findings, chart_url, destroy, scope.why,
                  changed_files(items) if base.fleet is not None else None)
