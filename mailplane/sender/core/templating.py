"""Render a tenant's message template: Jinja2 in a sandbox, strict about variables.

Why it is built this way:

* Templates come from API clients, so they run in Jinja's ``ImmutableSandboxedEnvironment``:
  no attribute starting with ``_`` (``{{ ''.__class__ }}`` is refused, not evaluated), no
  mutation of the variables, ``range`` bounded.  ``*``, ``**`` and ``%`` are intercepted too,
  and the string methods and filters that pad (``center``, ``format``, ``indent``...) are
  refused or bounded, so ``{{ 'x' * 10**9 }}`` or ``{{ '%0500000000d' % 1 }}`` cannot allocate
  gigabytes; the output is streamed with a size cap.
* ``StrictUndefined``: a variable the caller forgot is an error naming it, never an empty string
  in a customer's inbox ("Dear ,").
* Autoescaping is on for the HTML part only: escaping the subject or the text part would put
  ``&amp;`` in front of the reader, while not escaping HTML would let a variable inject markup.

:func:`render` is pure (no I/O); it raises :class:`TemplateProblems` listing everything wrong.
CPU time and memory are bounded outside: the API renders in worker processes with a CPU timer
and an address-space limit (:mod:`mailplane.sender.front.render_pool`), since nested loops cannot be
bounded from inside the template language.
"""

from __future__ import annotations

import operator
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_OUTPUT_CHARS = 2_000_000
"""Largest rendered part (text or HTML); the subject has its own, RFC 5322 line bound."""
MAX_SUBJECT_CHARS = 998
MAX_REPEAT = 100_000
"""Largest string, list or number ``*``/``**`` may produce inside a template."""


class TemplateProblems(Exception):
    """One or more parts failed to render; ``problems`` are ``(part, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{part}: {message}" for part, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


MAX_WIDTH = 1000
"""Largest padding width or precision a ``%`` format may ask for."""
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PADDING_METHODS = frozenset({"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs"})
"""String methods whose arguments size their output: not callable from a template."""


def _check_percent(fmt: str) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*" or (number is not None and int(number) > MAX_WIDTH):
                raise SecurityError("format width too large")


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    """The ``format`` filter with the same width bound as ``%``."""
    _check_percent(str(value))
    return str(value) % (kwargs or args)


def _bounded(filter_fn: Any, position: int) -> Any:
    """A padding filter whose width argument (at ``position``) may not exceed ``MAX_WIDTH``."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        width = kwargs.get("width", args[position] if len(args) > position else None)
        if isinstance(width, int) and width > MAX_WIDTH:
            raise SecurityError("width too large")
        return filter_fn(*args, **kwargs)

    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounded ``*``, ``**`` and ``%`` (Jinja leaves them unbounded)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters["center"] = _bounded(self.filters["center"], 1)
        self.filters["indent"] = _bounded(self.filters["indent"], 1)
        self.filters["format"] = _bounded_format
        self.globals.pop("namespace", None)  # mutable state a loop could grow without bound

    def wrap_str_format(self, value: Any) -> Any:
        """``str.format`` and ``format_map`` are refused outright: a spec such as ``{:>500000000}``
        allocates before anything could bound it, and ``%`` (bounded) or ``~`` do the same jobs."""
        if isinstance(value, types.MethodType | types.BuiltinMethodType) and \
                value.__name__ in ("format", "format_map") and isinstance(value.__self__, str):
            raise SecurityError("str.format is not available in templates; use ~ or %")
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _PADDING_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "%":
            if isinstance(left, str):
                _check_percent(left)
            return operator.mod(left, right)
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            if isinstance(left, int | float) and abs(left) > MAX_REPEAT and isinstance(right, int | float) \
                    and right > 4:
                raise SecurityError("power too large")
            return operator.pow(left, right)
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
                raise SecurityError("repetition too large")
        return operator.mul(left, right)


def _environment(autoescape: bool) -> _Sandbox:
    return _Sandbox(undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True,
                    auto_reload=False, cache_size=0)


_PLAIN = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


MAX_CACHED_SOURCE = 64 * 1024
"""Templates up to this size are compiled once per process (a batch usually shares one template)."""


@lru_cache(maxsize=256)
def _compiled(autoescape: bool, source: str) -> Template:
    """Compiled templates are immutable and thread-safe; compiling costs far more than rendering."""
    return (_HTML if autoescape else _PLAIN).from_string(source)


def _render_one(env: _Sandbox, source: str, variables: Mapping[str, Any], limit: int) -> str:
    """Compile (or reuse) and render ``source``, stopping once the output passes ``limit`` characters."""
    template = _compiled(env.autoescape is True, source) if len(source) <= MAX_CACHED_SOURCE \
        else env.from_string(source)
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(**variables):
        size += len(chunk)
        if size > limit:
            raise _TooLong(limit)
        chunks.append(chunk)
    return "".join(chunks)


class _TooLong(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"rendered text longer than {limit} characters")


def _describe(err: Exception) -> str:
    """A client-facing message: which variable, which line, what was refused."""
    if isinstance(err, UndefinedError):
        return f"undefined variable: {err.message}"
    if isinstance(err, TemplateSyntaxError):
        return f"syntax error on line {err.lineno}: {err.message}"
    if isinstance(err, SecurityError):
        return f"refused by the sandbox: {err}"
    if isinstance(err, _TooLong):
        return str(err)
    return f"rendering failed: {type(err).__name__}: {err}"


def render(subject: str, text: str | None, html: str | None, variables: Mapping[str, Any]) -> Rendered:
    """Render the three parts with ``variables``; :class:`TemplateProblems` lists every failing part."""
    problems: list[tuple[str, str]] = []
    out: dict[str, str | None] = {"subject": None, "text": None, "html": None}
    parts: list[tuple[str, str | None, _Sandbox, int]] = [
        ("subject", subject, _PLAIN, MAX_SUBJECT_CHARS),
        ("text", text, _PLAIN, MAX_OUTPUT_CHARS),
        ("html", html, _HTML, MAX_OUTPUT_CHARS),
    ]
    for part, source, env, limit in parts:
        if source is None:
            continue
        try:
            out[part] = _render_one(env, source, variables, limit)
        except (TemplateError, _TooLong, ArithmeticError, TypeError, ValueError, LookupError,
                RecursionError) as err:
            # Anything a template can provoke from data (1/0, int('x'), a bad filter argument) is the
            # caller's mistake and is reported as such; a bug of ours elsewhere still raises, and so
            # does MemoryError: the render worker reports it as its memory budget.
            problems.append((part, _describe(err)))
    if problems:
        raise TemplateProblems(problems)
    rendered_subject = out["subject"] or ""
    if "\n" in rendered_subject or "\r" in rendered_subject:
        raise TemplateProblems([("subject", "the rendered subject contains a line break")])
    if not rendered_subject.strip():
        raise TemplateProblems([("subject", "the rendered subject is empty")])
    return Rendered(rendered_subject, out["text"], out["html"])
