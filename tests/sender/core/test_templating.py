"""Template sandbox limits: what a caller's template may not make the service allocate or run."""

from __future__ import annotations

import pytest

from mailplane.sender.core.templating import TemplateProblems, render


@pytest.mark.parametrize("template", [
    "{{ '%0500000000d' % 1 }}",          # a padded number of half a gigabyte
    "{{ '%*d' % (1000000000, 1) }}",     # the width from an argument
    "{{ '%.900000000f' % 1.5 }}",        # a precision
    "{{ 'a'|center(1000000000) }}",
    "{{ 'a'|indent(1000000000, true) }}",
    "{{ '%0900000000d'|format(1) }}",
    "{{ '{:>500000000}'.format(1) }}",
    "{{ '{a}'.format_map({'a': 1}) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x'.zfill(1000000000) }}",
    "{{ 'x' * 1000000000 }}",
    "{% set ns = namespace(a='x') %}{{ ns.a }}",
    "{{ ''.__class__ }}",
])
def test_templates_that_would_allocate_or_escape_are_refused(template: str) -> None:
    with pytest.raises(TemplateProblems) as problems:
        render("subject", template, None, {})
    assert problems.value.problems[0][0] == "text"


def test_ordinary_formatting_still_works() -> None:
    out = render("Order {{ n }}", "{{ '%5d' % n }}|{{ 'ab'|center(6) }}|{{ '%s'|format(n) }}|{{ a ~ b }}", None,
                 {"n": 7, "a": "x", "b": "y"})
    assert out.subject == "Order 7"
    assert out.text == "    7|  ab  |7|xy"


def test_a_subject_that_renders_empty_is_refused() -> None:
    with pytest.raises(TemplateProblems, match="subject: the rendered subject is empty"):
        render("{{ name }}", "hello", None, {"name": "  "})
