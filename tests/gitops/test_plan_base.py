"""``mailplane plan --base``: what a pull request changes, in a real git repository.

Each scenario builds a repository in a temporary folder (``git init``, a copy of stacks/prod
committed and tagged ``base``) and then changes the stack in a second commit or in the working
tree, as CI sees a pull request.  Expected numbers come from the modules that own them
(``mailplane.warmup``, ``mailplane.model.names``), not from the code under test.

The offline Pulumi plan of a fleet is deterministic (tests/cli/test_plan.py), so within this
module the same fleet is planned once (:func:`_memo_plan`); one test runs the real ``plan`` for
two fleets in one process, as the command does.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from plan_repo import DATE, PROD, SHOP, commit, edit, git, make_repo, plan_base
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.cloud import plan as cloud_plan
from mailplane.gitops.diff import HostDiff, ResourceChange, StackDiff, compare, resource_changes
from mailplane.gitops.format import MAX_COMMENT_CHARS, Review, render
from mailplane.model import names
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet
from mailplane.warmup.status import tenant_capacity

ROOT = Path(__file__).resolve().parents[2]
ON = datetime.date(2026, 12, 1)
LATER = ON + datetime.timedelta(days=30)
FORMATS = ("text", "json", "markdown")

_real_plan = cloud_plan.plan
_plans: dict[str, list[cloud_plan.PlannedResource]] = {}


def _memo_plan(fleet: Fleet) -> list[cloud_plan.PlannedResource]:
    key = json.dumps([fleet.stack, fleet.settings.model_dump(mode="json"),
                      [t.model_dump(mode="json") for t in fleet.tenants]], sort_keys=True)
    if key not in _plans:
        _plans[key] = _real_plan(fleet)
    return _plans[key]


@pytest.fixture(scope="module", autouse=True)
def _planned_once() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cloud_plan, "plan", _memo_plan)
        yield


# --- a repository with prod at tag ``base`` ------------------------------------------------------

def run_all_formats(stack: Path) -> dict[str, Any]:
    results = {fmt: plan_base(stack, "--format", fmt) for fmt in FORMATS}
    for fmt, result in results.items():
        assert result.exception is None or isinstance(result.exception, SystemExit), (fmt, result.output)
    return results


def changed_lines(diff: str) -> list[str]:
    """The + and - lines of a unified diff, without its file headers."""
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))]


# --- (a) a domain added, in a second commit -------------------------------------------------------

RECORD = "aws:route53/record:Record"
SHOP_RESOURCES = {
    ("aws:sesv2/emailIdentity:EmailIdentity", "shop.example.com"),
    ("aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes", "shop.example.com-mail-from"),
    *((RECORD, f"shop.example.com-dkim-{i}") for i in (1, 2, 3)),
    (RECORD, "shop.example.com-dmarc-txt"),
    (RECORD, "shop.example.com-mail-from-mx"),
    (RECORD, "shop.example.com-mail-from-txt"),
    # PowerMTA signs the Easy DKIM domain with a key of its own; each PowerMTA route gets a return path
    ("tls:index/privateKey:PrivateKey", "shop.example.com-dkim-pmta"),
    (RECORD, "shop.example.com-dkim-pmta"),
    *((RECORD, f"shop.example.com-{stream}-return-path-{t}") for stream in ("transactional", "marketing")
      for t in ("mx", "txt")),
    (RECORD, "shop.example.com-feedback-loop-mx"),
    # and the identity is associated with the tenant's SES tenant
    ("aws:sesv2/tenantResourceAssociation:TenantResourceAssociation", "sos-expat-shop.example.com"),
}


@pytest.fixture(scope="module")
def domain_added(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stack = make_repo(tmp_path_factory.mktemp("domain"))
    edit(stack / "tenants" / "sos-expat.yaml", "ips:\n", SHOP)
    commit(stack, "add shop.example.com")
    return run_all_formats(stack)


def test_domain_added_json_names_the_domain_its_records_and_resources(domain_added: dict[str, Any]) -> None:
    result = domain_added["json"]
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["changed"] is True and data["base"]["ref"] == "base" and data["base"]["stack_exists"] is True
    assert data["fleet"] == [{"kind": "domain", "name": "shop.example.com", "tenant": "sos-expat",
                              "action": "add", "fields": []}]
    records = {(r["name"], r["type"]): r for r in data["dns_records"]}
    assert set(records) == {("<token>._domainkey.shop.example.com", "CNAME"), ("_dmarc.shop.example.com", "TXT"),
                            ("bounce.shop.example.com", "MX"), ("bounce.shop.example.com", "TXT"),
                            ("pmta1._domainkey.shop.example.com", "TXT"), ("rp.shop.example.com", "MX"),
                            *((f"{stream}.rp.shop.example.com", t) for stream in ("transactional", "marketing")
                              for t in ("MX", "TXT"))}
    assert {(r["action"], r["provider"], r["domain"]) for r in data["dns_records"]} == {
        ("publish", "route53", "shop.example.com")}
    assert records["_dmarc.shop.example.com", "TXT"]["value"] == "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com"
    assert records["bounce.shop.example.com", "MX"]["value"] == "10 feedback-smtp.eu-north-1.amazonses.com"
    dkim = records["<token>._domainkey.shop.example.com", "CNAME"]
    assert dkim["count"] == 3 and dkim["known_before_apply"] is False
    assert {(r["type"], r["name"]) for r in data["resources"]} == SHOP_RESOURCES
    assert {r["action"] for r in data["resources"]} == {"create"}
    assert {r["tenant"] for r in data["resources"]} == {"sos-expat"}
    identity = next(r for r in data["resources"] if r["name"] == "shop.example.com" and "emailIdentity" in r["type"])
    assert identity["inputs"]["emailIdentity"] == "shop.example.com"
    assert identity["inputs"]["configurationSetName"] == "sos-expat"
    assert records["marketing.rp.shop.example.com", "MX"]["value"] == (
        "10 mta1-b.news.example.com, 10 mta2-a.news.example.com")
    assert records["marketing.rp.shop.example.com", "TXT"]["value"] == "v=spf1 ip4:203.0.113.22 ip4:203.0.113.23 -all"
    assert records["pmta1._domainkey.shop.example.com", "TXT"]["known_before_apply"] is False
    # PowerMTA signs the new domain with its own key in each of the tenant's VMTAs, and takes its
    # bounces and feedback reports: those lines are added, nothing else changes.
    lines = [line for h in data["powermta"] for line in changed_lines(h["diff"])]
    key = "+  domain-key pmta1,shop.example.com,/etc/pmta/dkim/pmta1.shop.example.com.pem"
    assert lines.count(key) == 3  # one in each VMTA of sos-expat (three IPs)
    assert all((line.startswith("+") and "shop.example.com" in line) or line in ("+<domain", "+</domain>")
               or line.startswith("+  type discard") for line in lines), lines
    assert "+    address fbl@rp.shop.example.com" in lines and "+relay-domain rp.shop.example.com" in lines
    assert not any(c["changed"] for c in data["capacity"])
    assert data["policy"]["blocking"] == 0
    chart = data["warmup_chart"]
    assert chart["url"] is None
    assert chart["command"].startswith("mailplane warmup chart /") and chart["command"].endswith(
        "/stacks/prod --out warmup.svg")


def test_domain_added_text_and_markdown(domain_added: dict[str, Any]) -> None:
    text, markdown = domain_added["text"], domain_added["markdown"]
    assert text.exit_code == 2 and markdown.exit_code == 2
    out = text.stdout
    assert out.startswith("Plan for stack prod against base (")
    assert "1 domain added; Pulumi: 16 to create; DNS records: 12 to publish" in out
    assert "  + domain shop.example.com (tenant sos-expat)\n" in out
    assert "  + _dmarc.shop.example.com TXT 300 v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com" in out
    assert "  + <token>._domainkey.shop.example.com CNAME 300 three CNAMEs known after apply" in out
    for type_, name in SHOP_RESOURCES:
        assert f"  + create  {type_}  {name}\n" in out
    assert " delete " not in out and " replace " not in out

    md = markdown.stdout
    assert md.startswith("### mailplane plan: `prod` against `base` (")
    assert "**1 domain added · Pulumi: 16 to create · DNS records: 12 to publish" in md
    assert "| added | domain | `shop.example.com` | sos-expat |  |" in md
    assert "| publish | `_dmarc.shop.example.com` | TXT | `v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com` " \
           "| 300 | Route53 (Pulumi) |" in md
    assert "| publish | `<token>._domainkey.shop.example.com` | CNAME | `three CNAMEs known after apply` |" in md
    assert "<details><summary>Pulumi resources: 16 to create</summary>" in md
    assert md.count("| create | ") == 16
    hosts = json.loads(domain_added["json"].stdout)["powermta"]
    assert md.count("<details>") == 1 + len(hosts) == md.count("</details>")
    assert md.count("```diff") == len(hosts)
    assert "📈 Warmup chart: run `mailplane warmup chart " in md and "--out warmup.svg`" in md
    assert "Warmup capacity: unchanged for" in md


# --- (b) an IP removed, in the working tree -------------------------------------------------------

@pytest.fixture(scope="module")
def ip_removed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Fleet, Fleet]:
    stack = make_repo(tmp_path_factory.mktemp("ip"))
    base = load_stack(stack)
    path = stack / "tenants" / "sos-expat.yaml"
    text = path.read_text()
    start, end = text.index("  - address: 203.0.113.22\n"), text.index("  - address: 203.0.113.23\n")
    path.write_text(text[:start] + text[end:])
    return run_all_formats(stack), base, load_stack(stack)


def test_ip_removed_drops_its_vmta_and_lowers_capacity(ip_removed: tuple[dict[str, Any], Fleet, Fleet]) -> None:
    results, base, head = ip_removed
    assert {fmt: r.exit_code for fmt, r in results.items()} == dict.fromkeys(FORMATS, 2)
    data = json.loads(results["json"].stdout)
    assert data["fleet"] == [{"kind": "ip", "name": "203.0.113.22", "tenant": "sos-expat", "action": "remove",
                              "fields": []}]
    # an IP has no cloud resource of its own, but the marketing route's return paths lose it: their MX
    # and SPF records are updated at both of sos-expat's domains
    # (and the feedback-loop MX, which names every PowerMTA IP of the tenant)
    domains = ("mail1.example.com", "news.example.com")
    assert {(r["action"], r["name"]) for r in data["resources"]} == {
        *(("update", f"{d}-marketing-return-path-{t}") for d in domains for t in ("mx", "txt")),
        *(("update", f"{d}-feedback-loop-mx") for d in domains)}
    assert {(r["action"], r["name"], r["type"]) for r in data["dns_records"]} == {
        *(("update", f"marketing.rp.{d}", t) for d in domains for t in ("MX", "TXT")),
        *(("update", f"rp.{d}", "MX") for d in domains)}
    spf = next(r for r in data["dns_records"] if r["name"] == "marketing.rp.news.example.com" and r["type"] == "TXT")
    assert spf["value"] == "v=spf1 ip4:203.0.113.23 -all"
    vmta = names.vmta_name("sos-expat", "203.0.113.22")
    [host] = data["powermta"]
    assert host["host"] == "mta1" and host["action"] == "change" and host["added"] == 0
    removed = changed_lines(host["diff"])
    assert all(line.startswith("-") for line in removed)
    assert f"-<virtual-mta {vmta}>" in removed and f"-  virtual-mta {vmta}" in removed
    assert "-  smtp-source-host 203.0.113.22 mta1-b.news.example.com" in removed

    tenant_before, tenant_after = base.tenant("sos-expat"), head.tenant("sos-expat")
    before = tenant_capacity(base, tenant_before, ON).daily
    after = tenant_capacity(head, tenant_after, ON).daily
    assert before is not None and after is not None and after < before
    [cap] = [c for c in data["capacity"] if c["changed"]]
    assert cap["tenant"] == "sos-expat"
    assert (cap["before"]["today"]["daily"], cap["after"]["today"]["daily"]) == (before, after)
    later_before = tenant_capacity(base, tenant_before, LATER).daily
    later_after = tenant_capacity(head, tenant_after, LATER).daily
    assert (cap["before"]["later"]["daily"], cap["after"]["later"]["daily"]) == (later_before, later_after)

    text = results["text"].stdout
    assert "  - IP 203.0.113.22 (tenant sos-expat)\n" in text
    assert f"-<virtual-mta {vmta}>\n" in text
    assert re.search(rf"sos-expat\s+{before:,} -> {after:,}\s+\|", text)
    assert "~ update  aws:route53/record:Record  news.example.com-marketing-return-path-txt" in text
    md = results["markdown"].stdout
    assert "| removed | IP | `203.0.113.22` | sos-expat |  |" in md
    assert f"| sos-expat | {before:,} → {after:,} |" in md
    assert "<details><summary>PowerMTA <code>mta1</code> (changed): +0 −" in md
    assert "<details><summary>Pulumi resources: 6 to update</summary>" in md


# --- (c) a warmup plan's schedule edited, in a second commit --------------------------------------

@pytest.fixture(scope="module")
def schedule_edited(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Fleet, Fleet]:
    stack = make_repo(tmp_path_factory.mktemp("warmup"))
    base = load_stack(stack)
    fleet_yaml = stack / "fleet.yaml"
    edit(fleet_yaml, "{day: 11, daily: 2000}", "{day: 11, daily: 1500}")
    edit(fleet_yaml, "{day: 15, daily: 5000}", "{day: 15, daily: 4000}")
    commit(stack, "slower cautious-3w")
    return run_all_formats(stack), base, load_stack(stack)


RATE_LINE = re.compile(r"^[+-] {4}(max-msg-rate|backoff-max-msg-rate) \d+/h$|^[+-] {2}( {2})?max-smtp-out \d+$"
                       r"|^[+-] {2}max-smtp-msg-rate \d+/h$")


def test_warmup_schedule_edit_changes_rates_and_capacity(
        schedule_edited: tuple[dict[str, Any], Fleet, Fleet]) -> None:
    results, base, head = schedule_edited
    assert {fmt: r.exit_code for fmt, r in results.items()} == dict.fromkeys(FORMATS, 2)
    data = json.loads(results["json"].stdout)
    [item] = data["fleet"]
    assert (item["kind"], item["name"], item["action"]) == ("warmup_plan", "cautious-3w", "change")
    assert [(f["before"], f["after"]) for f in item["fields"]] == [(2000, 1500), (5000, 4000)]
    assert data["resources"] == [] and data["dns_records"] == []

    # Hosts whose config changes: those with an IP on the plan whose cap differs on the day.
    def caps(fleet: Fleet) -> dict[str, int | None]:
        return {ref.ip.address: tenant_capacity(fleet, ref.tenant, ON).ip_daily for ref in fleet.ips()}
    on_plan = [ref for ref in head.ips() if ref.ip.warmup and ref.ip.warmup.plan == "cautious-3w"]
    expected_hosts = {ref.ip.host for ref in on_plan
                      if base.plans["cautious-3w"].daily_cap((ON - ref.ip.warmup.started).days + 1)
                      != head.plans["cautious-3w"].daily_cap((ON - ref.ip.warmup.started).days + 1)}
    assert expected_hosts and {h["host"] for h in data["powermta"]} == expected_hosts
    for host in data["powermta"]:
        lines = changed_lines(host["diff"])
        assert lines and all(RATE_LINE.match(line) for line in lines), lines

    expected = {}
    for tenant in sorted({ref.tenant.name for ref in on_plan}):
        b, h = base.tenant(tenant), head.tenant(tenant)
        expected[tenant] = [tenant_capacity(base, b, ON).daily, tenant_capacity(head, h, ON).daily,
                            tenant_capacity(base, b, LATER).daily, tenant_capacity(head, h, LATER).daily]
    got = {c["tenant"]: [c["before"]["today"]["daily"], c["after"]["today"]["daily"],
                         c["before"]["later"]["daily"], c["after"]["later"]["daily"]]
           for c in data["capacity"] if c["changed"]}
    assert got == {t: v for t, v in expected.items() if v[0] != v[1] or v[2] != v[3]}
    assert got, "the edit lowers today's cap of an IP on the plan"

    text, md = results["text"].stdout, results["markdown"].stdout
    assert "  ~ warmup plan cautious-3w\n      schedule[5].daily: 2000 -> 1500\n" in text
    assert "| changed | warmup plan | `cautious-3w` |  | `schedule[5].daily`: `2000` → `1500`<br>" in md
    for tenant, (before, after, later_before, later_after) in got.items():
        later = f"{later_before:,}" if later_before == later_after else f"{later_before:,} → {later_after:,}"
        assert f"| {tenant} | {before:,} → {after:,} | {later} |" in md
        assert re.search(rf"{tenant}\s+{before:,} -> {after:,}", text)
    for host in expected_hosts:
        assert f"PowerMTA {host} (changed, +" in text
        assert f"<details><summary>PowerMTA <code>{host}</code> (changed)" in md


# --- exit codes and errors ------------------------------------------------------------------------

def test_no_change_exits_0_even_with_a_comment_edited(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    result = plan_base(stack)
    assert result.exit_code == 0, result.output
    assert "no changes" in result.stdout
    edit(stack / "tenants" / "sos-expat.yaml", "# Owned by the SOS Expat team.", "# Owned by the SOS team.")
    result = plan_base(stack, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["changed"] is False and data["summary"][0] == "no changes"
    assert data["fleet"] == data["resources"] == data["powermta"] == data["dns_records"] == []


def test_invalid_head_exits_1_with_located_errors(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    edit(stack / "tenants" / "sos-expat.yaml", "host: mta2", "host: mta9")
    result = plan_base(stack)
    assert result.exit_code == 1
    assert re.search(r"sos-expat\.yaml:\d+:\d+: ips\[2\]\.host: no MTA host 'mta9'", result.stderr)
    assert result.stdout == "" and "Traceback" not in result.output


def test_invalid_base_exits_1_naming_the_revision(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    path = stack / "tenants" / "sos-expat.yaml"
    edit(path, "host: mta2", "host: mta9")
    commit(stack, "broken")
    git(stack, "tag", "broken")
    edit(path, "host: mta9", "host: mta2")
    result = plan_base(stack, base="broken")
    assert result.exit_code == 1
    assert "the stack at broken is invalid" in result.stderr
    assert re.search(r"^broken:stacks/prod/tenants/sos-expat\.yaml:\d+:\d+: ips\[2\]\.host: no MTA host 'mta9'",
                     result.stderr, re.M), result.stderr
    assert "Traceback" not in result.output


def test_unknown_ref_and_no_repository_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    stack = make_repo(tmp_path / "repo")
    result = plan_base(stack, base="no-such-branch")
    assert result.exit_code == 1
    assert "error: unknown git revision 'no-such-branch'" in result.stderr
    loose = tmp_path / "loose" / "prod"
    shutil.copytree(PROD, loose)
    result = plan_base(loose)
    assert result.exit_code == 1
    assert "is not inside a git repository" in result.stderr
    assert "Traceback" not in result.output


def test_new_stack_is_all_added(tmp_path: Path) -> None:
    stack = make_repo(tmp_path, with_stack=False)
    result = plan_base(stack, "--format", "json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["base"]["stack_exists"] is False and data["summary"][0] == "new stack (no prod at base)"
    head = load_stack(stack)
    assert {r["action"] for r in data["resources"]} == {"create"}
    assert len(data["resources"]) == sum(not r.type.startswith("mailplane:") for r in _memo_plan(head))
    assert {h["host"]: h["action"] for h in data["powermta"]} == dict.fromkeys(head.settings.mta_hosts, "add")
    assert {(i["kind"], i["name"]) for i in data["fleet"] if i["kind"] == "tenant"} == {
        ("tenant", t.name) for t in head.tenants}


def test_dmarc_removed_is_a_policy_error_exit_1(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    edit(stack / "tenants" / "sos-expat.yaml", "    dmarc: {policy: quarantine, rua: mailto:dmarc@example.com}\n", "")
    result = plan_base(stack, "--format", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    blocking = [f for f in data["policy"]["findings"] if f["blocking"]]
    assert [(f["check"], f["path"]) for f in blocking] == [("dmarc-published", "domains[0]")]
    assert blocking[0]["file"].endswith("tenants/sos-expat.yaml")
    assert data["policy"]["findings"][0] == blocking[0]  # errors first
    assert [(r["action"], r["name"]) for r in data["dns_records"]] == [("remove", "_dmarc.mail1.example.com")]
    assert [(r["action"], r["name"]) for r in data["resources"]] == [("delete", "mail1.example.com-dmarc-txt")]
    assert "1 policy error" in result.stderr
    md = plan_base(stack, "--format", "markdown")
    assert md.exit_code == 1
    assert "#### Policy: 1 policy error" in md.stdout and "❌ **error** `dmarc-published`" in md.stdout
    text = plan_base(stack)
    assert text.exit_code == 1 and "[error dmarc-published]" in text.stdout


def test_date_and_chart_url_need_base_and_chart_url_is_linked(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plan", str(PROD), "--date", DATE])
    assert result.exit_code == 2 and "--base" in result.stderr
    stack = make_repo(tmp_path)
    result = plan_base(stack, "--format", "markdown", "--chart-url", "https://ci.example.com/warmup.svg")
    assert result.exit_code == 0
    assert "📈 Warmup chart: [warmup chart](https://ci.example.com/warmup.svg)" in result.stdout


# --- pure parts -----------------------------------------------------------------------------------

def _resource(type_: str, name: str, inputs: dict[str, Any], parent: str | None = None) -> cloud_plan.PlannedResource:
    return cloud_plan.PlannedResource(type_, name, parent, "t", inputs)


def test_replacement_inputs_and_moves_make_a_replace() -> None:
    topic = "aws:sns/topic:Topic"
    base = [_resource(topic, "a", {"name": "a", "tags": {"x": "1"}}), _resource(topic, "b", {"name": "b"}),
            _resource(RECORD, "r", {"ttl": 300, "name": "n"}), _resource(RECORD, "s", {"ttl": 300}, "p1"),
            _resource(RECORD, "gone", {})]
    head = [_resource(topic, "a", {"name": "a", "tags": {"x": "2"}}), _resource(topic, "b", {"name": "b2"}),
            _resource(RECORD, "r", {"ttl": 60, "name": "n"}), _resource(RECORD, "s", {"ttl": 300}, "p2"),
            _resource(RECORD, "new", {}), _resource("mailplane:cloud:Domain", "component", {})]
    got = {(c.type, c.name): (c.action, [(i.key, i.forces_replacement) for i in c.changes])
           for c in resource_changes(base, head)}
    assert got == {(topic, "a"): ("update", [("tags", False)]), (topic, "b"): ("replace", [("name", True)]),
                   (RECORD, "r"): ("update", [("ttl", False)]), (RECORD, "s"): ("replace", [("(parent)", True)]),
                   (RECORD, "new"): ("create", []), (RECORD, "gone"): ("delete", [])}


def test_byodkim_selector_change_really_planned_twice(stack_copy: Callable[[str], Path]) -> None:
    """The real ``plan`` for two fleets in one process; a new selector is a new TXT name: the
    old record goes, the new one comes, and its Route53 record is replaced (name forces it).
    (The identity's DKIM attributes hold the private key, so the plan shows them as one secret:
    a change inside them is not visible offline.)"""
    stack = stack_copy("prod")
    base = load_stack(stack)
    edit(stack / "tenants" / "sos-expat.yaml", "selector: s2026a", "selector: s2026b")
    head = load_stack(stack)
    diff = compare(base, head, ON, _real_plan(base), _real_plan(head))
    assert [(r.action, r.record.name, r.record.type) for r in diff.records] == [
        ("remove", "s2026a._domainkey.news.example.com", "TXT"),
        ("publish", "s2026b._domainkey.news.example.com", "TXT")]
    by_name = {(r.type, r.name): r for r in diff.resources}
    assert by_name[RECORD, "news.example.com-dkim-1"].action == "replace"
    assert {h.host for h in diff.hosts} == {h for ref in head.ips() if ref.tenant.name == "sos-expat"
                                             for h in [ref.ip.host]}


def test_markdown_stays_within_a_github_comment_and_says_what_it_cut() -> None:
    big_diff = "".join(f"-    max-msg-rate {i}/h\n+    max-msg-rate {i + 1}/h\n" for i in range(3_000))
    hosts = tuple(HostDiff(f"mta{i}", "change", f"--- a\n+++ b\n@@ -1 +1 @@\n{big_diff}", 3_000, 3_000)
                  for i in range(5))
    resources = tuple(ResourceChange("create", RECORD, f"r{i}.example.com-dmarc-txt", "t", None, {})
                      for i in range(2_000))
    diff = StackDiff("prod", ON, True, (), (), resources, hosts, ())
    review = Review(diff, "stacks/prod", "origin/main", "0" * 40, [])
    markdown = render(review, "markdown")
    assert len(markdown) <= MAX_COMMENT_CHARS
    assert "more resources: see the text or JSON output" in markdown
    assert "more lines: run `mailplane plan stacks/prod --base origin/main` for the whole diff" in markdown
    assert markdown.count("<details>") == markdown.count("</details>") == 6
    text = render(review, "text")
    assert text.count("max-msg-rate") == 5 * 6_000 and text.count(" create ") == 2_000


# --- plans that refuse to destroy -----------------------------------------------------------------

NEWS_DOMAIN = ("  - name: news.example.com\n"
               "    dkim: {mode: byo, selector: s2026a}    # one key for SES and PowerMTA\n"
               "    mail_from: bounce.news.example.com\n"
               "    dmarc: {policy: none, rua: [mailto:dmarc@example.com]}\n"
               "    dns: {zone: example.com}               # provider: the fleet's default (route53)\n")


def _drop_news_domain(stack: Path) -> None:
    path = stack / "tenants" / "sos-expat.yaml"
    edit(path, NEWS_DOMAIN, "")
    edit(path, 'from: ["*@news.example.com"]', "from: [news@mail1.example.com]")
    for host in ("mta1-b", "mta2-a"):  # the IPs' PTR names move under the tenant's remaining domain
        edit(path, f"hostname: {host}.news.example.com", f"hostname: {host}.mail1.example.com")


def _drop_newsletter_sender(stack: Path) -> None:
    edit(stack / "tenants" / "sos-expat.yaml", '  - name: newsletter\n    from: ["*@news.example.com"]\n', "")


def _rename_configuration_set(stack: Path) -> None:
    edit(stack / "tenants" / "sos-expat.yaml", "configuration_set: sos-expat", "configuration_set: sos-expat-2")


def _drop_tenant(stack: Path) -> None:
    (stack / "tenants" / "initech.yaml").unlink()


@pytest.mark.parametrize(("change", "expected"), [
    (_drop_news_domain, {("delete", "SES identity", "news.example.com"),
                         ("delete", "DKIM key", "news.example.com-dkim")}),
    (_drop_newsletter_sender, {("delete", "IAM user", "sos-expat-newsletter")}),
    (_rename_configuration_set, {("replace", "configuration set", "sos-expat")}),
    (_drop_tenant, {("delete", "SES identity", "initech.example.org"),
                    ("delete", "DKIM key", "initech.example.org-dkim-pmta"),
                    ("delete", "IAM user", "initech-campaigns"),
                    ("delete", "configuration set", "initech"),
                    ("delete", "SNS topic", "initech-events")}),
], ids=["domain", "sender", "configuration-set", "tenant"])
def test_destroying_a_protected_kind_exits_1_unless_allowed(tmp_path: Path, change: Callable[[Path], None],
                                                             expected: set[tuple[str, str, str]]) -> None:
    stack = make_repo(tmp_path)
    change(stack)
    result = plan_base(stack, "--format", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    destroy = data["destroy"]
    assert destroy["blocking"] and not destroy["allowed"] and destroy["label"] == "allow-destroy"
    listed = {(r["action"], r["kind"], r["name"]) for r in destroy["resources"]}
    assert expected <= listed
    if change is not _drop_tenant:  # a tenant is also over the share: then every deletion is listed
        assert listed == expected
    assert "error: this change " in result.stderr and "pass --allow-destroy" in result.stderr
    assert "the allow-destroy label" in result.stderr
    assert data["policy"]["blocking"] == 0  # blocked by the destroy check alone

    allowed = plan_base(stack, "--format", "json", "--allow-destroy")
    assert allowed.exit_code == 2, allowed.output
    after = json.loads(allowed.stdout)["destroy"]
    assert after["allowed"] and not after["blocking"] and after["triggered"]
    assert {(r["action"], r["kind"], r["name"]) for r in after["resources"]} == listed
    assert "error:" not in allowed.stderr


def test_the_markdown_says_what_would_be_destroyed_and_how_to_allow_it(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    _drop_news_domain(stack)
    md = plan_base(stack, "--format", "markdown")
    assert md.exit_code == 1
    assert "destroys 2 protected resources" in md.stdout and "blocked without --allow-destroy" in md.stdout
    assert "#### ⛔ Destroys: blocked" in md.stdout
    assert "| delete | SES identity | `news.example.com` | sos-expat |" in md.stdout
    assert "| delete | DKIM key | `news.example.com-dkim` | sos-expat |" in md.stdout
    assert "add the `allow-destroy` label to the pull request" in md.stdout
    assert "pulumi state unprotect" in md.stdout
    text = plan_base(stack)
    assert text.exit_code == 1
    assert "Destroys (destroys 2 protected resources" in text.stdout
    assert "- delete  SES identity  news.example.com (tenant sos-expat)" in text.stdout
    allowed = plan_base(stack, "--format", "markdown", "--allow-destroy")
    assert allowed.exit_code == 2 and "#### ⚠️ Destroys (allowed)" in allowed.stdout
    assert "allowed by --allow-destroy" in allowed.stdout


def test_deleting_more_than_the_share_exits_1_and_the_share_is_a_flag(tmp_path: Path) -> None:
    """No protected kind here: moving a domain to external DNS deletes its Route53 records only."""
    stack = make_repo(tmp_path)
    edit(stack / "tenants" / "sos-expat.yaml", "dns: {provider: route53, zone: example.com}",
         "dns: {provider: external}")
    result = plan_base(stack, "--format", "json")
    data = json.loads(result.stdout)
    destroy = data["destroy"]
    deleted = [r for r in data["resources"] if r["action"] in ("delete", "replace")]
    assert deleted and {r["type"] for r in deleted} == {RECORD}
    base_total = sum(not r.type.startswith("mailplane:") for r in _memo_plan(load_stack(PROD)))
    assert (destroy["destroyed"], destroy["base_total"]) == (len(deleted), base_total)
    share = 100 * len(deleted) / base_total
    assert share < 20 and destroy["max_share"] == 20
    assert result.exit_code == 2 and not destroy["triggered"]

    below = plan_base(stack, "--format", "json", "--max-destroy", f"{share - 0.5:.1f}")
    assert below.exit_code == 1, below.output
    blocked = json.loads(below.stdout)["destroy"]
    assert blocked["blocking"] and blocked["reasons"] == [
        f"{len(deleted)} of {base_total} resources ({share:.0f}%) deleted or replaced, more than {share - 0.5:.1f}%"]
    assert {r["name"] for r in blocked["resources"]} == {r["name"] for r in deleted}
    assert plan_base(stack, "--max-destroy", f"{share - 0.5:.1f}", "--allow-destroy").exit_code == 2
    assert plan_base(stack, "--max-destroy", f"{share + 0.5:.1f}").exit_code == 2


def test_a_tenant_removed_is_over_the_default_share(tmp_path: Path) -> None:
    stack = make_repo(tmp_path)
    _drop_tenant(stack)
    destroy = json.loads(plan_base(stack, "--format", "json").stdout)["destroy"]
    assert destroy["share"] > 20 and len(destroy["reasons"]) == 2


def test_destroy_options_need_base() -> None:
    for option in (["--allow-destroy"], ["--max-destroy", "10"]):
        result = CliRunner().invoke(app, ["plan", str(PROD), *option])
        assert result.exit_code == 2 and "--base" in result.stderr
