"""``mailplane pmta-lint`` knows PowerMTA's own syntax, not only what mailplane writes.

Four kinds of test: every config the renderer writes passes; a hand-written corpus of documented
PowerMTA forms (``docs/powermta.md``, "What pmta-lint checks") is accepted; each kind of mistake
is rejected at its line, with a did-you-mean where a name was misspelt; and every directive the
renderer may emit is in the linter's catalogue in that context.

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
from mailplane.mta import directives
from mailplane.mta.emitted import EMITTED
from mailplane.mta.lint import LintProblem, check, lint

GOOD = """\
# PowerMTA config of mta1: two tenants, three dedicated IPs
postmaster postmaster@example.com
host-name mta1.example.com
smtp-listener 127.0.0.1:2525
smtp-listener 0/0:25 source=inbound
http-mgmt-port 8080
http-access 127.0.0.1 admin
http-access 10/8 monitor,deny-logs
http-access 0/0 none
run-as-root false
log-file /var/log/pmta/log   # required
domain-macro google gmail.com, googlemail.com
custom-dsn-from-header "Mail Delivery System <postmaster@example.com>"
relay-domain [*.]bounce.example.com

<spool /var/spool/pmta>
  priority 1
  deliver-only no
</spool>
<spool /var/spool/pmta-2>
  min-free-space 1G
</spool>

# The sender service submits here and picks the pool with X-Virtual-MTA.
<source 127.0.0.1>
  always-allow-relaying yes
  process-x-virtual-mta true     # honour the X-Virtual-MTA header
  smtp-service yes
  default-virtual-mta acme-pool
  add-received-header no
  hide-message-source yes
  max-message-size 50M
  add-date-header override
  remove-header X-Internal,X-Debug
</source>

<source 10.0.0.0/24>
  always-allow-relaying yes
  process-x-virtual-mta yes
  jobid-header X-Job
  smtp-max-auth-failure-rate 1/20m
</source>

<source inbound>
  always-allow-relaying no
  smtp-service yes
</source>

<source 0/0>
  always-allow-relaying no
  smtp-service no
</source>

<virtual-mta acme-203-0-113-21>
  smtp-source-host 203.0.113.21 mta1-a.mail1.example.com
  max-smtp-msg-rate 1000/h
  domain-key s2026a,mail1.example.com,/etc/pmta/dkim/s2026a.mail1.example.com.pem
  <domain *>
    max-msg-rate 200/h
  </domain>
</virtual-mta>

<virtual-mta acme-203-0-113-22>
  smtp-source-host 203.0.113.22 mta1-b.mail1.example.com
  domain-key s2026a, mail1.example.com, /etc/pmta/dkim/s2026a.mail1.example.com.pem
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
  <domain gmail.rollup>
    max-msg-rate 1/20m
  </domain>
</virtual-mta-pool>

<virtual-mta-pool globex-pool>
  virtual-mta globex-2001-db8--25
</virtual-mta-pool>

<smtp-pattern-list provider-errors>
  reply /421 .*rate limit/ mode=backoff
  reply /^421 .* too many errors/ mode=backoff,backoff-to-normal-after=10m
  reply /\\[TS0[1-3]\\]/ mode=backoff
  reply /too many connections/ mode=backoff
</smtp-pattern-list>

<mx-rollup-list>
  mx gmail-smtp-in.l.google.com gmail.rollup
  mx *.olc.protection.outlook.com microsoft.rollup rollup-by-ip
</mx-rollup-list>

<domain gmail.rollup>
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

<domain $google>
  max-msg-per-connection 40
</domain>

<domain hotmail.com>
  queue-to "hotmail.queue"
</domain>

<domain hotmail.queue>
  smtp-hosts lookup-mx:hotmail.com
</domain>

<domain *>
  max-smtp-out 10
  retry-after 10m,10m,1h,4h
  bounce-after 4d12h
  notify-of-delay-every never
  use-starttls yes
  require-starttls no
  dkim-sign yes
</domain>

<acct-file /var/log/pmta/acct.csv>
  records d,b,rb,f
  record-fields d *,!dsnMta,header_X-Job
  max-size 50M
  delete-after 8d
</acct-file>

<pattern-list routes>
  header X-Stream /^bulk$/ virtual-mta=acme-pool
</pattern-list>

<bounce-processor>
  deliver-unmatched-email no
  <address-list>
    domain bounce.example.com
  </address-list>
</bounce-processor>

<feedback-loop-processor>
  deliver-matched-email no
  <address-list>
    address /fbl@fbl\\.example\\.com/
  </address-list>
</feedback-loop-processor>

<bounce-category-patterns>
  /spam/ spam-related
  /user unknown/ bad-mailbox
  // other
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


def test_the_good_config_passes() -> None:
    assert lint(GOOD, "config") == []


def test_the_good_config_counts_its_blocks() -> None:
    blocks = check(GOOD, "config").blocks
    assert blocks["virtual-mta"] == 3 and blocks["virtual-mta-pool"] == 2 and blocks["domain"] == 8
    assert blocks["spool"] == 2 and blocks["address-list"] == 2


