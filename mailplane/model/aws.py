"""What AWS accepts, known offline: a sender's IAM policy and its size, the regions with SES SMTP.

The loader rejects a stack that ``pulumi up`` would fail on half-way; these are the AWS rules it
needs, kept here (pure, no Pulumi) so the model can check them and the Pulumi program can build
the very document the check measured (``mailplane.cloud.policies`` uses :func:`send_only_policy`).

Sources (see docs/aws-limits.md):

- IAM and AWS STS quotas (IAM User Guide, "IAM and AWS STS quotas, name requirements, and
  character limits"): the inline policies of a user total at most 2,048 characters, white space
  not counted; a customer managed policy holds 6,144.
- SES SMTP endpoints: the regions of the SES developer guide's example that derives an SMTP
  password from a secret access key (it refuses every other region: "doesn't have an SMTP
  endpoint") and of the SMTP endpoints table of the AWS General Reference ("Amazon Simple Email
  Service endpoints and quotas").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

USER_INLINE_POLICY_MAX = 2048
"""IAM: all inline policies of one user together, in characters not counting white space."""

SEND_ACTIONS = ["ses:SendEmail", "ses:SendRawEmail"]
"""The SMTP interface calls SendRawEmail, the v2 API SendEmail: both, and nothing else."""

SMTP_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2",
    "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-south-1", "eu-north-1",
    "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2",
    "us-gov-west-1", "us-gov-east-1",
})
"""Regions where SES has an SMTP endpoint, ``email-smtp.<region>.amazonaws.com``.  SES's API is
offered in more (af-south-1, ap-southeast-3, il-central-1, me-south-1, ...): an SMTP password
derived there has no endpoint to log in to.  A region AWS adds is added here after checking the
General Reference's table."""

ACCOUNT_PLACEHOLDER = "123456789012"
"""Account ids are always 12 digits: a stand-in measures an ARN exactly before the account is known."""


def partition(region: str) -> str:
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"


def ses_arn(region: str, account_id: str, resource: str) -> str:
    """``identity/<domain>`` or ``configuration-set/<name>``, as SES names them."""
    return f"arn:{partition(region)}:ses:{region}:{account_id}:{resource}"


def _pattern(value: str) -> re.Pattern[str]:
    """IAM's ``StringLike``: ``*`` any run of characters, ``?`` exactly one, the rest literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value), re.S)


def from_address_values(addresses: Iterable[str]) -> list[str]:
    """The sender's From addresses, sorted, without those another entry already matches.

    Lossless: ``*@example.com`` makes ``news@example.com`` redundant under ``StringLike``, so
    dropping it changes nothing a send may do.  Nothing is widened: every address kept was listed.
    """
    values = sorted(set(addresses))
    patterns = [(v, _pattern(v)) for v in values if "*" in v or "?" in v]
    return [v for v in values if not any(p != v and rx.fullmatch(v) for p, rx in patterns)]


def send_only_policy(identity_arns: list[str], configuration_set_arn: str, from_addresses: list[str]) -> dict[str, Any]:
    """A sender may send, only through its tenant's identities and configuration set, only From its addresses.

    SES authorises a send against the identity and, when one is used, the configuration set, so
    both ARNs are listed; ``ses:FromAddress`` pins the From header to the sender's own list.  No
    condition on ``ses:TenantName``: ``ses:SendRawEmail`` (SES's SMTP endpoint) has no such key, and a
    send naming another SES tenant is refused anyway, as the sender's identities are associated with
    its own tenant only.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SendOnlyFromOwnAddresses",
            "Effect": "Allow",
            "Action": SEND_ACTIONS,
            "Resource": [*sorted(identity_arns), configuration_set_arn],
            "Condition": {"StringLike": {"ses:FromAddress": from_address_values(from_addresses)}},
        }],
    }


def to_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True, separators=(",", ":"))


def policy_size(document: str) -> int:
    """Characters IAM counts against its quotas: every one but white space."""
    return sum(not c.isspace() for c in document)


def sender_policy(region: str, configuration_set: str, from_addresses: list[str],
                  account_id: str = ACCOUNT_PLACEHOLDER) -> dict[str, Any]:
    """The send-only policy of a sender as the Pulumi program makes it (the account a stand-in)."""
    domains = sorted({a.rpartition("@")[2] for a in from_addresses})
    return send_only_policy([ses_arn(region, account_id, f"identity/{d}") for d in domains],
                            ses_arn(region, account_id, f"configuration-set/{configuration_set}"),
                            from_addresses)


def reputation_policy_arn(region: str, policy: str) -> str:
    """One of SES's managed reputation policies (``none``, ``standard``, ``strict``): AWS owns them,
    so the account field of the ARN is ``aws``."""
    return f"arn:{partition(region)}:ses:{region}:aws:reputation-policy/{policy}"
