"""The sender's alert rules and Grafana dashboard, judged by promtool (Debian's ``prometheus`` package) and
against the metrics a real sender exposes: a renamed metric, a PromQL mistake or an alert that stops
firing fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mailplane.model.loader import load_stack
from mailplane.sender.config import AwsSettings, SenderConfig
from mailplane.sender.service import Service

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "mailplane-sender.rules.yml"
RULE_TESTS = ROOT / "monitoring" / "prometheus" / "mailplane-sender.test.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "mailplane-sender.json"
PROMQL_FUNCTIONS = {"max", "sum", "rate", "increase", "histogram_quantile", "by", "on", "and", "up"}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make test` installs Debian's prometheus package (tools/system-deps)"
    return found


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a sender's /metrics can carry (histograms and counters with their suffixes)."""
    folder = tmp_path_factory.mktemp("metrics")
    config = SenderConfig(database_url=f"sqlite:///{folder / 'q.db'}", aws=AwsSettings(account_id="123456789012"),
                          unsubscribe_keys=["k" * 32])
    service = Service(load_stack(ROOT / "stacks" / "prod"), config, stack_name="prod")
    try:
        # one sample of each labelled counter, so the families list their sample names
        service.metrics.sent.labels("acme", "pmta").inc()
        service.metrics.failed.labels("acme", "pmta").inc()
        service.metrics.accepted.labels("acme", "marketing").inc()
        service.metrics.suppressed.labels("acme", "hard_bounce").inc()
        service.metrics.sns_rejected.labels("bad-signature").inc()
        service.metrics.latency.labels("pmta").observe(1.0)
        from prometheus_client import generate_latest

        text = generate_latest(service.metrics.registry).decode()
    finally:
        service.close()
    names = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    families = {family.name for family in text_string_to_metric_families(text)}
    return names | families | {"up"}


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that name series (not functions, keywords or labels)."""
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    without_groupings = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", "", without_labels)
    return {name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_groupings)
            if name not in PROMQL_FUNCTIONS and not name.isdigit() and name.startswith(("mailplane_", "up"))}


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    done = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                          cwd=RULE_TESTS.parent, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert tested == alerts  # every alert has a test


def test_a_broken_alert_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: with the guard's threshold at 90 % instead of 80 %, acme's 2.6 % of 3 % stays quiet."""
    rules = RULES.read_text().replace("> 0.8 * max by (tenant, kind)", "> 0.9 * max by (tenant, kind)")
    assert rules != RULES.read_text()
    (tmp_path / RULES.name).write_text(rules)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    done = subprocess.run([promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert done.returncode != 0 and "MailplaneTenantNearGuardThreshold" in done.stdout + done.stderr


def test_every_series_the_rules_and_the_dashboard_read_is_one_the_sender_exposes(exposed: set[str]) -> None:
    exprs = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    exprs += [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - exposed == set()
    assert {"mailplane_sender_queue_oldest_seconds", "mailplane_sender_ip_remaining", "mailplane_sender_paused",
            "mailplane_sender_tenant_rate", "mailplane_sender_ses_sent_today"} <= used


def test_the_dashboards_queries_are_promql_promtool_accepts(tmp_path: Path) -> None:
    """Each panel's query as a recording rule: promtool parses it as Prometheus would."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mailplane-sender" and dashboard["templating"]["list"][0]["type"] == "datasource"
    records = [{"record": f"mailplane:panel{panel['id']}_{target['refId'].lower()}", "expr": target["expr"]}
               for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(records) >= 12
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": records}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_new_gauges_read_the_shared_database(tmp_path: Path) -> None:
    """The oldest queued message's age, a tenant's rates against its thresholds and the SES quota, as scraped."""
    from prometheus_client import generate_latest

    from mailplane.sender.core.messages import NewMessage

    now = [1_764_000_000.0]
    config = SenderConfig(database_url=f"sqlite:///{tmp_path / 'q.db'}", aws=AwsSettings(account_id="123456789012"),
                          unsubscribe_keys=["k" * 32])
    service = Service(load_stack(ROOT / "stacks" / "prod"), config, stack_name="prod", clock=lambda: now[0])
    try:
        service.store.clock = lambda: now[0]
        service.store.enqueue([NewMessage("sos-expat", "app", "transactional", "no-reply@mail1.example.com",
                                          "a@example.org")])
        service.store.outcomes.record("sos-expat", "203.0.113.21", {"sent": 400, "bounced": 10, "complained": 1})
        now[0] += 5400
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(generate_latest(service.metrics.registry).decode())
                   for s in family.samples}
    finally:
        service.close()
    assert samples[("mailplane_sender_queue_oldest_seconds", ())] == 5400
    assert samples[("mailplane_sender_tenant_window_sent", (("tenant", "sos-expat"),))] == 400
    assert samples[("mailplane_sender_tenant_rate", (("kind", "bounce"), ("tenant", "sos-expat")))] == 10 / 400
    assert samples[("mailplane_sender_tenant_rate", (("kind", "complaint"), ("tenant", "sos-expat")))] == 1 / 400
    assert samples[("mailplane_sender_tenant_rate_threshold", (("kind", "bounce"), ("tenant", "sos-expat")))] == 0.03
    assert samples[("mailplane_sender_ses_daily_quota", ())] == 50000