# -- (b) documented forms are accepted -------------------------------------------------------------

BASE = """\
log-file /var/log/pmta/log
domain-macro tld com, net
# @global
<pattern-list routes>
  mail-from /@example\\.com$/ virtual-mta=p1
  # @pattern-list
</pattern-list>
<source relay>
</source>
<source 0/0>
  # @source
</source>
<virtual-mta v1>
  smtp-source-host 192.0.2.1 v1.example.com
  # @virtual-mta
  <domain *>
    # @virtual-mta/domain
  </domain>
</virtual-mta>
<virtual-mta v2>
  smtp-source-host 192.0.2.2 v2.example.com
</virtual-mta>
<virtual-mta-pool p1>
  virtual-mta v1
  # @virtual-mta-pool
</virtual-mta-pool>
<smtp-pattern-list errors>
  reply /^421/ mode=backoff
  # @smtp-pattern-list
</smtp-pattern-list>
<domain example.com>
  # @domain
</domain>
<domain q.example.com>
  smtp-hosts mx.example.com
</domain>
<acct-file /var/log/pmta/acct.csv>
  # @acct-file
</acct-file>
<spool /var/spool/pmta>
  # @spool
</spool>
<bounce-processor>
  # @bounce-processor
  <address-list>
    # @bounce-processor/address-list
  </address-list>
</bounce-processor>
<mx-rollup-list>
  # @mx-rollup-list
</mx-rollup-list>
<domain ms.rollup>
  smtp-hosts mx.example.com
</domain>
<bounce-category-patterns>
  # @bounce-category-patterns
</bounce-category-patterns>
"""
"""A small valid config with a marker in each kind of block, for one documented line at a time."""

