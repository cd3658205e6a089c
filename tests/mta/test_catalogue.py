"""Nothing the renderer writes is outside documented PowerMTA syntax.

Three tables, written separately from the PowerMTA v5.0 User's Guide: ``mailplane.mta.emitted``
(what the template may write), the catalogue in ``docs/powermta.md`` (each emitted directive with
its guide section), and ``pmta-lint``'s own directive catalogue.  Every rendered config (both
example stacks, on days before, during and after their warmups, and a host with no IP) is held to
the first, the first to the second, and every emitted directive must be one the linter's catalogue
knows in that very context.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailplane.model.loader import load_stack
from mailplane.mta.emitted import EMITTED
from mailplane.mta.render import render_host

ROOT = Path(__file__).resolve().parents[2]
DAYS = (datetime.date(2026, 10, 1), datetime.date(2026, 11, 25), datetime.date(2026, 12, 3),
        datetime.date(2027, 6, 1))


def used(text: str) -> Iterator[tuple[str, str, int]]:
    """(context, directive or ``<block>``, line number) of every line of a rendered config."""
    stack: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip() if not line.strip().startswith("reply ") else line.strip()
        if not item:
            continue
        if item.startswith("</"):
            assert stack and stack[-1] == item[2:-1].split()[0], f"line {number}: unbalanced {item}"
            stack.pop()
        elif item.startswith("<"):
            tag = item[1:-1].split()[0]
            yield "/".join(stack) or "global", f"<{tag}>", number
            stack.append(tag)
        else:
            yield "/".join(stack) or "global", item.split()[0], number
    assert not stack


def rendered() -> Iterator[tuple[str, str]]:
    for name in ("prod", "dev"):
        fleet = load_stack(ROOT / "stacks" / name)
        for host in fleet.settings.mta_hosts:
            for day in DAYS:
                yield f"{name}/{host}/{day}", render_host(fleet, host, day)


def test_every_rendered_line_is_in_the_emitted_table() -> None:
    seen: set[tuple[str, str]] = set()
    for where, text in rendered():
        for context, directive, number in used(text):
            assert (context, directive) in EMITTED, f"{where}:{number}: {directive} in {context} is not in EMITTED"
            seen.add((context, directive))
    # the table is no wider than what is rendered: each entry is used somewhere
    assert seen == set(EMITTED)


def test_mx_rollup_and_other_undocumented_forms_are_never_rendered() -> None:
    for where, text in rendered():
        assert not re.search(r"^\s*mx-rollup\s", text, re.M), where
        assert not re.search(r"-rate 0(/|\s|$)", text, re.M), where  # a zero rate is outside the grammar
        assert not re.search(r"^spool ", text, re.M), where  # deprecated: <spool DIR>
        assert not re.search(r"^\s*move-interval", text, re.M), where  # ignored without move-to


def _docs_table() -> dict[tuple[str, str], str]:
    """``docs/powermta.md``'s catalogue rows: (context, directive) -> guide section."""
    out: dict[tuple[str, str], str] = {}
    text = (ROOT / "docs" / "powermta.md").read_text(encoding="utf-8")
    section = text.split("## The directives mailplane emits", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("context", "---"):
            continue
        for directive in re.findall(r"`([^`]+)`", cells[1]):
            name = directive.split()[0]
            name = f"{name}>" if name.startswith("<") and not name.endswith(">") else name
            out[(cells[0], name)] = cells[3]
    return out


def test_every_emitted_directive_is_documented_with_its_guide_section() -> None:
    docs = _docs_table()
    missing = sorted(set(EMITTED) - set(docs))
    assert not missing, f"not in docs/powermta.md: {missing}"
    for key, section in EMITTED.items():
        assert docs[key] == section, f"{key}: EMITTED says {section}, docs/powermta.md {docs[key]}"
    assert set(docs) == set(EMITTED), sorted(set(docs) - set(EMITTED))


def test_every_emitted_directive_is_in_the_linters_catalogue() -> None:
    from mailplane.mta.directives import knows

    unknown = sorted(key for key in EMITTED if not knows(*key))
    assert not unknown, f"pmta-lint does not know: {unknown}"


def test_the_linter_accepts_every_rendered_config() -> None:
    from mailplane.mta.lint import lint as lint_text

    for where, text in rendered():
        problems = lint_text(text, where)
        assert problems == [], "\n".join(str(p) for p in problems)


@pytest.mark.parametrize("directive", ["mx-rollup gmail.com", "max-msg-rate 0/h", "spool /var/spool/pmta"])
def test_the_linter_rejects_what_the_renderer_must_not_write(directive: str) -> None:
    from mailplane.mta.lint import lint as lint_text

    fleet = load_stack(ROOT / "stacks" / "prod")
    text = render_host(fleet, "mta1", DAYS[1])
    broken = text.replace("<domain gmail.rollup>\n", f"<domain gmail.rollup>\n  {directive}\n", 1)
    if directive.startswith("spool"):
        broken = text.replace("run-as-root no\n", f"run-as-root no\n{directive}\n", 1)
    assert lint_text(broken, "mta1.config"), directive
