"""The RFC 7208 test suite as the oracle of the SPF rules that are mailplane's own, and of pyspf's DNS bridge.

The suite (fetched from the package index at test time, see ``spf_suite``) is 16 scenarios of
zone data and 203 cases of client IP, MAIL FROM, HELO and expected result.  Each scenario's zone
is served by a knotd of its own and asked through the lookups ``mailplane dns check`` uses
(:class:`DnsLookup` behind the run's cache and bound), so what is tested is the real code path:

1. every case whose only acceptable result is ``permerror`` (a syntax error or a limit: 74 in
   pyspf 2.0.14's copy) must be a problem of :func:`audit_spf` (the walk of
   :mod:`mailplane.dns.spfwalk`: syntax, records reached, worst-case limits);
2. every case whose results are only pass/fail/softfail/neutral/none (a well-formed record: 120)
   must have no syntax error.  A limit the walk counts over in the worst case is allowed only
   where pyspf itself, evaluating the same record for a client that no term matches, returns
   permerror: the suite's client matched before reaching the limit (``include-at-limit``; for
   IPv6 clients, whose ``a`` lookups of a host with only an A record are void, ``mech-at-limit``);
3. pyspf, asking DNS through :mod:`mailplane.dns.spfeval`, must give one of each case's results,
   but for the few listed in :data:`NOT_APPLICABLE`, each with its reason (checked to still fail:
   the list cannot go stale).

The four cases that accept either permerror or a verdict (an invalid name RFC 7208 leaves
undefined, two identical records) count in neither of 1 and 2; :func:`test_figures` prints what
the walk says of them along with the totals (``pytest -s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import spf_suite
from dns_server import KnotServer

from mailplane.dns.lookup import BoundedLookup, CachedLookup, Lookup
from mailplane.dns.resolver import DnsLookup, make_resolver, parse_nameserver
from mailplane.dns.spfeval import Verdict, evaluate
from mailplane.dns.spfwalk import FAMILIES, SPF_MAX_LOOKUPS, SPF_MAX_VOID_LOOKUPS, SpfAudit, audit_spf

UNMATCHED = {4: "198.51.100.254", 6: "2001:db8:ffff::254"}
"""Clients no record of the suite lists: evaluation runs every term, the walk's worst case."""

TIMES_OUT = ("the suite's zone has this name time out (TIMEOUT); knotd answers every name it is asked (here "
             "NXDOMAIN), so the temperror cannot be reproduced with real DNS")
NOT_APPLICABLE = {
    "txttimeout": TIMES_OUT,
    "nospftxttimeout": TIMES_OUT,
    "alltimeout": TIMES_OUT,
    "include-temperror": TIMES_OUT,
    "exists-dnserr": TIMES_OUT,
    "ptr-cname-loop": "a CNAME loop: the suite's fake DNS hands pyspf the CNAMEs to follow itself, which skips the "
                      "loop (neutral); a real resolver refuses the loop (dnspython: 'CNAME chain is too long', a "
                      "recursive server: SERVFAIL), so pyspf gets a DNS error and says temperror, as it would at "
                      "a receiver; the check reports it as an error, not a verdict",
}
"""Cases of test 3 whose expected result depends on DNS behaviour knotd (or any real DNS) does not have."""


@dataclass
class Outcome:
    case: spf_suite.Case
    audit: SpfAudit
    verdict: Verdict
    unmatched: dict[int, Verdict]
    """pyspf's result for :data:`UNMATCHED` clients, where the walk counts a limit exceeded."""

    @property
    def syntax_errors(self) -> list[str]:
        several = self.audit.problems() if len(self.audit.records) > 1 else []
        return several + (self.audit.walk.errors if self.audit.walk is not None else [])

    def over_limit_families(self) -> list[int]:
        walk = self.audit.walk
        if walk is None:
            return []
        if len(walk.lookups) > SPF_MAX_LOOKUPS:
            return list(FAMILIES)
        return [f for f in FAMILIES if len(walk.void_by_family[f]) > SPF_MAX_VOID_LOOKUPS]


@pytest.fixture(scope="module")
def scenarios() -> list[spf_suite.Scenario]:
    try:
        return spf_suite.load(spf_suite.suite_file())
    except spf_suite.SuiteUnavailable as err:  # the oracle is required: never skipped
        pytest.fail(f"the RFC 7208 test suite is not available: {err}", pytrace=False)


