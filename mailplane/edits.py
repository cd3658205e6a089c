"""Edits a pull-request author would otherwise make by hand: add a tenant, a domain or an IP.

Every function here takes the text of a tenant file and returns the new text; nothing is read,
written or printed, so the caller can validate the whole stack with the result before anything
touches the disk.  The round trip goes through ruamel.yaml so that the reviewer's diff shows
only the added lines: comments, key order, quoting, flow style and indentation of the existing
file survive.  The read-only loader (libyaml) parses first, because its problems are located the
same way as everything ``mailplane validate`` reports and it is stricter than ruamel.yaml.
"""

from __future__ import annotations

import datetime
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from mailplane.model.problems import StackError, YamlProblem
from mailplane.model.source import SourceDoc, parse

DEFAULT_SCHEMA_REF = "../../../schema/tenant.schema.json"
"""Where the schema is from ``stacks/<stack>/tenants/`` in this repository's own layout."""
SCHEMA_COMMENT = "# yaml-language-server: $schema="
DEFAULT_INDENT = (2, 4, 2)
"""Mapping indent, sequence indent, dash offset: the style of the examples under ``stacks/``."""
TENANT_KEY_ORDER = ("name", "display_name", "streams", "daily_quota", "domains", "ips", "ses", "senders")
"""The model's field order: a key the edit has to create goes where a reader expects it."""
_WIDE = 4096
"""ruamel.yaml folds lines at 80 columns by default, which would rewrap untouched flow mappings."""


@dataclass(frozen=True)
class NewTenant:
    name: str
    display_name: str | None = None
    streams: Sequence[str] = ()


@dataclass(frozen=True)
class NewDomain:
    name: str
    dkim: str
    selector: str | None = None
    mail_from: str | None = None
    dmarc_policy: str | None = None
    rua: Sequence[str] = ()
    dns_provider: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class NewIp:
    address: str
    hostname: str
    host: str
    plan: str
    started: datetime.date
    streams: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class NewSender:
    name: str
    from_: Sequence[str]


def new_tenant(tenant: NewTenant, schema_ref: str = DEFAULT_SCHEMA_REF) -> str:
    """Text of a new tenant file; the schema line lets editors complete and check the keys."""
    data = CommentedMap()
    data["name"] = _text(tenant.name)
    if tenant.display_name is not None:
        data["display_name"] = _text(tenant.display_name)
    if tenant.streams:
        data["streams"] = _flow_seq(tenant.streams)
    return f"{SCHEMA_COMMENT}{schema_ref}\n" + _dump(data, DEFAULT_INDENT)


def domain_entry(domain: NewDomain) -> CommentedMap:
    """One ``domains:`` item, keyed in the order of the examples, flow style for the small mappings."""
    entry = CommentedMap()
    entry["name"] = _text(domain.name)
    dkim = {"mode": domain.dkim} | ({"selector": domain.selector} if domain.selector is not None else {})
    entry["dkim"] = _flow_map(dkim)
    if domain.mail_from is not None:
        entry["mail_from"] = _text(domain.mail_from)
    if domain.dmarc_policy is not None:
        dmarc: dict[str, Any] = {"policy": domain.dmarc_policy}
        if len(domain.rua) == 1:
            dmarc["rua"] = _text(domain.rua[0])
        elif domain.rua:
            dmarc["rua"] = _flow_seq(domain.rua)
        entry["dmarc"] = _flow_map(dmarc)
    dns = {k: v for k, v in (("provider", domain.dns_provider), ("zone", domain.zone)) if v is not None}
    if dns:
        entry["dns"] = _flow_map(dns)
    return entry


def ip_entry(ip: NewIp) -> CommentedMap:
    """One ``ips:`` item; ``started`` stays a date so it is written unquoted and read back as one."""
    entry = CommentedMap()
    entry["address"] = _text(ip.address)
    entry["hostname"] = _text(ip.hostname)
    entry["host"] = _text(ip.host)
    entry["warmup"] = _flow_map({"plan": ip.plan, "started": ip.started})
    if ip.streams:
        entry["streams"] = _flow_seq(ip.streams)
    return entry


def sender_entry(sender: NewSender) -> CommentedMap:
    """One ``senders:`` item: its From addresses in flow style, like the examples under ``stacks/``."""
    entry = CommentedMap()
    entry["name"] = _text(sender.name)
    entry["from"] = _flow_seq(sender.from_)
    return entry


def add_domain(text: str, file: str, domain: NewDomain) -> str:
    """Append a domain; whether it is acceptable is the stack loader's call, not this function's."""
    return append_item(text, file, "domains", domain_entry(domain))


