"""Safe, located YAML reading: bytes in, plain data plus a node tree for locating errors out.

The read path uses libyaml (PyYAML's C parser) to build the node tree and a small walker to turn
it into dicts, lists and scalars.  The node tree is kept: when validation later finds a problem
at ``domains[3].dkim``, :meth:`SourceDoc.locate` walks the same path through the nodes to get
its line and column, so the fast path pays nothing for positions it never reports.

The walker is also where the loader is strict where plain ``yaml.safe_load`` is lenient:
duplicate keys (a silent "last one wins" loses someone's change), alias bombs, recursive
aliases, custom tags, unsupported YAML types, oversized files and non-UTF-8 bytes.
ruamel.yaml's round-trip loader is kept for edits only: it is an order of magnitude slower.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mailplane.model.dates import date_problem
from mailplane.model.problems import StackError, YamlPath, YamlProblem, format_path

MAX_FILE_BYTES = 2 * 1024 * 1024
"""A tenant file is a few kilobytes; two megabytes leaves room for a large fleet.yaml."""
MAX_ALIASES = 64
"""Anchors are handy for sharing a block or two; more than this is not hand-written YAML."""
MAX_EXPANSION = 20_000
"""Nodes that aliases may add beyond the document's own: bounds the billion-laughs attack."""
MAX_DEPTH = 64

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()

_T = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _T + "str", _T + "map", _T + "seq", _T + "merge"
_SCALARS: dict[str, Callable[[ScalarNode], Any]] = {
    _T + "int": _constructor.construct_yaml_int,
    _T + "float": _constructor.construct_yaml_float,
    _T + "bool": _constructor.construct_yaml_bool,
    _T + "null": lambda node: None,
    _T + "timestamp": _constructor.construct_yaml_timestamp,
}


