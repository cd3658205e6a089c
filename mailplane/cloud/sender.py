"""One sender of a tenant: an IAM user that can only send, and its SMTP credentials."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mailplane.cloud.policies import send_only_policy, to_json
from mailplane.model.tenant import Sender, Tenant


@dataclass(frozen=True)
class SenderArgs:
    tenant: Tenant
    sender: Sender
    identity_arns: list[pulumi.Output[str]]
    """The identities of the domains the sender's From addresses are in: no more."""
    configuration_set_arn: pulumi.Output[str]


class SenderUser(pulumi.ComponentResource):
    """``mailplane:cloud:Sender``: the IAM user ``<tenant>-<sender>`` under path ``/mailplane/``."""

    def __init__(self, name: str, args: SenderArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mailplane:cloud:Sender", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.user = aws.iam.User(name, name=name, path="/mailplane/",
                                 tags={"mailplane:tenant": args.tenant.name}, opts=child)
        policy = pulumi.Output.all(args.configuration_set_arn, *args.identity_arns).apply(
            lambda arns: to_json(send_only_policy(list(arns[1:]), arns[0], list(args.sender.from_))))
        aws.iam.UserPolicy(name, user=self.user.name, name="send-only", policy=policy, opts=child)
        key = aws.iam.AccessKey(name, user=self.user.name, opts=child)
        self.access_key_id = key.id
        self.secret_access_key: pulumi.Output[str] = pulumi.Output.secret(key.secret)  # type: ignore[arg-type]
        self.smtp_password: pulumi.Output[str] = pulumi.Output.secret(key.ses_smtp_password_v4)  # type: ignore[arg-type]
        self.register_outputs({"user": self.user.name, "access_key_id": key.id})
