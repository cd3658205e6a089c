"""``mailplane pmta-lint``: the Ansible template task's ``validate:`` step for PowerMTA configs.

Ansible runs ``mailplane pmta-lint %s`` on the rendered temporary file and keeps the host's
current config unless it exits 0; it shows the command's stderr in the failed task, so every
problem goes there as ``file:line: message``.  A file that cannot be read or is not UTF-8 text
is a failed check (exit 1) with a one-line reason, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailplane.model.problems import display_path
from mailplane.mta.lint import check

MAX_BYTES = 16 * 1024 * 1024
"""A config for thousands of IPs is a few megabytes; beyond this it is not a config."""

Files = Annotated[list[Path], typer.Argument(help="PowerMTA config files.", metavar="FILE", show_default=False)]


def _read(path: Path, shown: str) -> tuple[str | None, str]:
    """The file's text, or ``None`` and why it cannot be checked."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except OSError as err:
        return None, f"{shown}: cannot read: {err.strerror or err}"
    if len(data) > MAX_BYTES:
        return None, f"{shown}: larger than {MAX_BYTES // (1024 * 1024)} MiB: not a PowerMTA config"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return None, f"{shown}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}; a binary file?)"


def register(app: typer.Typer) -> None:
    @app.command("pmta-lint")
    def pmta_lint(files: Files) -> None:
        """Check PowerMTA config files; print every problem as file:line: message and exit 1 if any."""
        errors = 0
        for path in files:
            shown = display_path(path)
            text, failure = _read(path, shown)
            if text is None:
                print(failure, file=sys.stderr)
                errors += 1
                continue
            report = check(text, shown)
            problems = report.problems
            for problem in problems:
                print(problem, file=sys.stderr)
            errors += len(problems)
            if not problems:
                counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.blocks.items()))
                print(f"{shown}: ok ({counts or 'no blocks'})")
        if errors:
            print(f"{errors} error{'s' if errors != 1 else ''}", file=sys.stderr)
            raise typer.Exit(1)
