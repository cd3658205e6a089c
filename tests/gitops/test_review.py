"""The review as an object: :func:`mailplane.gitops.review.build_review` without the command line,
and the formatters' one base, which decides the sections every format writes and their order.

The base revision is built by hand (:class:`~mailplane.gitops.revision.Revision` with the loaded
fleet), so no git repository is needed; ``tests/gitops/test_plan_base.py`` covers the same review
through ``mailplane plan --base`` in real repositories.
"""

from __future__ import annotations

import datetime
import functools
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plan_repo import SHOP, edit  # the domain the plan tests add, added the same way here

import mailplane.gitops
from mailplane.cloud import plan as cloud_plan
from mailplane.cloud.inventory import stack_count
from mailplane.gitops.destroy import check_destroy
from mailplane.gitops.diff import HostDiff, ResourceChange, StackDiff
from mailplane.gitops.format import (
    FORMATTERS,
    MAX_COMMENT_CHARS,
    Formatter,
    JsonFormatter,
    MarkdownFormatter,
    Review,
    TextFormatter,
    render,
)
from mailplane.gitops.review import build_review, policy_checks
from mailplane.gitops.revision import Revision
from mailplane.model.loader import load_stack
from mailplane.model.problems import YamlProblem
from mailplane.model.stack import Fleet

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
ON = datetime.date(2026, 12, 1)
SOS = Path("tenants") / "sos-expat.yaml"
NEWS_DOMAIN = ("  - name: news.example.com\n"
               "    dkim: {mode: byo, selector: s2026a}    # one key for SES and PowerMTA\n"
               "    mail_from: bounce.news.example.com\n"
               "    dmarc: {policy: none, rua: [mailto:dmarc@example.com]}\n"
               "    dns: {zone: example.com}               # provider: the fleet's default (route53)\n")
SECTIONS = Formatter.__abstractmethods__ - {"join"}
"""Every section a format writes: the base's abstract methods but the one that joins them."""



def add_shop(stack: Path) -> None:
    edit(stack / SOS, "ips:\n", SHOP)


def drop_news(stack: Path) -> None:
    """sos-expat's news.example.com goes: its SES identity and DKIM key (protected kinds) with it."""
    path = stack / SOS
    edit(path, NEWS_DOMAIN, "")
    edit(path, 'from: ["*@news.example.com"]', "from: [news@mail1.example.com]")
    for host in ("mta1-b", "mta2-a"):  # the IPs' PTR names move under the tenant's remaining domain
        edit(path, f"hostname: {host}.news.example.com", f"hostname: {host}.mail1.example.com")


@pytest.fixture(scope="module")
def base() -> Revision:
    return Revision("origin/main", "c0ffee" * 6 + "c0ff", "stacks/prod", load_stack(PROD))


@pytest.fixture(scope="module")
def head_with(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Callable[[Path], None]], Fleet]:
    """The prod stack with one edit, loaded."""
    def load(change: Callable[[Path], None]) -> Fleet:
        stack = tmp_path_factory.mktemp("head") / "prod"
        shutil.copytree(PROD, stack)
        change(stack)
        return load_stack(stack)
    return load


@pytest.fixture(scope="module", autouse=True)
def _counted_plans() -> Iterator[list[list[str]]]:
    """Record the tenants of every fleet the Pulumi program runs for (and still run it)."""
    planned: list[list[str]] = []
    real = cloud_plan.plan

    def counting(fleet: Fleet) -> list[cloud_plan.PlannedResource]:
        planned.append([t.name for t in fleet.tenants])
        return real(fleet)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cloud_plan, "plan", counting)
        yield planned


@pytest.fixture(scope="module")
def shop_added(base: Revision, head_with: Callable[[Callable[[Path], None]], Fleet],
               _counted_plans: list[list[str]]) -> tuple[Review, list[list[str]]]:
    _counted_plans.clear()
    review = build_review(head_with(add_shop), base, stack_dir="stacks/prod", on=ON,
                          chart_url="https://ci.example.com/warmup.svg")
    return review, list(_counted_plans)


@pytest.fixture(scope="module")
def news_dropped(head_with: Callable[[Callable[[Path], None]], Fleet]) -> Fleet:
    return head_with(drop_news)


