"""Ingest PowerMTA accounting files: deliveries, bounces, deferrals and feedback, per tenant and IP.

PowerMTA writes one CSV line per event (``<acct-file>`` with ``records d,b,t,tq,rb,f``) after a
header row (PowerMTA v5.0 User's Guide, accounting chapter; the fields are in ``docs/powermta.md``).
A file holding several record types carries the union of their columns, so rows are read by
header, never by position, and every name we rely on sits in :data:`FIELD_NAMES`.  Columns in
another order and columns we do not know are fine.

Which IP a record is about: ``vmta`` (d, b, t, tq); a feedback-loop record (f) has only
``dlvSourceIp``; a remote bounce (rb), parsed from a DSN that came back to the return path, has
neither, but its ``orig`` is the return path the sender gave the message, which names the IP
(:func:`mailplane.model.names.verp_address`).

The parser is pure over text lines (:func:`parse_lines`): it takes a :class:`Cursor` (bytes and
lines already consumed, and the header in force) and returns the events, the problems and the
next cursor.  Only complete lines are consumed, so a line PowerMTA is half-way through writing is
read next time, whole, and re-reading a growing file never counts a row twice.
:func:`read_file` is the small helper that applies it to a file on disk and notices rotation.

A bad row is a :class:`RowProblem` (``file:line: message``) and is skipped; nothing in a file can
make this module raise.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from mailplane.model.addresses import canonical_ip
from mailplane.model.names import parse_verp, vmta_name
from mailplane.model.stack import Fleet

Kind = Literal["delivered", "bounce", "deferral", "complaint"]

FIELD_NAMES: dict[str, tuple[str, ...]] = {
    # our name:   header names accepted (compared without case, '-', '_' or spaces) — unconfirmed
    "type": ("type",),
    "time": ("timeLogged", "time logged", "time"),
    "orig": ("orig",),
    "rcpt": ("rcpt",),
    "vmta": ("vmta",),
    "source_ip": ("dlvSourceIp",),
    "dsn_action": ("dsnAction",),
    "dsn_status": ("dsnStatus",),
    "dsn_diag": ("dsnDiag",),
    "bounce_cat": ("bounceCat",),
    "feedback_type": ("feedbackType",),
}
"""Header names of the accounting fields we read.  ``source_ip`` (the local address used) is a
fallback when a record has no ``vmta`` (feedback records may not)."""

REQUIRED = ("type", "time")
"""Without these a row cannot become an event; every record type but ``tq`` needs ``rcpt`` too, and
``vmta``, ``source_ip`` or (for ``rb``) ``orig`` says which IP it is about."""

RECORD_KINDS: dict[str, Kind] = {
    "d": "delivered",
    "b": "bounce",
    "rb": "bounce",       # a bounce received after the receiving MTA accepted the message
    "t": "deferral",
    "tq": "deferral",     # a whole queue failed (e.g. a 421 greeting): one deferred attempt of the IP
    "f": "complaint",
}
"""Record types we count.  Others (``r`` receipts, ``rs`` remote status, anything new) are skipped
silently and only counted: they describe no failure, or are not ours to judge."""

HARD_CATEGORIES = frozenset({"bad-mailbox", "inactive-mailbox", "bad-domain"})
"""``bounceCat`` values saying the address itself is bad: permanent whatever the status code."""

TRANSIENT_CATEGORIES = frozenset({
    "quota-issues", "message-expired", "no-answer-from-host", "bad-connection", "routing-errors",
})
"""``bounceCat`` values of conditions that change (a full mailbox, an unreachable host, retries
running out): not permanent even under a 5.x.x status, so the address is not suppressed for
them.  Any other category (spam-related, policy-related, other, none) follows ``dsnStatus``."""

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%a, %d %b %Y %H:%M:%S %z")


@dataclass(frozen=True)
class AccountingEvent:
    """One recipient's outcome on one IP: what reputation counts and suppression acts on."""

    time: datetime.datetime
    """Aware, in UTC; a time logged without an offset is taken as UTC."""
    tenant: str
    ip: str
    vmta: str
    recipient: str
    kind: Kind
    permanent: bool
    """For bounces: the address is bad (hard bounce); always False for other kinds."""
    dsn_status: str = ""
    category: str = ""
    diagnostic: str = ""
    source: str = ""
    line: int = 0

    @property
    def day(self) -> datetime.date:
        return self.time.date()


