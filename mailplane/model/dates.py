"""What is wrong with a date someone typed, in words that lead to the fix.

YAML and the command line both take dates as ``YYYY-MM-DD``.  "Not a date" alone sends people
in a circle (quote it, unquote it), so every place that refuses a date explains which part is
wrong: the shape, the month, or the day of that month.
"""

from __future__ import annotations

import calendar
import datetime
import re

ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
"""A date-like shape, loose enough to recognise 2026-2-3 and 2026-13-12 as attempts at a date."""
QUOTES = "'\""


def date_problem(text: str) -> str | None:
    """Why ``text`` is not a ``YYYY-MM-DD`` date, or None when it is one."""
    match = ISO_DATE.fullmatch(text)
    if match is None:
        if len(text) > 1 and text[0] in QUOTES and text[-1] == text[0]:
            inner = date_problem(text[1:-1])
            return inner or "the quotes are part of the value: write the date without them"
        return "expected YYYY-MM-DD, e.g. 2026-12-01"
    year, month, day = (int(g) for g in match.groups())
    if not 1 <= month <= 12:
        return f"month {month} is not between 1 and 12"
    if year < 1:
        return "year 0 does not exist"
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        return f"day {day} is not between 1 and {last}: {calendar.month_name[month]} {year} has {last} days"
    if len(match.group(2)) != 2 or len(match.group(3)) != 2:
        return f"write month and day with two digits: {year:04d}-{month:02d}-{day:02d}"
    return None


def parse_iso_date(text: str) -> datetime.date:
    """``text`` as a date; ValueError carries :func:`date_problem`'s explanation."""
    problem = date_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} is not a date: {problem}")
    return datetime.date.fromisoformat(text)