# --- building the review --------------------------------------------------------------------------

def test_a_domain_added_is_reviewed_for_its_tenant_alone(shop_added: tuple[Review, list[list[str]]],
                                                         base: Revision) -> None:
    review, planned = shop_added
    assert planned == [["sos-expat"], ["sos-expat"]]  # the base's and the head's, that tenant only
    assert (review.base_ref, review.base_commit, review.stack_dir) == ("origin/main", base.commit, "stacks/prod")
    assert review.chart_url == "https://ci.example.com/warmup.svg"
    assert [(i.kind, i.name, i.tenant, i.action) for i in review.diff.items] == [
        ("domain", "shop.example.com", "sos-expat", "add")]
    assert review.scope is not None and review.scope.startswith("Pulumi program run for 1 of ")
    assert "(sos-expat)" in review.scope
    assert review.changed_files == frozenset({"tenants/sos-expat.yaml"})
    assert {(r.action, r.tenant) for r in review.diff.resources} == {("create", "sos-expat")}
    assert ("aws:sesv2/emailIdentity:EmailIdentity", "shop.example.com") in {
        (r.type, r.name) for r in review.diff.resources}
    assert {r.record.domain for r in review.diff.records} == {"shop.example.com"}
    assert review.diff.changed and review.findings is not None and review.blocking == []
    assert review.destroy is not None and not review.destroy.triggered
    assert review.refusals() == []


def test_a_protected_deletion_is_refused_unless_allowed_and_counted_against_the_whole_stack(
        base: Revision, news_dropped: Fleet) -> None:
    review = build_review(news_dropped, base, stack_dir="stacks/prod", on=ON)
    check = review.destroy
    assert check is not None and check.blocking and not check.allowed
    assert {(r.action, r.name) for r in review.destroyed()} == {("delete", "news.example.com"),
                                                                 ("delete", "news.example.com-dkim")}
    # the program ran for sos-expat alone, the share is still of every tenant's resources
    assert base.fleet is not None and check.base_total == stack_count(base.fleet)
    [refusal] = review.refusals()
    assert refusal.startswith("error: this change 2 protected resources")
    assert "EmailIdentity news.example.com" in refusal and "PrivateKey news.example.com-dkim" in refusal
    assert refusal.endswith("pass --allow-destroy (in CI: the allow-destroy label of the pull request)")

    allowed = build_review(news_dropped, base, stack_dir="stacks/prod", on=ON, allow_destroy=True)
    assert allowed.destroy is not None and allowed.destroy.triggered and allowed.destroy.allowed
    assert allowed.refusals() == []


def test_max_destroy_is_a_percent_and_none_is_the_default(base: Revision,
                                                          head_with: Callable[[Callable[[Path], None]], Fleet]) -> None:
    """Moving a domain to external DNS deletes Route53 records only: no protected kind, a small share."""
    head = head_with(lambda s: edit(s / SOS, "dns: {provider: route53, zone: example.com}",
                                    "dns: {provider: external}"))
    default = build_review(head, base, stack_dir="stacks/prod", on=ON)
    assert default.destroy is not None and default.destroy.max_share == 20 and not default.destroy.triggered
    share = default.destroy.share
    assert 0 < share < 20
    strict = build_review(head, base, stack_dir="stacks/prod", on=ON, max_destroy=share / 2)
    assert strict.destroy is not None and strict.destroy.blocking and strict.destroy.max_share == share / 2
    assert [line.split(" (")[0] for line in strict.refusals()] == [
        f"error: this change {strict.destroy.destroyed} of {strict.destroy.base_total} resources"]


def test_a_new_stack_is_planned_whole_and_shows_every_finding(base: Revision, _counted_plans: list[list[str]]) -> None:
    head = load_stack(PROD)
    _counted_plans.clear()
    review = build_review(head, Revision("origin/main", base.commit, "stacks/prod", None), stack_dir="stacks/prod",
                          on=ON)
    assert _counted_plans == [[t.name for t in head.tenants]]  # no base to plan
    assert review.scope == f"Pulumi program run for all {len(head.tenants)} tenants: a new stack"
    assert review.changed_files is None  # a new stack: every finding is the change's
    assert review.destroy is not None and review.destroy.base_total == 0 and not review.destroy.triggered
    assert not review.diff.base_exists and {r.action for r in review.diff.resources} == {"create"}


