"""SPF records as RFC 7208 writes them: their syntax, and a walk through their includes that counts.

What an SPF record *means* for a client -- does this IP pass for this sender -- is pyspf's to say
(:mod:`mailplane.dns.spfeval`): it evaluates one client IP and stops at the first match, as a
receiver does.  What a publisher needs to know besides is about the record itself, for every
client at once, and that is this module:

- :func:`parse_record`: RFC 7208's ABNF (sections 4.6.1, 5, 6, 7.1 and 12), every term, also those
  after ``all`` that no evaluation reaches ("any syntax errors anywhere in the record MUST be
  detected", 4.6): mechanisms and their arguments, ``dual-cidr-length``, ``domain-spec`` (must end
  in a macro or a ``.toplabel``), macro syntax (``c``, ``r`` and ``t`` only in ``exp`` text),
  modifier names, ``redirect=`` and ``exp=`` at most once, US-ASCII printable terms separated by
  spaces only;
- :class:`SpfWalk`: the worst case of RFC 7208 4.6.4's limits (10 DNS-querying terms, 10 MX per
  ``mx``, 2 void lookups) counted through nested ``include:`` and ``redirect=`` as a receiver
  reaching every term would (voids per address family: an ``a:`` whose host has only an A record
  is void for IPv6 clients), the records reachable that are missing, several, malformed or loop,
  and names that cannot be asked;
- :class:`Policy`: what the record authorises without a client IP (the networks ``+`` terms pass,
  with ``a`` and ``mx`` resolved, the ``+`` includes, what ends evaluation), so that two records
  can be compared as policies rather than as text: an equivalent record written with
  ``redirect=``, ``/32`` or another order is the same record.

Macros are checked, not expanded, except ``%{d}`` (the domain of the record being read) and the
escapes ``%%``, ``%_`` and ``%-``: the others need the message being checked.  Every question goes
through a :class:`~mailplane.dns.lookup.Lookup`, so the walk shares the run's cache and bound.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from mailplane.dns.lookup import MAX_NAME, Answer, DnsError, Lookup, name_problem

SPF_MAX_LOOKUPS = 10
SPF_MAX_VOID_LOOKUPS = 2
SPF_MAX_MX = 10
"""RFC 7208 4.6.4: beyond these a receiver's SPF evaluation is a permerror."""
SPF_WALK_CAP = 100
"""Stop following includes after this many lookups: enough to report "too many", bounded for loops."""

MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
QUALIFIERS = "+-~?"
DOMAIN_MACRO_LETTERS = frozenset("slodiphv")
"""RFC 7208 7.1: ``c``, ``r`` and ``t`` are allowed only in ``exp`` text, not in a domain-spec."""
ALL_MACRO_LETTERS = DOMAIN_MACRO_LETTERS | frozenset("crt")
FAMILIES = (4, 6)

_MACRO = re.compile(r"%(?:\{(?P<letter>[^}])(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[.\-+,/_=]*)\}"
                    r"|(?P<escape>[%_\-]))")
