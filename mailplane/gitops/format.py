"""``mailplane plan --base`` output: one small formatter class per format, as octoDNS has.

- :class:`TextFormatter` for a terminal or a CI log: every change, every diff line;
- :class:`JsonFormatter` for machines: everything, sorted keys, no truncation;
- :class:`MarkdownFormatter` for the pull-request comment: a summary line and short tables up
  front, the long parts (resources, PowerMTA diffs) folded in ``<details>``, within GitHub's
  comment size.

All three format the same :class:`Review` and share :func:`headline` and :func:`summary`, so they
cannot disagree about what the change is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mailplane.gitops.destroy import ALLOW_LABEL, DestroyCheck, destroyed
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
from mailplane.model.problems import YamlProblem
from mailplane.warmup.status import TenantCapacity


class FindingLike(Protocol):
    """What the formatters read of a policy finding (``mailplane.gitops.policy.Finding``)."""

    check: str
    severity: str
    problem: YamlProblem
    waived: str | None


@dataclass(frozen=True)
class Review:
    """Everything one ``plan --base`` run reports."""

    diff: StackDiff
    stack_dir: str
    """As the user wrote it: quoted back in the commands the output suggests."""
    base_ref: str
    base_commit: str
    findings: Sequence[FindingLike] | None
    """None when the policy checks could not run (not installed)."""
    chart_url: str | None = None
    destroy: DestroyCheck | None = None
    """None when the check did not run (a review built by hand)."""
    scope: str | None = None
    """Which tenants the Pulumi program ran for (``mailplane.gitops.scope``); None: not said."""
    changed_files: frozenset[str] | None = None
    """Stack files the change edits (``tenants/acme.yaml``): the pull-request comment shows their findings
    and only counts the others' (blocking errors are shown wherever they are); None: show all."""

    def in_changed_file(self, finding: FindingLike) -> bool:
        if self.changed_files is None:
            return True
        path = finding.problem.file.replace("\\", "/")
        return any(path == f or path.endswith("/" + f) for f in self.changed_files)

    @property
    def destroying(self) -> bool:
        return self.destroy is not None and self.destroy.triggered

    @property
    def destroy_blocked(self) -> bool:
        return self.destroy is not None and self.destroy.blocking

    def destroyed(self) -> list[ResourceChange]:
        return destroyed(self.diff.resources, self.destroy) if self.destroy is not None else []

    def allow_destroy_howto(self) -> str:
        """How a reviewer lets it through, and what pulumi up needs then."""
        return (f"If that is meant, add the `{ALLOW_LABEL}` label to the pull request (`mailplane plan "
                f"{self.stack_dir} --base {self.base_ref} --allow-destroy` by hand). SES identities and DKIM "
                "keys are also protected in the Pulumi program: after the merge an operator runs "
                "`pulumi state unprotect` on each before `pulumi up` can delete or replace it.")

    @property
    def blocking(self) -> list[FindingLike]:
        return [f for f in self.findings or () if is_blocking(f)]

    @property
    def chart_command(self) -> str:
        return f"mailplane warmup chart {self.stack_dir} --out warmup.svg"


def is_blocking(finding: FindingLike) -> bool:
    return finding.severity == "error" and finding.waived is None


def ordered_findings(findings: Sequence[FindingLike]) -> list[FindingLike]:
    """Errors that block first, then warnings, then waived findings; stable within each."""
    def rank(f: FindingLike) -> int:
        return 2 if f.waived is not None else 0 if f.severity == "error" else 1
    return sorted(findings, key=rank)


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
    out: list[str] = []
    if not d.base_exists:
        out.append(f"new stack (no {d.stack} at {review.base_ref})")
    if not d.changed:
        out.append("no changes")
    counts: Counter[tuple[str, str]] = Counter((c.kind, c.action) for c in d.items)
    for kind in ITEM_KINDS:
        one, many = KIND_NAMES[kind]
        for action, verb in ITEM_VERBS.items():
            if counts[kind, action]:
                out.append(f"{_plural(counts[kind, action], one, many)} {verb}")
    resources: Counter[str] = Counter(r.action for r in d.resources)
    if resources:
        out.append("Pulumi: " + ", ".join(f"{resources[a]} to {a}" for a in RESOURCE_ACTIONS if resources[a]))
    records = [f"{record_count(d.records, a)} {verb}" for a, verb in RECORD_VERBS.items()
               if record_count(d.records, a)]
    if records:
        out.append("DNS records: " + ", ".join(records))
    if d.hosts:
        out.append(f"PowerMTA config changes on {_plural(len(d.hosts), 'host')} ({', '.join(h.host for h in d.hosts)})")
    changed_capacity = [c for c in d.capacity if c.changed]
    if changed_capacity:
        out.append(f"warmup capacity of {_plural(len(changed_capacity), 'tenant')} changes")
    if review.destroy is not None and review.destroy.triggered:
        out.append(review.destroy.headline())
    out.append(policy_summary(review))
    return out


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


