"""``mailplane warmup chart``: the forecast as a picture, with forecast's numbers, byte for byte stable."""

from __future__ import annotations

import datetime
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model.loader import load_stack
from mailplane.warmup.chart import (
    MAX_DEFAULT_DAYS,
    MIN_DEFAULT_DAYS,
    chart_series,
    default_days,
    draw_chart,
    uses_log_scale,
)
from mailplane.warmup.status import forecast

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
DEV = ROOT / "stacks" / "dev"
D = datetime.date
START = D(2026, 11, 20)
SVG_NS = "{http://www.w3.org/2000/svg}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


def _chart(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["warmup", "chart", *args])
    return result.exit_code, result.output


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _group_ids(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    return [el.get("id", "") for el in root.iter(f"{SVG_NS}g")]


def _legend_labels(svg: bytes) -> list[str]:
    """Legend entries, in order: real text in the SVG (``svg.fonttype`` none), under the legend's group."""
    legend = next(el for el in ET.fromstring(svg).iter(f"{SVG_NS}g") if el.get("id", "").startswith("legend"))
    return [el.text or "" for el in legend.iter(f"{SVG_NS}text")]


# -- the data ---------------------------------------------------------------------------------


def test_series_are_forecast_values_for_every_tenant() -> None:
    fleet = load_stack(PROD)
    series = chart_series(fleet, START, 30)
    assert list(series) == [t.name for t in fleet.tenants]
    for tenant in fleet.tenants:
        expected = [(c.date, c.daily) for c in forecast(fleet, tenant, START, 30)]
        assert series[tenant.name] == expected
    assert [day for day, _ in series["globex"]] == [START + datetime.timedelta(days=i) for i in range(30)]


def test_series_of_one_tenant_and_quota_is_applied() -> None:
    fleet = load_stack(PROD)
    series = chart_series(fleet, START, 120, tenant="sos-expat")
    assert list(series) == ["sos-expat"]
    dailies = [v for _, v in series["sos-expat"]]
    assert max(v for v in dailies if v is not None) == fleet.tenant("sos-expat").daily_quota == 40_000


def test_default_span_runs_until_the_last_ip_is_warm() -> None:
    fleet = load_stack(PROD)
    # The last IP to get warm: initech's 192.0.2.42, pmta-6w (42 days) from 2026-12-01 -> warm 2027-01-11.
    last_warm = D(2027, 1, 11)
    assert default_days(fleet, START) == (last_warm - START).days + 1
    # globex alone: sparkpost-30d from 2026-10-12 (warm 11-08) and pmta-6w from 11-23 (warm 2027-01-03).
    assert default_days(fleet, START, "globex") == (D(2027, 1, 3) - START).days + 1


def test_default_span_has_a_floor_and_a_ceiling() -> None:
    fleet = load_stack(PROD)
    assert default_days(fleet, D(2030, 1, 1)) == MIN_DEFAULT_DAYS  # everything warm long ago
    assert default_days(fleet, D(2020, 1, 1)) == MAX_DEFAULT_DAYS  # years before any plan ends


def test_log_scale_only_beyond_two_decades() -> None:
    day = START
    assert not uses_log_scale({"a": [(day, 50), (day, 5000)]})
    assert uses_log_scale({"a": [(day, 50), (day, 5001)]})
    assert not uses_log_scale({"a": [(day, 0), (day, None), (day, 5000)]})  # zero and no-cap are not drawn
    assert uses_log_scale({"a": [(day, 50)]}, quotas={"a": 50_000})
    assert not uses_log_scale({})


# -- the drawing ------------------------------------------------------------------------------


def test_svg_is_valid_and_has_one_line_per_tenant_and_a_quota_line() -> None:
    fleet = load_stack(PROD)
    series = chart_series(fleet, START, 40)
    svg = draw_chart(series, title="t", image_format="svg", quotas={"sos-expat": 40_000})
    assert ET.fromstring(svg).tag == f"{SVG_NS}svg"
    ids = _group_ids(svg)
    assert sorted(i for i in ids if i.startswith("tenant-")) == ["tenant-globex", "tenant-initech", "tenant-sos-expat"]
    assert [i for i in ids if i.startswith("quota-")] == ["quota-sos-expat"]
    assert _legend_labels(svg) == ["globex", "initech", "sos-expat", "sos-expat daily quota (40,000)"]


def test_png_has_the_requested_size() -> None:
    series = chart_series(load_stack(DEV), START, 20)
    png = draw_chart(series, title="t", image_format="png", width=640, height=360)
    assert _png_size(png) == (640, 360)


def test_draw_refuses_other_formats() -> None:
    with pytest.raises(ValueError, match="svg or png"):
        draw_chart({}, title="t", image_format="pdf")  # type: ignore[arg-type]


def test_a_tenant_without_any_cap_is_drawn_as_a_labelled_gap() -> None:
    svg = draw_chart({"free": [(START, None), (START + datetime.timedelta(days=1), None)]}, title="t",
                     image_format="svg")
    assert "tenant-free" in _group_ids(svg)
    assert _legend_labels(svg) == ["free (no cap)"]


# -- the command ------------------------------------------------------------------------------


def test_command_writes_svg_and_png(tmp_path: Path) -> None:
    svg_path, png_path = tmp_path / "out" / "prod.svg", tmp_path / "prod.PNG"
    code, output = _chart(str(PROD), "--out", str(svg_path), "--date", "2026-11-20")
    assert code == 0, output
    assert "3 tenants, 53 days from 2026-11-20" in output
    root = ET.fromstring(svg_path.read_bytes())
    assert root.tag == f"{SVG_NS}svg"
    assert "prod: tenant daily capacity, 2026-11-20 to 2027-01-11" in svg_path.read_text()
    code, output = _chart(str(PROD), "--out", str(png_path), "--date", "2026-11-20", "--width", "800",
                          "--height", "450", "--tenant", "initech", "--days", "10")
    assert code == 0, output
    assert _png_size(png_path.read_bytes()) == (800, 450)


def test_command_shows_only_the_asked_tenant(tmp_path: Path) -> None:
    out = tmp_path / "c.svg"
    code, output = _chart(str(PROD), "--out", str(out), "--date", "2026-11-20", "--tenant", "globex")
    assert code == 0, output
    ids = [i for i in _group_ids(out.read_bytes()) if i.startswith(("tenant-", "quota-"))]
    assert ids == ["tenant-globex"]
    assert _legend_labels(out.read_bytes()) == ["globex"]


@pytest.mark.parametrize("suffix", ["svg", "png"])
def test_same_fleet_and_date_give_the_same_bytes(tmp_path: Path, suffix: str) -> None:
    """Twice in this process and once in a fresh one (another hash seed): byte-identical files."""
    paths = [tmp_path / f"{n}.{suffix}" for n in ("a", "b", "c")]
    for path in paths[:2]:
        code, output = _chart(str(PROD), "--out", str(path), "--date", "2026-11-20")
        assert code == 0, output
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", "from mailplane.cli import main; main()", "warmup", "chart", str(PROD),
                    "--out", str(paths[2]), "--date", "2026-11-20"], check=True, env=env, capture_output=True)
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])


