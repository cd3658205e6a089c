"""``mailplane plan --base`` output: one small formatter class per format, as octoDNS has.

- :class:`TextFormatter` for a terminal or a CI log: every change, every diff line;
- :class:`JsonFormatter` for machines: everything, sorted keys, no truncation;
- :class:`MarkdownFormatter` for the pull-request comment: a summary line and short tables up
  front, the long parts (resources, PowerMTA diffs) folded in ``<details>``, within GitHub's
  comment size.

All three format the same :class:`~mailplane.gitops.review.Review` (built by
:mod:`mailplane.gitops.review`) through one base, :class:`Formatter`: it names the sections of a
review and walks them in order, and each format writes each section.  A section added to the base
is one every format must write, so no format can leave a part of the review out; and all share
:func:`headline` and :func:`summary`, so they cannot disagree about what the change is.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

from mailplane.gitops.destroy import ALLOW_LABEL, DestroyCheck
from mailplane.gitops.destroy import kind as resource_kind
from mailplane.gitops.diff import (
    ITEM_KINDS,
    Capacity,
    DnsRecord,
    HostDiff,
    ItemChange,
    RecordChange,
    ResourceChange,
    StackDiff,
)
from mailplane.gitops.review import FindingLike, Review, is_blocking
from mailplane.warmup.status import TenantCapacity


def ordered_findings(findings: Sequence[FindingLike]) -> list[FindingLike]:
    """Errors that block first, then warnings, then waived findings; stable within each."""
    return sorted(findings, key=_finding_rank)


def _finding_rank(f: FindingLike) -> int:
    return 2 if f.waived is not None else 0 if f.severity == "error" else 1


KIND_NAMES = {"setting": ("fleet setting", "fleet settings"), "warmup_plan": ("warmup plan", "warmup plans"),
              "mta_host": ("MTA host", "MTA hosts"), "tenant": ("tenant", "tenants"),
              "domain": ("domain", "domains"), "ip": ("IP", "IPs"), "sender": ("sender", "senders")}
ITEM_VERBS = {"add": "added", "remove": "removed", "change": "changed"}
RESOURCE_ACTIONS = ("create", "update", "replace", "delete")
RECORD_VERBS = {"publish": "to publish", "update": "to update", "remove": "to remove"}
NUMBER_WORDS = {2: "two", 3: "three"}
SIGNS = {"add": "+", "remove": "-", "change": "~", "create": "+", "update": "~", "replace": "-/+", "delete": "-",
         "publish": "+"}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _short(value: Any, width: int = 60) -> str:
    text = _value(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def headline(review: Review) -> str:
    d = review.diff
    base = f"{review.base_ref} ({review.base_commit[:12]})"
    return f"Plan for stack {d.stack} against {base} on {d.on.isoformat()}"


def record_count(records: Sequence[RecordChange], action: str) -> int:
    return sum(r.record.count for r in records if r.action == action)


def summary(review: Review) -> list[str]:
    """Short phrases, most important first, the policy verdict last; "no changes" when nothing differs."""
    d = review.diff
    return [*_stack_phrases(review), *_item_phrases(d), *_resource_phrases(d), *_record_phrases(d),
            *_host_phrases(d), *_capacity_phrases(d), *_destroy_phrases(review.destroy), policy_summary(review)]


def _stack_phrases(review: Review) -> list[str]:
    d = review.diff
    out = [] if d.base_exists else [f"new stack (no {d.stack} at {review.base_ref})"]
    return out if d.changed else [*out, "no changes"]


def _item_phrases(d: StackDiff) -> list[str]:
    """One phrase per kind and action, in :data:`ITEM_KINDS` order: what a reviewer checks first."""
    counts: Counter[tuple[str, str]] = Counter((c.kind, c.action) for c in d.items)
    return [f"{_plural(counts[kind, action], *KIND_NAMES[kind])} {verb}"
            for kind in ITEM_KINDS for action, verb in ITEM_VERBS.items() if counts[kind, action]]


def _resource_counts(resources: Sequence[ResourceChange]) -> str:
    by_action: Counter[str] = Counter(r.action for r in resources)
    return ", ".join(f"{by_action[a]} to {a}" for a in RESOURCE_ACTIONS if by_action[a])


def _resource_phrases(d: StackDiff) -> list[str]:
    return [f"Pulumi: {_resource_counts(d.resources)}"] if d.resources else []


def _record_phrases(d: StackDiff) -> list[str]:
    records = [f"{record_count(d.records, a)} {verb}" for a, verb in RECORD_VERBS.items()
               if record_count(d.records, a)]
    return ["DNS records: " + ", ".join(records)] if records else []


def _host_phrases(d: StackDiff) -> list[str]:
    if not d.hosts:
        return []
    return [f"PowerMTA config changes on {_plural(len(d.hosts), 'host')} ({', '.join(h.host for h in d.hosts)})"]


def _capacity_phrases(d: StackDiff) -> list[str]:
    changed = [c for c in d.capacity if c.changed]
    return [f"warmup capacity of {_plural(len(changed), 'tenant')} changes"] if changed else []


def _destroy_phrases(check: DestroyCheck | None) -> list[str]:
    return [check.headline()] if check is not None and check.triggered else []


def policy_summary(review: Review) -> str:
    if review.findings is None:
        return "policy checks not run (mailplane.gitops.policy is not available)"
    blocking = len(review.blocking)
    warnings = sum(f.severity == "warning" and f.waived is None for f in review.findings)
    waived = sum(f.waived is not None for f in review.findings)
    if not review.findings:
        return "policy checks pass"
    parts = [_plural(blocking, "policy error")] if blocking else ["no policy errors"]
    if warnings:
        parts.append(_plural(warnings, "warning"))
    if waived:
        parts.append(f"{waived} waived")
    return ", ".join(parts)


def capacity_unchanged(d: StackDiff) -> str:
    return (f"Warmup capacity: unchanged for {_plural(len(d.capacity), 'tenant')} "
            f"({d.on.isoformat()} and {d.later.isoformat()}).")


def _capacity_cell(before: TenantCapacity | None, after: TenantCapacity | None) -> str:
    if before is None:
        return f"new: {_num(after.daily)}" if after else "—"
    if after is None:
        return f"{_num(before.daily)}, removed"
    if before.daily != after.daily:
        return f"{_num(before.daily)} → {_num(after.daily)}"
    if before.hourly != after.hourly:  # a spread_hours edit: same day, another hourly ceiling
        return f"{_num(after.daily)} ({_num(before.hourly)}/h → {_num(after.hourly)}/h)"
    return _num(after.daily)


def _capacity_cells(c: Capacity) -> tuple[str, str]:
    return (_capacity_cell(c.before[0] if c.before else None, c.after[0] if c.after else None),
            _capacity_cell(c.before[1] if c.before else None, c.after[1] if c.after else None))


def _record_what(r: DnsRecord) -> str:
    if r.count > 1:  # Easy DKIM: SES picks the tokens, so names and values come with the apply
        return f"{NUMBER_WORDS.get(r.count, str(r.count))} {r.type}s known after apply"
    return r.value


def _publisher(r: DnsRecord) -> str:
    return "Route53 (Pulumi)" if r.provider == "route53" else "by hand (external DNS)"


# --- the base ------------------------------------------------------------------------------------

Part = TypeVar("Part")
"""What one section of a format is: lines of text, or a part of the JSON object."""


class Formatter(ABC, Generic[Part]):
    """One format of a review: a method per section, walked in :meth:`sections`' order and joined.

    Every section is abstract, so a format that forgot one does not instantiate; a section with
    nothing to say (no DNS record changes) returns an empty part.
    """

    def format(self, review: Review) -> str:
        """The whole review in this format."""
        return self.compose(review)

    def compose(self, review: Review) -> str:
        """One pass over the sections: the whole of :meth:`format` unless a format makes several
        (the Markdown comment, shortened until it fits)."""
        return self.join(self.parts(review))

    def parts(self, review: Review) -> list[Part]:
        """Each section's part, in order, before they are joined."""
        return [section(review) for section in self.sections()]

    def sections(self) -> tuple[Callable[[Review], Part], ...]:
        """The order a reader meets them: what the change is and which tenants were planned, the
        fleet's changes, then what follows from them (DNS records, cloud resources, what is
        destroyed, PowerMTA configs, sending capacity), the policy's verdict last."""
        return (self.header, self.scope, self.fleet, self.records, self.resources, self.destroy, self.hosts,
                self.capacity, self.chart, self.policy)

    @abstractmethod
    def join(self, parts: list[Part]) -> str:
        """The sections as one document."""

    @abstractmethod
    def header(self, review: Review) -> Part:
        """What is compared with what, and the :func:`summary`."""

    @abstractmethod
    def scope(self, review: Review) -> Part:
        """Which tenants the Pulumi program ran for."""

    @abstractmethod
    def fleet(self, review: Review) -> Part:
        """Tenants, domains, IPs, senders, warmup plans, MTA hosts and settings added, removed or changed."""

    @abstractmethod
    def records(self, review: Review) -> Part:
        """DNS records to publish, update or remove, and who publishes them."""

    @abstractmethod
    def resources(self, review: Review) -> Part:
        """Pulumi resources to create, update, replace or delete."""

    @abstractmethod
    def destroy(self, review: Review) -> Part:
        """What would be destroyed that cannot come back, and how to allow it."""

    @abstractmethod
    def hosts(self, review: Review) -> Part:
        """Each MTA host's PowerMTA config diff."""

    @abstractmethod
    def capacity(self, review: Review) -> Part:
        """Tenants' sending capacity today and later, where it moves."""

    @abstractmethod
    def chart(self, review: Review) -> Part:
        """Where the warmup chart is, or how to draw it."""

    @abstractmethod
    def policy(self, review: Review) -> Part:
        """The policy verdict and its findings."""


