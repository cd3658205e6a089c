"""How long ``mailplane render`` takes on a large stack: 1,000 tenants, 2,000 IPs on 40 MTA hosts.

Why: the Ansible inventory plugin builds every host's view on each run and the role renders the
template per host, so the per-host cost has to stay small next to loading the stack itself.
This runs the command's own code in-process (``mailplane.cli.render.render_files`` and
``write_atomic``) on the stack ``bench/gen_stack.py`` generates, and prints times and bytes
written.  It never asserts on times: machines differ.

    .venv/bin/python bench/render_large.py [--tenants 1000] [--runs 3] [--date 2026-11-25] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_stack import generate

from mailplane.cli.render import render_files
from mailplane.files import write_atomic
from mailplane.mailwizz import delivery_servers
from mailplane.model.loader import load_stack
from mailplane.mta.render import render_vars
from mailplane.mta.view import host_view

T = TypeVar("T")


def best_of(runs: int, fn: Callable[[], T]) -> tuple[float, T]:
    """Fastest of ``runs`` timings (the least disturbed by the machine) and the last result."""
    best, result = float("inf"), None
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="best of this many timings")
    parser.add_argument("--date", type=datetime.date.fromisoformat, default=datetime.date(2026, 11, 25))
    parser.add_argument("--out", type=Path, help="keep the stack and the rendered files here")
    args = parser.parse_args(argv)

    tmp = None if args.out else tempfile.mkdtemp(prefix="mailplane-render-bench-")
    base = args.out or Path(tmp or ".")
    stack, out = base / "stack", base / "render"
    try:
        generate(stack, args.tenants)
        load_time, fleet = best_of(1, lambda: load_stack(stack))
        hosts = sorted(fleet.settings.mta_hosts)
        ips = sum(len(t.ips) for t in fleet.tenants)
        print(f"stack: {stack}: {len(fleet.tenants):,} tenants, {ips:,} IPs, {len(hosts)} MTA hosts; "
              f"date {args.date.isoformat()}, best of {args.runs}")
        print(f"  load_stack (once, not part of the figures below): {load_time:.3f} s")
        print()

        views_time, views = best_of(args.runs, lambda: [host_view(fleet, h, args.date).to_vars() for h in hosts])
        templ_time, texts = best_of(args.runs, lambda: [render_vars(v) for v in views])
        wizz_time, _ = best_of(args.runs, lambda: delivery_servers(fleet, args.date))
        all_time, files = best_of(args.runs, lambda: render_files(fleet, args.date))

        def write() -> int:
            for relative, text in files.items():
                write_atomic(out / relative, text)
            return len(files)

        write_time, _ = best_of(args.runs, write)
        config_bytes = sum(len(t.encode("utf-8")) for t in texts)
        total_bytes = sum(len(t.encode("utf-8")) for t in files.values())
        vmtas = sum(len(v["vmtas"]) for v in views)

        rows = [
            (f"host views + to_vars ({len(hosts)} hosts, {vmtas:,} VMTAs)", views_time),
            (f"template rendering ({len(hosts)} configs)", templ_time),
            (f"MailWizz servers ({len(fleet.tenants):,} tenants)", wizz_time),
            ("render_files: all of the above, as `mailplane render`", all_time),
            (f"write_atomic of {len(files):,} files", write_time),
        ]
        width = max(len(name) for name, _ in rows)
        print(f"{'what':<{width}}  {'seconds':>8}")
        for name, seconds in rows:
            print(f"{name:<{width}}  {seconds:8.3f}")
        print()
        print(f"per host: {all_time / len(hosts) * 1000:.1f} ms to render, {config_bytes / len(hosts) / 1024:.1f} KiB "
              f"of config on average (largest {max(len(t) for t in texts) / 1024:.1f} KiB)")
        print(f"bytes written: {total_bytes:,} ({config_bytes:,} in {len(hosts)} PowerMTA configs, "
              f"{total_bytes - config_bytes:,} in {len(files) - len(hosts):,} MailWizz files)")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