@pytest.fixture(scope="module")
def servers(scenarios: list[spf_suite.Scenario], tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[list[KnotServer]]:
    started = [KnotServer(s.zone, tmp_path_factory.mktemp(f"knot-rfc7208-{s.index}")) for s in scenarios]
    try:
        KnotServer.start_all(started)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield started
    for server in started:
        server.stop()


def _lookup(server: KnotServer) -> Lookup:
    return CachedLookup(BoundedLookup(DnsLookup(make_resolver(parse_nameserver(server.address), 2.0)), 8))


@pytest.fixture(scope="module")
def outcomes(scenarios: list[spf_suite.Scenario], servers: list[KnotServer]) -> dict[str, Outcome]:
    async def run() -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for scenario, server in zip(scenarios, servers, strict=True):
            lookup = _lookup(server)
            for case in scenario.cases:
                audit = await audit_spf(lookup, case.domain)
                verdict = await evaluate(lookup, case.host, case.mailfrom, case.helo)
                outcome = Outcome(case, audit, verdict, {})
                for family in outcome.over_limit_families():
                    sender = case.mailfrom or f"postmaster@{case.helo}"
                    outcome.unmatched[family] = await evaluate(_lookup(server), UNMATCHED[family], sender, case.helo)
                out[case.id] = outcome
        return out

    return asyncio.run(run())


def test_every_permerror_of_syntax_or_limits_is_a_problem(outcomes: dict[str, Outcome]) -> None:
    cases = [o for o in outcomes.values() if o.case.expects_permerror]
    missed = {o.case.id: f"{o.case.description} (RFC 7208 {o.case.spec}): {o.audit.records}"
              for o in cases if not o.audit.problems()}
    assert len(cases) >= 70, "the suite has fewer permerror cases than RFC 7208's: not the expected file?"
    assert missed == {}


def test_well_formed_records_have_no_syntax_error(outcomes: dict[str, Outcome]) -> None:
    cases = [o for o in outcomes.values() if o.case.expects_verdict]
    wrong = {o.case.id: o.syntax_errors for o in cases if o.syntax_errors}
    assert len(cases) >= 100
    assert wrong == {}


def test_a_limit_counted_over_is_pyspfs_permerror_for_a_client_nothing_matches(outcomes: dict[str, Outcome]) -> None:
    over = [o for o in outcomes.values() if o.case.expects_verdict and o.over_limit_families()]
    unconfirmed = {f"{o.case.id} (IPv{family})": verdict for o in over for family, verdict in o.unmatched.items()
                   if verdict.result != "permerror"}
    assert unconfirmed == {}
    assert {o.case.id for o in over} == {"include-at-limit", "mech-at-limit"}  # what the docstring explains


def test_pyspf_through_our_dns_gives_the_suites_results(outcomes: dict[str, Outcome]) -> None:
    wrong = {o.case.id: f"{o.verdict.result} ({o.verdict.explanation}), expected {'/'.join(o.case.results)}"
             for o in outcomes.values() if o.verdict.result not in o.case.results}
    assert {k: v for k, v in wrong.items() if k not in NOT_APPLICABLE} == {}
    assert sorted(set(NOT_APPLICABLE) - set(wrong)) == [], "these now match: take them off NOT_APPLICABLE"


def test_figures(outcomes: dict[str, Outcome]) -> None:
    """The counts the issue asks for (``pytest -s`` prints them)."""
    values = list(outcomes.values())
    permerror = [o for o in values if o.case.expects_permerror]
    verdict = [o for o in values if o.case.expects_verdict]
    either = [o for o in values if not o.case.expects_permerror and not o.case.expects_verdict
              and "temperror" not in o.case.results]
    matched = [o for o in values if o.verdict.result in o.case.results]
    lines = [
        f"RFC 7208 suite: {len(values)} cases",
        f"  permerror (syntax, limits): {sum(bool(o.audit.problems()) for o in permerror)} of {len(permerror)} caught",
        f"  well-formed records: {sum(not o.syntax_errors for o in verdict)} of {len(verdict)} accepted "
        f"(no syntax error)",
        f"  pyspf through mailplane's DNS: {len(matched)} of {len(values)} results as expected "
        f"({len(NOT_APPLICABLE)} not applicable)",
        *(f"  {o.case.id} (accepts {'/'.join(o.case.results)}): "
          f"{'problem: ' + o.audit.problems()[0] if o.audit.problems() else 'no problem'}" for o in either),
    ]
    print("\n".join(lines))
    assert permerror and verdict and len(matched) == len(values) - len(NOT_APPLICABLE)


def test_the_suite_is_cached_after_the_first_download(tmp_path: Path) -> None:
    path = spf_suite.suite_file()
    assert path.is_file() and path.stat().st_size > 10_000
    assert path.parent == spf_suite.cache_dir(path.parent.name.removeprefix("pyspf-"))
    assert spf_suite.suite_file() == path  # no second download


def test_a_download_that_fails_is_an_error_not_a_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty cache and no index (pip told to use only an empty folder): a clear error, without going online."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(spf_suite.SuiteUnavailable, match=r"pip could not download pyspf .*source distribution"):
        spf_suite.suite_file()
    assert not (tmp_path / "cache").exists()
