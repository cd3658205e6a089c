"""Dates people type, in YAML and on the command line: refused with the part that is wrong, never in a circle."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model.dates import date_problem, parse_iso_date

ROOT = Path(__file__).resolve().parents[2]


def _python_reads(text: str) -> bool:
    """The oracle: Python's own calendar, on the strict YYYY-MM-DD shape."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


@given(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99))
def test_a_date_is_refused_exactly_when_the_calendar_refuses_it(year: int, month: int, day: int) -> None:
    text = f"{year:04d}-{month:02d}-{day:02d}"
    assert (date_problem(text) is None) == _python_reads(text), text


@given(st.text(max_size=12))
def test_any_text_gets_an_answer(text: str) -> None:
    problem = date_problem(text)
    assert (problem is None) == _python_reads(text)
    if problem is not None:
        with pytest.raises(ValueError, match="is not a date: "):
            parse_iso_date(text)


@pytest.mark.parametrize(("text", "says"), [
    ("2026-13-12", "month 13 is not between 1 and 12"),
    ("2026-02-29", "day 29 is not between 1 and 28: February 2026 has 28 days"),
    ("2026-04-31", "April 2026 has 30 days"),
    ("2026-2-3", "write month and day with two digits: 2026-02-03"),
    ("'2026-12-12'", "the quotes are part of the value"),
    ('"2026-13-12"', "month 13"),
    ("12/01/2026", "expected YYYY-MM-DD"),
    ("20261201", "expected YYYY-MM-DD"),
])
def test_the_problem_names_the_part(text: str, says: str) -> None:
    assert says in (date_problem(text) or "")


def test_a_leap_day_is_a_date() -> None:
    assert date_problem("2028-02-29") is None


@pytest.mark.parametrize(("args", "flag"), [
    (["validate", "stacks/prod", "--date"], "--date"),
    (["warmup", "status", "stacks/prod", "--date"], "--date"),
    (["render", "stacks/prod", "--out", "/nonexistent", "--date"], "--date"),
    (["ip", "add", "stacks/prod", "initech", "203.0.113.99", "--host", "mta1", "--hostname", "o.initech.example.org",
      "--plan", "pmta-6w", "--started"], "--started"),
])
@pytest.mark.parametrize(("value", "says"), [
    ("2026-13-12", "month 13 is not between 1 and 12"),
    ("'2026-12-12'", "the quotes are part of the value"),
])
def test_date_options_say_what_is_wrong_and_exit_2(args: list[str], flag: str, value: str, says: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, [*args, value])
    assert result.exit_code == 2, result.output
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # the error box wraps at 80 columns
    assert f"Invalid value for {flag}" in flat and says in flat, flat
