"""Wall time and peak memory of ``mailplane plan --base`` for a pull request adding one domain, on a large fleet.

Why: every pull request runs it in CI; it must stay cheap however many tenants the fleet has.  This
generates a stack (``gen_stack.py``) in a throwaway git repository, commits it, adds one domain to
one tenant in the working tree, and runs ``mailplane plan STACK --base HEAD`` in a child process
(as CI does), then a full ``mailplane plan STACK`` for comparison.  Prints figures; asserts nothing.
Goal: at most 10 s and 1 GiB at 1,000 tenants.

    python bench/plan_base.py [--tenants 100 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_stack import generate

MAILPLANE = str(Path(sys.executable).parent / "mailplane")


def timed(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, that child's own peak RSS in MiB, exit status) of one command."""
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    assert child.stderr is not None
    errors = child.stderr.read()
    if code not in (0, 2):
        print(errors[-2000:], file=sys.stderr)
    return elapsed, usage.ru_maxrss / 1024, code


def one(tenants: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mailplane-bench-") as tmp:
        root = Path(tmp)
        stack = root / "stacks" / "big"
        generate(stack, tenants=tenants)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run([*git, "init", "-q"], cwd=root, check=True)
        subprocess.run([*git, "add", "-A"], cwd=root, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=root, check=True)
        tenant_file = sorted((stack / "tenants").glob("*.yaml"))[0]
        text = tenant_file.read_text()
        marker = "domains:\n"
        assert marker in text, tenant_file
        tenant_file.write_text(text.replace(marker, marker + "  - name: bench-new.example.com\n"
                                            "    dkim: {mode: easy}\n    dns: {provider: external}\n"
                                            "    dmarc: {policy: none, rua: mailto:dmarc@bench-new.example.com}\n", 1))
        base_wall, base_rss, status = timed([MAILPLANE, "plan", str(stack), "--base", "HEAD", "--format", "json"],
                                            root)
        full_wall, full_rss, _ = timed([MAILPLANE, "plan", str(stack), "--format", "json"], root)
        print(f"{tenants:>6,} tenants: plan --base (one domain added, exit {status}) {base_wall:7.1f} s, "
              f"peak RSS {base_rss:6.0f} MiB;  full plan {full_wall:7.1f} s, peak RSS {full_rss:6.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, nargs="+", default=[100, 1000])
    for tenants in parser.parse_args().tenants:
        one(tenants)


if __name__ == "__main__":
    main()
