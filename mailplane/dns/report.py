"""Results of ``mailplane dns check`` and their formats: a table on a terminal, plain lines, JSON.

Exit status (the worst result decides): 0 when every result is ok, skip or warn; 1 when one is
fail (DNS says something wrong) or error (DNS could not be asked: timeout, SERVFAIL); 2 is the
CLI's usage error.  Warnings are printed but do not fail a run: they flag a difference that
still works (a stricter DMARC policy than the fleet's, an extra SPF term).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any


class Status(StrEnum):
    OK = "ok"
    SKIP = "skip"
    """Nothing to compare with (no stack outputs, no single SPF record to evaluate): not a failure."""
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    """DNS gave no usable answer: the check could not run."""


RANK = {status: rank for rank, status in enumerate(Status)}
EXIT_OK, EXIT_FAILED = 0, 1


@dataclass(frozen=True)
class Result:
    """One verdict about one DNS name, for one domain or one IP (the other is None)."""

    tenant: str
    domain: str | None
    ip: str | None
    check: str
    name: str
    """The DNS name looked at."""
    status: Status
    message: str

    @property
    def subject(self) -> str:
        return self.domain or self.ip or ""

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "domain": self.domain, "ip": self.ip, "check": self.check,
                "name": self.name, "status": str(self.status), "message": self.message}


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\r``, ``\\x96``): records come
    from DNS, written by anyone, and must not move a terminal's cursor or break a log line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def worst(results: list[Result]) -> Status:
    return max((r.status for r in results), key=RANK.__getitem__, default=Status.OK)


def exit_code(results: list[Result]) -> int:
    return EXIT_FAILED if RANK[worst(results)] >= RANK[Status.FAIL] else EXIT_OK


def summary(results: list[Result]) -> str:
    counts = Counter(r.status for r in results)
    parts = [f"{counts[s]} {s}" for s in Status if counts[s]]
    return f"{len(results)} result{'s' if len(results) != 1 else ''}: " + (", ".join(parts) or "none")


def to_json(results: list[Result]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2)


def print_text(results: list[Result], out: IO[str]) -> None:
    """One line per result, columns aligned, for logs and grep; the summary last."""
    rows = [("STATUS", "TENANT", "DOMAIN/IP", "CHECK", "NAME", "MESSAGE")]
    rows += [(str(r.status), r.tenant, r.subject, r.check, r.name, r.message) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[5]]).rstrip(), file=out)
    print(summary(results), file=out)


STYLE = {Status.OK: ("✓", "green"), Status.SKIP: ("-", "dim"), Status.WARN: ("!", "yellow"),
         Status.FAIL: ("✗", "bold red"), Status.ERROR: ("?", "magenta")}


def print_rich(results: list[Result], title: str, console: Any) -> None:
    """A summary table (a row per domain or IP: its worst status and the checks that are not ok), then
    every result that is not ok with its message: narrow enough for any terminal."""
    from rich.table import Table
    from rich.text import Text

    rows: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        rows.setdefault((r.tenant, r.subject), []).append(r)
    table = Table(title=title)
    for column in ("tenant", "domain / IP", "checks", "status", "not ok"):
        table.add_column(column, justify="right" if column == "checks" else "left")
    for (tenant, subject), found in rows.items():
        status = worst(found)
        symbol, style = STYLE[status]
        not_ok = ", ".join(dict.fromkeys(r.check for r in found if r.status is not Status.OK))
        table.add_row(Text(tenant), Text(subject), str(len(found)), Text(f"{symbol} {status}", style=style),
                      Text(not_ok))
    console.print(table)
    problems = [r for r in results if r.status is not Status.OK]
    if problems:
        detail = Table(title="Not ok")
        for column in ("status", "domain / IP", "check", "name", "message"):
            detail.add_column(column, overflow="fold")
        for r in problems:
            detail.add_row(Text(str(r.status), style=STYLE[r.status][1]), Text(r.subject), Text(r.check),
                           Text(r.name), Text(r.message))
        console.print(detail)
    console.print(Text(summary(results)))
