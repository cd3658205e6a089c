"""How long ``mailplane validate`` takes on a large stack, against the bare YAML parse.

Why: validation runs on every pull request, so it must stay close to the cost of reading the
YAML at all.  The yardstick is PyYAML's C loader parsing the same files; the goal is for the
whole ``load_stack`` (parse, node walk, pydantic models, cross-file checks) to take at most
twice that.  This script prints figures only and never asserts on times: machines differ.

    .venv/bin/python bench/validate_large.py [--tenants 1000] [--runs 3] [--no-ruamel] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_stack import generate

from mailplane.gitops.policy import check_policies
from mailplane.model.fleet import FleetSettings
from mailplane.model.loader import load_stack
from mailplane.model.source import parse
from mailplane.model.tenant import Tenant

GOAL = 2.0
REPO = Path(__file__).resolve().parent.parent


def stack_files(stack: Path) -> list[Path]:
    return [stack / "fleet.yaml", *sorted((stack / "tenants").glob("*.yaml"))]


class GcClock:
    """Time spent in the cyclic garbage collector, which cProfile does not show on its own line."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start


GC = GcClock()


def first_policy_run(fleet: Any, today: datetime.date) -> tuple[float, float]:
    """One check_policies on a fleet not yet checked: locating findings parses their files again,
    and the CLI always pays that once, so a warm second run would flatter it."""
    gc.collect()
    start = time.perf_counter()
    check_policies(fleet, today=today)
    return time.perf_counter() - start, 0.0


def best_of(runs: int, fn: Callable[[], Any]) -> tuple[float, float]:
    """Fastest of ``runs`` timings (the least disturbed by the machine), with its GC seconds."""
    times = []
    for _ in range(runs):
        gc.collect()
        GC.total = 0.0
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start, GC.total))
    return min(times)


def csafe_parse(files: list[Path]) -> None:
    for path in files:
        yaml.load(path.read_bytes().decode("utf-8"), Loader=yaml.CSafeLoader)


def csafe_compose(files: list[Path]) -> None:
    for path in files:
        yaml.compose(path.read_bytes().decode("utf-8"), Loader=yaml.CSafeLoader)


def mailplane_parse(files: list[Path]) -> list[Any]:
    return [parse(path.read_bytes(), path.name)[0] for path in files]


def ruamel_parse(files: list[Path]) -> None:
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    for path in files:
        rt.load(path.read_bytes().decode("utf-8"))


def models_only(data: list[Any]) -> None:
    FleetSettings.model_validate(data[0])
    for item in data[1:]:
        Tenant.model_validate(item)


def cli_wall(stack: Path) -> tuple[float, int, str]:
    """Wall time, exit code and output of the real command, interpreter start-up included."""
    exe = REPO / ".venv" / "bin" / "mailplane"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mailplane.cli"]
    start = time.perf_counter()
    done = subprocess.run([*cmd, "validate", str(stack)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    lines = (done.stdout + done.stderr).strip().splitlines()
    return wall, done.returncode, lines[-1] if lines else ""


def peak_memory(stack: Path) -> tuple[float, float]:
    """Peak and retained Python allocations (MiB) of one ``load_stack``, via tracemalloc."""
    gc.collect()
    tracemalloc.start()
    fleet = load_stack(stack)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del fleet
    return peak / 2**20, current / 2**20


def profile(stack: Path, top: int) -> str:
    """cProfile of one ``load_stack``, the heaviest functions by own and by cumulative time."""
    prof = cProfile.Profile()
    gc.collect()
    GC.total = 0.0
    prof.runcall(load_stack, stack)
    out = io.StringIO()
    out.write(f"cyclic GC during the profiled run: {GC.total:.3f} s (charged to whichever call allocated)\n")
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="best of this many timings")
    parser.add_argument("--out", type=Path, help="generate here (kept) instead of a temporary folder")
    parser.add_argument("--no-ruamel", action="store_true", help="skip ruamel.yaml's slow round-trip loader")
    parser.add_argument("--no-cli", action="store_true", help="skip the subprocess run of the CLI")
    parser.add_argument("--profile", type=int, nargs="?", const=25, metavar="TOP",
                        help="print a cProfile of load_stack (TOP functions, default 25)")
    args = parser.parse_args(argv)

    tmp = None if args.out else tempfile.mkdtemp(prefix="mailplane-bench-")
    stack = args.out or Path(tmp or ".") / "stack"
    try:
        generate(stack, args.tenants)
        files = stack_files(stack)
        size = sum(p.stat().st_size for p in files)
        fleet = load_stack(stack)  # also warms imports, the page cache and pydantic's validators
        domains = sum(len(t.domains) for t in fleet.tenants)
        ips = sum(len(t.ips) for t in fleet.tenants)
        print(f"stack: {stack}")
        print(f"  {len(files):,} files, {size / 2**20:.1f} MiB; {len(fleet.tenants):,} tenants, {domains:,} domains, "
              f"{ips:,} IPs, {len(fleet.settings.mta_hosts)} MTA hosts")
        del fleet
        print(f"  python {sys.version.split()[0]}, PyYAML {yaml.__version__} (libyaml: {yaml.__with_libyaml__}), "
              f"best of {args.runs}")
        print()

        rows: list[tuple[str, tuple[float, float]]] = []
        rows.append(("yaml.load CSafeLoader (baseline)", best_of(args.runs, lambda: csafe_parse(files))))
        base = rows[0][1][0]
        rows.append(("  yaml.compose CSafeLoader (nodes only)", best_of(args.runs, lambda: csafe_compose(files))))
        data = mailplane_parse(files)
        rows.append(("  source.parse (compose + walker)", best_of(args.runs, lambda: mailplane_parse(files))))
        rows.append(("  model_validate only (data in hand)", best_of(args.runs, lambda: models_only(data))))
        rows.append(("load_stack (validate's model step)", best_of(args.runs, lambda: load_stack(stack))))
        full = rows[-1][1][0]
        today = datetime.date(2026, 11, 25)
        policies = min((first_policy_run(load_stack(stack), today) for _ in range(args.runs)), key=lambda r: r[0])
        rows.append(("check_policies, first run on a fresh fleet", policies))
        if not args.no_ruamel:
            runs = max(1, args.runs // 3)  # some 20x slower: one run is plenty for scale
            rows.append((f"ruamel.yaml round-trip load ({runs} run{'s' * (runs > 1)})",
                         best_of(runs, lambda: ruamel_parse(files))))

        width = max(len(name) for name, _ in rows)
        print(f"{'what':<{width}}  {'seconds':>8}  {'x base':>7}  {'of which GC':>11}")
        for name, (secs, in_gc) in rows:
            print(f"{name:<{width}}  {secs:8.3f}  {secs / base:6.2f}x  {in_gc:9.3f} s")
        print()
        print(f"ratio load_stack / CSafeLoader parse: {full / base:.2f}x   (goal: at most {GOAL:.1f}x)")
        print(f"ratio load_stack + check_policies (all of `mailplane validate`) / parse: "
              f"{(full + policies[0]) / base:.2f}x")

        if not args.no_cli:
            wall, code, last = cli_wall(stack)
            child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"CLI `mailplane validate` wall (one run, start-up included): {wall:.3f} s, exit {code}: {last}")
            print(f"  peak RSS of the CLI process: {child:.0f} MiB")
        peak, kept = peak_memory(stack)
        print(f"load_stack memory (tracemalloc): peak {peak:.0f} MiB, retained by the Fleet {kept:.0f} MiB")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        if args.profile:
            print()
            print(profile(stack, args.profile))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
