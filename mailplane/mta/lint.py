"""A checker for PowerMTA config text, run before a config replaces the one a host is using.

PowerMTA is proprietary and cannot run here, and ``pmta test config`` checks only the live file,
so this is the Ansible template task's ``validate:`` step: a rendered config that fails it never
reaches ``/etc/pmta/config``.  It knows PowerMTA's own syntax, not only what mailplane writes
(``docs/powermta.md``, "What pmta-lint checks"): every documented form is accepted, and a mistake
is reported at its line, with a did-you-mean where a name was misspelt.  It checks tag balance
and nesting, unknown, misplaced and deprecated directives, value syntax, the references between
blocks (pool members, default VMTAs, pattern lists, macros, queue-to targets, rollups) and the
documented load errors (no log-file, a pool named like a VMTA, one VMTA in two pools that both
have ``<domain>`` blocks, ``<vault>`` twice) and one IP in two VMTAs.

It is pure (text in, problems out) and reports every problem at once, sorted by line.  What
PowerMTA accepts where lives in :mod:`mailplane.mta.directives`; this module only walks the text.

Rules of the walk (g 3.1):

- ``#`` starts a comment anywhere on a line; blank lines and comments are ignored.
- Tag and directive names are case-insensitive, and so are the names blocks refer to each other
  by (``directives.CASE_SENSITIVE``).
- A file with no directive and no block at all is an error: an empty render is the most common
  broken render, and it must not replace a working config.
- ``include`` is not followed: the validate step sees one temporary file.  A file that includes
  others may define names (and the log-file) elsewhere, so what it lacks is not reported.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from mailplane.mta import directives as d
from mailplane.mta import values as v


@dataclass(frozen=True, order=True)
class LintProblem:
    """One problem at one line (1-based).  No column or YAML path: a config line is one statement."""

    file: str
    line: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}: {self.message}{hint}"


@dataclass
class LintReport:
    problems: list[LintProblem]
    blocks: Counter[str]
    """Blocks opened, by kind: the CLI's "ok" line says what it checked."""


_TAG_RE = re.compile(r"<(/?)\s*([^\s<>/]+)(?:\s+([^<>]*?))?\s*>(.*)")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BOM = "\ufeff"
_CLOSE_ENOUGH = 0.8
"""How alike a wrong closing tag must be to the open block's name to count as its misspelling."""


def fold(name: str) -> str:
    return name if d.CASE_SENSITIVE else name.lower()


def _where(context: str) -> str:
    return "at top level" if context == d.GLOBAL else f"in <{context}>"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def _space(kind: str) -> tuple[str, ...]:
    return next((space for space in d.NAME_SPACES if kind in space), (kind,))


@dataclass
class _Frame:
    """An open block (or the file itself, kind ``global``) while the walk is inside it."""

    kind: str
    label: str
    line: int
    block: d.Block | None
    """``None`` for an unknown block: its body is skipped, not reported line by line."""
    name: str = ""
    seen: dict[str, int] = field(default_factory=dict)
    """Directives already set in this block, with the line of the first."""
    children: dict[tuple[str, str], int] = field(default_factory=dict)
    members: list[tuple[str, int]] = field(default_factory=list)
    has_domain: bool = False


@dataclass(frozen=True)
class _Reference:
    line: int
    kinds: tuple[str, ...]
    name: str
    label: str
    before: bool = False
    """The definition must come earlier in the file."""


@dataclass(frozen=True)
class _Definition:
    kind: str
    name: str
    line: int


@dataclass(frozen=True)
class _Address:
    version: int
    first: int
    last: int
    line: int
    text: str
    vmta: str


@dataclass(frozen=True)
class _Pool:
    name: str
    line: int
    has_domain: bool
    members: tuple[tuple[str, int], ...]