def _lines(parts: list[list[str]]) -> str:
    return "\n".join(line for part in parts for line in part) + "\n"


# --- text ----------------------------------------------------------------------------------------

def _text_item(item: ItemChange) -> list[str]:
    tenant = f" (tenant {item.tenant})" if item.tenant else ""
    return [f"  {SIGNS[item.action]} {KIND_NAMES[item.kind][0]} {item.name}{tenant}",
            *(f"      {f.path}: {_value(f.before)} -> {_value(f.after)}" for f in item.fields)]


def _text_record(rc: RecordChange) -> list[str]:
    r, b = rc.record, rc.before
    sign = SIGNS.get(rc.action, "~")
    lines = [f"  {sign} {r.name} {r.type} {r.ttl} {_record_what(r)}  [{rc.action}, {_publisher(r)}]"]
    return lines if b is None else [*lines, f"      was: {b.ttl} {_record_what(b)}  [{_publisher(b)}]"]


def _text_resource(res: ResourceChange) -> list[str]:
    return [f"  {SIGNS[res.action]:>3} {res.action:<7} {res.type}  {res.name}",
            *(f"          {c.key}: {_short(c.before, 100)} -> {_short(c.after, 100)}"
              + ("  (forces replacement)" if c.forces_replacement else "") for c in res.changes)]


