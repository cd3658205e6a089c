"""No function of ``mailplane`` past cyclomatic complexity 20, as radon counts it.

Ruff's mccabe check (``C901``, pyproject's ``max-complexity``) counts branches only; radon also
counts each boolean operator, each comprehension's condition and each ternary, which is where a
function that reads as a few branches hides its cases.  A function past the limit is split where
its structure is (sections, one helper per kind of case, tables of handlers).  Every function is
measured: module-level ones, methods, closures and the methods of nested classes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mailplane"
LIMIT = 20


def _functions(block: Function | Class, prefix: str = "") -> Iterator[tuple[str, Function]]:
    """Every function under ``block`` with its dotted name: radon's blocks nest closures and methods."""
    name = f"{prefix}{block.name}"
    if isinstance(block, Class):
        for inner in (*block.methods, *block.inner_classes):
            yield from _functions(inner, f"{name}.")
        return
    yield name, block
    for closure in block.closures:
        yield from _functions(closure, f"{name}.")


def _measured(path: Path) -> list[tuple[str, Function]]:
    """The functions of one file; ``cc_visit`` lists a class's methods beside it, so only the outermost are walked."""
    blocks = cc_visit(path.read_text(encoding="utf-8"))
    outermost = [b for b in blocks if isinstance(b, Class) or not b.is_method]
    return [found for block in outermost for found in _functions(block)]


def _defined(path: Path) -> int:
    """How many ``def`` and ``async def`` the file holds, to show that radon's walk missed none."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) for node in ast.walk(tree))


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_function_is_measured() -> None:
    """A function radon's blocks do not reach (a class inside a function, say) would escape the limit unseen."""
    missed = [f"{path.relative_to(ROOT)}: {_defined(path)} defined, {len(_measured(path))} measured"
              for path in SOURCES if _defined(path) != len(_measured(path))]
    assert SOURCES
    assert not missed, "\n".join(missed)


def test_no_function_above_the_limit() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{func.lineno} {name} {func.complexity}"
                 for path in SOURCES for name, func in _measured(path) if func.complexity > LIMIT]
    assert not offenders, (f"{len(offenders)} function(s) above cyclomatic complexity {LIMIT} (radon); split each "
                           "where its structure is:\n" + "\n".join(offenders))
