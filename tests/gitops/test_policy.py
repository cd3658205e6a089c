"""Policy checks: each one triggered by a minimal edit of a copy of ``stacks/prod``, located, waivable.

Expected positions are computed from the edited text itself (the line holding the offending
value), never copied from the output, so a finding pointing at the wrong key fails.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import shutil
from pathlib import Path

import pytest
from plan_repo import edit
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.gitops import policy_reference
from mailplane.gitops.policy import CHECKS, FUTURE_START_DAYS, SPF_MAX_LOOKUPS, Finding, check_policies, spf_lookups
from mailplane.model import records
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError
from mailplane.model.routes import Route, RouteAuth, alignment

ROOT = Path(__file__).resolve().parents[2]
DAY = datetime.date(2026, 11, 25)
"""The day of the golden configs: every IP of stacks/prod has started or starts within 14 days."""
PROD_WAIVER = "ptr-in-tenant-domains"
"""The one waiver stacks/prod carries, to document the syntax (globex's IPv6 PTR)."""


# --- helpers -------------------------------------------------------------------------------



def drop_sender(fleet_yaml: Path) -> None:
    """Remove fleet.yaml's whole ``sender:`` block: a stack without the sender service."""
    text = fleet_yaml.read_text(encoding="utf-8")
    block = re.search(r"^sender:\n(?:  .*\n)+", text, re.M)
    assert block is not None, f"no sender: block in {fleet_yaml}"
    fleet_yaml.write_text(text.replace(block.group(), ""), encoding="utf-8")


def where(path: Path, needle: str, *, at: str | None = None) -> tuple[int, int]:
    """Line and column (1-based) of ``at`` (default ``needle``) on the only line containing ``needle``."""
    lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} is on {len(lines)} lines of {path}"
    number, line = lines[0]
    return number, line.index(at if at is not None else needle) + 1


def tenant_file(stack: Path, tenant: str) -> Path:
    return stack / "tenants" / f"{tenant}.yaml"


def findings(stack: Path, today: datetime.date = DAY, base: Path | None = None) -> list[Finding]:
    return check_policies(load_stack(stack), today=today, base=load_stack(base) if base else None)


def of(found: list[Finding], check: str) -> list[Finding]:
    return [f for f in found if f.check == check]


def one(found: list[Finding], check: str) -> Finding:
    matching = of(found, check)
    assert len(matching) == 1, found
    return matching[0]


def assert_at(finding: Finding, path: Path, line_col: tuple[int, int], yaml_path: str) -> None:
    problem = finding.problem
    assert Path(problem.file).resolve() == path.resolve(), problem
    assert (problem.line, problem.col) == line_col, problem
    assert problem.path == yaml_path, problem


def in_file(found: list[Finding], tenant: str) -> list[Finding]:
    return [f for f in found if Path(f.problem.file).stem == tenant]


def unwaived(found: list[Finding]) -> list[Finding]:
    return [f for f in found if f.waived is None]


def validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def add_waiver(path: Path, after: str, indent: int, check: str, reason: str) -> None:
    """A ``waive:`` block under the domain or IP whose last line is ``after``."""
    pad = " " * indent
    edit(path, after, f"{after}{pad}waive:\n{pad}  {check}: {reason}\n")


# --- the example stacks ----------------------------------------------------------------------


def test_the_example_stacks_pass_with_only_the_documented_waiver() -> None:
    prod = load_stack(ROOT / "stacks" / "prod")
    found = check_policies(prod, today=DAY)
    assert [(f.check, f.waived is not None) for f in found] == [(PROD_WAIVER, True)]
    assert check_policies(prod, today=DAY, base=prod) == found, "a fleet compared with itself changes nothing"
    assert check_policies(load_stack(ROOT / "stacks" / "dev"), today=DAY) == []