class SourceDoc:
    """One parsed file: its display name and text, for locating paths.

    The node tree is composed again on the first :meth:`locate`, not kept from :func:`parse`:
    a fleet holds every file's document, and keeping a million nodes alive makes each garbage
    collection walk them (on a 1,000-tenant stack that was two thirds of the load time).  Only
    a file with a problem to report pays for a second parse.
    """

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self._root: Node | None = None

    @property
    def root(self) -> Node | None:
        if self._root is None:
            self._root = yaml.compose(self.text, Loader=_Loader)
        return self._root

    def locate(self, path: YamlPath, *, at_key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the deepest node along ``path``.

        ``at_key`` points at the mapping key rather than its value: right for an unknown or
        duplicate key.  A path that leaves the document (a missing key) stops at its parent.
        """
        node = self.root
        if node is None:
            return 1, 1
        mark = node.start_mark
        for i, part in enumerate(path):
            last = i == len(path) - 1
            found = _child(node, part)
            if found is None:
                break
            key_node, node = found
            mark = key_node.start_mark if (last and at_key and key_node is not None) else node.start_mark
        return mark.line + 1, mark.column + 1

    def problem(self, path: YamlPath, message: str, hint: str = "", *, at_key: bool = False) -> YamlProblem:
        line, col = self.locate(path, at_key=at_key)
        return YamlProblem(self.file, line, col, format_path(path), message, hint)


def _child(node: Node, part: object, seen: frozenset[int] = frozenset()) -> tuple[Node | None, Node] | None:
    """The key and value node of ``part`` under ``node``, looking into merged mappings too.

    ``seen`` guards against a mapping that merges itself (already reported by the walker).
    """
    if isinstance(node, SequenceNode) and isinstance(part, int):
        return (None, node.value[part]) if 0 <= part < len(node.value) else None
    if isinstance(node, MappingNode) and id(node) not in seen:
        merges: list[Node] = []
        for key, value in node.value:
            if key.tag == _MERGE:
                merges.extend(value.value if isinstance(value, SequenceNode) else [value])
            elif isinstance(key, ScalarNode) and _key_matches(key, part):
                return key, value
        for merged in merges:
            found = _child(merged, part, seen | {id(node)})
            if found is not None:
                return found
    return None


def _key_matches(key: ScalarNode, part: object) -> bool:
    if key.value == part:  # text keys, and numbers or dates pydantic reports as text
        return True
    if key.tag == _STR:
        return False
    try:
        return bool(_SCALARS[key.tag](key) == part)
    except (KeyError, ValueError, yaml.YAMLError):
        return False


def decode(raw: bytes, file: str) -> str:
    """UTF-8 only (a leading BOM is tolerated); anything else is reported where it breaks."""
    if len(raw) > MAX_FILE_BYTES:
        raise StackError([YamlProblem(file, 1, 1, "(document)",
                                  f"file is {len(raw):,} bytes, above the {MAX_FILE_BYTES:,}-byte limit",
                                  "split it, or check that the right file was committed")])
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        line = body.count(b"\n", 0, err.start) + 1
        line_start = body.rfind(b"\n", 0, err.start) + 1
        col = len(body[line_start:err.start].decode("utf-8", "replace")) + 1  # characters, as libyaml counts
        raise StackError([YamlProblem(file, line, col, "(document)",
                                  f"not valid UTF-8 (byte 0x{body[err.start]:02x})",
                                  "save the file as UTF-8")]) from None


def parse(raw: bytes, file: str) -> tuple[Any, SourceDoc, list[YamlProblem]]:
    """Parse one YAML document into plain data.

    Problems that leave a usable document (a duplicate key: the first is kept; a rejected alias)
    are returned, so validation can go on and report the rest in the same run; problems that
    leave nothing to read (syntax, encoding) raise :class:`StackError`.
    """
    text = decode(raw, file)
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise StackError([YamlProblem(file, line, 1, "(document)", "NUL character in a text file")])
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        raise StackError([_syntax_problem(err, file, text)]) from None
    except yaml.reader.ReaderError as err:  # characters YAML does not allow, e.g. control codes
        position = err.position
        if _Loader is not yaml.SafeLoader:  # libyaml counts bytes of the UTF-8 text
            position = len(text.encode("utf-8")[:position].decode("utf-8", "ignore"))
        line, col = _line_col(text, position)
        raise StackError([YamlProblem(file, line, col, "(document)",
                                  _character_message(_code(err.character)),
                                  "remove it, or write it as an escape in a double-quoted string")]) from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "YAML error"
        raise StackError([YamlProblem(file, 1, 1, "(document)", f"YAML error: {first}")]) from None
    except RecursionError:
        raise StackError([YamlProblem(file, 1, 1, "(document)", "nesting too deep")]) from None
    doc = SourceDoc(file, text)
    if root is None:
        raise StackError([YamlProblem(file, 1, 1, "(document)", "file is empty",
                                  "write the mapping this file should hold, or delete the file")])
    walker = _Walker(doc)
    data = walker.convert(root, (), 0)
    problems = walker.problems
    if walker.alias_fixups:
        marks = _collection_alias_marks(text)
        for index, ordinal in walker.alias_fixups:
            if ordinal < len(marks):
                mark = marks[ordinal]
                problems[index] = dataclasses.replace(problems[index], line=mark.line + 1, col=mark.column + 1)
    return data, doc, problems


def _collection_alias_marks(text: str) -> list[Any]:
    """Positions of the aliases to sequences and mappings, in document order (the walker's order)."""
    anchors: dict[str, bool] = {}
    marks = []
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent) and event.anchor:
            anchors[event.anchor] = True
        elif isinstance(event, yaml.ScalarEvent) and event.anchor:
            anchors[event.anchor] = False
        elif isinstance(event, yaml.AliasEvent) and event.anchor and anchors.get(event.anchor):
            marks.append(event.start_mark)
    return marks


def _character_message(code: int) -> str:
    if code < 0x20 or 0x7F <= code < 0xA0:
        return f"control characters are not allowed in YAML (found U+{code:04X})"
    return f"character U+{code:04X} is not allowed in YAML"


def _code(character: object) -> int:
    if isinstance(character, int):
        return character
    return ord(character[:1]) if isinstance(character, str) and character else 0


_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
"""Line breaks as YAML 1.1 (and so libyaml's marks) count them."""


def _line_col(text: str, position: int) -> tuple[int, int]:
    breaks = list(_BREAK.finditer(text, 0, position))
    line_start = breaks[-1].end() if breaks else 0
    return len(breaks) + 1, position - line_start + 1


def _syntax_problem(err: yaml.MarkedYAMLError, file: str, text: str) -> YamlProblem:
    mark = err.problem_mark or err.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = " ".join(str(part) for part in (err.context, err.problem) if part) or "YAML syntax error"
    hint = ""
    lines = text.splitlines()
    if lines and line > len(lines) + text.endswith(("\n", "\r")):
        # libyaml puts the end of a file without a final newline on a line of its own
        line, col = len(lines), len(lines[-1]) + 1
    offending = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in offending[: col + 1] or "\\t" in message:
        hint = "YAML indentation must use spaces, not tabs"
    elif "expected a single document" in message:
        hint = "one document per file: remove the extra '---'"
    elif "mapping values are not allowed" in message:
        hint = "check the indentation, or quote a value that contains ': '"
    return YamlProblem(file, line, col, "(document)", f"YAML syntax error: {message}", hint)


class _Walker:
    """Converts a node tree to Python data, collecting every problem on the way."""

    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.problems: list[YamlProblem] = []
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()
        self.sizes: dict[int, int] = {}
        self.aliases = 0
        self.expansion = 0
        self.alias_uses = 0
        """Aliases to collections met so far, in document order (scalar aliases are harmless)."""
        self.alias_fixups: list[tuple[int, int]] = []

    def fail(self, node: Node, path: YamlPath, message: str, hint: str = "") -> None:
        mark = node.start_mark
        self.problems.append(YamlProblem(self.doc.file, mark.line + 1, mark.column + 1,
                                     format_path(path), message, hint))

    def convert(self, node: Node, path: YamlPath, depth: int) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        key = id(node)
        if key in self.active:
            self.alias_uses += 1
            self.fail_at_alias(node, path, "recursive alias", "an anchor cannot contain an alias to itself")
            return None
        if key in self.done:
            self.alias_uses += 1
            return self.alias(node, path)
        if depth >= MAX_DEPTH:
            self.fail(node, path, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        self.active.add(key)
        if isinstance(node, SequenceNode):
            self.check_tag(node, path, _SEQ)
            value: Any = [self.convert(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        else:
            assert isinstance(node, MappingNode)  # a node is a scalar, a sequence or a mapping
            self.check_tag(node, path, _MAP)
            value = self.mapping(node, path, depth)
        self.active.discard(key)
        self.done[key] = value
        return value

    def check_tag(self, node: Node, path: YamlPath, expected: str) -> None:
        if node.tag != expected:
            self.fail(node, path, f"unsupported YAML tag {node.tag!r}", "remove the tag")

    def alias(self, node: Node, path: YamlPath) -> Any:
        self.aliases += 1
        self.expansion += self.size(node)
        if self.aliases == MAX_ALIASES + 1:
            self.fail_at_alias(node, path, f"more than {MAX_ALIASES} aliases in one file",
                               "write the values out; anchors are for a block or two")
        elif self.expansion > MAX_EXPANSION and self.aliases <= MAX_ALIASES:
            self.fail_at_alias(node, path, f"aliases expand to more than {MAX_EXPANSION:,} nodes",
                               "this looks like an alias bomb; write the values out")
            self.aliases = MAX_ALIASES + 1  # report once
        return None if self.aliases > MAX_ALIASES else self.done[id(node)]

    def fail_at_alias(self, node: Node, path: YamlPath, message: str, hint: str) -> None:
        """An anchor and its aliases share one node: remember which alias to point at instead."""
        self.fail(node, path, message, hint)
        self.alias_fixups.append((len(self.problems) - 1, self.alias_uses - 1))

    def size(self, node: Node) -> int:
        """Nodes under ``node`` counted with repetition, memoised; iterative, as nesting may be deep."""
        if isinstance(node, ScalarNode):
            return 1
        stack: list[tuple[Node, bool]] = [(node, False)]
        while stack:
            current, children_done = stack.pop()
            children = current.value if isinstance(current, SequenceNode) else [n for kv in current.value for n in kv]
            if children_done:
                self.sizes[id(current)] = 1 + sum(
                    1 if isinstance(c, ScalarNode) else self.sizes.get(id(c), 0) for c in children)
            elif id(current) not in self.sizes:
                self.sizes[id(current)] = 0  # cycles were already reported by convert()
                stack.append((current, True))
                stack.extend((c, False) for c in children
                             if not isinstance(c, ScalarNode) and id(c) not in self.sizes)
        return self.sizes[id(node)]

    def scalar(self, node: ScalarNode, path: YamlPath) -> Any:
        tag = node.tag
        if tag == _STR:
            return node.value
        convert = _SCALARS.get(tag)
        if convert is None:
            self.fail(node, path, f"unsupported YAML tag {tag!r}",
                      "quote the value if it is meant as text")
            return None
        try:
            return convert(node)
        except (ValueError, OverflowError, yaml.YAMLError):
            problem = date_problem(node.value) if tag == _T + "timestamp" else None
            if problem is not None:  # meant as a date: quoting it would only move the error
                self.fail(node, path, f"{node.value!r} is not a date: {problem}", "write YYYY-MM-DD")
            else:
                self.fail(node, path, f"cannot read {node.value!r} as {tag.removeprefix(_T)}",
                          "quote the value if it is meant as text")
            return None

    def mapping(self, node: MappingNode, path: YamlPath, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first: dict[Any, Node] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.merge(value_node, path, depth, merged)
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, path, "a mapping key must be a plain scalar")
                continue
            key = self.scalar(key_node, path)
            try:
                seen = first.get(key)
            except TypeError:
                self.fail(key_node, path, "a mapping key must be a plain scalar")
                continue
            if seen is not None:
                mark = seen.start_mark
                self.fail(key_node, (*path, key), f"duplicate key {key!r}",
                          f"first defined at line {mark.line + 1}, column {mark.column + 1}; "
                          "keep one")
                continue
            first[key] = key_node
            out[key] = self.convert(value_node, (*path, key), depth + 1)
        if merged:
            return {**merged, **out}
        return out

    def merge(self, value: Node, path: YamlPath, depth: int, into: dict[Any, Any]) -> None:
        """YAML merge keys (``<<: *base``): explicit keys win, earlier merges win over later."""
        sources = value.value if isinstance(value, SequenceNode) else [value]
        for source in sources:
            data = self.convert(source, path, depth + 1)
            if not isinstance(data, dict):
                self.fail(source, path, "'<<' merges only mappings")
                continue
            for key, item in data.items():
                into.setdefault(key, item)
