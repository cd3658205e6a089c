"""PowerMTA's accounting files, read where the last ingest stopped: every row counted once, and only once.

Every row counts towards its IP's day (the reputation rates), and hard bounces and complaints
suppress the address.  The counts, the suppressions and the file's cursor are written in one
transaction, after checking (under lock) that the cursor is still the one the rows were read from,
so a crash or a second instance ingesting the same files cannot count a row twice or lose one.  A
cursor follows its file through a rotation (same device and inode, same first bytes).
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailplane.sender.core.accounting import AccountingEvent, Batch, Cursor, VmtaIndex, read_file
from mailplane.sender.core.messages import canonical_address
from mailplane.sender.core.reputation import COUNTS, tally
from mailplane.sender.events.parts import EventParts

log = logging.getLogger(__name__)

CURSOR_PREFIX = "accounting:"
"""``service_state`` key of a file's cursor: this and the path as globbed."""
HEAD_BYTES = 4096
"""Bytes at the start of a file fingerprinted with its cursor (a header and a few rows)."""
MAX_LOGGED_PROBLEMS = 20
"""Row problems logged per file and ingest; the rest are only counted (a broken file would
otherwise flood the log every poll)."""


@dataclass
class FileResult:
    """What one file's ingest wrote (after its transaction committed)."""

    events: int = 0
    suppressed: list[tuple[str, str]] | None = None  # (tenant, reason) of each new suppression
    problems: int = 0
    ignored: int = 0
    skipped: bool = False  # another ingest moved the cursor first: nothing written


class AccountingFiles:
    """The configured accounting files of one instance and their cursors."""

    def __init__(self, parts: EventParts) -> None:
        self.store = parts.store
        self.config = parts.config
        self.index = VmtaIndex.from_fleet(parts.fleet)

    def paths(self) -> list[Path]:
        """Files matching the configured globs, each once, in a stable order."""
        found = {Path(p) for pattern in self.config.accounting_files for p in glob.glob(pattern)}
        return sorted(p for p in found if p.is_file())

    def cursors_for(self, paths: Iterable[Path]) -> dict[Path, Cursor]:
        """Each file's cursor: its own if it still describes the file at that path; else the
        cursor of a path it was renamed away from (rotation: same device and inode, same first
        bytes), the most advanced if several; else none (read from the start).

        The first bytes matter because an inode freed by deleting an old file is soon given to
        a new one: device and inode alone would make a new file continue an old file's offset.
        """
        stored = self._stored_cursors()
        out: dict[Path, Cursor] = {}
        for path in paths:
            identity = _identity(path)
            own = stored.get(str(path))
            if own is not None and own[0].identity == identity and _same_head(path, own[1]):
                out[path] = own[0]
                continue
            moved = [cursor for name, (cursor, value) in stored.items()
                     if name != str(path) and cursor.identity == identity and _same_head(path, value)]
            out[path] = max(moved, key=lambda c: c.offset) if identity is not None and moved else Cursor()
        return out

    def _stored_cursors(self) -> dict[str, tuple[Cursor, dict[str, Any]]]:
        """Path to (cursor, stored value) of every file read so far."""
        stored = self.store.ledger.values_under(CURSOR_PREFIX)
        return {path: (Cursor.from_dict(value), value) for path, value in stored.items()
                if isinstance(value, dict) and value}

    def ingest(self, path: Path, cursor: Cursor) -> FileResult:
        """Read what ``path`` gained since ``cursor`` and write it with the new cursor (or nothing, when another
        ingest moved the cursor first)."""
        key = CURSOR_PREFIX + str(path)
        expected = self.store.ledger.cursor(key)  # read before the file: a commit by anyone after this fails the check
        batch = read_file(path, self.index, cursor)
        for problem in batch.problems[:MAX_LOGGED_PROBLEMS]:
            log.warning("accounting: %s", problem)
        if len(batch.problems) > MAX_LOGGED_PROBLEMS:
            log.warning("accounting: %s: %d more problems", path, len(batch.problems) - MAX_LOGGED_PROBLEMS)
        result = FileResult(events=len(batch.events), problems=len(batch.problems), ignored=batch.ignored)
        value = _cursor_value(path, batch.cursor)
        if value == expected:
            return result  # nothing new, and the cursor is stored where it belongs
        committed = self._commit(key, expected, value, batch, str(path))
        if committed is None:
            log.info("accounting: %s was ingested by someone else meanwhile; read again next time", path)
            return FileResult(skipped=True)
        result.suppressed = committed
        return result

    def _commit(self, key: str, expected: Any, value: dict[str, Any], batch: Batch,
                source: str) -> list[tuple[str, str]] | None:
        """Counts, suppressions and the new cursor in one transaction (:meth:`Ledger.commit_ingest`); None
        (nothing written) when the stored cursor is no longer ``expected``: another ingest got there first."""
        stats = [{"ip": s.ip, "day": s.day, "tenant": s.tenant, **{name: getattr(s, name) for name in COUNTS}}
                 for s in tally(batch.events).values()]
        to_suppress = sorted({(e.tenant, canonical_address(e.recipient), reason)
                              for e, reason in _suppressible(batch.events)})
        return self.store.ledger.commit_ingest(key, expected, value, stats, to_suppress, source)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _head(path: Path, length: int) -> str | None:
    """SHA-256 of the first ``length`` bytes of the file, None if it has fewer or cannot be read."""
    try:
        with path.open("rb") as f:
            data = f.read(length)
    except OSError:
        return None
    return hashlib.sha256(data).hexdigest() if len(data) == length else None


def _cursor_value(path: Path, cursor: Cursor) -> dict[str, Any]:
    """What is stored for a file: its cursor and a fingerprint of its first bytes
    (see :meth:`AccountingFiles.cursors_for`)."""
    length = min(cursor.offset, HEAD_BYTES)
    return {**cursor.to_dict(), "head_bytes": length, "head": _head(path, length) if length else None}


def _same_head(path: Path, value: Mapping[str, Any]) -> bool:
    length = value.get("head_bytes")
    if not isinstance(length, int) or length <= 0:
        return True  # nothing read yet: nothing to compare
    return _head(path, length) == value.get("head")


def _suppressible(events: Iterable[AccountingEvent]) -> Iterable[tuple[AccountingEvent, str]]:
    """Hard bounces and complaints of an accounting batch, with the suppression reason."""
    for event in events:
        if event.kind == "bounce" and event.permanent:
            yield event, "hard_bounce"
        elif event.kind == "complaint":
            yield event, "complaint"