_MODIFIER = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9_.\-]*)=(?P<value>.*)", re.DOTALL)
_MECHANISM_NAME = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9]*)(?P<rest>.*)", re.DOTALL)
_TOPLABEL = re.compile(r"[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9]")
_DOMAIN_CIDR = re.compile(r"(?::(?P<spec>.*?))?(?:/(?P<cidr4>[0-9]+))?(?://(?P<cidr6>[0-9]+))?", re.DOTALL)
_IP_CIDR = re.compile(r":(?P<ip>[^/]*)(?:/(?P<cidr>[0-9]+))?", re.DOTALL)
_CIDR = re.compile(r"0|[1-9][0-9]*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_spf(text: str) -> bool:
    """RFC 7208 4.5: a record is SPF when it is exactly ``v=spf1`` or starts with ``v=spf1 ``."""
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


def spf_records(answer: Answer) -> list[str]:
    """The SPF records among a name's TXT records (other TXT records, even non-ASCII ones, are not SPF's)."""
    return [t for t in answer.records if is_spf(t)]


def _char(c: str) -> str:
    return repr(c) if c.isprintable() and ord(c) < 128 else f"U+{ord(c):04X}"


# --- syntax ---------------------------------------------------------------------------------------

class SpfSyntaxError(ValueError):
    """One term that is not RFC 7208 SPF: receivers return permerror for the whole record."""


def macro_string_problem(text: str, letters: frozenset[str] = DOMAIN_MACRO_LETTERS) -> str:
    """Why ``text`` is not a ``macro-string`` (RFC 7208 7.1) with macros of ``letters`` ("" when it is)."""
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c == "%":
            match = _MACRO.match(text, pos)
            if match is None:
                after = text[pos + 1:pos + 2]
                return (f"'%' followed by {_char(after)} (a macro is %{{x}}, %%, %_ or %-)" if after
                        else "'%' at the end (a macro is %{x}, %%, %_ or %-)")
            letter = match["letter"]
            if letter is not None:
                if letter.lower() not in ALL_MACRO_LETTERS:
                    return f"%{{{letter}...}}: {_char(letter)} is not a macro letter (slodiphv, and crt in exp text)"
                if letter.lower() not in letters:
                    return f"%{{{letter}}}: the macro letters c, r and t are allowed only in exp text"
                if match["digits"] and int(match["digits"]) == 0:
                    return f"{match[0]}: the number of parts must not be zero"
            pos = match.end()
            continue
        if not 0x21 <= ord(c) <= 0x7E:
            return f"{_char(c)} is not allowed (SPF terms are visible US-ASCII characters separated by spaces)"
        pos += 1
    return ""


def _ends_in_macro(spec: str) -> bool:
    return any(m.end() == len(spec) for m in _MACRO.finditer(spec))


def domain_spec_problem(spec: str) -> str:
    """Why ``spec`` is not a ``domain-spec`` (RFC 7208 7.1: a macro-string ending in a macro or ``.toplabel``)."""
    if not spec:
        return "empty domain"
    if problem := macro_string_problem(spec):
        return problem
    if _ends_in_macro(spec):
        return ""
    body = spec[:-1] if spec.endswith(".") else spec
    _, dot, toplabel = body.rpartition(".")
    if not dot:
        return f"{spec!r} is not a domain name with a dot (or a macro) at its end"
    if not _TOPLABEL.fullmatch(toplabel):
        return f"{toplabel!r} is not a valid top label (letters, digits and inner dashes, not all digits)"
    return ""


def _cidr_problem(text: str | None, limit: int, family: int) -> str:
    if text is None:
        return ""
    if not _CIDR.fullmatch(text) or int(text) > limit:
        return f"/{text} is not an IPv{family} prefix length (0 to {limit}, no leading zeros)"
    return ""


@dataclass(frozen=True)
class Term:
    """One term of a record.  Mechanisms have a qualifier; modifiers have none ("")."""

    text: str
    name: str
    """Mechanism or modifier name, lower case."""
    qualifier: str = ""
    value: str | None = None
    """The domain-spec, the IP network (ip4/ip6) or the modifier's value; None when absent."""
    cidr4: int | None = None
    cidr6: int | None = None

    @property
    def modifier(self) -> bool:
        return not self.qualifier

    @property
    def network(self) -> Network:
        """ip4/ip6 only."""
        length = self.cidr4 if self.name == "ip4" else self.cidr6
        return ipaddress.ip_network(f"{self.value}/{length}" if length is not None else str(self.value),
                                    strict=False)


def _check(problem: str, prefix: str = "") -> None:
    """Raise what ``problem`` says, if anything: the term parsers' one way to refuse."""
    if problem:
        raise SpfSyntaxError(prefix + problem)


def _cidr(text: str | None) -> int | None:
    return int(text) if text else None


# One parser per term kind: (the whole term, its lower-case name, its qualifier, what follows the
# name) in, the Term out, SpfSyntaxError when the argument is not that kind's.

TermParser = Callable[[str, str, str, str], Term]


def _parse_domain_modifier(text: str, name: str, _qualifier: str, value: str) -> Term:
    """``redirect=`` and ``exp=`` name a domain (RFC 7208 6.1, 6.2)."""
    _check(domain_spec_problem(value), f"{name}=: ")
    return Term(text, name, value=value)


def _parse_unknown_modifier(text: str, name: str, _qualifier: str, value: str) -> Term:
    """Any other modifier is ignored by receivers, but its value must still be a macro-string (RFC 7208 6)."""
    _check(macro_string_problem(value, ALL_MACRO_LETTERS), f"modifier {name}=: ")
    return Term(text, name, value=value)


def _parse_all(text: str, name: str, qualifier: str, rest: str) -> Term:
    if rest:
        raise SpfSyntaxError("all takes no argument")
    return Term(text, name, qualifier)


def _parse_domain_required(text: str, name: str, qualifier: str, rest: str) -> Term:
    """``include:`` and ``exists:``: a domain and nothing else."""
    if not rest.startswith(":") or not rest[1:]:
        raise SpfSyntaxError(f"{name} needs ':' and a domain")
    _check(domain_spec_problem(rest[1:]))
    return Term(text, name, qualifier, rest[1:])


def _parse_ptr(text: str, name: str, qualifier: str, rest: str) -> Term:
    """``ptr`` and ``ptr:domain``: a domain is optional, a prefix length is not allowed."""
    if rest and not rest.startswith(":"):
        raise SpfSyntaxError("ptr takes only ':' and a domain (no prefix length)")
    if rest:
        _check(domain_spec_problem(rest[1:]))
    return Term(text, name, qualifier, rest[1:] or None)


def _parse_a_mx(text: str, name: str, qualifier: str, rest: str) -> Term:
    """``a`` and ``mx``: an optional domain, then an optional ``dual-cidr-length``."""
    parts = _DOMAIN_CIDR.fullmatch(rest)
    if parts is None:
        raise SpfSyntaxError(f"{name} takes [:domain][/ip4-prefix][//ip6-prefix]")
    spec = parts["spec"]
    if spec is not None:
        _check(domain_spec_problem(spec))
    _check(_cidr_problem(parts["cidr4"], 32, 4) or _cidr_problem(parts["cidr6"], 128, 6))
    return Term(text, name, qualifier, spec, _cidr(parts["cidr4"]), _cidr(parts["cidr6"]))


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, or None when it is not one (a zone index ``%eth0`` is not SPF's either)."""
    try:
        return ipaddress.ip_address(text) if "%" not in text else None
    except ValueError:
        return None


def _parse_ip(text: str, name: str, qualifier: str, rest: str) -> Term:
    """``ip4:`` and ``ip6:``: an address of that family, and an optional prefix length."""
    family = int(name[-1])
    parts = _IP_CIDR.fullmatch(rest)
    if parts is None or not parts["ip"]:
        raise SpfSyntaxError(f"{name} needs ':' and an IPv{family} address[/prefix]")
    address = _ip_address(parts["ip"])
    if address is None or address.version != family:
        raise SpfSyntaxError(f"{parts['ip']!r} is not an IPv{family} address")
    _check(_cidr_problem(parts["cidr"], 32 if family == 4 else 128, family))
    cidr = int(parts["cidr"]) if parts["cidr"] is not None else None
    return Term(text, name, qualifier, parts["ip"], cidr if family == 4 else None, cidr if family == 6 else None)


MODIFIER_PARSERS: dict[str, TermParser] = {"redirect": _parse_domain_modifier, "exp": _parse_domain_modifier}
"""Modifiers RFC 7208 defines; any other name is parsed by :func:`_parse_unknown_modifier`."""
MECHANISM_PARSERS: dict[str, TermParser] = {
    "all": _parse_all, "include": _parse_domain_required, "exists": _parse_domain_required, "ptr": _parse_ptr,
    "a": _parse_a_mx, "mx": _parse_a_mx, "ip4": _parse_ip, "ip6": _parse_ip}
"""The parser of each of :data:`MECHANISMS`."""


def _split_mechanism(text: str) -> tuple[str, str, str]:
    """(qualifier, lower-case mechanism name, what follows the name) of a term that is not a modifier."""
    qualifier, rest = (text[0], text[1:]) if text[:1] in QUALIFIERS else ("+", text)
    mechanism = _MECHANISM_NAME.fullmatch(rest)
    if mechanism is not None and mechanism["name"].lower() in MECHANISMS:
        return qualifier, mechanism["name"].lower(), mechanism["rest"]
    if "=" in text:
        raise SpfSyntaxError("not an SPF term (a modifier name is a letter then letters, digits, "
                             "'-', '_' or '.', then '=')")
    shown = mechanism["name"] if mechanism else rest
    raise SpfSyntaxError(f"unknown mechanism {shown!r}")


def parse_term(text: str) -> Term:
    """One term; raises :class:`SpfSyntaxError` saying what is wrong."""
    if bad := next((c for c in text if not 0x21 <= ord(c) <= 0x7E), None):
        raise SpfSyntaxError(f"{_char(bad)} is not allowed (SPF records are US-ASCII: visible characters, terms "
                             "separated by spaces only)")
    if modifier := _MODIFIER.fullmatch(text):
        name = modifier["name"].lower()
        return MODIFIER_PARSERS.get(name, _parse_unknown_modifier)(text, name, "", modifier["value"])
    qualifier, name, rest = _split_mechanism(text)
    return MECHANISM_PARSERS[name](text, name, qualifier, rest)


@dataclass(frozen=True)
class SpfRecord:
    """A parsed record: its terms in order (those that parse), and every syntax error."""

    terms: tuple[Term, ...]
    errors: tuple[tuple[str, str], ...]
    """(term, what is wrong with it) per error."""

    @property
    def mechanisms(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.modifier)

    def modifier(self, name: str) -> Term | None:
        return next((t for t in self.terms if t.modifier and t.name == name), None)


def parse_record(text: str) -> SpfRecord:
    """Every term of ``text`` (an SPF record: starts with ``v=spf1``), and what is wrong with each."""
    words = text.split(" ")
    terms: list[Term] = []
    errors: list[tuple[str, str]] = []
    if words[0].lower() != "v=spf1":
        errors.append((words[0], "an SPF record starts with 'v=spf1 '"))
    for word in words[1:]:
        if not word:
            continue  # one or more spaces between terms, trailing spaces allowed (RFC 7208 4.5, 12)
        try:
            term = parse_term(word)
        except SpfSyntaxError as err:
            errors.append((word, str(err)))
            continue
        if term.modifier and term.name in ("redirect", "exp") and any(t.name == term.name for t in terms):
            errors.append((word, f"{term.name}= appears twice (RFC 7208 6: at most once each)"))
            continue
        terms.append(term)
    return SpfRecord(tuple(terms), tuple(errors))


def expand_domain(spec: str, domain: str) -> str | None:
    """``spec`` with ``%{d}`` (the record's domain) and the escapes expanded; None when another macro is in it.

    RFC 7208 7.3-7.4: transformers, delimiters, upper case URL-escaping; a trailing dot dropped and
    a result over 253 characters cut from the left, label by label.
    """
    out: list[str] = []
    pos = 0
    for match in _MACRO.finditer(spec):
        out.append(spec[pos:match.start()])
        pos = match.end()
        escape = match["escape"]
        if escape is not None:
            out.append({"%": "%", "_": " ", "-": "%20"}[escape])
            continue
        if match["letter"].lower() != "d":
            return None
        parts = re.split("[" + re.escape(match["delimiters"] or ".") + "]", domain.rstrip("."))
        if match["reverse"]:
            parts.reverse()
        if match["digits"]:
            parts = parts[-int(match["digits"]):]
        value = ".".join(parts)
        out.append(quote(value, safe="-._~") if match["letter"].isupper() else value)
    out.append(spec[pos:])
    name = "".join(out).removesuffix(".")
    while len(name) > MAX_NAME and "." in name:
        name = name.partition(".")[2]
    return name


# --- what a record authorises ---------------------------------------------------------------------

@dataclass
class Policy:
    """What a record (with its redirect) authorises, as far as it can be told without a client IP.

    Terms are read in order up to the ``all`` that ends evaluation; ``redirect=`` (used only
    without ``all``) appends the target's policy.
    """

    nets: list[Network] = field(default_factory=list)
    """Networks a ``+`` ip4, ip6, a or mx term passes (a and mx resolved, with their prefix lengths)."""
    includes: dict[str, Policy | None] = field(default_factory=dict)
    """``+`` includes by target, with the target's policy (None: not followed: error, macro, loop)."""
    others: list[str] = field(default_factory=list)
    """Terms whose effect is not "these networks pass": ptr, exists, macros, other qualifiers."""
    default: str | None = None
    """Qualifier of the ``all`` that ends evaluation; None: there is none (the result is neutral)."""

    def extend(self, other: Policy) -> None:
        self.nets += other.nets
        self.includes.update(other.includes)
        self.others += other.others
        self.default = other.default

    def static_nets(self) -> list[Network] | None:
        """Every network this policy passes, when that is all it does; None when it passes more (``+all``,
        a ptr or exists term, an include that is not itself static)."""
        if self.others or self.default == "+":
            return None
        nets = list(self.nets)
        for sub in self.includes.values():
            inner = sub.static_nets() if sub is not None else None
            if inner is None:
                return None
            nets += inner
        return nets


def passes_everyone(policy: Policy, where: str) -> list[str]:
    """Where ``policy`` lets every client pass: ``+all``, a ``/0`` network, an include that does."""
    found = []
    if policy.default == "+":
        found.append(f"{where} ends '+all' (a bare 'all' is '+all'): every host passes")
    found += [f"{where} passes every IPv{n.version} host (ip{n.version}:{n})" for n in policy.nets if n.prefixlen == 0]
    for name, sub in policy.includes.items():
        if sub is not None:
            found += passes_everyone(sub, f"include:{name}")
    return found


# --- the walk -------------------------------------------------------------------------------------

@dataclass
class SpfWalk:
    """RFC 7208 4.6.4's counts for one published record, following include and redirect.

    Counts what a receiver evaluating every term would (the worst case: no early match), up to
    the ``all`` that ends each record.  ``lookups`` holds (top-level term, term, record's domain)
    per DNS-querying term.
    """

    lookup: Lookup
    lookups: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Permerrors: syntax, an include without (exactly one) SPF record, a loop, too many MX, a bad name."""
    unexpanded: list[str] = field(default_factory=list)
    dns_error: str | None = None
    policy: Policy = field(default_factory=Policy)
    void_by_family: dict[int, list[str]] = field(default_factory=lambda: {f: [] for f in FAMILIES})

    @property
    def void_family(self) -> int:
        """The client family with the most void lookups (IPv4 on a tie)."""
        return max(FAMILIES, key=lambda f: (len(self.void_by_family[f]), -f))

    @property
    def voids(self) -> list[str]:
        """The void lookups of the worse family: a receiver evaluating for such a client makes them all."""
        return self.void_by_family[self.void_family]

    def permerrors(self) -> list[str]:
        """Everything that makes some receiver's evaluation a permerror, the limits included."""
        problems = list(self.errors)
        if len(self.lookups) > SPF_MAX_LOOKUPS:
            shown = f"more than {SPF_WALK_CAP}" if len(self.lookups) > SPF_WALK_CAP else str(len(self.lookups))
            problems.append(f"{shown} DNS-querying terms, over the limit of {SPF_MAX_LOOKUPS} (RFC 7208 4.6.4)")
        if len(self.voids) > SPF_MAX_VOID_LOOKUPS:
            problems.append(f"{len(self.voids)} void lookups{self.void_clients}, over the limit of "
                            f"{SPF_MAX_VOID_LOOKUPS} (RFC 7208 4.6.4): {', '.join(self.voids)}")
        return problems

    @property
    def void_clients(self) -> str:
        """" for IPv6 clients" when one family has more void lookups than the other, "" when they have as many."""
        v4, v6 = (self.void_by_family[f] for f in FAMILIES)
        return "" if len(v4) == len(v6) else f" for IPv{self.void_family} clients"

    async def run(self, domain: str, record: str) -> None:
        try:
            self.policy = await self._walk(domain, record, None, (_norm(domain),))
        except DnsError as err:
            self.dns_error = str(err)

    async def _walk(self, domain: str, text: str, top: str | None, chain: tuple[str, ...]) -> Policy:
        record = parse_record(text)
        self.errors += [f"{term!r} in {domain}: {why}" for term, why in record.errors]
        policy = Policy()
        ended = False
        for term in record.mechanisms:
            if len(self.lookups) > SPF_WALK_CAP:
                return policy
            if term.name == "all":
                policy.default = term.qualifier
                ended = True
                break
            await self._mechanism(term, domain, top or term.text, chain, policy)
        redirect = record.modifier("redirect")
        if redirect is not None and not ended and len(self.lookups) <= SPF_WALK_CAP:
            # redirect= counts and is followed only without all (RFC 7208 6.1); exp= is read only
            # on a fail and never counted.
            self.lookups.append((top or redirect.text, redirect.text, domain))
            target = await self._follow(redirect, str(redirect.value), domain, top or redirect.text, chain)
            if target is None:
                policy.others.append(redirect.text)
            else:
                policy.extend(target)
        return policy

    def _target(self, term: Term, domain: str) -> str | None:
        """The name a term asks about, expanded; None (noted) when a macro needs the message or the name is bad."""
        spec = term.value if term.value is not None else domain
        target = expand_domain(spec, domain)
        if target is None:
            self.unexpanded.append(term.text)
            return None
        if problem := name_problem(target):
            self.errors.append(f"{term.text!r} in {domain}: {target!r} is not a valid domain name ({problem})")
            return None
        return target

    async def _mechanism(self, term: Term, domain: str, origin: str, chain: tuple[str, ...], policy: Policy) -> None:
        if term.name in ("ip4", "ip6"):
            (policy.nets.append(term.network) if term.qualifier == "+" else policy.others.append(term.text))
            return
        self.lookups.append((origin, term.text, domain))
        if term.name == "ptr":
            policy.others.append(term.text)  # the client's own reverse names: nothing to ask without one
            return
        target = self._target(term, domain)
        if target is None:
            policy.others.append(term.text)
            return
        if term.name == "include":
            included = await self._follow(term, target, domain, origin, chain)
            if term.qualifier != "+":
                policy.others.append(term.text)  # ~include, -include, ?include: not "these pass"
            else:
                policy.includes.setdefault(_norm(target), included)
            return
        if term.name == "exists":
            answer = await self.lookup.query(target, "A")  # exists asks for A whatever the client (RFC 7208 5.7)
            if answer.void:
                self._void(FAMILIES, term.text, domain, answer)
            policy.others.append(term.text)
            return
        if term.name == "a":
            nets = await self._addresses(term, domain, target, term.text)
        else:
            answer = await self.lookup.query(target, "MX")
            if answer.void:
                self._void(FAMILIES, term.text, domain, answer)
            if len(answer.records) > SPF_MAX_MX:
                self.errors.append(f"{term.text!r} in {domain}: {len(answer.records)} MX records at {target}, "
                                   f"more than {SPF_MAX_MX} (RFC 7208 4.6.4)")
            nets = []
            for host in sorted({_mx_host(v) for v in answer.records} - {""}):
                nets += await self._addresses(term, domain, host, f"{term.text} (MX {host})")
        (policy.nets.extend(nets) if term.qualifier == "+" else policy.others.append(term.text))

    async def _addresses(self, term: Term, domain: str, host: str, shown: str) -> list[Network]:
        """A and AAAA of ``host`` as networks of the term's prefix lengths; each family's void noted."""
        nets: list[Network] = []
        for family, rdtype, cidr in ((4, "A", term.cidr4), (6, "AAAA", term.cidr6)):
            answer = await self.lookup.query(host, rdtype)
            if answer.void:
                self._void((family,), shown, domain, answer)
            for address in answer.records:
                try:
                    ip = ipaddress.ip_address(address)
                except ValueError:
                    continue
                nets.append(ipaddress.ip_network(f"{ip}/{cidr if cidr is not None else ip.max_prefixlen}",
                                                 strict=False))
        return nets

    async def _follow(self, term: Term, target: str, domain: str, origin: str, chain: tuple[str, ...]) -> Policy | None:
        if term.modifier:
            expanded = self._target(term, domain)
            if expanded is None:
                return None
            target = expanded
        if _norm(target) in chain:
            self.errors.append(f"loop: {' → '.join((*chain, _norm(target)))}")
            return None
        answer = await self.lookup.query(target, "TXT")
        if answer.void:
            self._void(FAMILIES, term.text, domain, answer)
        found = spf_records(answer)
        if len(found) != 1:
            self.errors.append(f"{term.text} in {domain}: {len(found) or 'no'} SPF record{'s' if found else ''} "
                               f"at {target} (permerror)")
            return None
        return await self._walk(target, found[0], origin, (*chain, _norm(target)))

    def _void(self, families: tuple[int, ...], term: str, domain: str, answer: Answer) -> None:
        for family in families:
            self.void_by_family[family].append(f"{term} in {domain} ({answer.why_void})")


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _mx_host(value: str) -> str:
    """The exchange of an MX answer ``"10 host"``; "" for a null MX (RFC 7505)."""
    host = value.partition(" ")[2].strip().rstrip(".")
    return host


def expected_policy(value: str) -> Policy:
    """The policy of a record mailplane writes (include, ip4, ip6 and all only): no DNS needed."""
    policy = Policy()
    for term in parse_record(value).mechanisms:
        if term.name == "all":
            policy.default = term.qualifier
            break
        if term.name in ("ip4", "ip6"):
            policy.nets.append(term.network)
        elif term.name == "include":
            policy.includes[_norm(str(term.value))] = None
        else:
            policy.others.append(term.text)
    return policy


def _covers(nets: list[Network], net: Network) -> bool:
    return any(n.version == net.version and net.subnet_of(n) for n in nets)  # type: ignore[arg-type]


def _shown(net: Network) -> str:
    return f"ip{net.version}:{net.network_address if net.prefixlen == net.max_prefixlen else net}"


def compare_policy(published: Policy, expected: str) -> tuple[list[str], list[str]]:
    """(problems, differences) of a published record's policy against the fleet's record.

    Problems fail: a record that lets every host pass or every other one get neutral (``+all``,
    ``?all``, no ``all``), an include of the fleet's record missing, a network of the fleet's not
    passed.  Differences only warn: extra networks and terms, ``~all`` for ``-all``.  The
    comparison is of what passes, so an equivalent record written otherwise (``redirect=``,
    ``/32``, another order, an include of the same IPs) is equal.
    """
    want = expected_policy(expected)
    problems: list[str] = passes_everyone(published, "the record")
    if published.default == "?":
        problems.append("it ends '?all': every other host gets neutral instead of fail, so anyone can send as "
                        "the domain without failing SPF")
    elif published.default is None:
        problems.append("no 'all' (nor redirect=): every other host gets neutral, as with '?all'")
    problems += [f"include:{name} is missing" for name in want.includes if name not in published.includes]
    covered = list(published.nets)
    differences: list[str] = []
    for name, sub in published.includes.items():
        if name in want.includes:
            continue
        inner = sub.static_nets() if sub is not None else None
        if inner is None:
            differences.append(f"extra include:{name}")
            continue
        covered += inner
        differences += [f"extra {_shown(n)} (via include:{name})" for n in inner if not _covers(want.nets, n)]
    problems += [f"{_shown(n)} is not listed: mail from it does not pass SPF" for n in want.nets
                 if not _covers(covered, n)]
    differences[:0] = [f"extra {_shown(n)}" for n in published.nets if not _covers(want.nets, n)]
    differences += [f"extra {term}" for term in published.others]
    if published.default in ("-", "~") and want.default in ("-", "~") and published.default != want.default:
        differences.append(f"'{published.default}all' where the fleet's record has '{want.default}all'")
    return problems, differences


@dataclass
class SpfAudit:
    """The SPF record published at a name and its walk: what the checks read, and what the RFC 7208
    test suite is the oracle of (tests/dns/test_spf_rfc7208.py)."""

    name: str
    answer: Answer
    records: list[str]
    """The SPF records at the name (RFC 7208 4.5: exactly one may be there)."""
    walk: SpfWalk | None = None
    """When there is exactly one."""

    def problems(self) -> list[str]:
        """What makes a receiver's evaluation a permerror: several records, syntax, limits, records reached."""
        if len(self.records) > 1:
            return [f"{len(self.records)} SPF records at {self.name}, exactly one allowed (RFC 7208 4.5)"]
        return self.walk.permerrors() if self.walk is not None else []


async def audit_spf(lookup: Lookup, name: str) -> SpfAudit:
    """Read the SPF record at ``name`` and, if there is one, walk it; DNS failures end in ``walk.dns_error``."""
    answer = await lookup.query(name, "TXT")
    audit = SpfAudit(name, answer, spf_records(answer))
    if len(audit.records) == 1:
        audit.walk = SpfWalk(lookup)
        await audit.walk.run(name, audit.records[0])
    return audit
