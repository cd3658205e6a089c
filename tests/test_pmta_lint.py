"""``mailplane pmta-lint``: a realistic config passes, and each kind of breakage fails at its line.

Every broken case is an edit of the good text, and its expected line is found in the edited text
(the one line holding a marker), so the cases stay right when the good config grows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.mta import directives, values
from mailplane.mta.lint import LintProblem, check, lint

GOOD = """\
# PowerMTA config of mta1: two tenants, three dedicated IPs
postmaster postmaster@example.com
host-name mta1.example.com
smtp-listener 127.0.0.1:2525
smtp-listener 10.0.0.5:2525
http-mgmt-port 8080
http-access 127.0.0.1 admin
http-access 0/0 none
run-as-root no
log-file /var/log/pmta/log
spool /var/spool/pmta
domain-macro google gmail.com, googlemail.com

# The sender service submits here and picks the pool with X-Virtual-MTA.
<source 127.0.0.1>
  always-allow-relaying yes
  process-x-virtual-mta yes     # honour the X-Virtual-MTA header
  smtp-service yes
  default-virtual-mta acme-pool
  add-received-header no
  hide-message-source yes
  max-message-size 50M
</source>

<source 10.0.0.0/24>
  always-allow-relaying yes
  process-x-virtual-mta yes
  smtp-service yes
  jobid-header X-Job
</source>

<source 0/0>
  always-allow-relaying no
  smtp-service no
</source>

<virtual-mta acme-203-0-113-21>
  smtp-source-host 203.0.113.21 mta1-a.mail1.example.com
  domain-key s2026a,mail1.example.com,/etc/pmta/dkim/s2026a.mail1.example.com.pem
  <domain *>
    max-msg-rate 200/h
  </domain>
</virtual-mta>

<virtual-mta acme-203-0-113-22>
  smtp-source-host 203.0.113.22 mta1-b.mail1.example.com
  domain-key s2026a,mail1.example.com,/etc/pmta/dkim/s2026a.mail1.example.com.pem
  <domain *>
    max-msg-rate 150/h
  </domain>
</virtual-mta>

<virtual-mta globex-2001-db8--25>
  smtp-source-host 2001:db8::25 mta1-c.globex.example.net
  domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem
</virtual-mta>

<virtual-mta-pool acme-pool>
  virtual-mta acme-203-0-113-21
  virtual-mta acme-203-0-113-22
</virtual-mta-pool>

<virtual-mta-pool globex-pool>
  virtual-mta globex-2001-db8--25
</virtual-mta-pool>

<smtp-pattern-list provider-errors>
  reply /421 .*rate limit/ mode=backoff
  reply /too many connections/ mode=backoff
</smtp-pattern-list>

<domain $google>
  mx-rollup gmail.com
  max-smtp-out 20
  max-msg-per-connection 50
  max-msg-rate 2000/h
  max-connect-rate 100/m
  smtp-pattern-list provider-errors
  backoff-max-msg-rate 100/h
  backoff-retry-after 20m
  backoff-to-normal-after 1h
  backoff-notify postmaster@example.com
</domain>

<domain *>
  max-smtp-out 10
  retry-after 10m
  bounce-after 4d
  use-starttls yes
  require-starttls no
  dkim-sign yes
</domain>

<acct-file /var/log/pmta/acct.csv>
  records d,b
  move-interval 5m
  max-size 50M
  delete-after 8d
</acct-file>

<bounce-category-patterns>
  /spam/ spam-related
  /user unknown/ bad-mailbox