@dataclass(frozen=True)
class RowProblem:
    """A line that was skipped, with where it is, so an operator can look at it."""

    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Cursor:
    """How far a file has been read; the service stores it (:meth:`to_dict`) between polls."""

    offset: int = 0
    """Bytes consumed: always the end of a complete line."""
    line: int = 0
    """Lines consumed; the next line read is ``line + 1``."""
    header: tuple[str, ...] | None = None
    """The header row in force, so a read resumed mid-file still knows the columns."""
    identity: tuple[int, int] | None = None
    """(device, inode) of the file read, to notice that it was rotated."""

    def to_dict(self) -> dict[str, object]:
        return {"offset": self.offset, "line": self.line,
                "header": list(self.header) if self.header is not None else None,
                "identity": list(self.identity) if self.identity is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Cursor:
        header, identity = data.get("header"), data.get("identity")
        offset, line = data.get("offset", 0), data.get("line", 0)
        return cls(int(offset) if isinstance(offset, int) else 0, int(line) if isinstance(line, int) else 0,
                   tuple(str(h) for h in header) if isinstance(header, list) else None,
                   (int(identity[0]), int(identity[1])) if isinstance(identity, list) and len(identity) == 2
                   else None)


@dataclass
class Batch:
    """What one read produced."""

    events: list[AccountingEvent] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    ignored: int = 0
    """Rows of record types not counted (see :data:`RECORD_KINDS`)."""
    cursor: Cursor = field(default_factory=Cursor)


@dataclass(frozen=True)
class VmtaIndex:
    """VMTA names and addresses of the fleet back to (tenant, address)."""

    by_vmta: dict[str, tuple[str, str]]
    by_address: dict[str, tuple[str, str]]

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> VmtaIndex:
        by_vmta: dict[str, tuple[str, str]] = {}
        by_address: dict[str, tuple[str, str]] = {}
        for ref in fleet.ips():
            address = canonical_ip(ref.ip.address)
            by_vmta[vmta_name(ref.tenant.name, address)] = (ref.tenant.name, address)
            by_address[address] = (ref.tenant.name, address)
        return cls(by_vmta, by_address)

    def lookup(self, vmta: str, source_ip: str, orig: str = "") -> tuple[str, str] | None:
        if vmta:
            return self.by_vmta.get(vmta)
        if not source_ip:
            verp = parse_verp(orig)
            return self.by_address.get(verp[1]) if verp else None
        try:
            return self.by_address.get(canonical_ip(source_ip))
        except ValueError:
            return None


def _key(name: str) -> str:
    return "".join(c for c in name.lower() if c not in "-_ ")


_ALIASES = {_key(alias): ours for ours, aliases in FIELD_NAMES.items() for alias in aliases}


@lru_cache(maxsize=64)
def _columns(header: tuple[str, ...]) -> dict[str, int]:
    """Our field name to its column; the first column wins if a name repeats."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        ours = _ALIASES.get(_key(name))
        if ours is not None and ours not in columns:
            columns[ours] = index
    return columns


def _missing(header: tuple[str, ...]) -> list[str]:
    columns = _columns(header)
    missing = [FIELD_NAMES[f][0] for f in REQUIRED if f not in columns]
    if not {"vmta", "source_ip", "orig"} & set(columns):
        missing.append(FIELD_NAMES["vmta"][0])
    return missing


def _is_header(cells: list[str]) -> bool:
    """A row naming the ``type`` field and at least one other field we know: a header, at the top
    of a file or again further down (a concatenated file, or a header per record type).  A data
    row has a record type such as ``d`` in that place, never the field's name."""
    known = {_ALIASES.get(_key(cell)) for cell in cells} - {None}
    return "type" in known and len(known) >= 2


def parse_time(text: str) -> datetime.datetime | None:
    """PowerMTA's ``timeLogged`` (``2026-11-20 10:15:32-0700``) or ISO 8601, as aware UTC."""
    text = text.strip()
    value: datetime.datetime | None = None
    for fmt in TIME_FORMATS:
        try:
            value = datetime.datetime.strptime(text, fmt)
            break
        except ValueError:
            continue
    if value is None:
        try:
            value = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def is_permanent(category: str, dsn_status: str) -> bool:
    """A bounce that means the address is bad: a hard category, or a 5.x.x status unless the
    category names a condition that passes."""
    category = category.strip().lower()
    if category in HARD_CATEGORIES:
        return True
    if category in TRANSIENT_CATEGORIES:
        return False
    return dsn_status.strip().startswith("5")


def _row(cells: list[str], header: tuple[str, ...], index: VmtaIndex, source: str,
         number: int) -> AccountingEvent | RowProblem | None:
    """One data row to an event, a problem, or None for a record type we do not count."""
    columns = _columns(header)
    if len(cells) < len(header):
        return RowProblem(source, number, f"{len(cells)} fields, the header has {len(header)}")

    def get(name: str) -> str:
        return cells[columns[name]].strip() if name in columns else ""

    record = get("type").lower()
    kind = RECORD_KINDS.get(record)
    if kind is None:
        return RowProblem(source, number, "empty record type") if not record else None
    when = parse_time(get("time"))
    if when is None:
        return RowProblem(source, number, f"cannot read the time {get('time')!r}")
    recipient = get("rcpt")
    if not recipient and record != "tq":
        return RowProblem(source, number, "no recipient")
    vmta, source_ip, orig = get("vmta"), get("source_ip"), get("orig")
    owner = index.lookup(vmta, source_ip, orig if record == "rb" else "")
    if owner is None:
        what = (f"virtual MTA {vmta!r}" if vmta else f"source address {source_ip!r}" if source_ip else
                f"return path {orig!r}" if orig and record == "rb" else "no vmta")
        return RowProblem(source, number, f"{what} is not an IP of this fleet")
    tenant, address = owner
    status, category = get("dsn_status"), get("bounce_cat")
    return AccountingEvent(when, tenant, address, vmta or vmta_name(tenant, address), recipient, kind,
                           kind == "bounce" and is_permanent(category, status), status, category,
                           get("dsn_diag"), source, number)


def parse_lines(lines: Iterable[str], index: VmtaIndex, cursor: Cursor = Cursor(),
                source: str = "-") -> Batch:
    """Parse the lines that follow ``cursor`` (``lines`` starts there).

    Lines must keep their ending (read with ``newline=""``): a last line without one is still
    being written and is left for the next read.  Byte offsets count UTF-8 (bytes that are not
    UTF-8 should be decoded with ``surrogateescape``, as :func:`read_file` does, so they count
    exactly).
    """
    batch = Batch(cursor=cursor)
    offset, number, header = cursor.offset, cursor.line, cursor.header
    for text in lines:
        if not text.endswith(("\n", "\r")):
            break
        offset += len(text.encode("utf-8", "surrogateescape"))
        number += 1
        # bytes that are not UTF-8 became surrogates (exact offsets); events carry U+FFFD instead
        body = text.rstrip("\r\n").encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if not body.strip():
            continue
        try:
            cells = next(csv.reader([body]))
        except csv.Error as err:
            batch.problems.append(RowProblem(source, number, f"not CSV: {err}"))
            continue
        if _is_header(cells):
            header = tuple(c.strip() for c in cells)
            missing = _missing(header)
            if missing:
                batch.problems.append(RowProblem(
                    source, number, f"header lacks {', '.join(missing)}: its rows are skipped"))
            continue
        if header is None:
            batch.problems.append(RowProblem(source, number, "row before any header row"))
            continue
        if _missing(header):
            batch.ignored += 1
            continue
        result = _row(cells, header, index, source, number)
        if result is None:
            batch.ignored += 1
        elif isinstance(result, RowProblem):
            batch.problems.append(result)
        else:
            batch.events.append(result)
    batch.cursor = replace(cursor, offset=offset, line=number, header=header)
    return batch


def parse_text(text: str, index: VmtaIndex, source: str = "-") -> Batch:
    """A whole text at once (tests, one-off imports); a missing final newline is tolerated."""
    if text and not text.endswith(("\n", "\r")):
        text += "\n"
    return parse_lines(io.StringIO(text, newline=""), index, Cursor(), source)


def read_file(path: Path, index: VmtaIndex, cursor: Cursor = Cursor()) -> Batch:
    """Read what ``path`` gained since ``cursor``.

    A file that is a different one (another inode: PowerMTA moved the old one away) or shorter
    than the offset (truncated) is read from its start.  A file that cannot be opened is a
    problem at line 0, and the cursor is kept.
    """
    source = str(path)
    try:
        with path.open("rb") as raw:
            stat = os.fstat(raw.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if cursor.identity not in (None, identity) or stat.st_size < cursor.offset:
                cursor = Cursor()
            cursor = replace(cursor, identity=identity)
            raw.seek(cursor.offset)
            stream = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
            return parse_lines(stream, index, cursor, source)
    except OSError as err:
        return Batch(problems=[RowProblem(source, 0, f"cannot read: {err.strerror or err}")], cursor=cursor)