# --- text ----------------------------------------------------------------------------------------

class TextFormatter:
    """For a terminal or a CI log: all of it, plain."""

    def format(self, review: Review) -> str:
        d = review.diff
        lines = [headline(review), "; ".join(summary(review))]
        if review.scope:
            lines.append(review.scope)
        if d.items:
            lines += ["", "Fleet:"]
            for item in d.items:
                tenant = f" (tenant {item.tenant})" if item.tenant else ""
                lines.append(f"  {SIGNS[item.action]} {KIND_NAMES[item.kind][0]} {item.name}{tenant}")
                lines += [f"      {f.path}: {_value(f.before)} -> {_value(f.after)}" for f in item.fields]
        if d.records:
            lines += ["", "DNS records:"]
            for rc in d.records:
                r = rc.record
                sign = SIGNS.get(rc.action, "~")
                lines.append(f"  {sign} {r.name} {r.type} {r.ttl} {_record_what(r)}  [{rc.action}, {_publisher(r)}]")
                if rc.before is not None:
                    b = rc.before
                    lines.append(f"      was: {b.ttl} {_record_what(b)}  [{_publisher(b)}]")
        if d.resources:
            lines += ["", "Pulumi resources:"]
            for res in d.resources:
                lines.append(f"  {SIGNS[res.action]:>3} {res.action:<7} {res.type}  {res.name}")
                for c in res.changes:
                    forced = "  (forces replacement)" if c.forces_replacement else ""
                    lines.append(f"          {c.key}: {_short(c.before, 100)} -> {_short(c.after, 100)}{forced}")
        if review.destroy is not None and review.destroy.triggered:
            lines += ["", f"Destroys ({review.destroy.headline()}):"]
            lines += [f"  {SIGNS[r.action]:>3} {r.action:<7} {resource_kind(r)}  {r.name}"
                      + (f" (tenant {r.tenant})" if r.tenant else "") for r in review.destroyed()]
            lines.append("  " + review.allow_destroy_howto().replace("`", ""))
        for host in d.hosts:
            lines += ["", f"PowerMTA {host.host} ({ITEM_VERBS[host.action]}, +{host.added} -{host.removed}):"]
            lines += host.diff.rstrip("\n").splitlines()
        moved = [c for c in d.capacity if c.changed]
        if moved:
            width = max(len(c.tenant) for c in moved)
            lines += ["", f"Warmup capacity, messages per day ({d.on.isoformat()} | {d.later.isoformat()}):"]
            for cap in moved:
                today, later = _capacity_cells(cap)
                lines.append(f"  {cap.tenant:<{width}}  {today.replace('→', '->')}  |  {later.replace('→', '->')}")
        else:
            lines += ["", capacity_unchanged(d)]
        lines.append(f"Warmup chart: {review.chart_url or 'run `' + review.chart_command + '`'}")
        lines += ["", "Policy: " + policy_summary(review)]
        lines += [f"  {f}" for f in ordered_findings(review.findings or ())]
        return "\n".join(lines) + "\n"


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


