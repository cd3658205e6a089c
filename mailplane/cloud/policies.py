"""IAM and SNS policy documents, as plain dicts: least privilege is checked on these in tests.

No statement has a wildcard action or resource.  Both are JSON-serialised with sorted keys so
a policy only shows as changed in a plan when it really changed.
"""

from __future__ import annotations

import json
from typing import Any

SEND_ACTIONS = ["ses:SendEmail", "ses:SendRawEmail"]
"""The SMTP interface calls SendRawEmail, the v2 API SendEmail: both, and nothing else."""


def send_only_policy(identity_arns: list[str], configuration_set_arn: str, from_addresses: list[str]) -> dict[str, Any]:
    """A sender may send, only through its tenant's identities and configuration set, only From its addresses.

    SES authorises a send against the identity and, when one is used, the configuration set, so
    both ARNs are listed; ``ses:FromAddress`` pins the From header to the sender's own list.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "SendOnlyFromOwnAddresses",
            "Effect": "Allow",
            "Action": SEND_ACTIONS,
            "Resource": [*sorted(identity_arns), configuration_set_arn],
            "Condition": {"StringLike": {"ses:FromAddress": sorted(from_addresses)}},
        }],
    }


def ses_publish_policy(topic_arn: str, account_id: str, configuration_set_arn: str) -> dict[str, Any]:
    """Only SES of this account, publishing for this tenant's configuration set, may publish."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowSesEventPublishing",
            "Effect": "Allow",
            "Principal": {"Service": "ses.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": topic_arn,
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id, "aws:SourceArn": configuration_set_arn},
            },
        }],
    }


def to_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True, separators=(",", ":"))