class TextFormatter(Formatter[list[str]]):
    """For a terminal or a CI log: all of it, plain."""

    def join(self, parts: list[list[str]]) -> str:
        return _lines(parts)

    def header(self, review: Review) -> list[str]:
        return [headline(review), "; ".join(summary(review))]

    def scope(self, review: Review) -> list[str]:
        return [review.scope] if review.scope else []

    def fleet(self, review: Review) -> list[str]:
        items = review.diff.items
        return ["", "Fleet:", *(line for item in items for line in _text_item(item))] if items else []

    def records(self, review: Review) -> list[str]:
        records = review.diff.records
        return ["", "DNS records:", *(line for rc in records for line in _text_record(rc))] if records else []

    def resources(self, review: Review) -> list[str]:
        resources = review.diff.resources
        return ["", "Pulumi resources:", *(line for r in resources for line in _text_resource(r))] if resources else []

    def destroy(self, review: Review) -> list[str]:
        if review.destroy is None or not review.destroy.triggered:
            return []
        return ["", f"Destroys ({review.destroy.headline()}):",
                *(f"  {SIGNS[r.action]:>3} {r.action:<7} {resource_kind(r)}  {r.name}"
                  + (f" (tenant {r.tenant})" if r.tenant else "") for r in review.destroyed()),
                "  " + review.allow_destroy_howto().replace("`", "")]

    def hosts(self, review: Review) -> list[str]:
        return [line for host in review.diff.hosts for line in
                ["", f"PowerMTA {host.host} ({ITEM_VERBS[host.action]}, +{host.added} -{host.removed}):",
                 *host.diff.rstrip("\n").splitlines()]]

    def capacity(self, review: Review) -> list[str]:
        d = review.diff
        moved = [c for c in d.capacity if c.changed]
        if not moved:
            return ["", capacity_unchanged(d)]
        width = max(len(c.tenant) for c in moved)
        return ["", f"Warmup capacity, messages per day ({d.on.isoformat()} | {d.later.isoformat()}):",
                *(f"  {cap.tenant:<{width}}  {today.replace('→', '->')}  |  {later.replace('→', '->')}"
                  for cap in moved for today, later in [_capacity_cells(cap)])]

    def chart(self, review: Review) -> list[str]:
        return [f"Warmup chart: {review.chart_url or 'run `' + review.chart_command + '`'}"]

    def policy(self, review: Review) -> list[str]:
        return ["", "Policy: " + policy_summary(review), *(f"  {f}" for f in ordered_findings(review.findings or ()))]