def test_no_change_runs_the_program_for_no_tenant_and_refuses_nothing(
        base: Revision, _counted_plans: list[list[str]]) -> None:
    _counted_plans.clear()
    review = build_review(load_stack(PROD), base, stack_dir="stacks/prod", on=ON)
    assert _counted_plans == [[], []]
    assert not review.diff.changed and review.refusals() == [] and review.changed_files == frozenset()
    text = TextFormatter()
    for section in (text.fleet, text.records, text.resources, text.destroy, text.hosts):
        assert section(review) == [], section.__name__  # a section with nothing to say writes nothing


def test_without_the_policy_module_the_review_says_the_checks_did_not_run(
        base: Revision, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mailplane.gitops, "policy", raising=False)
    monkeypatch.setitem(sys.modules, "mailplane.gitops.policy", None)  # as if not installed
    assert policy_checks() is None
    review = build_review(load_stack(PROD), base, stack_dir="stacks/prod", on=ON)
    assert review.findings is None and review.refusals() == []
    assert "policy checks not run" in render(review, "text")


def test_an_import_error_inside_the_policy_module_surfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(mailplane.gitops, "policy", raising=False)
    monkeypatch.delitem(sys.modules, "mailplane.gitops.policy", raising=False)
    monkeypatch.setitem(sys.modules, "mailplane.model.routes", None)  # a dependency of the module breaks
    with pytest.raises(ModuleNotFoundError) as raised:
        policy_checks()
    assert raised.value.name == "mailplane.model.routes"


# --- refusals, by hand ----------------------------------------------------------------------------

class _Finding:
    def __init__(self, severity: str, waived: str | None = None) -> None:
        self.check, self.severity, self.waived = "dmarc-published", severity, waived
        self.problem = YamlProblem("tenants/acme.yaml", 3, 5, "domains[0]", "no DMARC record")


def _review(findings: list[_Finding] | None = None, resources: tuple[ResourceChange, ...] = (),
            **destroy: Any) -> Review:
    diff = StackDiff("prod", ON, True, (), (), resources, (), ())
    check = check_destroy(resources, 100, **destroy) if destroy else None
    return Review(diff, "stacks/prod", "origin/main", "0" * 40, findings, destroy=check)


def test_refusals_count_the_unwaived_errors_only() -> None:
    assert _review([_Finding("warning"), _Finding("error", waived="known")]).refusals() == []
    assert _review([_Finding("error"), _Finding("warning")]).refusals() == ["1 policy error"]
    assert _review([_Finding("error"), _Finding("error")]).refusals() == ["2 policy errors"]
    assert _review(None).refusals() == []


def test_a_destroy_refusal_names_five_resources_and_counts_the_rest() -> None:
    identities = tuple(ResourceChange("delete", "aws:sesv2/emailIdentity:EmailIdentity", f"d{i}.example.com",
                                      "acme", None, {}) for i in range(7))
    [line] = _review(resources=identities, allowed=False).refusals()
    assert "EmailIdentity d4.example.com and 2 more)" in line and "d5.example.com" not in line
    assert _review(resources=identities, allowed=True).refusals() == []
    both = _review([_Finding("error")], identities, allowed=False).refusals()
    assert both[0] == "1 policy error" and both[1].startswith("error: this change 7 protected resources")


# --- the formatters' base -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FORMATTERS))
def test_every_format_orders_every_section_once(name: str) -> None:
    sections = [s.__name__ for s in FORMATTERS[name]().sections()]
    assert sorted(sections) == sorted(SECTIONS)


def test_the_base_alone_drives_a_format_and_a_missing_section_is_refused() -> None:
    """Text's sections and join under the bare base write what TextFormatter writes; without one
    section the class cannot be instantiated."""
    review = _review([_Finding("error")])
    methods = {name: getattr(TextFormatter, name) for name in SECTIONS | {"join"}}
    complete = type("Complete", (Formatter,), methods)
    assert complete().format(review) == TextFormatter().format(review)
    partial = type("Partial", (Formatter,), {k: v for k, v in methods.items() if k != "policy"})
    with pytest.raises(TypeError, match="policy"):
        partial()


