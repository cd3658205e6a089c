"""IAM and SNS policy documents, as plain dicts: least privilege is checked on these in tests.

No statement has a wildcard action or resource.  Both are JSON-serialised with sorted keys so
a policy only shows as changed in a plan when it really changed.
"""

from __future__ import annotations

from typing import Any

from mailplane.model import aws as aws_rules

SEND_ACTIONS = aws_rules.SEND_ACTIONS
send_only_policy = aws_rules.send_only_policy
"""Built in :mod:`mailplane.model.aws`, where the loader measures it against IAM's size quota."""


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
    return aws_rules.to_json(policy)
