"""Warmup plans and status: the numbers every gate (sender, PowerMTA) reads."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model.fleet import HoldThresholds, ScheduleStep
from mailplane.model.loader import load_stack
from mailplane.model.warmup_plans import PRESETS, WarmupPlan
from mailplane.warmup.status import forecast, ip_status, plan_day, tenant_capacity

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
D = datetime.date


def _plan(steps: list[tuple[int, int]], spread: int = 10) -> WarmupPlan:
    return WarmupPlan("t", tuple(ScheduleStep(day=d, daily=v) for d, v in steps), spread, HoldThresholds())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_never_decrease_and_start_on_day_one(name: str) -> None:
    plan = PRESETS[name]
    days = [s.day for s in plan.steps]
    assert days == list(range(1, len(days) + 1))
    dailies = [s.daily for s in plan.steps]
    assert dailies == sorted(dailies)


def test_ses_preset_reaches_50000_on_day_45_by_steady_growth() -> None:
    plan = PRESETS["ses-45d"]
    assert (plan.length, plan.daily_cap(1), plan.daily_cap(45)) == (45, 50, 50_000)
    ratios = [plan.daily_cap(d + 1) / plan.daily_cap(d) for d in range(1, 45)]
    assert all(1.05 < r < 1.3 for r in ratios)


def test_sparkpost_preset_is_the_published_table() -> None:
    plan = PRESETS["sparkpost-30d"]
    published = {1: 200, 2: 500, 3: 1_000, 9: 50_000, 15: 325_000, 20: 1_000_000, 29: 10_000_000}
    assert {d: plan.daily_cap(d) for d in published} == published
    assert plan.length == 29


def test_six_week_preset_goes_from_about_50_to_10000() -> None:
    plan = PRESETS["pmta-6w"]
    assert plan.length == 42
    assert plan.daily_cap(1) == 50 and plan.daily_cap(42) == 10_000


def test_step_function_carries_caps_between_listed_days_and_after_the_end() -> None:
    plan = _plan([(1, 50), (3, 200), (10, 1000)])
    assert [plan.daily_cap(d) for d in (0, 1, 2, 3, 9, 10, 11, 400)] == [0, 50, 50, 200, 200, 1000, 1000, 1000]


def test_hourly_ceiling_spreads_the_day_unless_a_step_sets_it() -> None:
    plan = _plan([(1, 55)], spread=10)
    assert plan.hourly_cap(1) == math.ceil(55 / 10)
    explicit = WarmupPlan("x", (ScheduleStep(day=1, daily=100, hourly=40),), 10, HoldThresholds())
    assert explicit.hourly_cap(1) == 40
    assert plan.hourly_cap(0) == 0


def test_plan_day_counts_from_one_and_holds_freeze_it() -> None:
    assert plan_day(D(2026, 11, 2), D(2026, 11, 2)) == 1
    assert plan_day(D(2026, 11, 2), D(2026, 11, 25)) == 24
    assert plan_day(D(2026, 11, 2), D(2026, 11, 25), held_days=4) == 20
    assert plan_day(D(2026, 11, 2), D(2026, 11, 1)) == 0


def test_ip_status_through_the_life_of_a_plan() -> None:
    fleet = load_stack(PROD)
    tenant = fleet.tenant("sos-expat")
    ip = tenant.ips[0]  # standard-45d from 2026-11-02
    plan = fleet.plan_for(ip)
    assert plan is not None and plan.name == "standard-45d"
    before = ip_status(tenant, ip, plan, D(2026, 11, 1))
    assert (before.state, before.day, before.daily_cap) == ("scheduled", 0, 0)
    during = ip_status(tenant, ip, plan, D(2026, 11, 25))
    assert (during.state, during.day) == ("warming", 24)
    assert during.daily_cap == PRESETS["ses-45d"].daily_cap(24)
    assert during.hourly_cap == math.ceil(during.daily_cap / 24)
    after = ip_status(tenant, ip, plan, D(2027, 3, 1))
    assert (after.state, after.daily_cap) == ("warm", 50_000)


def test_stack_plan_inherits_the_preset_schedule_with_its_own_thresholds() -> None:
    fleet = load_stack(PROD)
    plan = fleet.plans["standard-45d"]
    assert plan.steps == PRESETS["ses-45d"].steps
    assert plan.hold_when.bounce_rate == 0.04


def test_tenant_capacity_is_the_sum_of_its_ips_within_its_quota() -> None:
    fleet = load_stack(PROD)
    tenant = fleet.tenant("sos-expat")
    on = D(2026, 11, 25)
    caps = [ip_status(tenant, ip, fleet.plan_for(ip), on).daily_cap for ip in tenant.ips]
    capacity = tenant_capacity(fleet, tenant, on)
    assert capacity.ip_daily == sum(caps)
    assert capacity.daily == min(sum(caps), 40_000)
    late = tenant_capacity(fleet, tenant, D(2027, 6, 1))
    assert late.ip_daily is not None and late.ip_daily > 40_000 and late.daily == 40_000


def test_forecast_covers_each_day_and_never_falls() -> None:
    fleet = load_stack(PROD)
    for tenant in fleet.tenants:
        days = forecast(fleet, tenant, D(2026, 11, 25), 60)
        assert [c.date for c in days] == [D(2026, 11, 25) + datetime.timedelta(days=i) for i in range(60)]
        dailies = [c.daily or 0 for c in days]
        assert dailies == sorted(dailies)


def test_warmup_status_json_matches_the_library() -> None:
    result = CliRunner().invoke(app, ["warmup", "status", str(PROD), "--date", "2026-11-25",
                                      "--format", "json", "--tenant", "initech"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {ip["tenant"] for ip in data["ips"]} == {"initech"}
    fleet = load_stack(PROD)
    tenant = fleet.tenant("initech")
    by_address = {ip["address"]: ip for ip in data["ips"]}
    for ip in tenant.ips:
        expected = ip_status(tenant, ip, fleet.plan_for(ip), D(2026, 11, 25))
        assert by_address[ip.address]["daily_cap"] == expected.daily_cap
        assert by_address[ip.address]["day"] == expected.day
    today = data["tenants"][0]["today"]
    assert today["daily"] == tenant_capacity(fleet, tenant, D(2026, 11, 25)).daily


def test_warmup_status_text_lists_every_ip() -> None:
    result = CliRunner().invoke(app, ["warmup", "status", str(PROD), "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    fleet = load_stack(PROD)
    for ref in fleet.ips():
        assert ref.ip.address in result.stdout
    assert "Tenant daily capacity" in result.stdout


def test_warmup_status_uses_a_rich_table_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailplane.cli import common

    monkeypatch.setattr(common, "is_terminal", lambda: True)
    result = CliRunner().invoke(app, ["warmup", "status", str(PROD), "--date", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "IP warmup on 2026-11-25" in result.stdout
    assert any(ch in result.stdout for ch in "┃│┏━")


@pytest.mark.parametrize("args", [["--date", "2026-13-01"], ["--tenant", "nobody"], ["--format", "xml"]])
def test_warmup_status_rejects_bad_options(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["warmup", "status", str(PROD), *args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
