"""``mailplane warmup``: ``status`` (each IP's plan day and caps, each tenant's capacity and forecast)
and ``chart`` (the forecast as an SVG or PNG picture)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from mailplane.cli import common
from mailplane.cli.common import StackDir, check_tenant_option, load_or_exit, parse_date, require, usage_error
from mailplane.files import write_atomic
from mailplane.model.stack import Fleet
from mailplane.warmup.status import IpStatus, TenantCapacity, fleet_ip_status, forecast

warmup_app = typer.Typer(help="Warmup plans and where each IP stands.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(warmup_app, name="warmup")


Format = Literal["text", "json"]
FORECAST_DAYS = (0, 7, 14, 30, 45)


def _num(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def status_data(fleet: Fleet, on: datetime.date, tenant: str | None, days: int) -> dict[str, Any]:
    tenants = [t for t in fleet.tenants if tenant is None or t.name == tenant]
    ips = fleet_ip_status(fleet, on, tenant)

    def cap(c: TenantCapacity) -> dict[str, Any]:
        return {"date": c.date.isoformat(), "daily": c.daily, "hourly": c.hourly, "ip_daily": c.ip_daily}

    return {
        "stack": fleet.stack,
        "date": on.isoformat(),
        "ips": [{"address": s.address, "tenant": s.tenant, "host": s.host, "plan": s.plan,
                 "started": s.started.isoformat() if s.started else None, "day": s.day,
                 "daily_cap": s.daily_cap, "hourly_cap": s.hourly_cap, "state": s.state} for s in ips],
        "tenants": [{"tenant": t.name, "today": cap(fc[0]), "forecast": [cap(c) for c in fc]}
                    for t in tenants for fc in [forecast(fleet, t, on, days)]],
    }


def _print_rich(fleet: Fleet, on: datetime.date, ips: list[IpStatus], data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{fleet.stack}: IP warmup on {on.isoformat()}")
    for column in ("tenant", "ip", "host", "plan", "day", "daily cap", "hourly cap", "state"):
        table.add_column(column, justify="right" if "cap" in column or column == "day" else "left")
    for s in ips:
        table.add_row(s.tenant, s.address, s.host, s.plan or "-", str(s.day),
                      _num(s.daily_cap), _num(s.hourly_cap), s.state)
    console.print(table)
    cap_table = Table(title="Tenant daily capacity")
    cap_table.add_column("tenant")
    for offset in FORECAST_DAYS:
        cap_table.add_column("today" if offset == 0 else f"+{offset}d", justify="right")
    for t in data["tenants"]:
        row = [t["forecast"][o]["daily"] for o in FORECAST_DAYS if o < len(t["forecast"])]
        cap_table.add_row(t["tenant"], *(_num(v) for v in row))
    console.print(cap_table)


def _print_text(on: datetime.date, ips: list[IpStatus], data: dict[str, Any]) -> None:
    print(f"IP warmup on {on.isoformat()}")
    rows = [("tenant", "ip", "host", "plan", "day", "daily", "hourly", "state")]
    rows += [(s.tenant, s.address, s.host, s.plan or "-", str(s.day), _num(s.daily_cap),
              _num(s.hourly_cap), s.state) for s in ips]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i < 4 or i == 7 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    print()
    print("Tenant daily capacity: " + ", ".join("today" if o == 0 else f"+{o}d" for o in FORECAST_DAYS))
    for t in data["tenants"]:
        values = [_num(t["forecast"][o]["daily"]) for o in FORECAST_DAYS if o < len(t["forecast"])]
        print(f"  {t['tenant']}: " + "  ".join(values))


@warmup_app.command()
def status(
    stack_dir: StackDir,
    date: Annotated[str | None, typer.Option("--date", help="Day to report (YYYY-MM-DD); default today.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    output: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="Forecast length in days.")] = 46,
) -> None:
    """Per IP: plan day, daily cap and hourly ceiling; per tenant: capacity today and ahead."""
    if output not in ("text", "json"):
        usage_error(f"--format must be text or json, not {output!r}")
    on = parse_date(date)
    fleet = load_or_exit(stack_dir)
    check_tenant_option(fleet, tenant, stack_dir)
    data = status_data(fleet, on, tenant, days)
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
        return
    ips = fleet_ip_status(fleet, on, tenant)
    if common.is_terminal():
        _print_rich(fleet, on, ips, data)
    else:
        _print_text(on, ips, data)


CHART_FORMATS: dict[str, Literal["svg", "png"]] = {".svg": "svg", ".png": "png"}


@warmup_app.command()
def chart(
    stack_dir: StackDir,
    out: Annotated[Path, typer.Option("--out", help="Image to write: FILE.svg or FILE.png.", show_default=False)],
    date: Annotated[str | None, typer.Option("--date", help="First day (YYYY-MM-DD); default today.")] = None,
    days: Annotated[int | None, typer.Option(
        "--days", min=1, max=366, show_default=False,
        help="Days to draw; default until every IP shown is warm (at least 14, at most 120).")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.")] = None,
    width: Annotated[int, typer.Option("--width", min=200, max=8000, help="Image width in pixels.")] = 1200,
    height: Annotated[int, typer.Option("--height", min=150, max=8000, help="Image height in pixels.")] = 675,
) -> None:
    """Draw each tenant's daily capacity over its warmup plans (one line per tenant) to OUT.

    The same fleet and date give the same bytes; the file is replaced atomically; a stack with errors writes nothing.
    """
    image_format = CHART_FORMATS.get(out.suffix.lower())
    if image_format is None:
        usage_error(f"--out must end in .svg or .png, not {out.name!r}")
    start = parse_date(date)
    fleet = load_or_exit(stack_dir)
    check_tenant_option(fleet, tenant, stack_dir)
    # matplotlib loads here only: `warmup status` and every other command stay fast.
    require("chart", "warmup chart")
    from mailplane.warmup import chart as charts

    span = days if days is not None else charts.default_days(fleet, start, tenant)
    series = charts.chart_series(fleet, start, span, tenant)
    image = charts.draw_chart(series, title=charts.chart_title(fleet.stack, start, span), image_format=image_format,
                              quotas=charts.quotas_of(fleet, list(series)), width=width, height=height)
    write_atomic(out, image)
    print(f"wrote {out}: {len(series)} tenant{'s' if len(series) != 1 else ''}, {span} days from {start.isoformat()}")
