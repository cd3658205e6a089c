"""How fast the Pulumi program declares a large stack's resources under mocks, and its memory.

Why: ``mailplane plan`` and every ``pulumi preview`` run the whole program; on a fleet of 1,000
tenants and 10,000 domains that is ~100,000 resources, and the time is the program's (model,
components, Outputs) plus the mock engine's registration.  Prints figures; asserts nothing.

    python bench/program_large.py [--tenants N]   (default 1,000: 10,000 domains)
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_stack import generate

from mailplane.cloud.engine import run
from mailplane.cloud.plan import PlanMocks
from mailplane.model.loader import load_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the traced run (it is ~2x slower)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mailplane-bench-") as tmp:
        stack = Path(tmp) / "stack"
        generate(stack, tenants=args.tenants)
        fleet = load_stack(stack)
        domains = sum(len(t.domains) for t in fleet.tenants)
        print(f"stack: {len(fleet.tenants):,} tenants, {domains:,} domains, "
              f"{sum(len(t.senders) for t in fleet.tenants):,} senders")
        start = time.perf_counter()
        result = run(fleet, PlanMocks(fleet.settings.ses.region), preview=True)
        elapsed = time.perf_counter() - start
        count = len(result.resources)
        print(f"resources declared: {count:,} in {elapsed:.2f} s = {count / elapsed:,.0f} resources/s")
        kinds = Counter(r.type for r in result.resources)
        for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {n:>7,}  {kind}")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
        if not args.no_tracemalloc:
            tracemalloc.start()
            run(fleet, PlanMocks(fleet.settings.ses.region), preview=True)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"peak Python heap during the run (tracemalloc): {peak / 2**20:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