def add_ip(text: str, file: str, ip: NewIp) -> str:
    return append_item(text, file, "ips", ip_entry(ip))


def append_item(text: str, file: str, key: str, item: CommentedMap) -> str:
    """Append ``item`` to the top-level list ``key``, creating the key if the file has none.

    Raises :class:`StackError` with located problems when the file cannot be read as a tenant
    mapping, or when ``key`` holds something other than a list.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    loaded = load_document(text.replace("\r\n", "\n"), file)
    data = loaded.data
    current = data.get(key)
    if key not in data or current is None:
        seq = CommentedSeq([item])
        if key in data:
            data[key] = seq
        else:
            _insert_key(data, key, seq)
        return _finish(loaded, newline)
    if not isinstance(current, CommentedSeq):
        raise StackError([loaded.doc.problem((key,), f"expected a list to add to, found {_kind(current)}",
                                             f"write '{key}:' as a list of entries")])
    if current and not current.fa.flow_style():
        _move_trailing_comments(current, item)
    current.fa.set_block_style()
    current.append(item)
    return _finish(loaded, newline)


@dataclass
class Document:
    """A tenant file loaded for editing.

    ``head`` and ``tail`` are the lines up to a ``---`` marker and from a ``...`` marker, kept
    verbatim: ruamel.yaml drops comments written before ``---``, and that is where a schema
    line usually sits.
    """

    data: CommentedMap
    doc: SourceDoc
    indent: tuple[int, int, int]
    head: str = ""
    tail: str = ""


_DOC_START = re.compile(r"---(?:[ \t]+(?:#.*)?)?\n?")
_DOC_END = re.compile(r"\.\.\.(?:[ \t]+(?:#.*)?)?\n?")


def split_markers(text: str) -> tuple[str, str, str]:
    """Text before and including a ``---`` line, the document body, and a ``...`` line onwards."""
    lines = text.splitlines(keepends=True)
    head = 0
    for i, line in enumerate(lines):
        if _DOC_START.fullmatch(line):
            head = i + 1
            break
        if line.strip() and not line.lstrip().startswith(("#", "%")):
            break
    tail = len(lines)
    for i in range(len(lines) - 1, head - 1, -1):
        if _DOC_END.fullmatch(lines[i]):
            tail = i
            break
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            break
    return "".join(lines[:head]), "".join(lines[head:tail]), "".join(lines[tail:])


def load_document(text: str, file: str) -> Document:
    """Round-trip load of a tenant file, refusing what the stack loader would refuse to read."""
    _, doc, soft = parse(text.encode("utf-8"), file)
    if soft:
        raise StackError(soft)
    head, body, tail = split_markers(text)
    offset = head.count("\n")
    try:
        data = _yaml(DEFAULT_INDENT).load(body)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1 + offset, mark.column + 1) if mark else (1, 1)
        raise StackError([YamlProblem(file, line, col, "(document)", f"YAML error: {err.problem or err}")]) from None
    except YAMLError as err:
        raise StackError([YamlProblem(file, 1, 1, "(document)", f"YAML error: {err}")]) from None
    if not isinstance(data, CommentedMap):
        raise StackError([doc.problem((), f"expected a mapping of keys, found {_kind(data)}")])
    return Document(data, doc, detect_indent(data, body), head, tail)


def detect_indent(data: CommentedMap, text: str) -> tuple[int, int, int]:
    """Mapping indent, sequence indent and dash offset as the file's author wrote them.

    ruamel.yaml applies one indentation to the whole document on output, so an edit made with
    the wrong one would re-indent every block the author wrote; the first nested block mapping
    and the first block sequence found decide.  Missing either, the examples' style is used.
    """
    lines = text.splitlines()
    mapping = sequence = offset = None
    stack: list[Any] = [data]
    while stack and (mapping is None or sequence is None):
        node = stack.pop(0)
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                if _is_block(value) and value:
                    key_col = node.lc.key(key)[1]
                    if isinstance(value, CommentedMap) and mapping is None:
                        mapping = value.lc.key(next(iter(value)))[1] - key_col
                    elif isinstance(value, CommentedSeq) and sequence is None:
                        line, col = value.lc.item(0)
                        dash = lines[line].rfind("-", 0, col) if line < len(lines) else -1
                        if dash >= key_col:
                            sequence, offset = col - key_col, dash - key_col
                stack.append(value)
        elif isinstance(node, CommentedSeq):
            stack.extend(node)
    d_map, d_seq, d_off = DEFAULT_INDENT
    mapping = mapping if mapping and mapping > 0 else d_map
    if sequence is None or offset is None or sequence < offset + 2:
        sequence, offset = d_seq, d_off
    return mapping, sequence, offset


def _is_block(value: Any) -> bool:
    return isinstance(value, CommentedMap | CommentedSeq) and not value.fa.flow_style()


def _insert_key(data: CommentedMap, key: str, value: Any) -> None:
    """Insert ``key`` before the first existing key that the model lists after it.

    Full-line comments after the key that ends up in front of it were written above the key
    that followed; they move to the end of the new block, so they keep introducing that key.
    """
    rank = TENANT_KEY_ORDER.index(key) if key in TENANT_KEY_ORDER else len(TENANT_KEY_ORDER)
    keys = list(data)
    pos = next((i for i, k in enumerate(keys) if k in TENANT_KEY_ORDER and TENANT_KEY_ORDER.index(k) > rank),
               len(keys))
    if pos > 0:
        _move_trailing_comments_from(_tail_slot(data, keys[pos - 1]), value)
    data.insert(pos, key, value)


def _tail_slot(container: Any, key: Any) -> tuple[Any, Any]:
    """The container and key whose comment slot holds what follows the last line of ``container[key]``."""
    value = container[key]
    while _is_block(value) and value:
        container, key = value, (next(reversed(value)) if isinstance(value, CommentedMap) else len(value) - 1)
        value = container[key]
    return container, key


def _move_trailing_comments(seq: CommentedSeq, item: CommentedMap) -> None:
    """Keep comment lines that follow a list's last item below the item appended after it.

    ruamel.yaml hangs such lines on the last item, so an appended item would otherwise land
    between them and the key they introduce.
    """
    _move_trailing_comments_from(_tail_slot(seq, len(seq) - 1), item)


def _move_trailing_comments_from(slot: tuple[Any, Any], new_value: Any) -> None:
    container, key = slot
    index = 0 if isinstance(container, CommentedSeq) else 2
    entry = container.ca.items.get(key)
    if not entry or len(entry) <= index or entry[index] is None:
        return
    target, target_key = _tail_slot({0: new_value}, 0)
    if not isinstance(target, CommentedMap | CommentedSeq):
        return
    token = entry[index]
    value = token.value
    cut = value.find("\n")
    if cut < 0 or cut == len(value) - 1:
        return  # only an end-of-line comment: it stays on its line
    eol, rest = value[: cut + 1], value[cut + 1:]
    if eol.strip():
        token.value = eol
    else:
        entry[index] = None
        if not any(entry):
            del container.ca.items[key]
    target_index = 0 if isinstance(target, CommentedSeq) else 2
    slots = target.ca.items.setdefault(target_key, [None] * (2 if target_index == 0 else 4))
    slots[target_index] = CommentToken("\n" + rest, CommentMark(0))


def _finish(loaded: Document, newline: str) -> str:
    """Dump with the file's own line endings: a CRLF file edited on Windows stays CRLF."""
    body = _dump(loaded.data, loaded.indent)
    return (loaded.head + body + loaded.tail).replace("\n", newline)