def test_findings_are_sorted_and_deterministic(prod_copy: Path) -> None:
    drop_sender(prod_copy / "fleet.yaml")
    dmarc = "    dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}\n"
    edit(tenant_file(prod_copy, "initech"), dmarc, "")
    first, second = findings(prod_copy), findings(prod_copy)
    assert first == second
    keys = [(f.problem.file, f.problem.line, f.problem.col, f.check) for f in first]
    assert keys == sorted(keys) and len(first) >= 4


# --- one test per check --------------------------------------------------------------------


def test_dmarc_published(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    edit(path, "    dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}\n", "")
    finding = one(findings(prod_copy), "dmarc-published")
    assert_at(finding, path, where(path, "- name: initech.example.org", at="name"), "domains[0]")
    assert finding.severity == "error" and finding.blocking
    assert "initech.example.org publishes no DMARC" in finding.problem.message
    assert "dmarc: {policy: none" in finding.problem.hint


def test_dmarc_policy_none_is_enough(prod_copy: Path) -> None:
    edit(tenant_file(prod_copy, "initech"), "dmarc: {policy: quarantine,", "dmarc: {policy: none,")
    assert of(findings(prod_copy), "dmarc-published") == []


def test_dkim_key_2048(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "globex")
    edit(path, "dkim: {mode: byo, selector: gx2026}", "dkim: {mode: byo, selector: gx2026, key_bits: 1024}")
    finding = one(findings(prod_copy), "dkim-key-2048")
    assert_at(finding, path, where(path, "key_bits: 1024", at="1024"), "domains[0].dkim.key_bits")
    assert finding.severity == "error" and "1024 bits" in finding.problem.message


def test_an_explicit_2048_bit_key_passes(prod_copy: Path) -> None:
    edit(tenant_file(prod_copy, "globex"), "selector: gx2026}", "selector: gx2026, key_bits: 2048}")
    assert of(findings(prod_copy), "dkim-key-2048") == []


def test_easy_dkim_takes_no_key_size(prod_copy: Path) -> None:
    """SES makes Easy DKIM keys: a size there would be ignored, so it is a model error."""
    path = tenant_file(prod_copy, "initech")
    edit(path, "dkim: {mode: easy}", "dkim: {mode: easy, key_bits: 2048}")
    with pytest.raises(StackError) as info:
        load_stack(prod_copy)
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == where(path, "key_bits: 2048", at="2048")
    assert problem.path == "domains[0].dkim.key_bits" and "Easy DKIM" in problem.message


def test_the_pulumi_program_makes_the_key_size_asked_for(prod_copy: Path) -> None:
    from cloud_mocks import AwsMocks

    from mailplane.cloud.engine import run

    edit(tenant_file(prod_copy, "globex"), "selector: gx2026}", "selector: gx2026, key_bits: 1024}")
    fleet = load_stack(prod_copy)
    result = run(fleet, AwsMocks(fleet.settings.ses.region))
    bits = {r.name: r.inputs["rsaBits"] for r in result.of_type("tls:index/privateKey:PrivateKey")}
    assert bits == {"globex.example.net-dkim": 1024, "news.example.com-dkim": 2048,
                    # PowerMTA's own keys of the Easy DKIM domains: always 2048 bits
                    "initech.example.org-dkim-pmta": 2048, "mail1.example.com-dkim-pmta": 2048}


def test_spf_lookup_terms_are_counted_at_the_top_level() -> None:
    value = ("v=spf1 a mx:mx.example.com -include:_spf.example.net ?exists:%{i}.x.example.org ptr "
             "ip4:192.0.2.1 ip6:2001:db8::1 +a/24 redirect=_spf.example.com ~all")
    assert spf_lookups(value) == ["a", "mx:mx.example.com", "-include:_spf.example.net",
                                  "?exists:%{i}.x.example.org", "ptr", "+a/24", "redirect=_spf.example.com"]
    assert spf_lookups(records.MAIL_FROM_SPF) == ["include:amazonses.com"]


@pytest.mark.parametrize(("extra", "flagged"), [(SPF_MAX_LOOKUPS - 2, False), (SPF_MAX_LOOKUPS - 1, True)])
def test_spf_lookups_at_the_domain(prod_copy: Path, extra: int, flagged: bool) -> None:
    """globex publishes include:amazonses.com and include:spf.example.org: 2 lookups, plus ``extra``."""
    path = tenant_file(prod_copy, "globex")
    includes = ", ".join(["spf.example.org"] + [f"spf{n}.example.org" for n in range(extra)])
    edit(path, "spf: {include: [spf.example.org]", f"spf: {{include: [{includes}]")
    found = of(findings(prod_copy), "spf-lookups")
    if not flagged:
        assert found == []
        return
    (finding,) = found
    assert_at(finding, path, where(path, "spf: {include: [", at="["), "domains[0].spf.include")
    message = finding.problem.message
    assert f"has {SPF_MAX_LOOKUPS + 1} DNS-querying terms" in message and "globex.example.net" in message
    assert "mailplane dns check" in message, "the message says nested includes are counted elsewhere"


def test_spf_lookups_of_the_mail_from_record(prod_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check reads the records the program publishes, so the MAIL FROM record is counted too."""
    heavy = "v=spf1 " + " ".join(f"include:s{n}.example.org" for n in range(SPF_MAX_LOOKUPS + 1)) + " ~all"
    monkeypatch.setattr(records, "MAIL_FROM_SPF", heavy)
    path = tenant_file(prod_copy, "initech")
    found = [f for f in of(findings(prod_copy), "spf-lookups") if Path(f.problem.file).name == "initech.yaml"]
    (finding,) = found
    assert_at(finding, path, where(path, "mail_from: bounce.initech", at="bounce"), "domains[0].mail_from")
    assert "bounce.initech.example.org" in finding.problem.message


@pytest.mark.parametrize(("hostname", "flagged"), [
    ("mta1-b.news.example.net", True),      # another TLD
    ("mta1-b.xnews.example.com", True),     # a suffix, not a subdomain
    ("mta1-b.example.com", True),           # the zone, not one of the tenant's domains
    ("news.example.com", False),            # the domain itself
    ("a.b.mail1.example.com", False),       # deeper under another of the tenant's domains
])
def test_ptr_in_tenant_domains(prod_copy: Path, hostname: str, flagged: bool) -> None:
    path = tenant_file(prod_copy, "sos-expat")
    edit(path, "hostname: mta1-b.news.example.com", f"hostname: {hostname}")
    found = of(unwaived(findings(prod_copy)), "ptr-in-tenant-domains")
    if not flagged:
        assert found == []
        return
    (finding,) = found
    assert_at(finding, path, where(path, f"hostname: {hostname}", at=hostname), "ips[1].hostname")
    assert hostname in finding.problem.message and "mail1.example.com, news.example.com" in finding.problem.message


def test_ptr_of_another_tenants_domain_is_flagged(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    edit(path, "hostname: mta2-b.initech.example.org", "hostname: mta2-b.globex.example.net")
    finding = one(unwaived(findings(prod_copy)), "ptr-in-tenant-domains")
    assert_at(finding, path, where(path, "mta2-b.globex.example.net"), "ips[1].hostname")


def test_marketing_unsubscribe_is_reported_on_each_domain_of_a_marketing_tenant(prod_copy: Path) -> None:
    drop_sender(prod_copy / "fleet.yaml")
    found = of(findings(prod_copy), "marketing-unsubscribe")
    located = {(Path(f.problem.file).name, f.problem.line, f.problem.col, f.problem.path) for f in found}
    expected = set()
    for tenant, domain, index in (("globex", "globex.example.net", 0), ("initech", "initech.example.org", 0),
                                  ("sos-expat", "mail1.example.com", 0),
                                  ("sos-expat", "news.example.com", 1)):
        line, col = where(tenant_file(prod_copy, tenant), f"- name: {domain}", at=domain)
        expected.add((f"{tenant}.yaml", line, col, f"domains[{index}].name"))
    assert located == expected
    assert all(f.blocking and "sender.public_url" in f.problem.message for f in found)


def test_warmup_plan(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    edit(path, "    warmup: {plan: pmta-6w, started: 2026-12-01}\n", "")
    finding = one(findings(prod_copy), "warmup-plan")
    assert_at(finding, path, where(path, "- address: 192.0.2.42", at="address"), "ips[1]")
    assert "192.0.2.42 has no warmup plan" in finding.problem.message


@pytest.mark.parametrize(("today", "flagged"), [
    (datetime.date(2026, 12, 1) - datetime.timedelta(days=FUTURE_START_DAYS), False),
    (datetime.date(2026, 12, 1) - datetime.timedelta(days=FUTURE_START_DAYS + 1), True),
])
def test_warmup_start_future(prod_copy: Path, today: datetime.date, flagged: bool) -> None:
    """initech's 192.0.2.42 starts on 2026-12-01, the last start of the stack."""
    found = of(findings(prod_copy, today=today), "warmup-start-future")
    path = tenant_file(prod_copy, "initech")
    if not flagged:
        assert found == []
        return
    (finding,) = found
    assert_at(finding, path, where(path, "started: 2026-12-01", at="2026-12-01"), "ips[1].warmup.started")
    assert finding.severity == "warning" and not finding.blocking
    assert f"{FUTURE_START_DAYS + 1} days after {today}" in finding.problem.message


# --- checks against a base revision ----------------------------------------------------------


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A second copy of stacks/prod: the target branch of the pull request."""
    return Path(shutil.copytree(ROOT / "stacks" / "prod", tmp_path / "base" / "prod"))


def test_warmup_start_moved_back_on_an_ip_already_sending(prod_copy: Path, base: Path) -> None:
    path = tenant_file(prod_copy, "sos-expat")
    edit(path, "started: 2026-11-02}", "started: 2026-10-20}")
    assert of(findings(prod_copy), "warmup-start-moved-back") == [], "needs a base revision"
    finding = one(findings(prod_copy, base=base), "warmup-start-moved-back")
    assert_at(finding, path, where(path, "started: 2026-10-20", at="2026-10-20"), "ips[0].warmup.started")
    assert finding.blocking
    message = finding.problem.message
    assert "from 2026-11-02 to 2026-10-20" in message and "day 24 of standard-45d" in message
    assert "skipping 13 days" in message


@pytest.mark.parametrize(("started", "flagged"), [
    ("2026-11-28", False),   # earlier, still in the future: nothing sent, nothing skipped
    ("2026-11-25", False),   # today: day 1
    ("2026-11-20", True),    # before today: would begin on day 6
    ("2026-12-10", False),   # later
])
def test_warmup_start_moved_back_on_an_ip_not_yet_sending(prod_copy: Path, base: Path, started: str,
                                                          flagged: bool) -> None:
    edit(tenant_file(prod_copy, "initech"), "started: 2026-12-01}", f"started: {started}}}")
    found = of(findings(prod_copy, base=base), "warmup-start-moved-back")
    assert len(found) == flagged, found


@pytest.mark.parametrize(("started", "flagged"), [("2026-11-25", False), ("2026-11-24", True)])
def test_a_new_ip_cannot_start_before_today(prod_copy: Path, base: Path, started: str, flagged: bool) -> None:
    path = tenant_file(prod_copy, "initech")
    edit(path, "ses:\n", "  - address: 192.0.2.43\n    hostname: mta1-c.initech.example.org\n    host: mta1\n"
                         f"    warmup: {{plan: pmta-6w, started: {started}}}\nses:\n")
    found = of(findings(prod_copy, base=base), "warmup-start-moved-back")
    if not flagged:
        assert found == []
        return
    (finding,) = found
    assert_at(finding, path, where(path, f"started: {started}", at=started), "ips[2].warmup.started")
    assert "192.0.2.43 is new" in finding.problem.message


def test_warmup_cap_raised_by_a_plan_change(prod_copy: Path, base: Path) -> None:
    """sos-expat's 203.0.113.23 is on day 6 of cautious-3w (500/day); sparkpost-30d allows 10,000."""
    path = tenant_file(prod_copy, "sos-expat")
    edit(path, "warmup: {plan: cautious-3w, started: 2026-11-20}", "warmup: {plan: sparkpost-30d, started: 2026-11-20}")
    finding = one(findings(prod_copy, base=base), "warmup-cap-raised")
    assert_at(finding, path, where(path, "plan: sparkpost-30d, started: 2026-11-20", at="sparkpost-30d"),
              "ips[2].warmup.plan")
    assert finding.severity == "warning" and "from 500 to 10,000/day" in finding.problem.message


def test_a_plan_change_that_lowers_the_cap_passes(prod_copy: Path, base: Path) -> None:
    edit(tenant_file(prod_copy, "sos-expat"), "{plan: cautious-3w, started: 2026-11-20}",
         "{plan: pmta-6w, started: 2026-11-20}")
    assert of(findings(prod_copy, base=base), "warmup-cap-raised") == []


def test_warmup_cap_raised_by_editing_the_plan_in_fleet_yaml(prod_copy: Path, base: Path) -> None:
    """Every IP on the plan that is sending and whose cap today rises is reported, at its own IP."""
    edit(prod_copy / "fleet.yaml", "{day: 5, daily: 500}", "{day: 5, daily: 800}")
    finding = one(findings(prod_copy, base=base), "warmup-cap-raised")
    path = tenant_file(prod_copy, "sos-expat")
    assert_at(finding, path, where(path, "plan: cautious-3w, started: 2026-11-20", at="cautious-3w"),
              "ips[2].warmup.plan")


# --- waivers ---------------------------------------------------------------------------------


def test_the_prod_waiver_is_reported_as_waived(prod_copy: Path) -> None:
    finding = one(findings(prod_copy), PROD_WAIVER)
    path = tenant_file(prod_copy, "globex")
    assert_at(finding, path, where(path, "hostname: out6.globex-infra", at="out6"), "ips[1].hostname")
    assert finding.waived and "reverse zone" in finding.waived and not finding.blocking
    assert str(finding).endswith(f": ips[1].hostname: waived: {finding.waived} [info {PROD_WAIVER}]")


def test_without_its_waiver_the_prod_ptr_is_an_error(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "globex")
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"    waive: .*\n      ptr-in-tenant-domains: .*\n", "", text), encoding="utf-8")
    assert one(findings(prod_copy), PROD_WAIVER).blocking