class JsonFormatter:
    """For machines: every field, stable sorted keys, nothing truncated."""

    def data(self, review: Review) -> dict[str, Any]:
        d = review.diff
        return {
            "stack": d.stack,
            "base": {"ref": review.base_ref, "commit": review.base_commit, "stack_exists": d.base_exists},
            "date": d.on.isoformat(),
            "later_date": d.later.isoformat(),
            "changed": d.changed,
            "summary": summary(review),
            "fleet": [_item_json(i) for i in d.items],
            "dns_records": [{"action": rc.action, **_record_json(rc.record),
                             "before": _record_json(rc.before) if rc.before else None} for rc in d.records],
            "resources": [_resource_json(r) for r in d.resources],
            "powermta": [_host_json(h) for h in d.hosts],
            "capacity": [{"tenant": c.tenant, "changed": c.changed, "before": _capacity_json(c.before),
                          "after": _capacity_json(c.after)} for c in d.capacity],
            "policy": None if review.findings is None else {
                "blocking": len(review.blocking),
                "findings": [_finding_json(f) for f in ordered_findings(review.findings)]},
            "warmup_chart": {"url": review.chart_url, "command": review.chart_command},
            "pulumi_scope": review.scope,
            "destroy": None if review.destroy is None else {
                "triggered": review.destroy.triggered, "blocking": review.destroy.blocking,
                "allowed": review.destroy.allowed, "destroyed": review.destroy.destroyed,
                "base_total": review.destroy.base_total, "share": round(review.destroy.share, 2),
                "max_share": review.destroy.max_share, "reasons": review.destroy.reasons(),
                "resources": [{**_resource_json(r), "kind": resource_kind(r)} for r in review.destroyed()],
                "label": ALLOW_LABEL},
        }

    def format(self, review: Review) -> str:
        return json.dumps(self.data(review), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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


class MarkdownFormatter:
    """A pull-request comment: summary, small tables, the long parts folded in ``<details>``.

    When the whole would not fit in a GitHub comment, it is made again with shorter diffs and
    tables; the text format always has everything.
    """

    PASSES = (_Limits(diff_lines=400, rows=None), _Limits(diff_lines=60, rows=150), _Limits(diff_lines=0, rows=40))

    def format(self, review: Review) -> str:
        text = ""
        for limits in self.PASSES:
            text = self._format(review, limits)
            if len(text) <= MAX_COMMENT_CHARS:
                break
        return text

    def _rows(self, rows: list[str], limits: _Limits, what: str) -> list[str]:
        if limits.rows is None or len(rows) <= limits.rows:
            return rows
        return [*rows[: limits.rows], f"| … | {len(rows) - limits.rows} more {what}: see the text or JSON output |"]

    def _format(self, review: Review, limits: _Limits) -> str:
        d = review.diff
        base = f"`{review.base_ref}` ({review.base_commit[:12]})"
        lines = [f"### mailplane plan: `{d.stack}` against {base} on {d.on.isoformat()}", "",
                 "**" + " · ".join(summary(review)) + "**"]
        if review.scope:
            lines += ["", f"_{review.scope}._"]
        if review.destroy is not None and review.destroy.triggered:
            check = review.destroy
            mark = "⚠️ Destroys (allowed)" if check.allowed else "⛔ Destroys: blocked"
            lines += ["", f"#### {mark}", "", "This change " + " and ".join(check.reasons()) + ":", "",
                      "| action | what | name | tenant |", "|---|---|---|---|"]
            rows = [f"| {r.action} | {resource_kind(r)} | {_code(r.name)} | {r.tenant or ''} |"
                    for r in review.destroyed()]
            lines += [*self._rows(rows, limits, "resources"), "", review.allow_destroy_howto()]
        if d.items:
            lines += ["", "#### Fleet", "", "| change | what | name | tenant | details |", "|---|---|---|---|---|"]
            rows = [f"| {ITEM_VERBS[i.action]} | {KIND_NAMES[i.kind][0]} | {_code(i.name)} | {i.tenant or ''} | "
                    + "<br>".join(f"{_code(f.path)}: {_code(f.before, 40)} → {_code(f.after, 40)}"
                                  for f in i.fields) + " |" for i in d.items]
            lines += self._rows(rows, limits, "changes")
        if d.records:
            lines += ["", "#### DNS records", "", "| action | name | type | value | TTL | published by |",
                      "|---|---|---|---|---|---|"]
            rows = []
            for rc in d.records:
                r = rc.record
                value = _code(_record_what(r), 70)
                if rc.before is not None and (rc.before.value, rc.before.ttl) != (r.value, r.ttl):
                    value = f"{_code(_record_what(rc.before), 70)} → {value}"
                publisher = _publisher(r)
                if rc.before is not None and rc.before.provider != r.provider:
                    publisher = f"{_publisher(rc.before)} → {publisher}"
                ttl = f"{rc.before.ttl} → {r.ttl}" if rc.before is not None and rc.before.ttl != r.ttl else r.ttl
                rows.append(f"| {rc.action} | {_code(r.name)} | {r.type} | {value} | {ttl} | {publisher} |")
            lines += self._rows(rows, limits, "records")
        changed = [c for c in d.capacity if c.changed]
        if changed:
            lines += ["", "#### Warmup capacity (messages per day)", "",
                      f"| tenant | today, {d.on.isoformat()} | in 30 days, {d.later.isoformat()} |", "|---|--:|--:|"]
            lines += [f"| {c.tenant} | {today} | {later} |" for c in changed for today, later in [_capacity_cells(c)]]
        else:
            lines += ["", capacity_unchanged(d)]
        chart = f"[warmup chart]({review.chart_url})" if review.chart_url else f"run `{review.chart_command}`"
        lines += ["", f"📈 Warmup chart: {chart}"]
        every = ordered_findings(review.findings or ())
        findings = [f for f in every if (f.severity == "error" and f.waived is None) or review.in_changed_file(f)]
        lines += ["", f"#### Policy: {policy_summary(review)}"]
        if findings:
            lines.append("")
            marks = {0: "❌ **error**", 1: "⚠️ warning", 2: "ℹ️ waived"}
            for f in findings:
                p = f.problem
                mark = marks[2 if f.waived is not None else 0 if f.severity == "error" else 1]
                why = f" — waived: {f.waived}" if f.waived is not None else (f" ({p.hint})" if p.hint else "")
                lines.append(f"- {mark} `{f.check}` at `{p.file}:{p.line}:{p.col}` {_code(p.path)}: {p.message}{why}")
        if len(every) > len(findings):
            rest = len(every) - len(findings)
            lines += ["", f"{rest} more finding{'s' if rest != 1 else ''} (warnings and waivers) in files this change "
                      f"does not touch: `mailplane validate {review.stack_dir}` lists them."]
        if d.resources:
            by_action: Counter[str] = Counter(r.action for r in d.resources)
            title = ", ".join(f"{by_action[a]} to {a}" for a in RESOURCE_ACTIONS if by_action[a])
            lines += ["", f"<details><summary>Pulumi resources: {title}</summary>", "",
                      "| action | type | name | tenant | changed inputs |", "|---|---|---|---|---|"]
            rows = [f"| {r.action} | `{r.type}` | {_code(r.name)} | {r.tenant or ''} | "
                    + "<br>".join(f"{_code(c.key)}: {_code(c.before, 40)} → {_code(c.after, 40)}"
                                  + (" (forces replacement)" if c.forces_replacement else "") for c in r.changes)
                    + " |" for r in d.resources]
            lines += [*self._rows(rows, limits, "resources"), "", "</details>"]
        for h in d.hosts:
            lines += ["", f"<details><summary>PowerMTA <code>{h.host}</code> ({ITEM_VERBS[h.action]}): "
                      f"+{h.added} −{h.removed} lines</summary>", ""]
            body = h.diff.rstrip("\n").splitlines()
            if limits.diff_lines is not None and len(body) > limits.diff_lines:
                omitted = len(body) - limits.diff_lines
                body = body[: limits.diff_lines]
                note = (f"{omitted} more lines: run `mailplane plan {review.stack_dir} --base {review.base_ref}` "
                        "for the whole diff")
                lines += [_fenced("\n".join(body)), "", note] if body else [note]
            else:
                lines.append(_fenced("\n".join(body)))
            lines += ["", "</details>"]
        return "\n".join(lines) + "\n"


FORMATTERS: dict[str, type[TextFormatter] | type[JsonFormatter] | type[MarkdownFormatter]] = {
    "text": TextFormatter, "json": JsonFormatter, "markdown": MarkdownFormatter}


def render(review: Review, output: str) -> str:
    return FORMATTERS[output]().format(review)