# --- JSON ----------------------------------------------------------------------------------------

def _capacity_json(caps: tuple[TenantCapacity, TenantCapacity] | None) -> dict[str, Any] | None:
    if caps is None:
        return None
    return {key: {"date": c.date.isoformat(), "daily": c.daily, "hourly": c.hourly, "ip_daily": c.ip_daily}
            for key, c in zip(("today", "later"), caps, strict=True)}


def _record_json(r: DnsRecord) -> dict[str, Any]:
    return {"name": r.name, "type": r.type, "value": r.value, "ttl": r.ttl, "purpose": r.purpose,
            "domain": r.domain, "tenant": r.tenant, "provider": r.provider, "count": r.count,
            "known_before_apply": r.known}


def _item_json(item: ItemChange) -> dict[str, Any]:
    return {"kind": item.kind, "name": item.name, "tenant": item.tenant, "action": item.action,
            "fields": [{"path": f.path, "before": f.before, "after": f.after} for f in item.fields]}


def _resource_json(r: ResourceChange) -> dict[str, Any]:
    return {"action": r.action, "type": r.type, "name": r.name, "tenant": r.tenant, "parent": r.parent,
            "inputs": r.inputs, "changes": [{"key": c.key, "before": c.before, "after": c.after,
                                             "forces_replacement": c.forces_replacement} for c in r.changes]}


def _finding_json(f: FindingLike) -> dict[str, Any]:
    p = f.problem
    return {"check": f.check, "severity": f.severity, "waived": f.waived, "blocking": is_blocking(f),
            "file": p.file, "line": p.line, "col": p.col, "path": p.path, "message": p.message, "hint": p.hint,
            "text": str(p)}


def _host_json(h: HostDiff) -> dict[str, Any]:
    return {"host": h.host, "action": h.action, "added": h.added, "removed": h.removed, "diff": h.diff}


