"""Run the Pulumi program in-process under Pulumi's mocks and record what it declares.

The Pulumi engine and its provider plugins cannot be installed on every machine that reviews a
change; Pulumi's unit-test mocks can stand in for them.  ``run`` is shared by ``mailplane plan``
(with :class:`mailplane.cloud.plan.PlanMocks`) and by the tests (with mocks that return
realistic values), so both exercise exactly the program ``pulumi up`` runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func

from mailplane.cloud.program import declare
from mailplane.model.stack import Fleet


@dataclass
class Declared:
    """One resource as the program declared it; ``inputs`` keep Pulumi's wire (camelCase) names."""

    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    custom: bool
    tenant: str | None = None
    urn: str = ""
    protect: bool = False
    alias_parents: tuple[str, ...] = ()
    """The parent URNs of the resource's aliases (the URNs it had before a move)."""


@dataclass
class Run:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Declared:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources {type_}::{name}")
        return matches[0]


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run) -> None:
        super().__init__(mocks)
        self.run = run
        self.by_urn: dict[str, Declared] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        parent = self.by_urn.get(request.parent)
        inputs = rpc.deserialize_properties(request.object)
        declared = Declared(request.type, request.name, f"{parent.type}::{parent.name}" if parent else None,
                            inputs, bool(request.custom), urn=response.urn, protect=bool(request.protect),
                            alias_parents=tuple(a.spec.parentUrn for a in request.aliases if a.spec.parentUrn))
        if request.type == "mailplane:cloud:Tenant":
            declared.tenant = request.name
        elif request.type == "mailplane:cloud:Domain":
            declared.tenant = inputs.get("tenant")
        elif parent is not None:
            declared.tenant = parent.tenant
        if request.type != "pulumi:pulumi:Stack":
            self.by_urn[response.urn] = declared
            self.run.resources.append(declared)
        return response


def _ensure_event_loop() -> None:
    """Pulumi's mocks run on the thread's current event loop; anything in the process that ended with
    ``asyncio.run()`` (a test, a caller) leaves the thread none, and the plan would fail for it."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def run(fleet: Fleet, mocks: pulumi.runtime.Mocks, *, preview: bool = False) -> Run:
    """Declare the fleet's resources under ``mocks``; wait until every registration is done."""
    _ensure_event_loop()
    result = Run()
    monitor = _RecordingMonitor(mocks, result)
    pulumi.runtime.set_mocks(mocks, project="mailplane", stack=fleet.stack, preview=preview, monitor=monitor)
    pulumi.runtime.settings.SETTINGS.rpc_manager.clear()
    pulumi.runtime.settings.SETTINGS.outputs.clear()

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            result.outputs[key] = await output.future()
            if await output.is_secret():
                result.secret_outputs.add(key)

    def program() -> None:
        outputs = declare(fleet)
        pulumi_mocks._sync_await(resolve(outputs))

    pulumi_mocks._sync_await(run_pulumi_func(program))
    return result