</bounce-category-patterns>
"""


def line_of(text: str, marker: str) -> int:
    """The 1-based number of the one line holding ``marker``."""
    numbers = [n for n, line in enumerate(text.split("\n"), start=1) if marker in line]
    assert len(numbers) == 1, f"marker {marker!r} is on lines {numbers}"
    return numbers[0]


def edit(old: str, new: str, text: str = GOOD) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


class Case(NamedTuple):
    id: str
    old: str
    new: str
    at: str
    """A marker on the line the problem must be reported at (searched in the edited text)."""
    message: str
    alone: bool = True
    """The edit causes this one problem only; False for edits that also break what follows."""


VMTA_1 = "    max-msg-rate 200/h\n  </domain>\n</virtual-mta>\n"
VMTA_1_LINE = line_of(GOOD, "<virtual-mta acme-203-0-113-21>")
VMTA_1_IP_LINE = line_of(GOOD, "smtp-source-host 203.0.113.21")
VMTA_1_DOMAIN_LINE = line_of(GOOD, "max-msg-rate 200/h") - 1
POOL = "<virtual-mta-pool acme-pool>\n"
EXTRA_VMTA = ("<virtual-mta acme-203-0-113-21>\n  smtp-source-host 203.0.113.99 mta1-z.mail1.example.com\n"
              "</virtual-mta>\n")

CASES = [
    # tags
    Case("unclosed-at-eof", "</bounce-category-patterns>\n", "", "<bounce-category-patterns>",
         "<bounce-category-patterns> is never closed (add </bounce-category-patterns> before the end of the file)"),
    Case("close-without-opener", "<source 0/0>\n", "</domain>  # stray\n<source 0/0>\n", "# stray",
         "</domain> closes nothing: no block is open"),
    Case("mismatched-close", VMTA_1, "    max-msg-rate 200/h\n  </domain>\n</virtual-mta-pool>  # typo\n", "# typo",
         f"</virtual-mta-pool> does not match <virtual-mta acme-203-0-113-21> opened at line {VMTA_1_LINE}"),
    Case("inner-block-still-open", VMTA_1, "    max-msg-rate 200/h\n</virtual-mta>  # early\n", "# early",
         f"<domain *> (line {VMTA_1_DOMAIN_LINE}) is still open at </virtual-mta> (close it with </domain> first)"),
    Case("vmta-inside-vmta", VMTA_1, "    max-msg-rate 200/h\n  </domain>\n  <virtual-mta inner>\n  </virtual-mta>\n"
         "</virtual-mta>\n", "<virtual-mta inner>",
         f"<virtual-mta> cannot be opened in <virtual-mta acme-203-0-113-21> (line {VMTA_1_LINE}); it belongs at "
         "top level (is </virtual-mta> missing before it?)", alone=False),
    Case("missing-close-before-next-block", "</virtual-mta-pool>\n\n<virtual-mta-pool globex-pool>",
         "\n<virtual-mta-pool globex-pool>", "<virtual-mta-pool globex-pool>",
         "<virtual-mta-pool> cannot be opened in <virtual-mta-pool acme-pool> (line"),
    Case("source-inside-domain", "  dkim-sign yes\n", "  dkim-sign yes\n  <source 10.1.1.1>\n  </source>\n",
         "<source 10.1.1.1>", "<source> cannot be opened in <domain *> (line", alone=False),
    Case("unknown-block", "<bounce-category-patterns>\n  /spam/ spam-related\n  /user unknown/ bad-mailbox\n"
         "</bounce-category-patterns>", "<bounce-category-pattern>\n  /spam/ spam-related\n</bounce-category-pattern>",
         "<bounce-category-pattern>",
         "unknown block <bounce-category-pattern> (did you mean 'bounce-category-patterns'?)"),
    Case("closing-tag-with-argument", "</acct-file>", "</acct-file /var/log/pmta/acct.csv>", "</acct-file ",
         "closing tag </acct-file /var/log/pmta/acct.csv> takes no argument"),
    Case("text-after-tag", "<domain *>\n  max-smtp-out 10\n", "<domain *> max-smtp-out 10\n", "<domain *> max",
         "text after the tag: 'max-smtp-out 10' (put each directive on its own line)"),
    Case("tag-without-closing-bracket", "<bounce-category-patterns>\n", "<bounce-category-patterns\n",
         "<bounce-category-patterns", "tag '<bounce-category-patterns' has no closing '>'"),
    Case("malformed-tag", "<bounce-category-patterns>\n", "<bounce-category<patterns>\n",
         "<bounce-category<", "malformed tag '<bounce-category<patterns>'", alone=False),
    Case("block-needs-argument", "<acct-file /var/log/pmta/acct.csv>", "<acct-file>", "<acct-file>",
         "<acct-file> needs an argument"),
    Case("block-takes-no-argument", "<bounce-category-patterns>", "<bounce-category-patterns all>",
         "<bounce-category-patterns all>", "<bounce-category-patterns> takes no argument, got 'all'"),
    Case("duplicate-domain-block", "<domain *>\n  max-smtp-out 10\n",
         "<domain *>\n  max-smtp-out 10\n</domain>\n<domain *>  # again\n  max-smtp-out 5\n", "# again",
         "duplicate <domain *> at top level (first at line"),
    # directives
    Case("unknown-directive", "max-msg-per-connection 50", "max-msg-per-conection 50", "max-msg-per-conection",
         "unknown directive 'max-msg-per-conection' in <domain> (did you mean 'max-msg-per-connection'?)"),
    Case("directive-in-wrong-block", "  hide-message-source yes\n",
         "  hide-message-source yes\n  max-msg-rate 100/h   # misplaced\n", "# misplaced",
         "max-msg-rate is not allowed in <source>; it belongs in <domain>"),
    Case("global-directive-in-block", "  smtp-service no\n", "  smtp-service no\n  postmaster ops@example.com\n",
         "ops@example.com", "postmaster is not allowed in <source>; it belongs at top level"),
    Case("directive-set-twice", "  max-smtp-out 20\n", "  max-smtp-out 20\n  max-smtp-out 30\n", "max-smtp-out 30",
         "max-smtp-out is set twice in <domain> (first at line"),
    Case("directive-without-value", "  max-smtp-out 20\n", "  max-smtp-out   # bare\n", "# bare",
         "max-smtp-out needs a value"),
    Case("pattern-line-without-pattern", "reply /too many connections/", "reply too many connections",
         "reply too many",
         "<smtp-pattern-list provider-errors>: 'reply too many connections mode=backoff' has no /pattern/"),
    Case("control-character", "run-as-root no", "run-as-root\x00no", "run-as-root",
         "control character U+0000 in the line (a binary file?)"),
    # values
    Case("smtp-source-host-hostname-first", "smtp-source-host 203.0.113.22 mta1-b.mail1.example.com",
         "smtp-source-host mta1-b.mail1.example.com 203.0.113.22", "mta1-b",
         "the hostname comes first in 'mta1-b.mail1.example.com 203.0.113.22': write the IP first, "
         "'smtp-source-host 203.0.113.22 mta1-b.mail1.example.com'"),
    Case("smtp-source-host-bad-ip", "203.0.113.22 mta1-b", "203.0.113.300 mta1-b", "mta1-b",
         "'203.0.113.300' is not an IP address"),
    Case("smtp-source-host-one-field", "203.0.113.22 mta1-b.mail1.example.com", "203.0.113.22", "203.0.113.22",
         "smtp-source-host: takes an IP and its hostname (IP HOSTNAME), got 1 field(s)"),
    Case("domain-key-four-fields", "domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem",
         "domain-key g1,globex.example.net,/etc/pmta/dkim/g1.globex.example.net.pem,rsa-sha256", "rsa-sha256",
         "domain-key: takes SELECTOR,DOMAIN,KEYFILE (three comma-separated fields), got 4"),
    Case("domain-key-two-fields", "domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem",
         "domain-key g1,/etc/pmta/dkim/g1.globex.example.net.pem", "domain-key g1",
         "domain-key: takes SELECTOR,DOMAIN,KEYFILE (three comma-separated fields), got 2"),
    Case("domain-key-empty-field", "domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem",
         "domain-key g1,,/etc/pmta/dkim/g1.globex.example.net.pem", "domain-key g1",
         "domain-key: empty domain: write SELECTOR,DOMAIN,KEYFILE"),
    Case("rate-per-day", "max-msg-rate 2000/h", "max-msg-rate 2000/d", "2000/d", "'2000/d' is not a rate"),
    Case("rate-in-words", "backoff-max-msg-rate 100/h", "backoff-max-msg-rate 100 per hour", "100 per hour",
         "backoff-max-msg-rate: '100 per hour' is not a rate: write N/h, N/m, N/s"),
    Case("connect-rate", "max-connect-rate 100/m", "max-connect-rate 100", "max-connect-rate",
         "max-connect-rate: '100' is not a rate"),
    Case("integer", "max-smtp-out 20", "max-smtp-out twenty", "twenty", "max-smtp-out: 'twenty' is not a whole number"),
    Case("integer-negative", "max-msg-per-connection 50", "max-msg-per-connection -5", "-5",
         "'-5' is not a whole number"),
    Case("time-in-words", "retry-after 10m", "retry-after 10 minutes", "10 minutes",
         "retry-after: '10 minutes' is not a time"),
    Case("time-unit", "bounce-after 4d", "bounce-after 4w", "bounce-after", "bounce-after: '4w' is not a time"),
    Case("size", "max-size 50M", "max-size 50MB", "max-size", "max-size: '50MB' is not a size"),
    Case("boolean", "use-starttls yes", "use-starttls true", "use-starttls",
         "use-starttls: 'true' is not a boolean: write yes or no"),
    Case("listener-port", "10.0.0.5:2525", "10.0.0.5:99999", "10.0.0.5", "'99999' is not a TCP port"),
    Case("http-access-level", "http-access 127.0.0.1 admin", "http-access 127.0.0.1 root", "http-access 127.0.0.1",
         "'root' is not an access level: write admin, monitor, none"),
    Case("acct-records", "records d,b", "records d,x", "records", "unknown record type(s) 'x'"),
    Case("postmaster-address", "postmaster postmaster@example.com", "postmaster postmaster", "postmaster postmaster",
         "postmaster: 'postmaster' is not an email address"),
    Case("source-not-an-address", "<source 0/0>", "<source anywhere>", "<source anywhere>",
         "<source anywhere>: 'anywhere' is not an IP address or network"),
    Case("source-bad-cidr", "<source 10.0.0.0/24>", "<source 10.0.0.0/33>", "10.0.0.0/33",
         "'10.0.0.0/33' is not an IP address or network"),
    Case("domain-block-name", "<domain *>\n  max-smtp-out 10", "<domain not a domain>\n  max-smtp-out 10",
         "not a domain", "<domain not a domain>: 'not a domain' is not a valid DNS name"),
    # names and references
    Case("pool-member-undefined", "  virtual-mta acme-203-0-113-22\n", "  virtual-mta acme-203-0-113-23\n",
         "acme-203-0-113-23",
         "virtual-mta acme-203-0-113-23: no <virtual-mta> named 'acme-203-0-113-23' in this file "
         "(did you mean 'acme-203-0-113-22'?)"),
    Case("pool-member-is-a-pool", "  virtual-mta globex-2001-db8--25\n", "  virtual-mta acme-pool\n",
         "  virtual-mta acme-pool", "virtual-mta acme-pool: 'acme-pool' is a <virtual-mta-pool> (line"),
    Case("default-vmta-undefined", "default-virtual-mta acme-pool", "default-virtual-mta acme-pol", "acme-pol",
         "no <virtual-mta> or <virtual-mta-pool> named 'acme-pol' in this file (did you mean 'acme-pool'?)"),
    Case("pattern-list-undefined", "  smtp-pattern-list provider-errors\n", "  smtp-pattern-list provider-eror\n",
         "provider-eror", "no <smtp-pattern-list> named 'provider-eror' in this file"),
    Case("domain-macro-undefined", "<domain $google>", "<domain $gogle>", "$gogle",
         "<domain $gogle>: no domain-macro named 'gogle' in this file (did you mean 'google'?)"),
    Case("duplicate-vmta-name", POOL, EXTRA_VMTA + POOL,
         "<virtual-mta acme-203-0-113-21>\n  smtp-source-host 203.0.113.99",
         f"<virtual-mta acme-203-0-113-21>: the name 'acme-203-0-113-21' is already used by the <virtual-mta> "
         f"at line {VMTA_1_LINE}"),
    Case("duplicate-pool-name", "<smtp-pattern-list", "<virtual-mta-pool acme-pool>  # again\n"
         "  virtual-mta acme-203-0-113-21\n</virtual-mta-pool>\n<smtp-pattern-list", "# again",
         "<virtual-mta-pool acme-pool>: the name 'acme-pool' is already used by the <virtual-mta-pool> at line"),
    Case("vmta-named-like-a-pool", "<smtp-pattern-list", "<virtual-mta globex-pool>  # clash\n"
         "</virtual-mta>\n<smtp-pattern-list", "# clash",
         "<virtual-mta globex-pool>: the name 'globex-pool' is already used by the <virtual-mta-pool> at line"),
    Case("pool-without-members", "<smtp-pattern-list", "<virtual-mta-pool empty-pool>\n</virtual-mta-pool>\n"
         "<smtp-pattern-list", "<virtual-mta-pool empty-pool>",
         "<virtual-mta-pool empty-pool> has no members"),
    Case("ip-in-two-vmtas", "smtp-source-host 203.0.113.22 mta1-b", "smtp-source-host 203.0.113.21 mta1-b", "mta1-b",
         "smtp-source-host 203.0.113.21 overlaps 203.0.113.21 of <virtual-mta acme-203-0-113-21> "
         f"(line {VMTA_1_IP_LINE}) (one IP belongs to one virtual-mta)"),
    Case("ip-range-overlaps", "smtp-source-host 203.0.113.22 mta1-b",
         "smtp-source-host 203.0.113.20-203.0.113.30 mta1-b",
         "mta1-b", "smtp-source-host 203.0.113.20-203.0.113.30 overlaps 203.0.113.21 of <virtual-mta acme-"),
    Case("ip-twice-in-one-vmta", "  smtp-source-host 2001:db8::25 mta1-c.globex.example.net\n",
         "  smtp-source-host 2001:db8::25 mta1-c.globex.example.net\n"
         "  smtp-source-host 2001:db8:0::25 c2.example.net\n",
         "c2.example.net", "overlaps 2001:db8::25 of this <virtual-mta> (line"),
]


def test_the_good_config_passes() -> None:
    assert lint(GOOD, "config") == []


def test_the_good_config_counts_its_blocks() -> None:
    blocks = check(GOOD, "config").blocks
    assert blocks["virtual-mta"] == 3 and blocks["virtual-mta-pool"] == 2 and blocks["domain"] == 4


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_breakage_is_reported_at_its_line(case: Case) -> None:
    text = edit(case.old, case.new)
    if "\n" in case.at:  # a marker spanning lines: the problem is on its first line
        expected_line = text[: text.index(case.at)].count("\n") + 1
        assert text.count(case.at) == 1
    else:
        expected_line = line_of(text, case.at)
    problems = lint(text, "config")
    found = [p for p in problems if case.message in str(p)]
    assert found, "\n".join(map(str, problems))
    assert found[0].line == expected_line, "\n".join(map(str, problems))
    if case.alone:
        assert len(problems) == 1, "\n".join(map(str, problems))


def test_all_problems_are_reported_at_once_sorted_by_line() -> None:
    text = GOOD
    for old, new in [("max-smtp-out 20", "max-smtp-out lots"), ("use-starttls yes", "use-starttls maybe"),
                     ("default-virtual-mta acme-pool", "default-virtual-mta nowhere"),
                     ("</bounce-category-patterns>\n", "")]:
        text = edit(old, new, text)
    problems = lint(text, "config")
    assert [p.line for p in problems] == sorted(
        [line_of(text, "lots"), line_of(text, "maybe"), line_of(text, "nowhere"), line_of(text, "<bounce-category")])
    assert all(isinstance(p, LintProblem) for p in problems)


def test_a_misplaced_directive_also_gets_its_value_checked() -> None:
    text = GOOD + "smtp-source-host mta1.example.com 203.0.113.21\n"
    assert [str(p) for p in lint(text, "config")] == [
        f"config:{line_of(text, 'mta1.example.com 203')}: smtp-source-host is not allowed at top level; "
        "it belongs in <virtual-mta>",
        f"config:{line_of(text, 'mta1.example.com 203')}: smtp-source-host: the hostname comes first in "
        "'mta1.example.com 203.0.113.21': write the IP first, 'smtp-source-host 203.0.113.21 mta1.example.com'"]


def test_a_pool_may_name_vmtas_defined_after_it() -> None:
    pool = "<virtual-mta-pool globex-pool>\n  virtual-mta globex-2001-db8--25\n</virtual-mta-pool>\n"
    assert lint(pool + edit(pool, ""), "config") == []


def test_comments_and_blank_lines_are_ignored() -> None:
    text = edit("run-as-root no\n",
                "  # max-msg-rate here would be misplaced <virtual-mta x>\n\n\t\nrun-as-root no # yes\n")
    assert lint(text, "config") == []


def test_names_and_tags_are_case_insensitive() -> None:
    text = edit("<domain *>\n  max-smtp-out 10\n", "<Domain *>\n  Max-Smtp-Out 10\n")
    text = edit("</acct-file>", "</ACCT-FILE>", text)
    text = edit("  virtual-mta acme-203-0-113-22\n", "  virtual-mta ACME-203-0-113-22\n", text)
    assert lint(text, "config") == []


def test_crlf_line_ends_are_accepted() -> None:
    assert lint(GOOD.replace("\n", "\r\n"), "config") == []


def test_a_file_that_includes_others_may_refer_to_names_defined_there() -> None:
    text = "include /etc/pmta/vmtas.conf\n<virtual-mta-pool p>\n  virtual-mta elsewhere\n</virtual-mta-pool>\n"
    assert lint(text, "config") == []
    assert [p.line for p in lint(text.replace("include /etc/pmta/vmtas.conf\n", ""), "config")] == [2]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # and another\n"])
def test_an_empty_config_is_an_error(text: str) -> None:
    assert [str(p) for p in lint(text, "config")] == [
        "config:1: empty config: no directives and no blocks "
        "(a render that produced nothing must not replace a working config)"]


def test_a_byte_order_mark_is_reported_once() -> None:
    assert [str(p) for p in lint("\ufeff" + GOOD, "config")] == [
        "config:1: the file starts with a UTF-8 byte order mark (save it without one)"]


def test_unlimited_rate_is_accepted_while_it_is_allowed() -> None:
    """``max-msg-rate unlimited`` is unconfirmed: one constant decides."""
    assert values.RATE_ALLOWS_UNLIMITED
    assert lint(edit("max-msg-rate 2000/h", "max-msg-rate unlimited"), "config") == []


def test_every_unconfirmed_assumption_is_listed() -> None:
    assert set(directives.unconfirmed()) == {
        "<pattern-list>", "max-connect-rate in domain", "allow-unencrypted-plain-auth in source",
        "pattern-list in source", "record-fields in acct-file"}


def test_str_is_file_line_message() -> None:
    assert str(LintProblem("c", 3, "bad", "fix it")) == "c:3: bad (fix it)"
    assert str(LintProblem("c", 3, "bad")) == "c:3: bad"


# -- the command ---------------------------------------------------------------------------------

LOCATED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<message>.+)$")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["pmta-lint", *args])
    assert "Traceback" not in result.output + result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_cli_passes_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(GOOD, encoding="utf-8")
    code, out, err = _run(str(config))
    assert (code, err) == (0, "")
    assert out.startswith(f"{config}: ok (") and "3 virtual-mta," in out


def test_cli_prints_every_problem_as_file_line_message_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "config"
    text = edit("max-smtp-out 20", "max-smtp-out lots", edit("use-starttls yes", "use-starttls maybe"))
    config.write_text(text, encoding="utf-8")
    code, out, err = _run(str(config))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[-1] == "2 errors"
    located = [LOCATED.match(line) for line in lines[:-1]]
    assert all(located)
    assert [(m["file"], int(m["line"])) for m in located if m] == [
        (str(config), line_of(text, "lots")), (str(config), line_of(text, "maybe"))]


def test_cli_checks_every_file_given(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(GOOD, encoding="utf-8")
    bad.write_text("postmaster nobody\n", encoding="utf-8")
    code, out, err = _run(str(good), str(bad))
    assert code == 1 and f"{good}: ok" in out
    assert err.splitlines() == [f"{bad}:1: postmaster: 'nobody' is not an email address (local@domain)", "1 error"]


@pytest.mark.parametrize(("content", "message"), [
    (bytes(range(256)) * 4, ":2: not UTF-8 text (byte 0x80; a binary file?)"),
    (b"postmaster a@example.com\n\xff\xfe\x00garbage", ":2: not UTF-8 text (byte 0xff; a binary file?)"),
    (b"\x00\x01\x02\x03", ":1: control character U+0000 in the line (a binary file?)"),
    (b"", ":1: empty config: no directives and no blocks"),
])
def test_cli_never_tracebacks_on_garbage(tmp_path: Path, content: bytes, message: str) -> None:
    config = tmp_path / "config"
    config.write_bytes(content)
    code, _, err = _run(str(config))
    assert code == 1
    assert err.splitlines()[0].startswith(f"{config}{message}"), err


def test_cli_reports_unreadable_files(tmp_path: Path) -> None:
    code, _, err = _run(str(tmp_path / "missing"), str(tmp_path))
    assert code == 1
    assert err.splitlines() == [f"{tmp_path / 'missing'}: cannot read: No such file or directory",
                                f"{tmp_path}: cannot read: Is a directory", "2 errors"]


def test_cli_without_a_file_is_a_usage_error() -> None:
    code, _, _ = _run()
    assert code == 2


@pytest.mark.parametrize("number", range(1, GOOD.count("\n") + 1))
def test_deleting_any_line_never_raises_and_stays_in_range(number: int) -> None:
    lines = GOOD.split("\n")
    text = "\n".join(lines[: number - 1] + lines[number:])
    assert all(1 <= p.line <= len(lines) for p in lint(text, "config"))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(GOOD.split("\n")) | st.text(max_size=40), max_size=30))
def test_any_text_is_linted_without_an_exception(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert all(1 <= p.line <= text.count("\n") + 1 for p in lint(text, "config"))


# -- the renderer's output -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("stack", ["prod", "dev"])
@pytest.mark.parametrize("date", ["2026-11-02", "2027-06-01"])
def test_every_rendered_config_passes_the_linter(tmp_path: Path, stack: str, date: str) -> None:
    """What the Ansible role would deploy passes its own validate step, early in warmup and when warm."""
    out = tmp_path / "out"
    rendered = CliRunner().invoke(app, ["render", str(ROOT / "stacks" / stack), "--out", str(out), "--date", date])
    assert rendered.exit_code == 0, rendered.output + rendered.stderr
    configs = sorted((out / "powermta").glob("*.config"))
    assert configs
    for config in configs:
        assert lint(config.read_text(encoding="utf-8"), str(config)) == []
    code, stdout, stderr = _run(*map(str, configs))
    assert (code, stderr) == (0, "")
    assert stdout.count(": ok (") == len(configs)