VALID = [
    # BOOLEAN: yes no true false (g 3.2), and the per-directive keywords
    ("domain", "use-starttls true"), ("domain", "use-starttls FALSE"), ("domain", "dkim-sign no"),
    ("domain", "dkim-sign if-x-dkim-options-present"), ("source", "add-date-header override"),
    ("domain", "bounce-upon-no-mx never"), ("domain", "bounce-upon-no-mx true"),
    # TIME: combined units, never only where listed
    ("domain", "bounce-after 4d12h"), ("domain", "bounce-after 1w2d12h"), ("domain", "retry-recipients-after 300s"),
    ("domain", "notify-of-delay-every never"), ("domain", "dkim-expire-after never"),
    ("domain", "backoff-to-normal-after never"), ("domain", "reenable-source-ip-after never"),
    ("acct-file", "delete-after never"), ("acct-file", "delete-after 8d"), ("domain", "connection-idle-timeout 10m"),
    ("domain", "smtp-out-rampup-interval 0"),
    # time lists
    ("domain", "retry-after 10m,10m,1h,4h"), ("domain", "backoff-retry-after 1h"),
    ("domain", "retry-after " + ",".join(["1h"] * 30)),
    # RATE, VOLUME RATE, daily list
    ("domain", "max-msg-rate 1/20m"), ("domain", "max-msg-rate 100/15m"), ("domain", "max-msg-rate 83/5s"),
    ("domain", "max-msg-rate 6/sec"), ("domain", "max-msg-rate 500/h"), ("domain", "max-msg-rate 10/hr"),
    ("domain", "max-msg-rate 2000/d"), ("domain", "max-msg-rate 1/day"), ("domain", "max-msg-rate 5/min"),
    ("domain", "max-msg-rate unlimited"), ("domain", "max-msg-rate 0"), ("domain", "max-connect-rate 10/m"),
    ("virtual-mta", "max-smtp-msg-rate 1000/h"), ("virtual-mta-pool", "max-smtp-msg-rate 1000/h"),
    ("domain", "max-data-volume-rate 12M/m"), ("domain", "max-data-volume-rate 2g/10h"),
    ("domain", "backoff-max-data-volume-rate 1T/7d"), ("virtual-mta", "max-smtp-data-volume-rate unlimited"),
    ("domain", "max-cold-virtual-mta-msg 1/day,2/day,50/d"), ("virtual-mta", "cold-virtual-mta v2"),
    # SIZE
    ("acct-file", "max-size 1G"), ("source", "max-message-size 40K"), ("source", "max-message-size unlimited"),
    ("source", "max-message-size 0"), ("spool", "min-free-space 0"),
    # IP and CIDR, listeners, http-access
    ("global", "smtp-listener 0.0.0.0:25"), ("global", "smtp-listener 0/0:2525"),
    ("global", "smtp-listener 1.2.3.4:25 source=relay"), ("global", "http-access 10/8 operator"),
    ("global", "http-access 0/0 monitor,deny-logs"), ("domain", "source-ip-max-smtp-out 192.0.2.0/24 5"),
    ("domain", "source-ip-max-msg-rate 192.0.2.1 100/h"),
    ("virtual-mta", "smtp-source-host 198.51.100.0/30 v.example.com"),
    # host lists and routing
    ("domain", "smtp-hosts h1.example.com, h2.example.com; [10.1.1.1]:2525; last.example.com"),
    ("domain", "smtp-hosts [IPv6:2001:db8::1]"), ("domain", "smtp-hosts lookup-mx:example.org"),
    ("domain", 'smtp-hosts ""'), ("domain", "queue-to q.example.com"), ("domain", 'queue-to ""'),
    ("domain", "type discard"), ("domain", "reroute-to-virtual-mta p1"), ("domain", "disable-mx-rollup yes"),
    ("domain", 'backoff-notify ""'), ("domain", "backoff-notify ops@example.com,noc@example.com"),
    ("domain", "queue-priority 100"), ("domain", "max-rcpt-per-message unlimited"),
    # domain patterns (in <domain ARG> and relay-domain)
    ("global", "relay-domain *.example.org"), ("global", "relay-domain [*.]example.org"),
    ("global", "relay-domain example.$tld"), ("global", "relay-domain [192.0.2.0/24]"),
    ("virtual-mta-pool", "<domain *>\n</domain>"), ("virtual-mta", "<domain {default}>\n</domain>"),
    ("global", "<domain [*.]example.net>\n</domain>"), ("global", "<domain $tld>\n</domain>"),
    # quoting, comments, DKIM
    ("global", 'custom-dsn-from-header "Postmaster <postmaster@example.com>"   # with a comment'),
    ("domain", 'command "/usr/bin/deliver \\"$user\\""'), ("domain", 'queue-to "q.example.com"'),
    ("global", "domain-key sel, *, /etc/pmta/dkim/wild.pem"), ("virtual-mta-pool", "domain-key sel,$tld,/k.pem"),
    ("global", "domain-key s1,example.com,{vault}:/v1/kv/data/dkim/${domain}:${selector}"),
    ("domain", "dkim-headers X-Campaign,/^X-Tag-/"), ("domain", "dkim-identity @example.com"),
    ("domain", "second-dkim-sign yes"), ("domain", 'dkim-headers ""'),
    # the rest of the catalogue
    ("global", "include /etc/pmta/extra.conf"), ("source", "pattern-list routes"),
    ("source", "default-virtual-mta by-smtp-source-ip"), ("source", "verp-default yes"),
    ("global", "mx-connection-limit *.mail.protection.outlook.com 5"), ("global", "ip-connection-limit 10/8 3"),
    ("global", "smtp-source-host 192.0.2.9 mta.example.com"), ("global", "spool-max-recipients auto"),
    ("global", "<smtp-listener 0/0:587>\n  source relay\n  tls-certificate /etc/pmta/cert.pem\n</smtp-listener>"),
    ("global", "<source api>\n  require-auth yes\n</source>"), ("global", "<source {auth}>\n</source>"),
    ("global", "<address-list suppressed>\n  address-file /etc/pmta/suppressed.txt\n</address-list>"),
    ("global", "<vault>\n  server-url https://vault.example.com:8200\n  cache-ttl 24h\n</vault>"),
    ("global", "<proxy px>\n  server proxy.example.com:1080\n  client 192.0.2.1 v1.example.com\n</proxy>"),
    ("global", "<dns>\n  precached-refresh-interval 5m\n</dns>"),
    ("global", "<rewrite-list rw>\n  mail-from *@old.example.com *@new.example.com\n  mail-from <> bounce@example.com\n"
               "</rewrite-list>"),
    ("global", "<domain-key-list k>\n  domain-key s1,example.com,/k.pem\n</domain-key-list>"),
    ("global", '<acct-file "|/usr/local/bin/acct-reader --json">\n  records r\n</acct-file>'),
    ("acct-file", "move-to /var/log/pmta/done"), ("acct-file", "records delivery,bounce,transient-queue"),
    ("acct-file", "record-fields f *,header_From,arf_X-Foo"), ("acct-file", "map-header-to-field d header_X-Id jobId"),
    ("acct-file", 'privacy-policy hmac-sha256 "k3y"'), ("acct-file", "queue-filter gmail.com/*,!*/v2"),
    ("spool", "delete-file-holders true"), ("bounce-processor", "forward-unmatched-to ops@example.com"),
    ("bounce-processor", "<email-patterns>\n  body-pattern-file /etc/pmta/patterns.txt\n</email-patterns>"),
    ("bounce-processor/address-list", "domain $tld"), ("bounce-processor/address-list", "address postmaster"),
    ("bounce-processor/address-list", "address bounces@example.com"),
    ("smtp-pattern-list", "reply /550 5\\.7\\.1/ disable-source-ip,reenable-after=1h"),
    ("smtp-pattern-list", "reply /(?-i)Blocked/ skip-mx"), ("smtp-pattern-list", "reply /4\\.7\\.0 \\x23/ defer-queue"),
    ("smtp-pattern-list", "reply /[TS01] Messages/ mode=backoff"), ("smtp-pattern-list", "reply /452/ bounce-rcpt"),
    ("smtp-pattern-list", "reply /(?<code>4\\d\\d)\\h/ mode=normal"), ("smtp-pattern-list", "include /etc/pmta/x"),
    ("pattern-list", "header X-Stream /^bulk$/ virtual-mta=v2,recipient-priority=10"),
    ("pattern-list", "rcpt-to /@gmail\\.com$/ virtual-mta=v1"),
    ("mx-rollup-list", "mx gmail-smtp-in.l.google.com g.rollup"),
    ("mx-rollup-list", "mx *.mail.protection.outlook.com ms.rollup"),
    ("mx-rollup-list", "mx *.yahoodns.net y.rollup rollup-by-ip"),
    ("bounce-category-patterns", "/quota/ quota-issues"), ("bounce-category-patterns", "/^5\\.1\\.1/ my-own-category"),
]


