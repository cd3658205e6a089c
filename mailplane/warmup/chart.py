"""A picture of the warmup forecast: each tenant's daily capacity, day by day, as SVG or PNG.

Two halves, like the rest of mailplane: ``chart_series`` is pure data (the same numbers as
``forecast``, so the picture can never disagree with ``mailplane warmup status``), and
``draw_chart`` turns a series into image bytes.  matplotlib is imported inside ``draw_chart`` only:
it takes most of a second to import, which no other command should pay.

The image is deterministic (the stack's rule for generated files): the same series gives the same
bytes, so a chart can be committed, diffed or attached to a pull request without noise.  SVG ids
come from a fixed ``svg.hashsalt``, and no file carries a creation date or a software version.
"""

from __future__ import annotations

import datetime
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mailplane.model.stack import Fleet
from mailplane.warmup.status import forecast

ImageFormat = Literal["svg", "png"]
Series = dict[str, list[tuple[datetime.date, int | None]]]
"""Tenant name to (day, daily capacity) for consecutive days; None means no cap that day."""

MAX_DEFAULT_DAYS = 120
"""The default span stops here even if an IP is still warming: a longer chart is unreadable."""
MIN_DEFAULT_DAYS = 14
"""A fleet that is already warm still gets two weeks, so the chart shows a line, not a dot."""
LOG_SCALE_RATIO = 100
"""Above two decades between the smallest and largest capacity a linear axis flattens day 1."""
DPI = 100
ONE_DAY = datetime.timedelta(days=1)
SVG_HASHSALT = "mailplane"
"""Any fixed value: matplotlib derives SVG element ids from it (default: random per run)."""


def chart_series(fleet: Fleet, start: datetime.date, days: int, tenant: str | None = None) -> Series:
    """Each tenant's (or one tenant's) daily capacity for ``days`` days from ``start`` (pure).

    The numbers are ``forecast``'s own: the chart draws exactly what the gates enforce.
    """
    return {
        t.name: [(c.date, c.daily) for c in forecast(fleet, t, start, days)]
        for t in fleet.tenants
        if tenant is None or t.name == tenant
    }


def default_days(fleet: Fleet, start: datetime.date, tenant: str | None = None) -> int:
    """Days from ``start`` through the day the last IP of the shown tenants is warm, within bounds.

    An IP is warm on day ``plan.length`` of its plan (``ip_status``), that is on
    ``started + length - 1``.  IPs without a plan are warm already and do not extend the chart.
    """
    last = start
    for ref in fleet.ips():
        plan = fleet.plan_for(ref.ip)
        if (tenant is None or ref.tenant.name == tenant) and ref.ip.warmup and plan:
            last = max(last, ref.ip.warmup.started + datetime.timedelta(days=plan.length - 1))
    return min(max((last - start).days + 1, MIN_DEFAULT_DAYS), MAX_DEFAULT_DAYS)


def uses_log_scale(series: Series, quotas: Mapping[str, int | None] | None = None) -> bool:
    """True when the positive values drawn span more than two decades (a factor over 100)."""
    values = [v for points in series.values() for _, v in points if v]
    values += [q for q in (quotas or {}).values() if q]
    return bool(values) and max(values) > LOG_SCALE_RATIO * min(values)


def _thousands(value: float, _position: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def draw_chart(
    series: Series,
    *,
    title: str,
    image_format: ImageFormat,
    quotas: Mapping[str, int | None] | None = None,
    width: int = 1200,
    height: int = 675,
) -> bytes:
    """Render ``series`` (one line per tenant) to SVG or PNG bytes of ``width`` x ``height`` pixels.

    Each tenant's line has the gid ``tenant-<name>`` and its daily quota, when it has one, a dashed
    line with the gid ``quota-<name>`` in the same colour: in the SVG they are ``<g id=...>``
    elements, which is how tests (and anyone styling the SVG) find them.  Days without a cap
    (an IP declared warm and no quota) are gaps in the line.
    """
    if image_format not in ("svg", "png"):
        raise ValueError(f"image format must be svg or png, not {image_format!r}")
    # Figure and FigureCanvasAgg directly, never pyplot: no global backend switch, no figure
    # registry to leak between calls, and it renders headless on any machine.
    import matplotlib
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    quotas = quotas or {}
    settings: dict[Any, Any] = {"svg.hashsalt": SVG_HASHSALT, "svg.fonttype": "none", "path.simplify": False}
    with matplotlib.rc_context(settings):
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        colours = matplotlib.colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
        for index, (tenant, points) in enumerate(series.items()):
            colour = colours[index % len(colours)]
            # A day's capacity holds from its midnight to the next: steps-post, closed by one more
            # point at the end of the last day, so the last day is as wide as the others.
            closed = [*points, (points[-1][0] + ONE_DAY, points[-1][1])] if points else []
            days: list[Any] = [day for day, _ in closed]  # matplotlib's date converter takes dates
            values = [math.nan if v is None else v for _, v in closed]
            label = tenant if any(v is not None for _, v in points) else f"{tenant} (no cap)"
            ax.plot(days, values, drawstyle="steps-post", color=colour, linewidth=2, label=label,
                    gid=f"tenant-{tenant}")
            quota = quotas.get(tenant)
            if quota is not None:
                ax.axhline(quota, color=colour, linestyle="--", linewidth=1.2,
                           label=f"{tenant} daily quota ({quota:,})", gid=f"quota-{tenant}")
        if uses_log_scale(series, quotas):
            ax.set_yscale("log", nonpositive="mask")
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel("messages per day (log scale)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_ylabel("messages per day")
        ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        all_days = [day for points in series.values() for day, _ in points]
        if all_days:
            ax.set_xlim(min(all_days), max(all_days) + ONE_DAY)  # type: ignore[arg-type]  # dates convert
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(title)
        if series:
            ax.legend(loc="best", fontsize="small")
        buffer = io.BytesIO()
        if image_format == "svg":
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        else:
            fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def chart_title(stack: str, start: datetime.date, days: int) -> str:
    """What the chart shows, from when: a picture pasted into a ticket has to say it itself."""
    end = start + datetime.timedelta(days=days - 1)
    return f"{stack}: tenant daily capacity, {start.isoformat()} to {end.isoformat()}"


def quotas_of(fleet: Fleet, tenants: Sequence[str]) -> dict[str, int | None]:
    """Each tenant's own ``daily_quota``: drawn dashed, the ceiling its line runs into."""
    return {name: fleet.tenant(name).daily_quota for name in tenants}