@pytest.mark.parametrize(("check", "tenant", "after", "indent", "setup"), [
    ("dmarc-published", "initech", "    dns: {provider: route53, zone: initech.example.org}\n", 4,
     ("initech", "    dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}\n", "")),
    ("dkim-key-2048", "globex", "    dns: {provider: external}              # the customer publishes the records by "
     "hand\n", 4, ("globex", "selector: gx2026}", "selector: gx2026, key_bits: 1024}")),
    ("warmup-plan", "initech", "    host: mta2\n", 4,
     ("initech", "    warmup: {plan: pmta-6w, started: 2026-12-01}\n", "")),
    ("ptr-in-tenant-domains", "sos-expat", "    streams: [transactional]\n", 4,
     ("sos-expat", "hostname: mta1-a.mail1.example.com", "hostname: mta1-a.mail1.example.net")),
])
def test_each_waiver_is_honoured(prod_copy: Path, check: str, tenant: str, after: str, indent: int,
                                 setup: tuple[str, str, str]) -> None:
    edit(tenant_file(prod_copy, setup[0]), setup[1], setup[2])
    assert one(in_file(findings(prod_copy), tenant), check).blocking
    add_waiver(tenant_file(prod_copy, tenant), after, indent, check, "a reason a reviewer accepted")
    finding = one(in_file(findings(prod_copy), tenant), check)
    assert finding.waived == "a reason a reviewer accepted" and not finding.blocking
    assert [f for f in findings(prod_copy) if f.blocking] == []
    code, stdout, _ = validate(str(prod_copy), "--date", DAY.isoformat())
    assert code == 0 and f"[info {check}]" in stdout


