"""``mailplane plan``: every resource the program would declare, offline, without credentials.

The program runs under :class:`PlanMocks`, Pulumi's mocks standing in for the engine in preview
mode: what AWS computes (DKIM tokens, key material, access keys) stays unknown and is shown as
"(known after apply)", as ``pulumi preview`` shows it.  ARNs are spelt out with ``<account>`` for
the account id, so reviewers can read the IAM and SNS policies a change produces.  The real
diff against the cloud remains ``pulumi preview``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import rpc

from mailplane.cloud.engine import Declared, run
from mailplane.model.stack import Fleet

ACCOUNT = "<account>"
UNKNOWN = "(known after apply)"
SECRET = "[secret]"


def _arn(service: str, region: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT}:{resource}"


class PlanMocks(pulumi.runtime.Mocks):
    """Returns the inputs as state plus the ARNs AWS derives from them; what AWS generates is unknown."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs, region = args.inputs, self.region
        derived: dict[str, Any] = {}
        if args.typ == "aws:sesv2/emailIdentity:EmailIdentity":
            derived["arn"] = _arn("ses", region, f"identity/{inputs['emailIdentity']}")
            derived["dkimSigningAttributes"] = {**inputs.get("dkimSigningAttributes", {}), "tokens": rpc.UNKNOWN}
        elif args.typ == "tls:index/privateKey:PrivateKey":
            derived.update(privateKeyPem=rpc.UNKNOWN, publicKeyPem=rpc.UNKNOWN)
        elif args.typ == "aws:iam/accessKey:AccessKey":
            derived.update(secret=rpc.UNKNOWN, sesSmtpPasswordV4=rpc.UNKNOWN)
        elif args.typ == "aws:sesv2/configurationSet:ConfigurationSet":
            derived["arn"] = _arn("ses", region, f"configuration-set/{inputs['configurationSetName']}")
        elif args.typ == "aws:sns/topic:Topic":
            derived["arn"] = _arn("sns", region, inputs["name"])
        elif args.typ == "aws:iam/user:User":
            derived["arn"] = f"arn:aws:iam::{ACCOUNT}:user{inputs.get('path', '/')}{inputs['name']}"
        elif args.typ == "aws:sesv2/tenant:Tenant":
            derived["tenantArn"] = _arn("ses", region, f"tenant/{inputs['tenantName']}/<tenant id>")
        return args.name, {**inputs, **derived}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "userId": ACCOUNT}
        if args.token == "aws:route53/getZone:getZone":
            return {"name": args.args["name"], "zoneId": f"<zone {args.args['name']}>"}
        return {}


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    parent: str | None
    tenant: str | None
    inputs: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "parent": self.parent, "tenant": self.tenant,
                "inputs": self.inputs}


def _mask(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET
    if value is None or isinstance(value, pulumi.output.Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format carries every number as a double
    return value


def _planned(declared: Declared) -> PlannedResource:
    inputs = {} if not declared.custom else _mask(
        {k: v for k, v in declared.inputs.items() if not k.startswith("__")})
    if declared.type.startswith("pulumi:providers:"):
        inputs = {k: v for k, v in inputs.items() if k in ("region", "version")}
    return PlannedResource(declared.type, declared.name, declared.parent, declared.tenant, inputs)


_RANK = {"mailplane:cloud:Tenant": 0, "mailplane:cloud:Domain": 1, "mailplane:cloud:Sender": 2}


def _order(d: Declared) -> tuple[object, ...]:
    """Stack-wide first, then per tenant: the tenant's own resources, each domain's, each sender's.

    Registration order depends on asyncio scheduling; this order depends only on the fleet.
    """
    if d.type in _RANK:
        group: tuple[object, ...] = (_RANK[d.type], d.name if d.type != "mailplane:cloud:Tenant" else "", 0)
    else:
        parent_type, _, parent_name = (d.parent or "").partition("::")
        rank = _RANK.get(parent_type, 0)
        group = (rank, parent_name if rank else "", 1)
    return (d.tenant is not None, d.tenant or "", group, d.type, d.name)


def plan(fleet: Fleet) -> list[PlannedResource]:
    declared = run(fleet, PlanMocks(fleet.settings.ses.region), preview=True).resources
    return [_planned(d) for d in sorted(declared, key=_order)]


def totals(resources: list[PlannedResource]) -> dict[str, int]:
    return dict(sorted(Counter(r.type for r in resources if not r.type.startswith("mailplane:")).items()))


def _short_inputs(resource: PlannedResource, width: int = 100) -> str:
    text = json.dumps(resource.inputs, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= width else text[: width - 3] + "..."


def to_json(resources: list[PlannedResource]) -> str:
    return json.dumps([r.as_dict() for r in resources], indent=2, sort_keys=True) + "\n"


def to_text(fleet: Fleet, resources: list[PlannedResource]) -> str:
    lines = [f"Plan for stack {fleet.stack} ({fleet.settings.ses.region}): "
             f"{sum(totals(resources).values())} resources"]
    current: object = object()
    for r in resources:
        if r.tenant != current:
            current = r.tenant
            lines += ["", f"tenant {r.tenant}" if r.tenant else "stack"]
        if r.type.startswith("mailplane:"):
            lines.append(f"  {r.type.rsplit(':', 1)[1].lower():<8} {r.name}")
        else:
            lines.append(f"    + {r.type}  {r.name}  {_short_inputs(r)}")
    lines += ["", "Totals:"] + [f"  {count:>4}  {type_}" for type_, count in totals(resources).items()]
    return "\n".join(lines) + "\n"


def to_markdown(fleet: Fleet, resources: list[PlannedResource]) -> str:
    by_tenant: dict[str | None, list[PlannedResource]] = {}
    for r in resources:
        if not r.type.startswith("mailplane:"):
            by_tenant.setdefault(r.tenant, []).append(r)
    lines = [f"### Plan for stack `{fleet.stack}` ({fleet.settings.ses.region})", "",
             f"{sum(totals(resources).values())} resources.", "", "| type | count |", "|---|---:|"]
    lines += [f"| `{t}` | {n} |" for t, n in totals(resources).items()]
    for tenant, items in by_tenant.items():
        lines += ["", f"<details><summary>{'tenant ' + tenant if tenant else 'stack'}: {len(items)} resources"
                  "</summary>", "", "| type | name | inputs |", "|---|---|---|"]
        lines += [f"| `{r.type}` | `{r.name}` | `{_short_inputs(r, 160).replace('|', '¦')}` |" for r in items]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
