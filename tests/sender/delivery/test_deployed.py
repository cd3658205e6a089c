"""The deployed record: what roles/powermta says PowerMTA runs, and how the sender's gates read it."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from mailplane.model.loader import load_stack
from mailplane.model.names import vmta_name
from mailplane.mta.deployed import MAX_BYTES, DeployedRecordError, dumps, parse, record
from mailplane.mta.providers import UNROUTED_VMTA
from mailplane.mta.render import render_vars
from mailplane.mta.view import host_view
from mailplane.sender.config import AwsSettings, SenderConfig
from mailplane.sender.core.gates import NOT_DEPLOYED, Ask, Granted, IpGate, Locked, RoutePlan, SesLimits, decide_one
from mailplane.sender.delivery.deployed import UNKNOWN, DeployedConfigs
from mailplane.sender.service import mismatches

ROOT = Path(__file__).resolve().parents[3]
DAY = datetime.date(2026, 11, 25)


@pytest.fixture(scope="module")
def prod_record() -> dict[str, object]:
    return record(host_view(load_stack(ROOT / "stacks" / "prod"), "mta1", DAY).to_vars())


def test_the_record_names_exactly_the_vmtas_and_keys_of_the_rendered_config(prod_record: dict[str, object]) -> None:
    """Read back from the config TEXT: the record may not claim a VMTA or a key PowerMTA would not load."""
    import re

    text = render_vars(host_view(load_stack(ROOT / "stacks" / "prod"), "mta1", DAY).to_vars())
    deployed = parse(dumps(prod_record))
    vmtas = [v for v in re.findall(r"^<virtual-mta (\S+)>", text, re.M) if v != UNROUTED_VMTA]
    assert sorted(deployed.vmtas) == sorted(vmtas) and vmtas
    for block in re.findall(r"^<virtual-mta (\S+)>\n(.*?)^</virtual-mta>", text, re.M | re.S):
        if block[0] == UNROUTED_VMTA:  # the sink of mail naming no VMTA: never named by the sender
            continue
        keys = set(re.findall(r"domain-key \S+?,\s*(\S+?),", block[1]))
        assert deployed.vmtas[block[0]] == keys
    assert dumps(prod_record) == dumps(json.loads(dumps(prod_record))), "deterministic"


@pytest.mark.parametrize(("text", "says"), [
    ("", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"format": 2, "stack": "prod", "host": "mta1", "vmtas": {}}', "format 2"),
    ('{"format": 1, "stack": 3, "host": "mta1", "vmtas": {}}', "stack and host must be text"),
    ('{"format": 1, "stack": "prod", "host": "mta1", "vmtas": []}', "vmtas must be an object"),
    ('{"format": 1, "stack": "prod", "host": "mta1", "vmtas": {"a": {"dkim_domains": "x.example"}}}',
     "vmtas.a.dkim_domains must be a list"),
    (b"\xff\xfe{", "not JSON"),
    (" " * (MAX_BYTES + 1), "larger than"),
])
def test_a_bad_record_is_refused_with_what_is_wrong(text: str | bytes, says: str) -> None:
    with pytest.raises(DeployedRecordError, match=says):
        parse(text)


def test_a_subdomain_is_signed_by_its_parents_key() -> None:
    deployed = parse('{"format": 1, "stack": "s", "host": "h", "vmtas": {"v": {"dkim_domains": ["Example.COM."]}}}')
    assert deployed.signs("v", "example.com") and deployed.signs("v", "news.example.com")
    assert not deployed.signs("v", "badexample.com") and not deployed.signs("w", "example.com")


def _write(path: Path, vmtas: dict[str, list[str]], *, host: str = "mta1", stack: str = "prod") -> None:
    data = {"format": 1, "stack": stack, "host": host,
            "vmtas": {name: {"address": "192.0.2.1", "dkim_domains": d} for name, d in vmtas.items()}}
    path.write_text(json.dumps(data))


def test_deployed_configs_follow_the_file_and_keep_the_last_good_record(tmp_path: Path) -> None:
    path = tmp_path / "deployed.json"
    configs = DeployedConfigs({"mta1": str(path)}, "prod")
    assert configs.about("mta2", "x") == UNKNOWN, "a host without a record is not judged"
    missing = configs.about("mta1", "acme-1")
    assert missing.missing is not None and "no record at" in missing.missing

    _write(path, {"acme-1": ["acme.example.com"]})
    assert configs.about("mta1", "acme-1").domains == frozenset({"acme.example.com"})
    new = configs.about("mta1", "acme-2").missing
    assert new is not None and "acme-2 is not in the config PowerMTA runs on mta1" in new

    _write(path, {"acme-1": ["acme.example.com"], "acme-2": ["acme.example.com"]})
    os.utime(path, ns=(1, 2))  # a rewrite in the same instant as the first is still seen (size, inode, time)
    assert configs.about("mta1", "acme-2").missing is None

    path.write_text('{"format": 1, "stack": "prod"')  # half written
    assert configs.about("mta1", "acme-2").missing is None, "the last good record stays in force"
    _write(path, {"acme-3": []}, host="mta2")
    assert configs.about("mta1", "acme-2").missing is None, "another host's record is not this host's"

    fresh = DeployedConfigs({"mta1": str(path)}, "prod")
    refused = fresh.about("mta1", "acme-3").missing
    assert refused is not None and "record of host mta2" in refused


def _locked(*addresses: str) -> Locked:
    from collections import defaultdict

    return Locked(now=0.0, day=DAY, hour=0, daily=defaultdict(int), hourly=defaultdict(int), held=frozenset({1}))


def test_the_gates_pass_over_an_ip_powermta_cannot_take_and_say_why() -> None:
    ses = SesLimits("eu-west-1", 100)
    missing = IpGate("192.0.2.1", 10, 10, missing="VMTA acme-1 is not in the config PowerMTA runs on mta1")
    unsigned = IpGate("192.0.2.2", 10, 10, signs=frozenset({"other.example.com"}))
    ready = IpGate("192.0.2.3", 10, 10, signs=frozenset({"example.com"}))

    plan = RoutePlan("acme", None, (missing, unsigned, ready))
    granted = decide_one(Ask(1, plan, from_domain="mail.example.com"), _locked(), ses)
    assert isinstance(granted, Granted) and granted.ip == "192.0.2.3" and granted.vmta == vmta_name("acme",
                                                                                                   "192.0.2.3")
    for gates, why in (((missing,), "acme-1 is not in the config"), ((unsigned,), "without a DKIM key for")):
        deferred = decide_one(Ask(1, RoutePlan("acme", None, gates), from_domain="mail.example.com"), _locked(), ses)
        assert not isinstance(deferred, Granted)
        assert deferred.reason.startswith(NOT_DEPLOYED) and why in deferred.reason  # type: ignore[union-attr]
        assert deferred.until == 60.0  # type: ignore[union-attr]


def test_a_record_for_a_host_the_stack_lacks_stops_the_start() -> None:
    fleet = load_stack(ROOT / "stacks" / "prod")
    config = SenderConfig(aws=AwsSettings(account_id="123456789012"), unsubscribe_keys=["k" * 32],
                          deployed_records={"mta9": "/etc/pmta/mailplane-deployed.json"})
    assert mismatches(fleet, config) == ["deployed_records: 'mta9' is not an MTA host of stack prod"]


def test_a_host_without_a_record_keeps_todays_behaviour_with_a_warning_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from mailplane.sender.service import Service

    fleet = load_stack(ROOT / "stacks" / "prod")
    config = SenderConfig(database_url=f"sqlite:///{tmp_path / 'q.db'}", aws=AwsSettings(account_id="123456789012"),
                          unsubscribe_keys=["k" * 32], mta_hosts=["mta1", "mta2"],
                          deployed_records={"mta1": str(tmp_path / "none.json")})
    with caplog.at_level("WARNING", logger="mailplane.sender.service"):
        service = Service(fleet, config, stack_name="prod")
    try:
        warned = [r.getMessage() for r in caplog.records if "no deployed record" in r.getMessage()]
        assert warned == ["no deployed record for MTA host mta2 (deployed_records): its VMTAs are named as the "
                          "fleet says, without knowing that PowerMTA there has them"]
        tenant = next(t for t in fleet.tenants if any(ip.host == "mta2" for ip in t.ips))
        ip = next(ip for ip in tenant.ips if ip.host == "mta2")
        assert service.pacer.ip_gate(tenant, ip, DAY).missing is None
    finally:
        service.close()