def test_another_date_gives_another_picture(tmp_path: Path) -> None:
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    assert _chart(str(PROD), "--out", str(a), "--date", "2026-11-20")[0] == 0
    assert _chart(str(PROD), "--out", str(b), "--date", "2026-11-21")[0] == 0
    assert a.read_bytes() != b.read_bytes()


@pytest.mark.parametrize("name", ["chart.pdf", "chart", "chart.svg.txt"])
def test_unknown_extension_is_a_usage_error(tmp_path: Path, name: str) -> None:
    code, output = _chart(str(PROD), "--out", str(tmp_path / name))
    assert code == 2
    assert ".svg or .png" in output
    assert list(tmp_path.iterdir()) == []


def test_unknown_tenant_is_a_usage_error(tmp_path: Path) -> None:
    code, output = _chart(str(PROD), "--out", str(tmp_path / "c.svg"), "--tenant", "nobody")
    assert code == 2 and "no tenant 'nobody'" in output
    assert list(tmp_path.iterdir()) == []


def test_invalid_stack_exits_1_with_located_errors_and_writes_nothing(
    tmp_path: Path, stack_copy: Callable[[str], Path]
) -> None:
    stack = stack_copy("prod")
    tenant_file = stack / "tenants" / "globex.yaml"
    tenant_file.write_text(tenant_file.read_text().replace("host: mta2", "host: mta9"), encoding="utf-8")
    out = tmp_path / "charts" / "c.png"
    existing = tmp_path / "old.svg"
    existing.write_bytes(b"<svg/>")
    for target in (out, existing):
        code, output = _chart(str(stack), "--out", str(target), "--date", "2026-11-20")
        assert code == 1
        assert "globex.yaml:" in output and "mta9" in output
    assert not out.exists() and not out.parent.exists()
    assert existing.read_bytes() == b"<svg/>"


def test_other_commands_do_not_import_matplotlib() -> None:
    code = "import sys, mailplane.cli; assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
