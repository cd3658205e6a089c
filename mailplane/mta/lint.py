"""A checker for PowerMTA config text, run before a config replaces the one a host is using.

PowerMTA is proprietary and cannot run here, and a built-in "check this file" command is
unconfirmed, so this is the Ansible template task's ``validate:`` step: a rendered config that
fails it never reaches ``/etc/pmta/config``.  It checks what a template bug or a hand edit
typically breaks: tag balance and nesting, unknown or misplaced directives, value syntax, and
the references between blocks (pool members, default VMTAs, pattern lists, domain macros).

It is pure (text in, problems out) and reports every problem at once, sorted by line.  What
PowerMTA accepts where lives in :mod:`mailplane.mta.directives`; this module only walks the text.

Rules of the walk, decided here because the reference does not settle them:

- ``#`` starts a comment anywhere on a line; blank lines and comments are ignored.
- Tag and directive names are case-insensitive, and so are the names blocks refer to each other
  by (``directives.CASE_SENSITIVE``).
- A file with no directive and no block at all (empty, blank or only comments) is an error: an
  empty render is the most common broken render, and it must not replace a working config.
- ``include`` is not followed: the validate step sees one temporary file.  A file that includes
  others may define names elsewhere, so its references to undefined names are not reported.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

from mailplane.mta import directives as d
from mailplane.mta.values import parse_ip_range


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
    """Non-repeatable directives already set in this block, with their line."""
    children: dict[tuple[str, str], int] = field(default_factory=dict)
    members: int = 0


@dataclass(frozen=True)
class _Reference:
    line: int
    kinds: tuple[str, ...]
    name: str
    label: str


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
            elif top.block is not None and top.block.patterns:
                if problem := top.block.line_check(content):
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
        if block.arg is None:
            if arg:
                self.report(number, f"<{written}> takes no argument, got {arg!r}")
        elif not arg:
            self.report(number, f"<{written}> needs an argument, e.g. <{written} NAME>")
        elif problem := block.arg(arg):
            self.report(number, f"{label}: {problem}")
        elif block.defines:
            self.define(number, block.defines, arg, label)
        elif kind == "domain" and arg.startswith(d.MACRO_PREFIX):
            self.references.append(_Reference(number, ("domain-macro",), arg[len(d.MACRO_PREFIX):], label))
        if not block.defines:
            key = (kind, fold(arg))
            if key in parent.children:
                self.report(number, f"duplicate {label} {_where(parent.kind)} (first at line {parent.children[key]})",
                            "merge the two blocks")
            else:
                parent.children[key] = number
        self.stack.append(frame)

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
        if frame.kind == "virtual-mta-pool" and frame.block is not None and frame.members == 0:
            self.report(frame.line, f"{frame.label} has no members", "add 'virtual-mta NAME' lines or remove the pool")

    def directive(self, number: int, content: str) -> None:
        written, *rest = content.split(None, 1)
        value = rest[0] if rest else ""
        key = fold(written)
        top = self.stack[-1]
        if key == "include":
            self.includes = True
        if top.kind == "virtual-mta-pool" and key == "virtual-mta":
            top.members += 1  # counted even when the value is wrong: one problem, not two
        table = d.DIRECTIVES.get(top.kind, {})
        directive = table.get(key)
        if directive is None:
            elsewhere = d.where_allowed(key)
            if elsewhere:
                places = ", ".join(_where(c) for c in elsewhere)
                self.report(number, f"{written} is not allowed {_where(top.kind)}; it belongs {places}")
                # Its value is checked as where it belongs: the author gets both problems in one run.
                if value and (problem := d.DIRECTIVES[elsewhere[0]][key].check(value)):
                    self.report(number, f"{written}: {problem}")
            else:
                hint = _suggest(key, list(table)) or _suggest(key, d.all_directive_names())
                self.report(number, f"unknown directive {written!r} {_where(top.kind)}", hint)
            return
        if not value:
            self.report(number, f"{written} needs a value")
            return
        if not directive.repeatable:
            if key in top.seen:
                self.report(number, f"{written} is set twice {_where(top.kind)} (first at line {top.seen[key]})",
                            "keep one")
            else:
                top.seen[key] = number
        if problem := directive.check(value):
            self.report(number, f"{written}: {problem}")
            return
        if directive.refers_to:
            self.references.append(_Reference(number, directive.refers_to, value, f"{written} {value}"))
        if directive.defines:
            self.define(number, directive.defines, value.split()[0], f"{written} {value.split()[0]}")
        if directive.exclusive_ip and top.kind == "virtual-mta":
            address = value.split()[0]
            version, first, last = parse_ip_range(address)
            self.addresses.append(_Address(version, first, last, number, address, top.name))

    # -- whole-file checks ------------------------------------------------------------------

    def define(self, number: int, kind: str, name: str, label: str) -> None:
        space = _space(kind)
        key = (space[0], fold(name))
        first = self.definitions.get(key)
        if first is not None:
            self.report(number, f"{label}: the name {name!r} is already used by the <{first.kind}> at line {first.line}"
                        if first.kind != "domain-macro" else
                        f"{label}: domain-macro {name!r} is already defined at line {first.line}",
                        "names must be unique")
            return
        self.definitions[key] = _Definition(kind, name, number)

    def finish(self) -> None:
        for frame in reversed(self.stack[1:]):
            self.report(frame.line, f"{frame.label} is never closed", f"add </{frame.kind}> before the end of the file")
            self.end(frame)
        if self.statements == 0:
            self.report(1, "empty config: no directives and no blocks",
                        "a render that produced nothing must not replace a working config")
        self.resolve()
        self.overlapping_addresses()

    def resolve(self) -> None:
        """Every name a directive refers to is defined in the file, before or after the reference."""
        for ref in self.references:
            space = _space(ref.kinds[0])
            found = self.definitions.get((space[0], fold(ref.name)))
            if found is not None and found.kind in ref.kinds:
                continue
            wanted = " or ".join(f"<{kind}>" if kind in d.BLOCKS else kind for kind in ref.kinds)
            if found is not None:
                self.report(ref.line, f"{ref.label}: {ref.name!r} is a <{found.kind}> (line {found.line}), "
                            f"not a {wanted}")
            elif not self.includes:
                names = [x.name for x in self.definitions.values() if x.kind in ref.kinds]
                self.report(ref.line, f"{ref.label}: no {wanted} named {ref.name!r} in this file",
                            _suggest(ref.name, names))

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


def _space(kind: str) -> tuple[str, ...]:
    return next((space for space in d.NAME_SPACES if kind in space), (kind,))


def check(text: str, file: str) -> LintReport:
    """Problems and the blocks seen; :func:`lint` when only the problems matter."""
    return _Linter(file).run(text)


def lint(text: str, file: str) -> list[LintProblem]:
    """Every problem of one config file, sorted by line; an empty list means it passes."""
    return check(text, file).problems
