"""SPF evaluated as receivers do, by pyspf, with every DNS question answered by the run's :class:`Lookup`.

pyspf (RFC 7208 ``check_host()``; it passes the RFC's test suite) asks DNS through one module-level
function, ``spf.DNSLookup``, that calls dnspython's process-wide default resolver: no nameserver
or port of its own.  Replacing that function would change pyspf for everything else in the
process (another library, a test with its own fake DNS) and leak from one run to the next, so it
is left alone: :class:`_Query` runs pyspf's own ``query.dns`` code in a namespace of its own where
that one name is :func:`_ask`, which hands the question to the answerer set for the current
evaluation (a context variable, so concurrent evaluations never see each other's).

pyspf is synchronous: an evaluation runs in a worker thread (``asyncio.to_thread``) and each of
its questions goes back to the event loop, through the run's cached and bounded lookup -- the
same answers, the same limit on questions in flight and the same timeouts as every other check.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import spf

from mailplane.dns.lookup import Answer, DnsError, Lookup

Answerer = Callable[[str, str], list[tuple[tuple[str, str], Any]]]
_ANSWERER: contextvars.ContextVar[Answerer] = contextvars.ContextVar("mailplane_spf_answerer")


def _ask(name: str, qtype: str, strict: object = True, timeout: object = None) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's ``DNSLookup(name, qtype, strict, timeout)``, answered by the current evaluation's answerer."""
    return _ANSWERER.get()(name, qtype)


def _query_class() -> type[spf.query]:
    namespace = dict(vars(spf))
    namespace["DNSLookup"] = _ask
    original = spf.query.dns
    dns = types.FunctionType(original.__code__, namespace, original.__name__, original.__defaults__,
                             original.__closure__)
    dns.__kwdefaults__ = original.__kwdefaults__
    return type("_Query", (spf.query,), {"dns": dns, "__doc__": "pyspf's query, asking the run's Lookup."})


_Query = _query_class()


def pyspf_records(answer: Answer) -> list[tuple[tuple[str, str], Any]]:
    """An answer in the shape pyspf's dnspython driver gives: ((name, type), value) per record."""
    key = (answer.name, answer.rdtype)
    out: list[tuple[tuple[str, str], Any]] = []
    for text in answer.records:
        if answer.rdtype in ("TXT", "SPF"):
            out.append((key, (text.encode("utf-8"),)))
        elif answer.rdtype == "MX":
            preference, _, host = text.partition(" ")
            out.append((key, (int(preference), host.rstrip("."))))
        else:  # A, AAAA, PTR: addresses and names as text
            out.append((key, text))
    return out


@dataclass(frozen=True)
class Verdict:
    """pyspf's result (pass, fail, softfail, neutral, none, permerror, temperror) and explanation.

    ``dns_error`` is set when a question got no answer: the result is then pyspf's temperror, and
    the check an error (DNS could not be asked), not a verdict on the record.
    """

    result: str
    explanation: str
    dns_error: str | None = None


def _evaluate(ip: str, sender: str, helo: str, answerer: Answerer) -> tuple[str, str]:
    token = _ANSWERER.set(answerer)
    try:
        result, _code, explanation = _Query(i=ip, s=sender, h=helo).check()
        return str(result), str(explanation)
    except Exception as err:  # pyspf on a record it cannot handle: a result, never a traceback
        return "error", f"pyspf failed: {type(err).__name__}: {err}"
    finally:
        _ANSWERER.reset(token)


async def evaluate(lookup: Lookup, ip: str, sender: str, helo: str) -> Verdict:
    """``check_host(ip, domain of sender, sender)`` as a receiver given ``helo`` runs it."""
    loop = asyncio.get_running_loop()
    errors: list[str] = []

    def answer(name: str, qtype: str) -> list[tuple[tuple[str, str], Any]]:
        future = asyncio.run_coroutine_threadsafe(lookup.query(name, qtype), loop)
        try:
            return pyspf_records(future.result())
        except DnsError as err:
            errors.append(str(err))
            raise spf.TempError(f"DNS {err}") from None

    result, explanation = await asyncio.to_thread(_evaluate, ip, sender, helo, answer)
    return Verdict(result, explanation, errors[0] if errors else None)