def test_marketing_unsubscribe_is_waived_per_domain(prod_copy: Path) -> None:
    drop_sender(prod_copy / "fleet.yaml")
    add_waiver(tenant_file(prod_copy, "initech"), "    dns: {provider: route53, zone: initech.example.org}\n", 4,
               "marketing-unsubscribe", "campaigns carry MailWizz's own unsubscribe endpoint")
    found = of(findings(prod_copy), "marketing-unsubscribe")
    assert [(Path(f.problem.file).stem, f.waived is not None) for f in found] == [
        ("globex", False), ("initech", True), ("sos-expat", False), ("sos-expat", False)]


def test_a_waiver_of_an_unknown_check_is_an_error_at_its_key(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    add_waiver(path, "    host: mta2\n", 4, "warmup-plna", "a reason a reviewer accepted")
    finding = one(findings(prod_copy), "waiver-known")
    assert_at(finding, path, where(path, "warmup-plna:", at="warmup-plna"), "ips[1].waive.warmup-plna")
    assert finding.blocking and "did you mean 'warmup-plan'?" in finding.problem.hint


def test_a_waiver_at_the_wrong_level_is_an_error(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    add_waiver(path, "    dns: {provider: route53, zone: initech.example.org}\n", 4, "warmup-plan",
               "a reason a reviewer accepted")
    finding = one(findings(prod_copy), "waiver-known")
    assert_at(finding, path, where(path, "warmup-plan:", at="warmup-plan"), "domains[0].waive.warmup-plan")
    assert "about IPs, not domains" in finding.problem.message


def test_the_waiver_checks_cannot_be_waived(prod_copy: Path) -> None:
    add_waiver(tenant_file(prod_copy, "initech"), "    host: mta2\n", 4, "waiver-unused",
               "a reason a reviewer accepted")
    assert "cannot be waived" in one(findings(prod_copy), "waiver-known").problem.message


def test_a_waiver_that_waives_nothing_is_a_warning(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    add_waiver(path, "    host: mta2\n", 4, "warmup-plan", "a reason a reviewer accepted")
    finding = one(findings(prod_copy), "waiver-unused")
    assert_at(finding, path, where(path, "warmup-plan:", at="warmup-plan"), "ips[1].waive.warmup-plan")
    assert finding.severity == "warning"


def test_a_base_only_waiver_is_not_unused_without_a_base(prod_copy: Path, base: Path) -> None:
    add_waiver(tenant_file(prod_copy, "initech"), "    host: mta2\n", 4, "warmup-start-moved-back",
               "a reason a reviewer accepted")
    assert of(findings(prod_copy), "waiver-unused") == []
    assert len(of(findings(prod_copy, base=base), "waiver-unused")) == 1


def test_a_waiver_reason_must_say_something(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    add_waiver(path, "    host: mta2\n", 4, "warmup-plan", "short")
    with pytest.raises(StackError) as info:
        load_stack(prod_copy)
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == where(path, "warmup-plan: short", at="short")
    assert problem.path == "ips[1].waive.warmup-plan" and "at least 10 characters" in problem.message


# --- mailplane validate ------------------------------------------------------------------------


LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): .+ \[(?P<severity>error|warning) "
                     r"(?P<check>[a-z0-9-]+)\]$")


def test_validate_exits_0_on_the_example_and_lists_its_waiver_on_stdout() -> None:
    code, stdout, stderr = validate(str(ROOT / "stacks" / "prod"), "--date", DAY.isoformat())
    assert (code, stderr) == (0, "")
    waived, ok = stdout.splitlines()
    assert waived.endswith(f"[info {PROD_WAIVER}]") and ": ips[1].hostname: waived: " in waived
    assert ok.endswith(": ok (3 tenants, 4 domains, 7 IPs, 3 MTA hosts); 1 waived finding")


def test_validate_exits_1_on_a_policy_error_with_located_lines(prod_copy: Path) -> None:
    path = tenant_file(prod_copy, "initech")
    edit(path, "    warmup: {plan: pmta-6w, started: 2026-12-01}\n", "")
    edit(path, "    dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}\n", "")
    code, stdout, stderr = validate(str(prod_copy), "--date", DAY.isoformat())
    assert code == 1 and "ok (" not in stdout
    *lines, summary = stderr.splitlines()
    assert summary == "2 policy errors"
    parsed = [LOCATED.match(line) for line in lines]
    assert all(parsed), lines
    got = [(Path(m["file"]).name, int(m["line"]), int(m["col"]), m["path"], m["severity"], m["check"])
           for m in parsed if m]
    dmarc = where(path, "- name: initech.example.org", at="name")
    plan = where(path, "- address: 192.0.2.42", at="address")
    assert got == [("initech.yaml", *dmarc, "domains[0]", "error", "dmarc-published"),
                   ("initech.yaml", *plan, "ips[1]", "error", "warmup-plan")]


def test_validate_warnings_do_not_fail(prod_copy: Path) -> None:
    code, stdout, stderr = validate(str(prod_copy), "--date", "2026-11-10")
    assert code == 0
    (line,) = stderr.splitlines()
    match = LOCATED.match(line)
    assert match and (match["severity"], match["check"]) == ("warning", "warmup-start-future")
    assert stdout.splitlines()[-1].endswith("; 1 policy warning, 1 waived finding")


def test_validate_date_defaults_to_today_and_rejects_a_bad_one(prod_copy: Path) -> None:
    assert validate(str(prod_copy))[0] == 0
    code, _, stderr = validate(str(prod_copy), "--date", "2026-13-01")
    assert code == 2 and "not a date" in stderr


def test_validate_reports_load_errors_before_policies(prod_copy: Path) -> None:
    edit(tenant_file(prod_copy, "initech"), "    dmarc: {policy: quarantine,", "    dmarc: {policy: quarantin,")
    code, _, stderr = validate(str(prod_copy))
    assert code == 1 and stderr.splitlines()[-1] == "1 error" and "[error" not in stderr


# --- the policy-check reference page -------------------------------------------------------------


POLICY_PAGE = (ROOT / "docs" / "reference" / "policy.md").read_text(encoding="utf-8")


def test_the_readme_table_is_generated_from_the_registry() -> None:
    assert policy_reference.update(POLICY_PAGE) == POLICY_PAGE, "run `make schema` and commit docs/reference/policy.md"
    block = POLICY_PAGE.split(policy_reference.START, 1)[1].split(policy_reference.END, 1)[0]
    listed = re.findall(r"^\| `([a-z0-9-]+)` \| (error|warning) \|", block, flags=re.MULTILINE)
    assert listed == [(c.id, c.severity) for c in CHECKS.values()]


def test_the_readme_example_is_what_validate_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = POLICY_PAGE.split("# Policy checks", 1)[1].split("```\n", 2)[1].splitlines()
    stack = Path(shutil.copytree(ROOT / "stacks" / "prod", tmp_path / "stacks" / "prod"))
    edit(tenant_file(stack, "initech"), "    dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}\n", "")
    monkeypatch.chdir(tmp_path)
    code, _, stderr = validate("stacks/prod", "--date", DAY.isoformat())
    assert code == 1 and stderr.splitlines() == example


def test_every_check_has_a_kebab_case_id_a_description_and_a_fix() -> None:
    for check_id, check in CHECKS.items():
        assert check.id == check_id and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", check_id)
        assert check.description.endswith(".") and check.fix.endswith(".")


# --- dmarc-aligned -------------------------------------------------------------------------------


def test_every_from_address_of_the_example_stacks_aligns_on_every_route() -> None:
    for stack in ("prod", "dev"):
        found = check_policies(load_stack(ROOT / "stacks" / stack), today=DAY)
        assert of(found, "dmarc-aligned") == []


@pytest.mark.parametrize(("transport", "dkim_domain", "return_path", "adkim", "aspf", "passes", "why"), [
    ("pmta", "news.example.com", "marketing.rp.news.example.com", "relaxed", "relaxed", True, ""),
    ("pmta", "news.example.com", "marketing.rp.news.example.com", "strict", "strict", True,
     "return path marketing.rp.news.example.com does not align (strict)"),
    ("pmta", None, "marketing.rp.news.example.com", "relaxed", "strict", False, "no DKIM signature for it"),
    ("pmta", "example.com", "marketing.rp.news.example.com", "strict", "relaxed", True,
     "DKIM d=example.com does not align (strict)"),
    ("ses", None, "amazonses.com", "relaxed", "relaxed", False, "SPF cannot pass for return path amazonses.com"),
    ("ses", None, "bounce.news.example.com", "relaxed", "relaxed", True, "no DKIM signature for it"),
    ("ses", None, "bounce.news.example.com", "relaxed", "strict", False, "does not align (strict)"),
])
def test_alignment_verdict_per_route(transport: str, dkim_domain: str | None, return_path: str, adkim: str,
                                     aspf: str, passes: bool, why: str) -> None:
    ips = (load_stack(ROOT / "stacks" / "prod").tenant("sos-expat").ips[1],) if transport == "pmta" else ()
    route = Route("sos-expat", "marketing", transport, ips)  # type: ignore[arg-type]
    auth = RouteAuth(route, "news.example.com", dkim_domain, "s1", return_path, route.addresses)
    verdict = alignment(auth, adkim=adkim, aspf=aspf)
    assert verdict.passes is passes
    assert why in verdict.why


def test_a_route_without_aligned_dkim_or_spf_is_an_error_at_the_from_address_waivable_on_the_domain(
        prod_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Break what the model says of one route (as a regression would) and the check names the address."""
    import mailplane.gitops.policy as policy
    from mailplane.model import routes

    def broken(route: Route, domain: object) -> RouteAuth:
        auth = routes.route_auth(route, domain)  # type: ignore[arg-type]
        if route.tenant == "initech" and route.transport == "ses":
            return dataclasses.replace(auth, dkim_domain=None, return_path="amazonses.com")
        return auth

    monkeypatch.setattr(policy, "route_auth", broken)
    found = one(findings(prod_copy), "dmarc-aligned")
    path = tenant_file(prod_copy, "initech")
    assert (found.problem.line, found.problem.col) == where(path, "from: [news@initech.example.org]",
                                                            at="news@initech.example.org")
    assert found.problem.path == "senders[0].from[0]" and found.blocking
    assert "transactional route, through SES" in found.problem.message
    add_waiver(path, "    dns: {provider: route53, zone: initech.example.org}\n", 4, "dmarc-aligned",
               "transactional mail is relayed by the customer's own gateway")
    assert one(findings(prod_copy), "dmarc-aligned").waived


def test_strict_alignment_is_published_in_the_dmarc_record(prod_copy: Path) -> None:
    edit(tenant_file(prod_copy, "initech"), "dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org}",
         "dmarc: {policy: quarantine, rua: mailto:dmarc@initech.example.org, dkim_alignment: strict, "
         "spf_alignment: strict}")
    fleet = load_stack(prod_copy)
    tenant = fleet.tenant("initech")
    assert records.dmarc_value(tenant.domains[0]) == (
        "v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:dmarc@initech.example.org")
    # DKIM d= is the From domain on every route, so strict alignment still passes
    assert of(check_policies(fleet, today=DAY), "dmarc-aligned") == []
