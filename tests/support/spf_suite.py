"""The RFC 7208 test suite (the SPF council's YAML, as pyspf's source distribution ships it), served by knotd.

Nothing of it is kept in the repository: :func:`suite_file` downloads the source distribution of
the pyspf version installed, with pip from the package index, once, and keeps the suite's YAML in
the user's cache (``$XDG_CACHE_HOME/mailplane/pyspf-<version>/``, by default under ``~/.cache``).
A download that fails raises :class:`SuiteUnavailable` with pip's reason: the tests that need the
suite then fail, they are never skipped.

Each YAML document is a scenario: ``zonedata`` (records by name, as pyspf's own test driver reads
them: ``SPF`` entries stand for TXT records when a name has no ``TXT`` entry, ``TXT: NONE`` for
none, ``TIMEOUT`` for a name whose lookups time out) and ``tests`` (``host``, ``mailfrom``,
``helo``, the expected ``result``, or a list of acceptable ones).  :func:`load` turns each
scenario's zone data into a :class:`~dns_server.Zone` for a knotd of its own: names repeat
across scenarios.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from dns_server import Zone

SUITE_MEMBER = "test/rfc7208-tests.yml"
"""Where the suite is in pyspf's source distribution."""
RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")


class SuiteUnavailable(RuntimeError):
    """The suite could not be fetched from the package index."""


def cache_dir(version: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mailplane" / f"pyspf-{version}"


def suite_file(version: str | None = None) -> Path:
    """The suite's YAML for ``version`` (default: the installed pyspf), downloaded on first use."""
    version = version or importlib.metadata.version("pyspf")
    target = cache_dir(version) / Path(SUITE_MEMBER).name
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                   "--disable-pip-version-check", "--quiet", f"pyspf=={version}", "-d", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SuiteUnavailable(f"cannot run pip to download pyspf {version}'s source distribution: {err}") from None
        if done.returncode != 0:
            raise SuiteUnavailable(f"pip could not download pyspf {version}'s source distribution (the RFC 7208 "
                                   f"test suite is in it), exit status {done.returncode}:\n"
                                   + (done.stderr or done.stdout).strip())
        sdists = sorted(Path(tmp).glob("pyspf-*.tar.gz"))
        if not sdists:
            raise SuiteUnavailable(f"pip downloaded no pyspf-{version}.tar.gz: {sorted(os.listdir(tmp))}")
        try:
            with tarfile.open(sdists[0]) as tar:
                member = next((m for m in tar.getmembers() if m.name.endswith("/" + SUITE_MEMBER)), None)
                handle = tar.extractfile(member) if member is not None else None
                if handle is None:
                    raise SuiteUnavailable(f"{sdists[0].name} has no {SUITE_MEMBER}")
                data = handle.read()
        except (tarfile.TarError, OSError) as err:
            raise SuiteUnavailable(f"cannot read {sdists[0].name}: {err}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(target)  # atomic: a concurrent run reads a whole file or none
    return target


@dataclass(frozen=True)
class Case:
    id: str
    scenario: int
    spec: str
    description: str
    host: str
    mailfrom: str
    helo: str
    results: tuple[str, ...]
    """The acceptable results, the preferred first."""

    @property
    def domain(self) -> str:
        """The domain whose record is evaluated: the MAIL FROM's, or the HELO name's without one."""
        return self.mailfrom.rpartition("@")[2] if self.mailfrom else self.helo

    @property
    def expects_permerror(self) -> bool:
        return self.results == ("permerror",)

    @property
    def expects_verdict(self) -> bool:
        """A well-formed record: pass, fail, softfail, neutral or none is the only outcome."""
        return "permerror" not in self.results and "temperror" not in self.results


@dataclass
class Scenario:
    index: int
    description: str
    zone: Zone
    cases: list[Case] = field(default_factory=list)
    timeouts: set[str] = field(default_factory=set)
    """Names the suite says time out: knotd answers them as it has them (NXDOMAIN when it has nothing)."""


def _text(value: object) -> str:
    """A TXT/SPF entry: one string, or several (joined, as RFC 7208 3.3 has receivers do)."""
    return "".join(value) if isinstance(value, list) else str(value)


def scenario_zone(zonedata: dict[str, list[object]]) -> tuple[Zone, set[str]]:
    zone, timeouts = Zone(), set()
    for name, entries in zonedata.items():
        txt = [e["TXT"] for e in entries if isinstance(e, dict) and "TXT" in e]
        spf = [e["SPF"] for e in entries if isinstance(e, dict) and "SPF" in e]
        for value in txt if txt else spf:  # SPF (type 99) entries stand for TXT only where there is no TXT
            if value != "NONE":
                zone.add(name, "TXT", _text(value))
        for entry in entries:
            if entry == "TIMEOUT" or not isinstance(entry, dict):
                timeouts.add(name.lower())
                continue
            for rtype, value in entry.items():
                if value == "TIMEOUT":
                    timeouts.add(name.lower())
                elif rtype == "MX":
                    preference, host = value  # type: ignore[misc]
                    zone.add(name, "MX", f"{preference} {str(host).rstrip('.')}")
                elif rtype in ("A", "AAAA", "PTR", "CNAME"):
                    zone.add(name, rtype, str(value).rstrip("."))
    return zone, timeouts


def load(path: Path) -> list[Scenario]:
    scenarios = []
    with path.open("rb") as handle:
        for index, doc in enumerate(yaml.safe_load_all(handle)):
            zone, timeouts = scenario_zone(doc.get("zonedata") or {})
            scenario = Scenario(index, str(doc.get("description", "")), zone, timeouts=timeouts)
            for case_id, test in doc["tests"].items():
                results = test["result"]
                scenario.cases.append(Case(
                    case_id, index, str(test.get("spec", "")), " ".join(str(test.get("description", "")).split()),
                    str(test["host"]), str(test.get("mailfrom") or ""), str(test.get("helo") or ""),
                    tuple(results) if isinstance(results, list) else (results,)))
            scenarios.append(scenario)
    return scenarios