class _Linter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[LintProblem] = []
        self.root = _Frame(kind=d.GLOBAL, label="top level", line=0, block=None)
        self.stack: list[_Frame] = [self.root]
        self.definitions: dict[tuple[str, str], _Definition] = {}
        """By (name space, folded name): VMTAs and pools share one space."""
        self.references: list[_Reference] = []
        self.addresses: list[_Address] = []
        self.pools: list[_Pool] = []
        self.domains: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        """``<domain NAME>`` blocks by folded name: (line, has smtp-hosts)."""
        self.queue_to: list[tuple[int, str]] = []
        self.rollups: list[tuple[int, str]] = []
        """Wildcard ``mx`` lines without rollup-by-ip: their rollup domain needs smtp-hosts."""
        self.once: dict[str, int] = {}
        self.includes = False
        self.statements = 0
        self.blocks: Counter[str] = Counter()

    def report(self, line: int, message: str, hint: str = "") -> None:
        self.problems.append(LintProblem(self.file, line, message, hint))

    # -- the walk ---------------------------------------------------------------------------

    def run(self, text: str) -> LintReport:
        if text.startswith(_BOM):
            self.report(1, "the file starts with a UTF-8 byte order mark", "save it without one")
            text = text[len(_BOM):]
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.removesuffix("\r")
            if match := _CONTROL_RE.search(line):
                self.report(number, f"control character U+{ord(match.group()):04X} in the line (a binary file?)")
                continue
            content = line.split("#", 1)[0].strip()
            if not content:
                continue
            self.statements += 1
            top = self.stack[-1]
            if content.startswith("<"):
                self.tag(number, content)
            elif top is not self.root and top.block is None:
                continue  # inside an unknown block, already reported at its tag
            elif top.block is not None and top.block.lines is not None:
                if problem := top.block.lines(content):
                    self.report(number, f"{top.label}: {problem}")
            else:
                self.directive(number, content)
        self.finish()
        return LintReport(sorted(set(self.problems)), self.blocks)

    def tag(self, number: int, content: str) -> None:
        match = _TAG_RE.fullmatch(content)
        if not match and ">" not in content:
            match = _TAG_RE.fullmatch(content + ">")
            if match and fold(match.group(2)) in d.BLOCKS:  # read it as meant: one problem, not a cascade
                self.report(number, f"tag {content!r} has no closing '>'")
            else:
                match = None
        if not match:
            self.report(number, f"malformed tag {content!r}", "a tag is <name ARG> or </name>, alone on its line")
            return
        closing, written, arg, rest = match.group(1), match.group(2), match.group(3) or "", match.group(4).strip()
        if rest:
            self.report(number, f"text after the tag: {rest!r}", "put each directive on its own line")
        if closing:
            if arg:
                self.report(number, f"closing tag </{written} {arg}> takes no argument", f"write </{written}>")
            self.close(number, fold(written), written)
        else:
            self.open(number, fold(written), written, arg)

    def open(self, number: int, kind: str, written: str, arg: str) -> None:
        parent = self.stack[-1]
        block = d.BLOCKS.get(kind)
        label = f"<{written} {arg}>" if arg else f"<{written}>"
        frame = _Frame(kind=kind, label=label, line=number, block=block, name=arg)
        if block is None:
            self.stack.append(frame)
            self.report(number, f"unknown block <{written}>", _suggest(kind, list(d.BLOCKS)))
            return
        self.blocks[kind] += 1
        inside_unknown = parent is not self.root and parent.block is None
        if parent.kind not in block.parents and not inside_unknown:
            places = " or ".join(_where(p) for p in block.parents)
            where = "at top level" if parent is self.root else f"in {parent.label} (line {parent.line})"
            self.report(number, f"<{written}> cannot be opened {where}; it belongs {places}",
                        f"is </{parent.kind}> missing before it?" if parent is not self.root else "")
            parent = self.reopen_at(block)
        if kind == "domain":
            parent.has_domain = True
        if block.once:
            if kind in self.once:
                self.report(number, f"<{written}> may appear only once (first at line {self.once[kind]})",
                            "merge the two blocks")
            self.once[kind] = number
        self.argument(number, block, parent.kind, written, arg, label)
        defines = bool(block.defines and arg and block.arg_check(parent.kind) and block.named(arg))
        if not defines and not block.once:
            key = (kind, fold(arg))
            if key in parent.children:
                self.report(number, f"duplicate {label} {_where(parent.kind)} (first at line {parent.children[key]})",
                            "merge the two blocks")
            else:
                parent.children[key] = number
        self.stack.append(frame)

    def argument(self, number: int, block: d.Block, parent: str, written: str, arg: str, label: str) -> None:
        check = block.arg_check(parent)
        if check is None:
            if arg:
                self.report(number, f"<{written}> takes no argument {_where(parent)}, got {arg!r}")
        elif not arg:
            self.report(number, f"<{written}> needs an argument {_where(parent)}, e.g. <{written} NAME>")
        elif problem := v.quote_problem(arg) or check(v.unquote(arg)):
            self.report(number, f"{label}: {problem}")
        elif block.defines and block.named(arg):
            self.define(number, block.defines, arg, label)
        elif block.macros:
            for macro in v.macros_in(arg):
                self.references.append(_Reference(number, ("domain-macro",), macro, label, before=True))

    def reopen_at(self, block: d.Block) -> _Frame:
        """Recovery from a block opened where it cannot be: the usual cause is a missing closing
        tag, so the open blocks that cannot hold it are taken as closed (the problem is already
        reported), and what follows is checked where it most likely belongs."""
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].kind in block.parents:
                while len(self.stack) > depth + 1:
                    self.end(self.stack.pop())
                break
        return self.stack[-1]

    def close(self, number: int, kind: str, written: str) -> None:
        open_frames = self.stack[1:]
        if not open_frames:
            self.report(number, f"</{written}> closes nothing: no block is open")
            return
        top = open_frames[-1]
        if top.kind == kind:
            self.end(self.stack.pop())
            return
        depth = next((i for i in range(len(open_frames) - 1, -1, -1) if open_frames[i].kind == kind), None)
        if depth is not None:
            for inner in reversed(open_frames[depth + 1:]):
                self.report(number, f"{inner.label} (line {inner.line}) is still open at </{written}>",
                            f"close it with </{inner.kind}> first")
            for _ in range(len(open_frames) - depth):
                self.end(self.stack.pop())
            return
        misspelt = difflib.SequenceMatcher(None, kind, top.kind).ratio() >= _CLOSE_ENOUGH
        if not (misspelt and top.block is None):  # an unknown block's misspelt tag is already reported
            self.report(number, f"</{written}> does not match {top.label} opened at line {top.line}",
                        f"expected </{top.kind}>")
        if misspelt:
            self.end(self.stack.pop())  # a misspelt closing tag: the block is meant to end here

    def end(self, frame: _Frame) -> None:
        """Checks that need the whole block."""
        block = frame.block
        if block is None:
            return
        for needed in block.requires:
            if needed not in frame.seen:
                self.report(frame.line, f"{frame.label} has no {needed}", f"{block.section}: it is required")
        for first, second in block.conflicts:
            if first in frame.seen and second in frame.seen:
                later = max(frame.seen[first], frame.seen[second])
                self.report(later, f"{first} and {second} cannot be combined in one {frame.label}")
        if frame.kind == "virtual-mta-pool":
            if not frame.members:
                self.report(frame.line, f"{frame.label} has no members",
                            "add 'virtual-mta NAME' lines or remove the pool")
            self.pools.append(_Pool(frame.name, frame.line, frame.has_domain, tuple(frame.members)))
        if frame.kind == "domain":
            self.domains[fold(frame.name)].append((frame.line, "smtp-hosts" in frame.seen))

    def directive(self, number: int, content: str) -> None:
        written, *rest = content.split(None, 1)
        value = rest[0].strip() if rest else ""
        key = fold(written)
        top = self.stack[-1]
        if key == "include":
            self.includes = True
        table = d.DIRECTIVES.get(top.kind, {})
        directive = table.get(key)
        if directive is None:
            self.unknown(number, written, key, value, top.kind, table)
            return
        if directive.deprecated:
            how = directive.deprecated
            self.report(number, f"{written} is no longer valid ({directive.section})" if how.startswith("no longer")
                        else f"{written} is deprecated ({directive.section})", how)
            return
        if top.kind == "virtual-mta-pool" and key == "virtual-mta" and value:
            top.members.append((value, number))  # counted even when the value is wrong: one problem, not two
        if not value:
            self.report(number, f"{written} needs a value", "PowerMTA refuses the file: 'argument missing'")
            return
        if not directive.repeatable and key in top.seen:
            self.report(number, f"{written} is set twice {_where(top.kind)} (first at line {top.seen[key]})",
                        "keep one")
        top.seen.setdefault(key, number)
        if problem := v.quote_problem(value):
            self.report(number, f"{written}: {problem}")
            return
        if value == '""':
            if not directive.clearable:
                self.report(number, f"{written}: '\"\"' clears only an inherited list or address",
                            f"give {written} a value or remove the line")
            return
        value = v.unquote(value)
        if problem := directive.check(value):
            self.report(number, f"{written}: {problem}")
            return
        self.record(number, top, key, written, value, directive)

    def unknown(self, number: int, written: str, key: str, value: str, context: str,
                table: dict[str, d.Directive]) -> None:
        elsewhere = [c for c in d.where_allowed(key) if not d.DIRECTIVES[c][key].deprecated]
        if elsewhere:
            places = ", ".join(_where(c) for c in elsewhere)
            self.report(number, f"{written} is not allowed {_where(context)}; it belongs {places}",
                        _suggest(key, list(table)))
            # Its value is checked as where it belongs: the author gets both problems in one run.
            if value and (problem := d.DIRECTIVES[elsewhere[0]][key].check(v.unquote(value))):
                self.report(number, f"{written}: {problem}")
            return
        hint = d.NOT_POWERMTA.get(key) or _suggest(key, list(table)) or _suggest(key, d.all_directive_names())
        self.report(number, f"unknown directive {written!r} {_where(context)}", hint)

    def record(self, number: int, top: _Frame, key: str, written: str, value: str, directive: d.Directive) -> None:
        """What a valid directive defines and refers to, for the whole-file checks."""
        label = f"{written} {value}"
        if directive.refers_to:
            for target in directive.names(value):
                self.references.append(_Reference(number, directive.refers_to, target, label, directive.before))
        if directive.defines:
            macro = value.split()[0]
            self.define(number, directive.defines, macro, f"{written} {macro}")
        if directive.macros:
            used = value.split(None, 1)[1] if directive.defines else value
            for macro in v.macros_in(used):
                self.references.append(_Reference(number, ("domain-macro",), macro, label, before=True))
        if directive.exclusive_ip and top.kind == "virtual-mta":
            address = v.words(value)[0]
            network = v.parse_network(address)
            self.addresses.append(_Address(network.version, int(network.network_address),
                                           int(network.broadcast_address), number, address, top.name))
        if top.kind == "domain" and key == "queue-to":
            self.queue_to.append((number, value))
        if top.kind == "mx-rollup-list":
            wildcard, rollup, by_ip = v.mx_rollup_parts(value)
            if wildcard and not by_ip:
                self.rollups.append((number, rollup))
        if top.kind == "pattern-list":
            for kind, target in v.pattern_result_names(value):
                kinds = d.VMTA_NAMES if kind == "virtual-mta" else ("pattern-list",)
                self.references.append(_Reference(number, kinds, target, f"{written} … {kind}={target}",
                                                  before=kind == "pattern-list"))

    # -- whole-file checks ------------------------------------------------------------------

    def define(self, number: int, kind: str, name: str, label: str) -> None:
        space = _space(kind)
        key = (space[0], fold(name))
        first = self.definitions.get(key)
        if first is not None:
            if first.kind == "domain-macro":
                self.report(number, f"{label}: domain-macro {name!r} is already defined at line {first.line}",
                            "names must be unique")
            else:
                pool_vmta = {first.kind, kind} == set(d.VMTA_NAMES)
                self.report(number, f"{label}: the name {name!r} is already used by the <{first.kind}> at line "
                            f"{first.line}", "a pool may not share a VMTA's name (g 9.3)" if pool_vmta
                            else "names must be unique")
            return
        self.definitions[key] = _Definition(kind, name, number)

    def finish(self) -> None:
        for frame in reversed(self.stack[1:]):
            self.report(frame.line, f"{frame.label} is never closed", f"add </{frame.kind}> before the end of the file")
            self.end(frame)
        if self.statements == 0:
            self.report(1, "empty config: no directives and no blocks",
                        "a render that produced nothing must not replace a working config")
            return
        if "log-file" not in self.root.seen and not self.includes:
            self.report(1, "no log-file: PowerMTA does not start without one ('No logging file specified')",
                        "add e.g. 'log-file /var/log/pmta/log' at top level")
        self.resolve()
        if not self.includes:
            self.queue_targets()
        self.shared_pool_members()
        self.overlapping_addresses()

    def resolve(self) -> None:
        """Every name a directive refers to is defined in the file (earlier, where PowerMTA needs that)."""
        for ref in self.references:
            space = _space(ref.kinds[0])
            found = self.definitions.get((space[0], fold(ref.name)))
            wanted = " or ".join(f"<{kind}>" if kind in d.BLOCKS else kind for kind in ref.kinds)
            if found is not None and found.kind in ref.kinds:
                if ref.before and found.line > ref.line:
                    self.report(ref.line, f"{ref.label}: {wanted} {ref.name!r} is defined at line {found.line}, "
                                "after its use", "PowerMTA reads the file in order: define it earlier")
                continue
            if found is not None:
                self.report(ref.line, f"{ref.label}: {ref.name!r} is a <{found.kind}> (line {found.line}), "
                            f"not a {wanted}")
            elif not self.includes:
                names = [x.name for x in self.definitions.values() if x.kind in ref.kinds]
                self.report(ref.line, f"{ref.label}: no {wanted} named {ref.name!r} in this file",
                            _suggest(ref.name, names))

    def queue_targets(self) -> None:
        """queue-to and wildcard rollups send a queue to a ``<domain NAME>`` that must say where (smtp-hosts)."""
        needs = [(line, target, f"queue-to {target}") for line, target in self.queue_to]
        needs += [(line, rollup, f"mx … {rollup} (a wildcard MX without rollup-by-ip)")
                  for line, rollup in self.rollups]
        for line, target, label in needs:
            blocks = self.domains.get(fold(target), [])
            if not blocks:
                self.report(line, f"{label}: no <domain {target}> in this file",
                            _suggest(fold(target), list(self.domains)) or f"add <domain {target}> with smtp-hosts")
            elif not any(has_hosts for _, has_hosts in blocks):
                self.report(line, f"{label}: <domain {target}> (line {blocks[0][0]}) has no smtp-hosts",
                            "the target queue needs its own smtp-hosts")

    def shared_pool_members(self) -> None:
        """A VMTA in two pools that both have ``<domain>`` blocks is a load error (g 3.3.13.2)."""
        first_pool: dict[str, _Pool] = {}
        for pool in self.pools:
            if not pool.has_domain:
                continue
            for member, line in pool.members:
                other = first_pool.setdefault(fold(member), pool)
                if other is not pool:
                    self.report(line, f"virtual-mta {member} is also in <virtual-mta-pool {other.name}> "
                                f"(line {other.line}), and both pools have <domain> blocks",
                                "PowerMTA refuses that: keep the VMTA in one of them or move the <domain> blocks")

    def overlapping_addresses(self) -> None:
        """One IP belongs to one VMTA: two VMTAs on one address would mix two tenants' reputations."""
        widest: _Address | None = None
        for address in sorted(self.addresses, key=lambda a: (a.version, a.first, a.line)):
            if widest is not None and widest.version == address.version and address.first <= widest.last:
                earlier, later = sorted((widest, address), key=lambda a: a.line)
                owner = ("this <virtual-mta>" if fold(earlier.vmta) == fold(later.vmta)
                         else f"<virtual-mta {earlier.vmta}>")
                self.report(later.line, f"smtp-source-host {later.text} overlaps {earlier.text} of {owner} "
                            f"(line {earlier.line})", "one IP belongs to one virtual-mta")
            if widest is None or widest.version != address.version or address.last > widest.last:
                widest = address


def check(text: str, file: str) -> LintReport:
    """Problems and the blocks seen; :func:`lint` when only the problems matter."""
    return _Linter(file).run(text)


def lint(text: str, file: str) -> list[LintProblem]:
    """Every problem of one config file, sorted by line; an empty list means it passes."""
    return check(text, file).problems