def _yaml(indent: tuple[int, int, int]) -> YAML:
    yaml_rt = YAML(typ="rt")
    yaml_rt.preserve_quotes = True
    yaml_rt.width = _WIDE
    yaml_rt.allow_unicode = True
    mapping, sequence, offset = indent
    yaml_rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml_rt


def _dump(data: Any, indent: tuple[int, int, int]) -> str:
    out = io.StringIO()
    _yaml(indent).dump(data, out)
    return out.getvalue()


_PLAIN_KEY = re.compile(r"k: (.*)\n(?:\.\.\.\n)?")


def _text(value: str) -> str:
    """A string that reads back as the same string with the loader's YAML 1.1 rules.

    ruamel.yaml quotes by YAML 1.2, under which ``on``, ``no`` or ``1:30`` are plain text, but
    the stack loader reads ``display_name: On`` as a boolean; PyYAML's emitter knows 1.1, so a
    value it would not write plain is double-quoted, as the examples quote.
    """
    dumped = yaml.safe_dump({"k": value}, default_flow_style=False, allow_unicode=True, width=_WIDE)
    match = _PLAIN_KEY.fullmatch(dumped)
    if match and match.group(1) == value:
        return value
    return DoubleQuotedScalarString(value)


def _flow_map(values: dict[str, Any]) -> CommentedMap:
    out = CommentedMap((k, _text(v) if isinstance(v, str) else v) for k, v in values.items())
    out.fa.set_flow_style()
    return out


def _flow_seq(values: Sequence[str]) -> CommentedSeq:
    out = CommentedSeq(_text(v) for v in values)
    out.fa.set_flow_style()
    return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"
