"""A tenant's SES reputation policy: a Pulumi dynamic resource over boto3, as pulumi-aws has none.

pulumi-aws's ``sesv2.Tenant`` creates the tenant but cannot set how readily SES pauses it on its
own findings (SES's ``UpdateReputationEntityPolicy``); CloudFormation's tenant has no such property
either.  This resource sets one of SES's managed policies (``none``, ``standard``, ``strict``) on
the tenant, reads it back on ``pulumi refresh`` and shows a change of policy as an update in
``pulumi preview``.

The provider runs inside ``pulumi up`` with the same ambient AWS credentials the AWS provider
uses (the program gives that provider a region only), in the region passed as an input.  Pulumi
stores it in the state by reference (``mailplane.cloud.reputation.ReputationPolicyProvider``, about
100 bytes), so it runs from the mailplane installed in Pulumi.yaml's virtualenv: an upgrade of
mailplane upgrades it, with no diff in the state.
Deleting the resource changes nothing in SES: it is deleted only with its tenant, whose policy
goes with it.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi.dynamic as dynamic

from mailplane.model.aws import reputation_policy_arn

ENTITY_TYPE = "RESOURCE"
"""SES's only kind of reputation entity: a resource named by its ARN (a tenant)."""


def put_policy(client: Any, tenant_arn: str, region: str, policy: str) -> None:
    """Apply SES's managed ``policy`` to the tenant (``sesv2.update_reputation_entity_policy``)."""
    client.update_reputation_entity_policy(
        ReputationEntityType=ENTITY_TYPE, ReputationEntityReference=tenant_arn,
        ReputationEntityPolicy=reputation_policy_arn(region, policy))


def read_policy(client: Any, tenant_arn: str) -> str | None:
    """The managed policy SES applies to the tenant now, by name; None when it names no policy."""
    entity = client.get_reputation_entity(ReputationEntityType=ENTITY_TYPE,
                                          ReputationEntityReference=tenant_arn).get("ReputationEntity", {})
    arn = str(entity.get("ReputationManagementPolicy") or "")
    return arn.rpartition("/")[2] or None


class ReputationPolicyProvider(dynamic.ResourceProvider):
    """Create and update set the policy; read reports SES's; delete leaves SES alone (see the module)."""

    serialize_as_secret_always = False
    """The serialised provider holds no secret: keep it readable in the state."""

    def client(self, region: str) -> Any:
        import boto3  # imported here: the provider runs in Pulumi's own process

        return boto3.client("sesv2", region_name=region)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        put_policy(self.client(props["region"]), props["tenant_arn"], props["region"], props["policy"])
        return dynamic.CreateResult(id_=props["tenant_arn"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [k for k in ("tenant_arn", "region", "policy") if olds.get(k) != news.get(k)]
        # Another tenant (or region) is another entity: replace, so the id follows the tenant.
        return dynamic.DiffResult(changes=bool(changed), replaces=[k for k in changed if k != "policy"],
                                  delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        put_policy(self.client(news["region"]), news["tenant_arn"], news["region"], news["policy"])
        return dynamic.UpdateResult(outs=news)

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        policy = read_policy(self.client(props["region"]), id_)
        return dynamic.ReadResult(id_=id_, outs={**props, "policy": policy or props.get("policy")})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None


class TenantReputationPolicy(dynamic.Resource, module="mailplane", name="TenantReputationPolicy"):
    """``pulumi-python:dynamic/mailplane:TenantReputationPolicy``: the SES reputation policy of one tenant."""

    policy: pulumi.Output[str]

    def __init__(self, name: str, *, tenant_arn: pulumi.Input[str], region: str, policy: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ReputationPolicyProvider(), name,
                         {"tenant_arn": tenant_arn, "region": region, "policy": policy}, opts)
