"""Pulumi entry point: load the stack's fleet, declare its resources, export its outputs.

Thin on purpose: everything it does lives in the mailplane package, where it is tested.
"""

from pathlib import Path

import pulumi

from mailplane.cloud.program import declare
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError

config = pulumi.Config("mailplane")
fleet_dir = Path(__file__).parent / (config.get("fleet") or f"stacks/{pulumi.get_stack()}")
try:
    fleet = load_stack(fleet_dir)
except StackError as err:
    raise SystemExit(f"{err}\nthe fleet of stack {pulumi.get_stack()!r} is invalid") from None

for key, value in declare(fleet).items():
    pulumi.export(key, value)
