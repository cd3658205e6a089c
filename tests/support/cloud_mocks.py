"""Mocks standing in for the Pulumi engine and AWS in tests: realistic values, deterministic.

DKIM tokens are derived from the domain, ARNs follow AWS's formats for account 111122223333, and
BYODKIM keys are real 2048-bit RSA keys (one per domain, made once per test session) so the TXT
records built from them can be checked against the key itself.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ACCOUNT = "111122223333"
ZONE_IDS = {"example.com": "Z0EXAMPLECOM", "initech.example.org": "Z0INITECH"}


def tokens_for(domain: str) -> list[str]:
    return [hashlib.sha256(f"{domain}/{i}".encode()).hexdigest()[:32] for i in range(3)]


@functools.cache
def rsa_key(name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


class AwsMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str = "eu-north-1") -> None:
        self.region = region

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{resource}"

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        state: dict[str, Any] = {}
        if args.typ == "aws:sesv2/emailIdentity:EmailIdentity":
            domain = inputs["emailIdentity"]
            dkim = inputs.get("dkimSigningAttributes", {})
            state["arn"] = self.arn("ses", f"identity/{domain}")
            selector = dkim.get("domainSigningSelector") if isinstance(dkim, dict) else None
            state["dkimSigningAttributes"] = {"tokens": [selector] if selector else tokens_for(domain)}
        elif args.typ == "aws:sesv2/configurationSet:ConfigurationSet":
            state["arn"] = self.arn("ses", f"configuration-set/{inputs['configurationSetName']}")
        elif args.typ == "aws:sns/topic:Topic":
            state["arn"] = self.arn("sns", inputs["name"])
        elif args.typ == "aws:iam/user:User":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:user{inputs['path']}{inputs['name']}"
        elif args.typ == "aws:sesv2/tenant:Tenant":
            name = inputs["tenantName"]
            tenant_id = "tn-" + hashlib.sha256(name.encode()).hexdigest()[:30]
            state.update(tenantArn=self.arn("ses", f"tenant/{name}/{tenant_id}"), tenantId=tenant_id,
                         sendingStatus="ENABLED")
        elif args.typ == "aws:iam/accessKey:AccessKey":
            state.update(secret=f"SECRET-{args.name}-xyz", sesSmtpPasswordV4=f"SMTP-{args.name}-xyz")
            return f"AKIA{args.name.upper()[:12]}", {**inputs, **state}
        elif args.typ == "tls:index/privateKey:PrivateKey":
            private, public = rsa_key(args.name)
            state.update(privateKeyPem=private, publicKeyPem=public)
        return f"{args.name}-id", {**inputs, **state}

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root", "userId": "AIDEXAMPLE"}
        if args.token == "aws:route53/getZone:getZone":
            return {"name": args.args["name"], "zoneId": ZONE_IDS[args.args["name"]]}
        raise NotImplementedError(args.token)
