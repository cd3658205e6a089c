"""The one question the checks ask DNS, and the wrappers every run puts around the answerer.

The checks see only :class:`Lookup`, so their logic runs the same against dnspython talking to a
real server, or anything else that answers ``(name, type)`` questions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Answer:
    """The records of one type at one name, as text: TXT strings joined, names without the final dot.

    ``nxdomain`` tells a name that does not exist from one without records of this type; both
    are "void" for SPF's limit (RFC 7208 4.6.4).  ``invalid`` says why ``name`` cannot be asked at
    all (an empty label, one over 63 octets): no record can exist there, so the answer is void.
    """

    name: str
    rdtype: str
    records: tuple[str, ...] = ()
    nxdomain: bool = False
    invalid: str | None = None

    @property
    def void(self) -> bool:
        return not self.records

    @property
    def why_void(self) -> str:
        if self.invalid is not None:
            return f"not a valid domain name: {self.invalid}"
        return "NXDOMAIN" if self.nxdomain else f"no {self.rdtype} record"


MAX_NAME = 253
"""Octets of a domain name in presentation form without the final dot (RFC 1035 2.3.4)."""


def name_problem(name: str) -> str:
    """Why ``name`` is not a domain name DNS can be asked about ("" when it is): RFC 1035's lengths.

    Any octet is allowed in a label (RFC 2181 11); only empty labels and lengths are wrong.
    """
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return "empty name"
    try:
        encoded = text.encode("ascii")
    except UnicodeEncodeError:
        return "not US-ASCII (an internationalized name must be written as A-labels)"
    labels = encoded.split(b".")
    if any(not label for label in labels):
        return "empty label"
    if long := next((label for label in labels if len(label) > 63), None):
        return f"label of {len(long)} octets, more than 63"
    if len(encoded) > MAX_NAME:
        return f"{len(encoded)} octets, more than {MAX_NAME}"
    return ""


class DnsError(Exception):
    """No usable answer (timeout, SERVFAIL, REFUSED, network): the check cannot tell, so it is an error."""


class Lookup(Protocol):
    async def query(self, name: str, rdtype: str) -> Answer:
        """The ``rdtype`` records at ``name``; raises :class:`DnsError` when DNS gives no answer."""
        ...


class BoundedLookup:
    """At most ``limit`` questions in flight at once, whoever asks: a whole fleet must not flood a nameserver."""

    def __init__(self, inner: Lookup, limit: int) -> None:
        self.inner = inner
        self._slots = asyncio.Semaphore(limit)

    async def query(self, name: str, rdtype: str) -> Answer:
        async with self._slots:
            return await self.inner.query(name, rdtype)


class CachedLookup:
    """Each question asked once per run, even by checks running at the same time.

    Many domains include the same SPF record (``amazonses.com``) and an unreachable nameserver
    should cost one timeout per name, not one per check.  Errors are kept too, for that reason.
    """

    def __init__(self, inner: Lookup) -> None:
        self.inner = inner
        self._answers: dict[tuple[str, str], asyncio.Task[Answer]] = {}

    async def query(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        task = self._answers.get(key)
        if task is None:
            task = asyncio.ensure_future(self.inner.query(*key))
            self._answers[key] = task
        return await asyncio.shield(task)