def with_line(context: str, line: str) -> str:
    return edit(f"# @{context}\n", f"{line}\n", BASE)


def test_the_base_of_the_corpus_passes() -> None:
    assert lint(BASE, "config") == []


@pytest.mark.parametrize(("context", "line"), VALID, ids=[f"{c}:{line.split(chr(10))[0]}" for c, line in VALID])
def test_documented_powermta_syntax_is_accepted(context: str, line: str) -> None:
    problems = lint(with_line(context, line), "config")
    assert problems == [], "\n".join(map(str, problems))


# -- (c) mistakes are rejected at their line ---------------------------------------------------------

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
DOMAIN_STAR = "<domain *>\n  max-smtp-out 10\n"

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
    Case("domain-inside-domain", "  dkim-sign yes\n", "  dkim-sign yes\n  <domain x.example.com>\n  </domain>\n",
         "<domain x.example.com>", "<domain> cannot be opened in <domain *> (line", alone=False),
    Case("source-inside-domain", "  dkim-sign yes\n", "  dkim-sign yes\n  <source 10.1.1.1>\n  </source>\n",
         "<source 10.1.1.1>", "<source> cannot be opened in <domain *> (line", alone=False),
    Case("unnamed-address-list-at-top-level", "<bounce-category-patterns>\n",
         "<address-list>\n  domain x.example.com\n</address-list>\n<bounce-category-patterns>\n",
         "<address-list>\n  domain x.",
         "<address-list> needs an argument at top level"),
    Case("email-patterns-at-top-level", "<bounce-category-patterns>\n",
         "<email-patterns>\n</email-patterns>\n<bounce-category-patterns>\n", "<email-patterns>",
         "<email-patterns> cannot be opened at top level; it belongs in <bounce-processor> or in "
         "<feedback-loop-processor>"),
    Case("unknown-block", "<bounce-category-patterns>\n  /spam/ spam-related\n  /user unknown/ bad-mailbox\n"
         "  // other\n</bounce-category-patterns>",
         "<bounce-category-pattern>\n  /spam/ spam-related\n</bounce-category-pattern>",
         "<bounce-category-pattern>",
         "unknown block <bounce-category-pattern> (did you mean 'bounce-category-patterns'?)"),
    Case("closing-tag-with-argument", "</acct-file>", "</acct-file /var/log/pmta/acct.csv>", "</acct-file ",
         "closing tag </acct-file /var/log/pmta/acct.csv> takes no argument"),
    Case("text-after-tag", DOMAIN_STAR, "<domain *> max-smtp-out 10\n", "<domain *> max",
         "text after the tag: 'max-smtp-out 10' (put each directive on its own line)"),
    Case("tag-without-closing-bracket", "<bounce-category-patterns>\n", "<bounce-category-patterns\n",
         "<bounce-category-patterns", "tag '<bounce-category-patterns' has no closing '>'"),
    Case("malformed-tag", "<bounce-category-patterns>\n", "<bounce-category<patterns>\n",
         "<bounce-category<", "malformed tag '<bounce-category<patterns>'", alone=False),
    Case("block-needs-argument", "<acct-file /var/log/pmta/acct.csv>", "<acct-file>", "<acct-file>",
         "<acct-file> needs an argument at top level"),
    Case("block-takes-no-argument", "<bounce-category-patterns>", "<bounce-category-patterns all>",
         "<bounce-category-patterns all>", "<bounce-category-patterns> takes no argument at top level, got 'all'"),
    Case("duplicate-domain-block", DOMAIN_STAR, "<domain *>\n  max-smtp-out 10\n</domain>\n<domain *>  # again\n"
         "  max-smtp-out 5\n", "# again", "duplicate <domain *> at top level (first at line"),
    Case("duplicate-spool-block", "<spool /var/spool/pmta-2>", "<spool /var/spool/pmta>",
         "<spool /var/spool/pmta>\n  min-free-space",
         "duplicate <spool /var/spool/pmta> at top level (first at line"),
    Case("vault-twice", "<bounce-category-patterns>\n", "<vault>\n</vault>\n<vault>  # again\n</vault>\n"
         "<bounce-category-patterns>\n", "# again", "<vault> may appear only once (first at line"),
    # directives
    Case("mx-rollup-is-not-powermta", "  max-smtp-out 20\n", "  max-smtp-out 20\n  mx-rollup gmail.com\n",
         "mx-rollup gmail", "unknown directive 'mx-rollup' in <domain> (PowerMTA has no mx-rollup directive: "
         "list the MX hosts in <mx-rollup-list>"),
    Case("unknown-directive", "max-msg-per-connection 50", "max-msg-per-conection 50", "max-msg-per-conection",
         "unknown directive 'max-msg-per-conection' in <domain> (did you mean 'max-msg-per-connection'?)"),
    Case("unknown-global-directive", "run-as-root false", "run-as-rot false", "run-as-rot",
         "unknown directive 'run-as-rot' at top level (did you mean 'run-as-root'?)"),
    Case("spool-line-is-deprecated", "run-as-root false\n", "run-as-root false\nspool /var/spool/pmta  # old\n",
         "# old", "spool is deprecated (g 3.3.1.4) (write a <spool DIR> block)"),
    Case("directive-in-wrong-block", "  hide-message-source yes\n",
         "  hide-message-source yes\n  max-msg-rate 100/h   # misplaced\n", "# misplaced",
         "max-msg-rate is not allowed in <source>; it belongs in <domain>"),
    Case("domain-rate-in-vmta", "  max-smtp-msg-rate 1000/h\n", "  max-msg-rate 1000/h\n", "max-msg-rate 1000/h",
         "max-msg-rate is not allowed in <virtual-mta>; it belongs in <domain> (did you mean 'max-smtp-msg-rate'?)"),
    Case("global-directive-in-block", "  smtp-service no\n", "  smtp-service no\n  postmaster ops@example.com\n",
         "ops@example.com", "postmaster is not allowed in <source>; it belongs at top level"),
    Case("directive-set-twice", "  max-smtp-out 20\n", "  max-smtp-out 20\n  max-smtp-out 30\n", "max-smtp-out 30",
         "max-smtp-out is set twice in <domain> (first at line"),
    Case("directive-without-value", "  max-smtp-out 20\n", "  max-smtp-out   # bare\n", "# bare",
         "max-smtp-out needs a value"),
    Case("clear-where-not-allowed", "  max-smtp-out 20\n", '  max-smtp-out ""\n', 'max-smtp-out ""',
         "max-smtp-out: '\"\"' clears only an inherited list or address"),
    Case("unbalanced-quote", "queue-to \"hotmail.queue\"", "queue-to \"hotmail.queue", "queue-to",
         "queue-to: unbalanced '\"'"),
    Case("reply-without-pattern", "reply /too many connections/", "reply too many connections", "reply too many",
         "reply: 'too many connections mode=backoff' does not start with a /pattern/"),
    Case("reply-bad-regex", "reply /too many connections/", "reply /(too many connections/", "(too many",
         "reply: /(too many connections/ is not a valid regular expression: missing ), unterminated subpattern"),
    Case("reply-without-action", "reply /too many connections/ mode=backoff", "reply /too many connections/",
         "too many connections", "reply: a reply rule needs an action"),
    Case("reply-options-not-together", "reply /too many connections/ mode=backoff",
         "reply /too many connections/ skip-mx,bounce-queue", "too many connections",
         "reply: skip-mx and bounce-queue are not allowed in one rule"),
    Case("reply-normal-after-needs-backoff", "reply /too many connections/ mode=backoff",
         "reply /too many connections/ backoff-to-normal-after=1h", "too many connections",
         "reply: backoff-to-normal-after needs mode=backoff in the same rule"),
    Case("reply-unknown-action", "reply /too many connections/ mode=backoff",
         "reply /too many connections/ mode=backof", "too many connections",
         "reply: 'mode=backof': write mode=backoff or mode=normal"),
    Case("mx-rollup-name", "mx gmail-smtp-in.l.google.com gmail.rollup", "mx gmail-smtp-in.l.google.com gmail",
         "mx gmail-smtp-in", "mx: 'gmail': a rollup name ends in .rollup"),
    Case("wildcard-mx-without-hosts", "microsoft.rollup rollup-by-ip", "microsoft.rollup", "mx *.olc",
         "mx … microsoft.rollup (a wildcard MX without rollup-by-ip): no <domain microsoft.rollup> in this file"),
    Case("bounce-category-without-category", "/user unknown/ bad-mailbox", "/user unknown/", "/user unknown/",
         "<bounce-category-patterns>: after /user unknown/ comes one category name"),
    Case("control-character", "run-as-root false", "run-as-root\x00false", "run-as-root",
         "control character U+0000 in the line (a binary file?)"),
    Case("listener-invented-option", "smtp-listener 127.0.0.1:2525", "smtp-listener 127.0.0.1:2525 tls=no",
         "tls=no", "smtp-listener: 'tls=no': a listener takes only source=NAME after ADDR:PORT"),
    # values
    Case("zero-rate", "max-msg-rate 2000/h", "max-msg-rate 0/h", "max-msg-rate 0/h",
         "max-msg-rate: '0/h': the count of a rate is not zero (0/unit is outside the grammar"),
    Case("rate-unit", "max-msg-rate 2000/h", "max-msg-rate 2000/w", "2000/w",
         "max-msg-rate: '2000/w' is not a rate: write unlimited, 0 or N/[M]unit"),
    Case("rate-in-words", "backoff-max-msg-rate 100/h", "backoff-max-msg-rate 100 per hour", "100 per hour",
         "backoff-max-msg-rate: '100 per hour' is not a rate"),
    Case("connect-rate", "max-connect-rate 100/m", "max-connect-rate 100", "max-connect-rate",
         "max-connect-rate: '100' is not a rate"),
    Case("never-where-not-allowed", "bounce-after 4d12h", "bounce-after never", "bounce-after",
         "bounce-after: 'never' is not allowed here"),
    Case("acct-delete-after-hours", "delete-after 8d", "delete-after 12h", "delete-after",
         "delete-after: '12h' is not Nd or never"),
    Case("time-list-spaces", "retry-after 10m,10m,1h,4h", "retry-after 10m, 1h", "10m, 1h",
         "retry-after: '10m, 1h': write the times separated by commas without spaces"),
    Case("time-list-too-long", "retry-after 10m,10m,1h,4h", "retry-after " + ",".join(["1h"] * 31), "1h,1h",
         "retry-after: 31 times: at most 30"),
    Case("integer", "max-smtp-out 20", "max-smtp-out twenty", "twenty", "max-smtp-out: 'twenty' is not a whole number"),
    Case("integer-negative", "max-msg-per-connection 50", "max-msg-per-connection -5", "-5",
         "'-5' is not a whole number"),
    Case("time-in-words", "backoff-retry-after 20m", "backoff-retry-after 20 minutes", "20 minutes",
         "backoff-retry-after: '20 minutes' is not a time"),
    Case("time-unit", "bounce-after 4d12h", "bounce-after 4y", "bounce-after", "bounce-after: '4y' is not a time"),
    Case("size", "max-size 50M", "max-size 50MB", "max-size", "max-size: '50MB' is not a size"),
    Case("acct-max-size-minimum", "max-size 50M", "max-size 500K", "max-size",
         "max-size: '500K' is less than the minimum, 1M"),
    Case("boolean", "use-starttls yes", "use-starttls maybe", "use-starttls",
         "use-starttls: 'maybe' is not a boolean: write yes, no, true or false"),
    Case("listener-port", "127.0.0.1:2525", "127.0.0.1:99999", "127.0.0.1:",
         "'99999' is not a whole number from 1 to 65535"),
    Case("http-access-level", "http-access 127.0.0.1 admin", "http-access 127.0.0.1 root", "http-access 127.0.0.1",
         "'root' is not an access level"),
    Case("acct-records", "records d,b,rb,f", "records d,x", "records", "unknown record type(s) 'x'"),
    Case("acct-record-field", "record-fields d *,!dsnMta,header_X-Job", "record-fields d timeLoged",
         "record-fields", "record-fields: 'timeLoged' is not a field of d records (did you mean 'timeLogged'?)"),
    Case("postmaster-address", "postmaster postmaster@example.com", "postmaster postmaster", "postmaster postmaster",
         "postmaster: 'postmaster' is not an email address"),
    Case("source-reserved-name", "<source 0/0>\n", "<source {pmta-auth}>\n</source>\n<source 0/0>\n", "{pmta-auth}",
         "names starting with '{' are reserved"),
    Case("source-bad-cidr", "<source 10.0.0.0/24>", "<source 10.0.0.0/33>", "10.0.0.0/33",
         "'10.0.0.0/33' is not an IP address or network"),
    Case("domain-block-name", DOMAIN_STAR, "<domain not a domain>\n  max-smtp-out 10\n",
         "not a domain", "<domain not a domain>: 'not a domain' is not a valid DNS name"),
    Case("smtp-source-host-hostname-first", "smtp-source-host 203.0.113.22 mta1-b.mail1.example.com",
         "smtp-source-host mta1-b.mail1.example.com 203.0.113.22", "mta1-b",
         "the hostname comes first in 'mta1-b.mail1.example.com 203.0.113.22': write the IP first, "
         "'smtp-source-host 203.0.113.22 mta1-b.mail1.example.com'"),
    Case("smtp-source-host-bad-ip", "203.0.113.22 mta1-b", "203.0.113.300 mta1-b", "mta1-b",
         "'203.0.113.300' is not an IP address"),
    Case("smtp-source-host-range", "203.0.113.22 mta1-b", "203.0.113.22-203.0.113.30 mta1-b", "mta1-b",
         "PowerMTA has no A-B form, write a CIDR network"),
    Case("smtp-source-host-one-field", "203.0.113.22 mta1-b.mail1.example.com", "203.0.113.22", "203.0.113.22",
         "smtp-source-host: takes an IP (or CIDR) and its hostname (IP HOSTNAME), got 1 field(s)"),
    Case("domain-key-four-fields", "domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem",
         "domain-key g1,globex.example.net,/etc/pmta/dkim/g1.globex.example.net.pem,rsa-sha256", "rsa-sha256",
         "domain-key: takes SELECTOR,DOMAIN,KEYFILE (three comma-separated fields), got 4"),
    Case("domain-key-empty-field", "domain-key g1,*,/etc/pmta/dkim/g1.globex.example.net.pem",
         "domain-key g1,,/etc/pmta/dkim/g1.globex.example.net.pem", "domain-key g1",
         "domain-key: empty domain: write SELECTOR,DOMAIN,KEYFILE"),
    # names and references
    Case("pool-member-undefined", "  virtual-mta acme-203-0-113-22\n", "  virtual-mta acme-203-0-113-23\n",
         "acme-203-0-113-23",
         "virtual-mta acme-203-0-113-23: no <virtual-mta> named 'acme-203-0-113-23' in this file "
         "(did you mean 'acme-203-0-113-22'?)"),
    Case("pool-member-is-a-pool", "  virtual-mta globex-2001-db8--25\n", "  virtual-mta acme-pool\n",
         "  virtual-mta acme-pool", "virtual-mta acme-pool: 'acme-pool' is a <virtual-mta-pool> (line"),
    Case("default-vmta-undefined", "default-virtual-mta acme-pool", "default-virtual-mta acme-pol", "acme-pol",
         "no <virtual-mta> or <virtual-mta-pool> named 'acme-pol' in this file (did you mean 'acme-pool'?)"),
    Case("smtp-pattern-list-undefined", "  smtp-pattern-list provider-errors\n",
         "  smtp-pattern-list provider-eror\n", "provider-eror",
         "no <smtp-pattern-list> named 'provider-eror' in this file (did you mean 'provider-errors'?)"),
    Case("pattern-list-used-before-defined", "  jobid-header X-Job\n",
         "  jobid-header X-Job\n  pattern-list routes  # early\n", "# early",
         "pattern-list routes: <pattern-list> 'routes' is defined at line"),
    Case("listener-source-undefined", "source=inbound", "source=inbund", "source=inbund",
         "no <source> named 'inbund' in this file (did you mean 'inbound'?)"),
    Case("domain-macro-undefined", "<domain $google>", "<domain $gogle>", "$gogle",
         "<domain $gogle>: no domain-macro named 'gogle' in this file (did you mean 'google'?)"),
    Case("domain-macro-used-before-defined", "run-as-root false\n", "run-as-root false\nrelay-domain x.$google\n",
         "x.$google", "relay-domain x.$google: domain-macro 'google' is defined at line"),
    Case("queue-to-undefined", 'queue-to "hotmail.queue"', "queue-to hotmail.queu", "queue-to hotmail.queu\n",
         "queue-to hotmail.queu: no <domain hotmail.queu> in this file (did you mean 'hotmail.queue'?)"),
    Case("queue-to-without-hosts", "  smtp-hosts lookup-mx:hotmail.com\n", "  max-smtp-out 5\n",
         "queue-to", "queue-to hotmail.queue: <domain hotmail.queue> (line"),
    Case("duplicate-vmta-name", POOL, EXTRA_VMTA + POOL,
         "<virtual-mta acme-203-0-113-21>\n  smtp-source-host 203.0.113.99",
         f"<virtual-mta acme-203-0-113-21>: the name 'acme-203-0-113-21' is already used by the <virtual-mta> "
         f"at line {VMTA_1_LINE}"),
    Case("pool-named-like-a-vmta", "<smtp-pattern-list", "<virtual-mta-pool globex-2001-db8--25>  # clash\n"
         "  virtual-mta acme-203-0-113-21\n</virtual-mta-pool>\n<smtp-pattern-list", "# clash",
         "the name 'globex-2001-db8--25' is already used by the <virtual-mta> at line"),
    Case("vmta-in-two-pools-with-domains", "  virtual-mta globex-2001-db8--25\n",
         "  virtual-mta globex-2001-db8--25\n  virtual-mta acme-203-0-113-21  # shared\n  <domain *>\n  </domain>\n",
         "# shared", "virtual-mta acme-203-0-113-21 is also in <virtual-mta-pool acme-pool> (line"),
    Case("pool-without-members", "<smtp-pattern-list", "<virtual-mta-pool empty-pool>\n</virtual-mta-pool>\n"
         "<smtp-pattern-list", "<virtual-mta-pool empty-pool>", "<virtual-mta-pool empty-pool> has no members"),
    Case("proxy-without-client", "<bounce-category-patterns>\n", "<proxy px>\n  server proxy.example.com:1080\n"
         "</proxy>\n<bounce-category-patterns>\n", "<proxy px>", "<proxy px> has no client"),
    Case("ip-in-two-vmtas", "smtp-source-host 203.0.113.22 mta1-b", "smtp-source-host 203.0.113.21 mta1-b", "mta1-b",
         "smtp-source-host 203.0.113.21 overlaps 203.0.113.21 of <virtual-mta acme-203-0-113-21> "
         f"(line {VMTA_1_IP_LINE}) (one IP belongs to one virtual-mta)"),
    Case("cidr-overlaps-an-ip", "smtp-source-host 203.0.113.22 mta1-b", "smtp-source-host 203.0.113.16/28 mta1-b",
         "mta1-b", "smtp-source-host 203.0.113.16/28 overlaps 203.0.113.21 of <virtual-mta acme-"),
    Case("ip-twice-in-one-vmta", "  smtp-source-host 2001:db8::25 mta1-c.globex.example.net\n",
         "  smtp-source-host 2001:db8::25 mta1-c.globex.example.net\n"
         "  smtp-source-host 2001:db8:0::25 c2.example.net\n",
         "c2.example.net", "overlaps 2001:db8::25 of this <virtual-mta> (line"),
    Case("no-log-file", "log-file /var/log/pmta/log   # required\n", "", "# PowerMTA config",
         "no log-file: PowerMTA does not start without one ('No logging file specified')"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_mistake_is_reported_at_its_line(case: Case) -> None:
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
    text = edit("  smtp-service no\n", "  smtp-service no\n  max-msg-rate 0/h\n")
    line = line_of(text, "max-msg-rate 0/h")
    assert [str(p) for p in lint(text, "config")] == [
        f"config:{line}: max-msg-rate is not allowed in <source>; it belongs in <domain>",
        f"config:{line}: max-msg-rate: '0/h': the count of a rate is not zero (0/unit is outside the grammar; "
        "a bare 0 is undefined, see docs/powermta.md)"]


def test_a_pool_may_name_vmtas_defined_after_it() -> None:
    pool = "<virtual-mta-pool globex-pool>\n  virtual-mta globex-2001-db8--25\n</virtual-mta-pool>\n"
    assert lint(pool + edit(pool, ""), "config") == []


def test_one_vmta_may_sit_in_two_pools_without_domain_blocks() -> None:
    text = edit("  virtual-mta globex-2001-db8--25\n",
                "  virtual-mta globex-2001-db8--25\n  virtual-mta acme-203-0-113-21\n")
    assert lint(text, "config") == []


def test_comments_and_blank_lines_are_ignored() -> None:
    text = edit("run-as-root false\n",
                "  # max-msg-rate here would be misplaced <virtual-mta x>\n\n\t\nrun-as-root false # yes\n")
    assert lint(text, "config") == []


def test_names_and_tags_are_case_insensitive() -> None:
    text = edit(DOMAIN_STAR, "<Domain *>\n  Max-Smtp-Out 10\n")
    text = edit("</acct-file>", "</ACCT-FILE>", text)
    text = edit("  virtual-mta acme-203-0-113-22\n", "  virtual-mta ACME-203-0-113-22\n", text)
    assert lint(text, "config") == []


def test_crlf_line_ends_are_accepted() -> None:
    assert lint(GOOD.replace("\n", "\r\n"), "config") == []


def test_a_file_that_includes_others_may_refer_to_names_defined_there() -> None:
    text = "include /etc/pmta/vmtas.conf\n<virtual-mta-pool p>\n  virtual-mta elsewhere\n</virtual-mta-pool>\n"
    assert lint(text, "config") == []
    alone = [(p.line, p.message.split(":")[0]) for p in lint(text.replace("include /etc/pmta/vmtas.conf\n", ""), "c")]
    assert alone == [(1, "no log-file"), (2, "virtual-mta elsewhere")]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   # and another\n"])
def test_an_empty_config_is_an_error(text: str) -> None:
    assert [str(p) for p in lint(text, "config")] == [
        "config:1: empty config: no directives and no blocks "
        "(a render that produced nothing must not replace a working config)"]


def test_a_byte_order_mark_is_reported_once() -> None:
    assert [str(p) for p in lint("\ufeff" + GOOD, "config")] == [
        "config:1: the file starts with a UTF-8 byte order mark (save it without one)"]


def test_every_unconfirmed_assumption_is_listed() -> None:
    listed = set(directives.unconfirmed())
    assert {"<signals>", "enable-signals in global", "mx-connection-attempts in domain",
            "track-time-first-attempt in global"} <= listed
    assert not any(item.startswith(("mx-rollup ", "max-msg-rate ")) for item in listed)


def test_the_catalogue_cites_no_path_outside_the_repository() -> None:
    from mailplane.mta import lint as lint_module
    from mailplane.mta import values
    for module in (directives, values, lint_module):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        assert "/work/" not in source and "reference/powermta" not in source


def test_str_is_file_line_message() -> None:
    assert str(LintProblem("c", 3, "bad", "fix it")) == "c:3: bad (fix it)"
    assert str(LintProblem("c", 3, "bad")) == "c:3: bad"


# -- (d) what the renderer may emit is in the catalogue ----------------------------------------------

@pytest.mark.parametrize(("context", "item"), sorted(EMITTED), ids=[f"{c}:{i}" for c, i in sorted(EMITTED)])
def test_every_emitted_directive_is_known_in_its_context(context: str, item: str) -> None:
    assert directives.knows(context, item), f"{item} in {context}"


def test_mx_rollup_is_in_no_context_of_the_catalogue() -> None:
    assert directives.where_allowed("mx-rollup") == []
    assert "mx-rollup" in directives.NOT_POWERMTA


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
    bad.write_text("log-file /var/log/pmta/log\npostmaster nobody\n", encoding="utf-8")
    code, out, err = _run(str(good), str(bad))
    assert code == 1 and f"{good}: ok" in out
    assert err.splitlines() == [f"{bad}:2: postmaster: 'nobody' is not an email address (local@domain)", "1 error"]


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

ROOT = Path(__file__).resolve().parents[2]


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