def _destroy_json(review: Review, check: DestroyCheck) -> dict[str, Any]:
    return {"triggered": check.triggered, "blocking": check.blocking, "allowed": check.allowed,
            "destroyed": check.destroyed, "base_total": check.base_total, "share": round(check.share, 2),
            "max_share": check.max_share, "reasons": check.reasons(),
            "resources": [{**_resource_json(r), "kind": resource_kind(r)} for r in review.destroyed()],
            "label": ALLOW_LABEL}


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: value for part in parts for key, value in part.items()}


class JsonFormatter(Formatter[dict[str, Any]]):
    """For machines: every field, stable sorted keys, nothing truncated.  Each section is some of
    the top-level keys; the order of sections does not show, as keys are sorted."""

    def data(self, review: Review) -> dict[str, Any]:
        """The review as one JSON-able object."""
        return _merged(self.parts(review))

    def join(self, parts: list[dict[str, Any]]) -> str:
        return json.dumps(_merged(parts), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def header(self, review: Review) -> dict[str, Any]:
        d = review.diff
        return {"stack": d.stack,
                "base": {"ref": review.base_ref, "commit": review.base_commit, "stack_exists": d.base_exists},
                "date": d.on.isoformat(), "later_date": d.later.isoformat(), "changed": d.changed,
                "summary": summary(review)}

    def scope(self, review: Review) -> dict[str, Any]:
        return {"pulumi_scope": review.scope}

    def fleet(self, review: Review) -> dict[str, Any]:
        return {"fleet": [_item_json(i) for i in review.diff.items]}

    def records(self, review: Review) -> dict[str, Any]:
        return {"dns_records": [{"action": rc.action, **_record_json(rc.record),
                                 "before": _record_json(rc.before) if rc.before else None}
                                for rc in review.diff.records]}

    def resources(self, review: Review) -> dict[str, Any]:
        return {"resources": [_resource_json(r) for r in review.diff.resources]}

    def destroy(self, review: Review) -> dict[str, Any]:
        return {"destroy": None if review.destroy is None else _destroy_json(review, review.destroy)}

    def hosts(self, review: Review) -> dict[str, Any]:
        return {"powermta": [_host_json(h) for h in review.diff.hosts]}

    def capacity(self, review: Review) -> dict[str, Any]:
        return {"capacity": [{"tenant": c.tenant, "changed": c.changed, "before": _capacity_json(c.before),
                              "after": _capacity_json(c.after)} for c in review.diff.capacity]}

    def chart(self, review: Review) -> dict[str, Any]:
        return {"warmup_chart": {"url": review.chart_url, "command": review.chart_command}}

    def policy(self, review: Review) -> dict[str, Any]:
        if review.findings is None:
            return {"policy": None}
        return {"policy": {"blocking": len(review.blocking),
                           "findings": [_finding_json(f) for f in ordered_findings(review.findings)]}}


# --- Markdown ------------------------------------------------------------------------------------

MAX_COMMENT_CHARS = 55_000
"""GitHub accepts 65,536 characters in a comment; this leaves room for a workflow's marker and
stays under the 60,000 at which .github/workflows/plan.yml would cut the text blindly."""


def _code(value: Any, width: int = 80) -> str:
    """An inline code span that survives a table cell: ``|`` escaped, backticks fenced around."""
    text = _short(value, width).replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(text: str) -> str:
    """A ```diff block whose fence no line of the text can close."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}diff\n{text.rstrip(chr(10))}\n{fence}"


@dataclass(frozen=True)
class _Limits:
    diff_lines: int | None
    rows: int | None


_PASSES = (_Limits(diff_lines=400, rows=None), _Limits(diff_lines=60, rows=150), _Limits(diff_lines=0, rows=40))

FINDING_MARKS = {0: "❌ **error**", 1: "⚠️ warning", 2: "ℹ️ waived"}
"""By :func:`_finding_rank`."""


def _md_item_row(i: ItemChange) -> str:
    details = "<br>".join(f"{_code(f.path)}: {_code(f.before, 40)} → {_code(f.after, 40)}" for f in i.fields)
    return f"| {ITEM_VERBS[i.action]} | {KIND_NAMES[i.kind][0]} | {_code(i.name)} | {i.tenant or ''} | {details} |"


def _md_record_row(rc: RecordChange) -> str:
    """One record, with what it was where its value, TTL or publisher changes."""
    r, b = rc.record, rc.before
    value = _code(_record_what(r), 70)
    if b is not None and (b.value, b.ttl) != (r.value, r.ttl):
        value = f"{_code(_record_what(b), 70)} → {value}"
    publisher = _publisher(r)
    if b is not None and b.provider != r.provider:
        publisher = f"{_publisher(b)} → {publisher}"
    ttl = f"{b.ttl} → {r.ttl}" if b is not None and b.ttl != r.ttl else r.ttl
    return f"| {rc.action} | {_code(r.name)} | {r.type} | {value} | {ttl} | {publisher} |"


def _md_resource_row(r: ResourceChange) -> str:
    inputs = "<br>".join(f"{_code(c.key)}: {_code(c.before, 40)} → {_code(c.after, 40)}"
                         + (" (forces replacement)" if c.forces_replacement else "") for c in r.changes)
    return f"| {r.action} | `{r.type}` | {_code(r.name)} | {r.tenant or ''} | {inputs} |"


def _md_finding(f: FindingLike) -> str:
    p = f.problem
    why = f" — waived: {f.waived}" if f.waived is not None else (f" ({p.hint})" if p.hint else "")
    where = f"`{p.file}:{p.line}:{p.col}` {_code(p.path)}"
    return f"- {FINDING_MARKS[_finding_rank(f)]} `{f.check}` at {where}: {p.message}{why}"


@dataclass(frozen=True)
class MarkdownFormatter(Formatter[list[str]]):
    """A pull-request comment: summary, small tables, the long parts folded in ``<details>``.

    When the whole would not fit in a GitHub comment, it is made again with shorter diffs and
    tables (:attr:`limits`, one of :attr:`PASSES`); the text format always has everything.
    """

    limits: _Limits = _PASSES[0]
    PASSES: ClassVar[tuple[_Limits, ...]] = _PASSES

    def format(self, review: Review) -> str:
        """The first pass whose comment fits; the last, shortest one when none does."""
        text = ""
        for limits in self.PASSES:
            text = replace(self, limits=limits).compose(review)
            if len(text) <= MAX_COMMENT_CHARS:
                break
        return text

    def sections(self) -> tuple[Callable[[Review], list[str]], ...]:
        """A comment is read from the top, often no further: what would be destroyed (what blocks
        the merge) comes first, the long parts folded in ``<details>`` last."""
        return (self.header, self.scope, self.destroy, self.fleet, self.records, self.capacity, self.chart,
                self.policy, self.resources, self.hosts)

    def join(self, parts: list[list[str]]) -> str:
        return _lines(parts)

    def _rows(self, rows: list[str], what: str) -> list[str]:
        if self.limits.rows is None or len(rows) <= self.limits.rows:
            return rows
        return [*rows[: self.limits.rows],
                f"| … | {len(rows) - self.limits.rows} more {what}: see the text or JSON output |"]

    def header(self, review: Review) -> list[str]:
        d = review.diff
        base = f"`{review.base_ref}` ({review.base_commit[:12]})"
        return [f"### mailplane plan: `{d.stack}` against {base} on {d.on.isoformat()}", "",
                "**" + " · ".join(summary(review)) + "**"]

    def scope(self, review: Review) -> list[str]:
        return ["", f"_{review.scope}._"] if review.scope else []

    def destroy(self, review: Review) -> list[str]:
        check = review.destroy
        if check is None or not check.triggered:
            return []
        mark = "⚠️ Destroys (allowed)" if check.allowed else "⛔ Destroys: blocked"
        rows = [f"| {r.action} | {resource_kind(r)} | {_code(r.name)} | {r.tenant or ''} |" for r in review.destroyed()]
        return ["", f"#### {mark}", "", "This change " + " and ".join(check.reasons()) + ":", "",
                "| action | what | name | tenant |", "|---|---|---|---|",
                *self._rows(rows, "resources"), "", review.allow_destroy_howto()]

    def fleet(self, review: Review) -> list[str]:
        if not review.diff.items:
            return []
        return ["", "#### Fleet", "", "| change | what | name | tenant | details |", "|---|---|---|---|---|",
                *self._rows([_md_item_row(i) for i in review.diff.items], "changes")]

    def records(self, review: Review) -> list[str]:
        if not review.diff.records:
            return []
        return ["", "#### DNS records", "", "| action | name | type | value | TTL | published by |",
                "|---|---|---|---|---|---|", *self._rows([_md_record_row(rc) for rc in review.diff.records], "records")]

    def resources(self, review: Review) -> list[str]:
        resources = review.diff.resources
        if not resources:
            return []
        return ["", f"<details><summary>Pulumi resources: {_resource_counts(resources)}</summary>", "",
                "| action | type | name | tenant | changed inputs |", "|---|---|---|---|---|",
                *self._rows([_md_resource_row(r) for r in resources], "resources"), "", "</details>"]

    def hosts(self, review: Review) -> list[str]:
        return [line for h in review.diff.hosts for line in self._host(review, h)]

    def _host(self, review: Review, h: HostDiff) -> list[str]:
        """One host's diff, folded; cut to :attr:`limits` with the command that shows all of it."""
        summary_line = (f"<details><summary>PowerMTA <code>{h.host}</code> ({ITEM_VERBS[h.action]}): "
                        f"+{h.added} −{h.removed} lines</summary>")
        body = h.diff.rstrip("\n").splitlines()
        keep = self.limits.diff_lines
        if keep is None or len(body) <= keep:
            return ["", summary_line, "", _fenced("\n".join(body)), "", "</details>"]
        note = (f"{len(body) - keep} more lines: run `mailplane plan {review.stack_dir} --base {review.base_ref}` "
                "for the whole diff")
        shown = [_fenced("\n".join(body[:keep])), "", note] if keep else [note]
        return ["", summary_line, "", *shown, "", "</details>"]

    def capacity(self, review: Review) -> list[str]:
        d = review.diff
        changed = [c for c in d.capacity if c.changed]
        if not changed:
            return ["", capacity_unchanged(d)]
        return ["", "#### Warmup capacity (messages per day)", "",
                f"| tenant | today, {d.on.isoformat()} | in 30 days, {d.later.isoformat()} |", "|---|--:|--:|",
                *(f"| {c.tenant} | {today} | {later} |" for c in changed for today, later in [_capacity_cells(c)])]

    def chart(self, review: Review) -> list[str]:
        chart = f"[warmup chart]({review.chart_url})" if review.chart_url else f"run `{review.chart_command}`"
        return ["", f"📈 Warmup chart: {chart}"]

    def policy(self, review: Review) -> list[str]:
        """Blocking errors wherever they are, the rest only in the files the change edits (the others
        are counted, with the command that lists them): a comment about the change, not the stack."""
        every = ordered_findings(review.findings or ())
        shown = [f for f in every if is_blocking(f) or review.in_changed_file(f)]
        lines = ["", f"#### Policy: {policy_summary(review)}"]
        if shown:
            lines += ["", *(_md_finding(f) for f in shown)]
        rest = len(every) - len(shown)
        if rest:
            lines += ["", f"{rest} more finding{'s' if rest != 1 else ''} (warnings and waivers) in files this change "
                      f"does not touch: `mailplane validate {review.stack_dir}` lists them."]
        return lines


FORMATTERS: dict[str, type[Formatter[Any]]] = {
    "text": TextFormatter, "json": JsonFormatter, "markdown": MarkdownFormatter}


def render(review: Review, output: str) -> str:
    return FORMATTERS[output]().format(review)
