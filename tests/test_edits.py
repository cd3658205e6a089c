"""Edits for pull-request authors: the diff is only the edit, and a bad edit writes nothing."""

from __future__ import annotations

import datetime
import difflib
import os
import re
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from mailplane import edits
from mailplane.cli import app
from mailplane.cli.edit import StreamChoice
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError
from mailplane.model.tenant import Stream

REPO = Path(__file__).resolve().parents[1]
DMARC = ("--dmarc-policy", "none")
"""What the dmarc-published policy check asks of every new domain."""
LOCATED = re.compile(r"^\S+\.yaml:\d+:\d+: ", re.MULTILINE)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under the stack, hidden ones included: a leftover temp file is a failure too."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def added_lines(before: str, after: str) -> list[str]:
    """The lines ``after`` adds to ``before``; fails unless every original line survives, in order."""
    old, new = before.splitlines(), after.splitlines()
    ops = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
    changed = [op for op in ops if op[0] != "equal"]
    assert all(op[0] == "insert" for op in changed), "\n".join(difflib.unified_diff(old, new, lineterm=""))
    assert len(changed) == 1, "the edit should be one block of added lines"
    _, _, _, j1, j2 = changed[0]
    return new[j1:j2]


# --- domain add ---------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["sos-expat", "globex", "initech"])
def test_domain_add_keeps_comments_order_and_quoting(prod_copy: Path, tenant: str) -> None:
    path = prod_copy / "tenants" / f"{tenant}.yaml"
    before = path.read_text()
    result = run("domain", "add", prod_copy, tenant, f"extra.{tenant}.example.com", "--dkim", "byo", "--selector",
                 "s2027", "--mail-from", f"bounce.extra.{tenant}.example.com", "--dmarc-policy", "reject",
                 "--rua", "mailto:dmarc@example.com", "--zone", "example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {path}: added domain extra.{tenant}.example.com to {tenant}"
    after = path.read_text()
    assert added_lines(before, after) == [
        f"  - name: extra.{tenant}.example.com",
        "    dkim: {mode: byo, selector: s2027}",
        f"    mail_from: bounce.extra.{tenant}.example.com",
        "    dmarc: {policy: reject, rua: mailto:dmarc@example.com}",
        "    dns: {zone: example.com}",
    ]
    # appended at the end of domains:, i.e. just before the next top-level key
    lines = after.splitlines()
    assert lines[lines.index(f"  - name: extra.{tenant}.example.com") + 5] == "ips:"
    fleet = load_stack(prod_copy)
    owner, domain = fleet.domains[f"extra.{tenant}.example.com"]
    assert owner.name == tenant
    assert domain.dkim.mode == "byo" and domain.dkim.selector == "s2027"
    assert domain.mail_from == f"bounce.extra.{tenant}.example.com"
    assert domain.dmarc is not None and domain.dmarc.policy == "reject"
    assert domain.dmarc.rua == ["mailto:dmarc@example.com"]
    assert domain.dns.zone == "example.com" and domain.dns.provider is None
    assert fleet.tenant(tenant).domains[-1] is domain


def test_domain_add_survives_quoted_values_and_comments(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "sos-expat.yaml"
    before = path.read_text()
    assert run("domain", "add", prod_copy, "sos-expat", "more.example.com", "--dkim", "easy",
               "--zone", "example.com", *DMARC).exit_code == 0
    after = path.read_text()
    assert 'from: ["*@news.example.com"]' in after
    assert "# Owned by the SOS Expat team. Changes go through a pull request." in after
    assert "dkim: {mode: easy}                     # SES-managed keys: three CNAMEs" in after
    assert added_lines(before, after) == ["  - name: more.example.com", "    dkim: {mode: easy}",
                                          "    dmarc: {policy: none}", "    dns: {zone: example.com}"]


def test_domain_add_idn_written_as_typed_loaded_as_a_label(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "globex.yaml"
    result = run("domain", "add", prod_copy, "globex", "bücher.example.com", "--dkim", "easy",
                 "--mail-from", "bounce.bücher.example.com", "--dns-provider", "route53", "--zone", "example.com",
                 *DMARC)
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    assert "  - name: bücher.example.com\n" in text
    assert "    mail_from: bounce.bücher.example.com\n" in text
    assert "    dns: {provider: route53, zone: example.com}\n" in text
    owner, domain = load_stack(prod_copy).domains["xn--bcher-kva.example.com"]
    assert owner.name == "globex"
    assert domain.mail_from == "bounce.xn--bcher-kva.example.com"


def test_domain_add_creates_domains_key_in_model_order(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "bare.yaml"
    path.write_text("name: bare\ndisplay_name: Bare  # no domains yet\n# the IPs come next\nips: []\n")
    before = path.read_text()
    result = run("domain", "add", prod_copy, "bare", "bare.example.org", "--dkim", "easy",
                 "--dns-provider", "external", *DMARC)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert added_lines(before, after) == ["domains:", "  - name: bare.example.org", "    dkim: {mode: easy}",
                                          "    dmarc: {policy: none}", "    dns: {provider: external}"]
    # the comment written above ips: still introduces ips:
    assert after.splitlines()[-2:] == ["# the IPs come next", "ips: []"]
    assert [d.name for d in load_stack(prod_copy).tenant("bare").domains] == ["bare.example.org"]


# --- ip add -------------------------------------------------------------------------------


def test_ip_add_writes_date_that_reads_back_as_date(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "sos-expat.yaml"
    before = path.read_text()
    result = run("ip", "add", prod_copy, "sos-expat", "203.0.113.24", "--host", "mta2", "--hostname",
                 "mta2-b.news.example.com", "--plan", "cautious-3w", "--started", "2026-12-07",
                 "--stream", "marketing")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {path}: added IP 203.0.113.24 to sos-expat"
    after = path.read_text()
    assert added_lines(before, after) == [
        "  - address: 203.0.113.24",
        "    hostname: mta2-b.news.example.com",
        "    host: mta2",
        "    warmup: {plan: cautious-3w, started: 2026-12-07}",
        "    streams: [marketing]",
    ]
    assert yaml.safe_load(after)["ips"][-1]["warmup"]["started"] == datetime.date(2026, 12, 7)
    ip = load_stack(prod_copy).tenant("sos-expat").ips[-1]
    assert (ip.address, ip.hostname, ip.host) == ("203.0.113.24", "mta2-b.news.example.com", "mta2")
    assert ip.warmup is not None and ip.warmup.plan == "cautious-3w"
    assert ip.warmup.started == datetime.date(2026, 12, 7)
    assert ip.streams == ["marketing"]


def test_ip_add_ipv6_without_streams(prod_copy: Path) -> None:
    result = run("ip", "add", prod_copy, "globex", "2001:db8:100::32", "--host", "mta3", "--hostname",
                 "out7.globex.example.net", "--plan", "pmta-6w", "--started", "2026-12-14")
    assert result.exit_code == 0, result.output
    ip = load_stack(prod_copy).tenant("globex").ips[-1]
    assert ip.address == "2001:db8:100::32" and ip.streams is None


def test_relative_stack_folder(prod_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual invocation, ``mailplane ip add stacks/prod ...``, passes a relative folder."""
    monkeypatch.chdir(prod_copy.parent)
    result = run("ip", "add", "prod", "initech", "192.0.2.43", "--host", "mta1", "--hostname",
                 "mta1-c.initech.example.org", "--plan", "pmta-6w", "--started", "2026-12-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "wrote prod/tenants/initech.yaml: added IP 192.0.2.43 to initech"


# --- refused edits ------------------------------------------------------------------------

IP_ARGS = ["--hostname", "mta1-z.initech.example.org", "--plan", "pmta-6w", "--started", "2026-12-01"]


@pytest.mark.parametrize(("args", "where", "message"), [
    pytest.param(["ip", "add", "initech", "192.0.2.99", "--host", "mta9", *IP_ARGS],
                 "initech.yaml:", "no MTA host 'mta9' in fleet.yaml", id="unknown-host"),
    pytest.param(["ip", "add", "initech", "203.0.113.21", "--host", "mta1", *IP_ARGS],
                 "initech.yaml:", "IP address 203.0.113.21 is already used", id="ip-used"),
    pytest.param(["domain", "add", "initech", "news.example.com", "--dkim", "easy", "--zone", "example.com"],
                 "initech.yaml:", "domain news.example.com is already used", id="domain-of-other-tenant"),
    pytest.param(["domain", "add", "initech", "x.initech.example.org", "--dkim", "easy", "--mail-from",
                  "bounce.example.org", "--zone", "initech.example.org"],
                 "initech.yaml:", "is not a subdomain of x.initech.example.org", id="mail-from-outside"),
    pytest.param(["domain", "add", "initech", "x.initech.example.org", "--dkim", "byo", "--zone",
                  "initech.example.org"], "initech.yaml:", "BYODKIM needs a 'selector'", id="byo-no-selector"),
])
def test_invalid_edit_writes_nothing(prod_copy: Path, args: list[str], where: str, message: str) -> None:
    before = snapshot(prod_copy)
    noun, verb, *rest = args
    result = run(noun, verb, prod_copy, *rest)
    assert result.exit_code == 1, result.output
    located = [line for line in result.stderr.splitlines() if LOCATED.match(line)]
    assert any(where in line and message in line for line in located), result.stderr
    assert "not written" in result.stderr
    assert result.stdout == ""
    assert snapshot(prod_copy) == before


def test_invalid_edit_reports_every_problem(prod_copy: Path) -> None:
    result = run("domain", "add", prod_copy, "initech", "news.example.com", "--dkim", "byo",
                 "--mail-from", "bounce.example.org", "--zone", "example.com")
    assert result.exit_code == 1
    assert len(LOCATED.findall(result.stderr)) == 3, result.stderr
    assert result.stderr.rstrip().endswith("3 errors")


def test_unknown_tenant_lists_the_tenants(prod_copy: Path) -> None:
    before = snapshot(prod_copy)
    result = run("domain", "add", prod_copy, "umbrella", "umbrella.example.com", "--dkim", "easy")
    assert result.exit_code == 1
    assert "no tenant 'umbrella'" in result.stderr
    assert "globex, initech, sos-expat" in result.stderr
    assert snapshot(prod_copy) == before


def test_tenant_name_cannot_reach_outside_tenants(prod_copy: Path) -> None:
    result = run("domain", "add", prod_copy, "../fleet", "x.example.com", "--dkim", "easy")
    assert result.exit_code == 1
    assert "no tenant '../fleet'" in result.stderr


@pytest.mark.parametrize(("content", "message"), [
    pytest.param("name: initech\ndomains: [\n", "YAML syntax error", id="syntax"),
    pytest.param("name: initech\nname: initech\n", "duplicate key 'name'", id="duplicate-key"),
    pytest.param("- name: initech\n", "expected a mapping", id="not-a-mapping"),
    pytest.param("name: initech\ndomains: {a: 1}\n", "expected a list to add to", id="domains-not-a-list"),
])
def test_unreadable_tenant_file_is_reported_located(prod_copy: Path, content: str, message: str) -> None:
    (prod_copy / "tenants" / "initech.yaml").write_text(content)
    before = snapshot(prod_copy)
    result = run("domain", "add", prod_copy, "initech", "x.initech.example.org", "--dkim", "easy",
                 "--zone", "initech.example.org")
    assert result.exit_code == 1, result.output
    assert re.search(rf"initech\.yaml:\d+:\d+: .*{re.escape(message)}", result.stderr), result.stderr
    assert snapshot(prod_copy) == before


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["ip", "add", "initech", "192.0.2.99", "--host", "mta1", "--hostname", "a.example.org",
                  "--plan", "pmta-6w", "--started", "2026-13-01"], "is not a date", id="bad-date"),
    pytest.param(["ip", "add", "initech", "192.0.2.99", "--host", "mta1", "--hostname", "a.example.org",
                  "--plan", "pmta-6w", "--started", "20261201"], "is not a date", id="compact-date"),
    pytest.param(["ip", "add", "initech", "192.0.2.999", "--host", "mta1", "--hostname", "a.example.org",
                  "--plan", "pmta-6w", "--started", "2026-12-01"], "not a valid IPv4 or IPv6", id="bad-ip"),
    pytest.param(["ip", "add", "initech", "192.0.2.99", "--host", "mta1", "--hostname", "a.example.org",
                  "--plan", "pmta-6w", "--started", "2026-12-01", "--stream", "bulk"], "bulk", id="bad-stream"),
    pytest.param(["domain", "add", "initech", "a..example.org", "--dkim", "easy"], "not a valid DNS name",
                 id="bad-domain"),
    pytest.param(["domain", "add", "initech", "a.example.org", "--dkim", "sometimes"], "sometimes",
                 id="bad-dkim-mode"),
    pytest.param(["domain", "add", "initech", "a.example.org", "--dkim", "easy", "--rua", "dmarc@example.org",
                  "--dmarc-policy", "none"], "mailto:", id="rua-not-mailto"),
    pytest.param(["domain", "add", "initech", "a.example.org", "--dkim", "easy", "--rua",
                  "mailto:dmarc@example.org"], "--rua needs --dmarc-policy", id="rua-without-policy"),
    pytest.param(["tenant", "add", "Not_A_Slug"], "not a valid name", id="bad-tenant-name"),
])
def test_bad_arguments_exit_2(prod_copy: Path, args: list[str], message: str) -> None:
    before = snapshot(prod_copy)
    noun, verb, *rest = args
    result = run(noun, verb, prod_copy, *rest)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr
    assert snapshot(prod_copy) == before


def test_missing_stack_folder_exits_2(tmp_path: Path) -> None:
    result = run("tenant", "add", tmp_path / "nope", "hooli")
    assert result.exit_code == 2
    assert "is not a folder" in result.stderr


# --- tenant add ---------------------------------------------------------------------------


def test_tenant_add_creates_loadable_file(prod_copy: Path) -> None:
    result = run("tenant", "add", prod_copy, "hooli", "--display-name", "Hooli XYZ", "--stream", "transactional",
                 "--stream", "marketing")
    assert result.exit_code == 0, result.output
    path = prod_copy / "tenants" / "hooli.yaml"
    assert result.stdout.strip() == f"wrote {path}: new tenant hooli"
    assert path.read_text() == (
        "# yaml-language-server: $schema=../../../schema/tenant.schema.json\n"
        "name: hooli\n"
        "display_name: Hooli XYZ\n"
        "streams: [transactional, marketing]\n"
    )
    tenant = load_stack(prod_copy).tenant("hooli")
    assert tenant.display_name == "Hooli XYZ"
    assert tenant.streams == ["transactional", "marketing"]
    assert [p.name for p in (prod_copy / "tenants").iterdir() if p.name.startswith(".")] == []


def test_tenant_add_then_domain_and_ip(prod_copy: Path) -> None:
    assert run("tenant", "add", prod_copy, "hooli").exit_code == 0
    assert run("domain", "add", prod_copy, "hooli", "hooli.example.com", "--dkim", "easy",
               "--zone", "example.com", *DMARC).exit_code == 0
    result = run("ip", "add", prod_copy, "hooli", "203.0.113.50", "--host", "mta2", "--hostname",
                 "mta2-a.hooli.example.com", "--plan", "ses-45d", "--started", "2026-12-01")
    assert result.exit_code == 0, result.output
    tenant = load_stack(prod_copy).tenant("hooli")
    assert [d.name for d in tenant.domains] == ["hooli.example.com"]
    assert [ip.address for ip in tenant.ips] == ["203.0.113.50"]
    assert tenant.streams == ["transactional"]


def test_tenant_add_quotes_what_yaml_1_1_would_not_read_as_text(prod_copy: Path) -> None:
    result = run("tenant", "add", prod_copy, "yes", "--display-name", "On")
    assert result.exit_code == 0, result.output
    text = (prod_copy / "tenants" / "yes.yaml").read_text()
    assert 'name: "yes"\ndisplay_name: "On"\n' in text
    tenant = load_stack(prod_copy).tenant("yes")
    assert (tenant.name, tenant.display_name) == ("yes", "On")


def test_tenant_add_links_the_schema_of_the_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "schema").mkdir(parents=True)
    (checkout / "schema" / "tenant.schema.json").write_text("{}")
    stack = Path(shutil.copytree(REPO / "stacks" / "prod", checkout / "deploy" / "stacks" / "prod"))
    assert run("tenant", "add", stack, "hooli").exit_code == 0
    first = (stack / "tenants" / "hooli.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../../../schema/tenant.schema.json"
    target = (stack / "tenants" / first.split("$schema=", 1)[1]).resolve()
    assert target == (checkout / "schema" / "tenant.schema.json").resolve()


def test_tenant_add_refuses_existing_name(prod_copy: Path) -> None:
    before = snapshot(prod_copy)
    result = run("tenant", "add", prod_copy, "globex", "--display-name", "Another Globex")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert snapshot(prod_copy) == before


def test_tenant_add_refuses_what_the_stack_rejects(prod_copy: Path) -> None:
    """initech's configuration set is 'initech-marketing': a tenant of that name would clash."""
    before = snapshot(prod_copy)
    result = run("tenant", "add", prod_copy, "initech-marketing")
    assert result.exit_code == 1
    assert "configuration set initech-marketing is already used" in result.stderr
    assert LOCATED.search(result.stderr)
    assert snapshot(prod_copy) == before


# --- the pure edits -----------------------------------------------------------------------


def test_comments_after_a_list_stay_above_the_key_they_introduce() -> None:
    text = ("name: acme\n"
            "ips:\n"
            "  - address: 192.0.2.1\n"
            "    host: mta1   # the first\n"
            "\n"
            "# SES settings below\n"
            "ses:\n"
            "  events: [bounce]\n")
    ip = edits.NewIp("192.0.2.2", "b.example.org", "mta1", "pmta-6w", datetime.date(2026, 1, 2))
    after = edits.add_ip(text, "acme.yaml", ip)
    assert added_lines(text, after) == ["  - address: 192.0.2.2", "    hostname: b.example.org",
                                        "    host: mta1", "    warmup: {plan: pmta-6w, started: 2026-01-02}"]
    assert after.endswith("    warmup: {plan: pmta-6w, started: 2026-01-02}\n\n# SES settings below\nses:\n"
                          "  events: [bounce]\n")


@pytest.mark.parametrize("style", [
    "domains:\n- name: a.example.org\n  dkim:\n    mode: easy\nses:\n  events: [bounce]\n",
    "domains:\n    -   name: a.example.org\n        dkim:\n            mode: easy\nses:\n    events: [bounce]\n",
    "domains:\n  - name: a.example.org\n    dkim:\n      mode: easy\n",
])
def test_the_files_indentation_is_kept(style: str) -> None:
    text = "name: acme\n" + style
    after = edits.add_domain(text, "acme.yaml", edits.NewDomain("b.example.org", "easy"))
    added = added_lines(text, after)
    first_item = text.splitlines()[2]
    prefix = first_item[: len(first_item) - len(first_item.lstrip(" -"))]
    assert added[0] == prefix + "name: b.example.org"
    assert added[1] == " " * len(prefix) + "dkim: {mode: easy}"


def test_crlf_and_unicode_are_kept() -> None:
    text = "name: acme\r\ndisplay_name: Acmé  # accented\r\ndomains: []\r\n"
    after = edits.add_domain(text, "acme.yaml", edits.NewDomain("é.example.org", "easy"))
    assert after == ("name: acme\r\ndisplay_name: Acmé  # accented\r\ndomains:\r\n"
                     "  - name: é.example.org\r\n    dkim: {mode: easy}\r\n")


def test_pure_edit_raises_located_problems() -> None:
    with pytest.raises(StackError) as caught:
        edits.add_ip("name: acme\nips: 3\n", "acme.yaml",
                     edits.NewIp("192.0.2.2", "b.example.org", "mta1", "pmta-6w", datetime.date(2026, 1, 2)))
    assert [str(p) for p in caught.value.problems] == [
        "acme.yaml:2:6: ips: expected a list to add to, found a number (write 'ips:' as a list of entries)"]


def test_stream_choices_follow_the_model() -> None:
    assert tuple(s.value for s in StreamChoice) == typing.get_args(Stream)


def test_no_temp_files_after_success(prod_copy: Path) -> None:
    assert run("domain", "add", prod_copy, "initech", "y.initech.example.org", "--dkim", "easy",
               "--zone", "initech.example.org", *DMARC).exit_code == 0
    assert sorted(os.listdir(prod_copy / "tenants")) == ["globex.yaml", "initech.yaml", "sos-expat.yaml"]


def test_comments_before_a_document_marker_are_kept() -> None:
    """ruamel.yaml drops what precedes ``---``: the schema line of a file that starts a document."""
    text = ("# yaml-language-server: $schema=../../../schema/tenant.schema.json\n"
            "--- # acme\n"
            "name: acme\n"
            "...\n")
    after = edits.add_domain(text, "acme.yaml", edits.NewDomain("a.example.org", "easy"))
    assert added_lines(text, after) == ["domains:", "  - name: a.example.org", "    dkim: {mode: easy}"]


def test_yaml_errors_after_a_document_marker_point_at_the_right_line() -> None:
    with pytest.raises(StackError) as caught:
        edits.add_domain("# head\n---\nname: acme\ndomains: [\n", "acme.yaml", edits.NewDomain("a.example.org", "easy"))
    assert [p.line for p in caught.value.problems] == [5]


# --- policy checks and flags --------------------------------------------------------------


def test_an_edit_that_validate_would_reject_is_refused_naming_the_flag(prod_copy: Path) -> None:
    before = snapshot(prod_copy)
    result = run("domain", "add", prod_copy, "initech", "x.initech.example.org", "--dkim", "easy",
                 "--zone", "initech.example.org")
    assert result.exit_code == 1, result.output
    assert "not written, `mailplane validate` would reject it (--force writes it anyway)" in result.stderr
    [line] = [line for line in result.stderr.splitlines() if LOCATED.match(line)]
    assert "domains[1] (--dmarc-policy):" in line and "[error dmarc-published]" in line
    assert "(pass --dmarc-policy none --rua mailto:dmarc@x.initech.example.org)" in line
    assert snapshot(prod_copy) == before


def test_force_writes_and_warns_and_validate_then_fails(prod_copy: Path) -> None:
    result = run("domain", "add", prod_copy, "initech", "x.initech.example.org", "--dkim", "easy",
                 "--zone", "initech.example.org", "--force")
    assert result.exit_code == 0, result.output
    assert "wrote " in result.stdout
    assert "warning: written with 1 policy error (--force)" in result.stderr
    assert "[error dmarc-published]" in result.stderr
    assert run("validate", prod_copy).exit_code == 1


def test_force_does_not_write_a_stack_that_does_not_load(prod_copy: Path) -> None:
    before = snapshot(prod_copy)
    result = run("ip", "add", prod_copy, "initech", "203.0.113.99", "--host", "mta9", "--hostname",
                 "o.initech.example.org", "--plan", "pmta-6w", "--started", "2026-12-01", "--force")
    assert result.exit_code == 1 and "ips[2].host (--host): no MTA host 'mta9'" in result.stderr
    assert snapshot(prod_copy) == before


def test_findings_the_stack_already_had_do_not_refuse_an_edit(prod_copy: Path) -> None:
    """Someone else's policy error (initech's DMARC removed) is not this author's to fix."""
    path = prod_copy / "tenants" / "initech.yaml"
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.lstrip().startswith("dmarc:")]
    assert lines, text
    path.write_text(text.replace(lines[0] + "\n", ""))
    assert run("validate", prod_copy).exit_code == 1
    result = run("domain", "add", prod_copy, "initech", "x.initech.example.org", "--dkim", "easy",
                 "--zone", "initech.example.org", *DMARC)
    assert result.exit_code == 0, result.output
    assert "[error" not in result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    pytest.param(["ip", "add", "initech", "203.0.113.99", "--host", "mta1", "--hostname", "o.example.net",
                  "--plan", "pmta-6w", "--started", "2026-12-01"],
                 ["ips[2].hostname (--hostname):", "(pass a --hostname under one of initech's domains",
                  "[error ptr-in-tenant-domains]"], id="ptr-outside-the-domains"),
    pytest.param(["domain", "add", "initech", "x.initech.example.org", "--dkim", "easy", *DMARC],
                 ["domains[1].dns (--dns-provider): a route53 domain needs its hosted 'zone'",
                  "(pass --zone with its Route53 hosted zone, e.g. --zone x.initech.example.org; or --dns-provider "
                  "external)"], id="route53-without-zone"),
    pytest.param(["domain", "add", "initech", "x.initech.example.org", "--dkim", "byo", "--zone",
                  "initech.example.org", *DMARC],
                 ["domains[1].dkim (--dkim): BYODKIM needs a 'selector' (with --dkim byo, pass --selector"],
                 id="byo-without-selector"),
    pytest.param(["ip", "add", "initech", "203.0.113.99", "--host", "mta1", "--hostname", "o.initech.example.org",
                  "--plan", "pmta-7w", "--started", "2026-12-01"],
                 ["ips[2].warmup.plan (--plan): no warmup plan 'pmta-7w'"], id="unknown-plan"),
    pytest.param(["sender", "add", "initech", "app", "--from", "app@example.net"],
                 ["senders[1].from[0] (--from): app@example.net is not in one of this tenant's domains"],
                 id="sender-outside-the-domains"),
])
def test_problems_of_an_edit_name_the_flags_typed(prod_copy: Path, args: list[str], expected: list[str]) -> None:
    """The author typed flags, not YAML: the problem says which flag, and the hint is a command line."""
    before = snapshot(prod_copy)
    noun, verb, *rest = args
    result = run(noun, verb, prod_copy, *rest)
    assert result.exit_code == 1, result.output
    located = "\n".join(line for line in result.stderr.splitlines() if LOCATED.match(line))
    for text in expected:
        assert text in located, located
    assert "dns: {" not in located and "selector: s2026a" not in located  # no YAML advice
    assert snapshot(prod_copy) == before


def test_sender_add_appends_one_entry(prod_copy: Path) -> None:
    path = prod_copy / "tenants" / "initech.yaml"
    before = path.read_text()
    result = run("sender", "add", prod_copy, "initech", "alerts", "--from", "alerts@initech.example.org",
                 "--from", "*@initech.example.org")
    assert result.exit_code == 0, result.output
    assert added_lines(before, path.read_text()) == [
        "  - name: alerts", '    from: [alerts@initech.example.org, "*@initech.example.org"]']
    sender = load_stack(prod_copy).tenant("initech").senders[-1]
    assert sender.from_ == ["alerts@initech.example.org", "*@initech.example.org"]
    assert run("sender", "add", prod_copy, "initech", "alerts", "--from", "a@initech.example.org").exit_code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["sender", "add", "initech", "Alerts!", "--from", "a@initech.example.org"], "NAME"),
    (["sender", "add", "initech", "alerts", "--from", "not-an-address"], "--from"),
    (["sender", "add", "initech", "alerts"], "--from"),
])
def test_sender_add_bad_arguments_exit_2(prod_copy: Path, args: list[str], message: str) -> None:
    before = snapshot(prod_copy)
    noun, verb, *rest = args
    result = run(noun, verb, prod_copy, *rest)
    assert result.exit_code == 2 and message in result.output
    assert snapshot(prod_copy) == before