def _spy(cls: type[Formatter[Any]], calls: list[str]) -> type[Formatter[Any]]:
    """``cls`` with every section recording its name when the base calls it."""
    def recording(name: str) -> Callable[..., Any]:
        section = getattr(cls, name)

        @functools.wraps(section)
        def call(self: Formatter[Any], review: Review) -> Any:
            calls.append(name)
            return section(self, review)
        return call
    return type(f"Spy{cls.__name__}", (cls,), {name: recording(name) for name in SECTIONS})


@pytest.mark.parametrize("name", sorted(FORMATTERS))
def test_each_format_writes_through_the_base_in_its_order(name: str, shop_added: tuple[Review, list[list[str]]]
                                                          ) -> None:
    review = shop_added[0]
    calls: list[str] = []
    spy = _spy(FORMATTERS[name], calls)()
    assert spy.format(review) == render(review, name)
    assert calls == [s.__name__ for s in spy.sections()]  # each once: the comment fits in the first pass


@pytest.mark.parametrize("formatter", [TextFormatter(), MarkdownFormatter()], ids=["text", "markdown"])
def test_text_and_markdown_are_their_sections_lines_joined(formatter: Formatter[list[str]],
                                                           shop_added: tuple[Review, list[list[str]]]) -> None:
    review = shop_added[0]
    parts = formatter.parts(review)
    names = [s.__name__ for s in formatter.sections()]
    assert [n for n, part in zip(names, parts, strict=True) if not part] == ["destroy"]  # nothing destroyed
    assert formatter.format(review) == "\n".join(line for part in parts for line in part) + "\n"


def test_text_follows_the_base_order_and_markdown_leads_with_destroys_and_folds_the_long_parts(
        base: Revision, news_dropped: Fleet) -> None:
    review = build_review(news_dropped, base, stack_dir="stacks/prod", on=ON)
    text = render(review, "text")
    marks = ["\nFleet:", "\nDNS records:", "\nPulumi resources:", "\nDestroys (", "\nPowerMTA mta1",
             "\nWarmup capacity", "\nWarmup chart:", "\nPolicy:"]
    assert [text.index(m) for m in marks] == sorted(text.index(m) for m in marks)
    assert TextFormatter.sections is Formatter.sections  # the text format keeps the base's order
    md = render(review, "markdown")
    marks = ["\n#### ⛔ Destroys: blocked", "\n#### Fleet", "\n#### DNS records", "\nWarmup capacity",
             "\n📈 Warmup chart:", "\n#### Policy:", "\n<details><summary>Pulumi resources:",
             "\n<details><summary>PowerMTA <code>mta1</code>"]
    assert [md.index(m) for m in marks] == sorted(md.index(m) for m in marks)


def test_json_sections_are_disjoint_parts_of_one_object(shop_added: tuple[Review, list[list[str]]]) -> None:
    review = shop_added[0]
    formatter = JsonFormatter()
    parts = formatter.parts(review)
    keys = [key for part in parts for key in part]
    assert all(parts) and len(keys) == len(set(keys))
    assert set(formatter.data(review)) == set(keys)
    assert formatter.data(review)["pulumi_scope"] == review.scope


def test_markdown_passes_shorten_only_what_they_limit() -> None:
    """A pass is the same sections with other limits: the first that fits is the comment."""
    hosts_diff = "".join(f"-    max-msg-rate {i}/h\n+    max-msg-rate {i + 1}/h\n" for i in range(500))
    hosts = tuple(HostDiff(f"mta{i}", "change", hosts_diff, 500, 500) for i in range(3))
    resources = tuple(ResourceChange("create", "aws:route53/record:Record", f"r{i}.example.com-dmarc-txt", "t", None,
                                     {}) for i in range(1_000))
    review = Review(StackDiff("prod", ON, True, (), (), resources, hosts, ()), "stacks/prod", "origin/main", "0" * 40,
                    [])
    first, second = (MarkdownFormatter(limits) for limits in MarkdownFormatter.PASSES[:2])
    assert len(first.compose(review)) > MAX_COMMENT_CHARS
    assert MarkdownFormatter().format(review) == second.compose(review)
    assert first.header(review) == second.header(review) and first.policy(review) == second.policy(review)
    assert len(second.resources(review)) < len(first.resources(review))