def test_flags_apply_to_the_added_entry_only() -> None:
    """``domains[1]`` is not ``domains[10]``; a finding whose line moved is the same finding."""
    from mailplane.edit_flags import Flags, for_flags, new_findings
    from mailplane.gitops.policy import Finding
    from mailplane.model.problems import YamlProblem

    flags = Flags("domains[1]", {"": "DOMAIN", "dns": "--dns-provider", "dns.zone": "--zone"},
                  hints={"dns": "pass --zone"})

    def problem(path: str, line: int = 5) -> YamlProblem:
        return YamlProblem("t.yaml", line, 3, path, "bad", "yaml hint")

    assert for_flags(problem("domains[10].dns"), flags).path == "domains[10].dns"
    assert for_flags(problem("domains[1].dns"), flags) == YamlProblem("t.yaml", 5, 3, "domains[1].dns (--dns-provider)",
                                                                      "bad", "pass --zone")
    assert for_flags(problem("domains[1].dns.zone"), flags).path == "domains[1].dns.zone (--zone)"
    assert for_flags(problem("domains[1].dns.zone"), flags).hint == "yaml hint"  # no flag hint for it: kept
    assert for_flags(problem("domains[1]"), flags).path == "domains[1] (DOMAIN)"
    before = [Finding("dmarc-published", "error", problem("domains[0]", line=5))]
    after = [Finding("dmarc-published", "error", problem("domains[0]", line=9)),
             Finding("dmarc-published", "error", problem("domains[1]", line=12))]
    assert new_findings(before, after) == after[1:]
