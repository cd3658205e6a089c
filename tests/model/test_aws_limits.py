"""What AWS would refuse at pulumi up, refused by the loader: IAM's policy size, SES's SMTP regions.

The failing stacks are data-driven cases of tests/model/test_loader_errors.py
(``tests/fixtures/bad/iam-policy-too-large``, ``tests/fixtures/bad/region-without-smtp``); here,
the compression that makes a large sender fit, and that the loader measures what the program makes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cloud_mocks import ACCOUNT, AwsMocks

from mailplane.cloud.engine import run
from mailplane.model import aws
from mailplane.model.loader import load_stack

BASE = Path(__file__).resolve().parents[1] / "fixtures" / "base"
BAD = Path(__file__).resolve().parents[1] / "fixtures" / "bad"
USER_POLICY = "aws:iam/userPolicy:UserPolicy"


def test_addresses_a_listed_wildcard_matches_are_left_out_and_nothing_is_widened() -> None:
    assert aws.from_address_values(["b@x.com", "*@x.com", "a@y.com", "a@y.com", "n?@y.com", "n1@y.com"]) == [
        "*@x.com", "a@y.com", "n?@y.com"]
    assert aws.from_address_values(["news@x.com", "news@x.co"]) == ["news@x.co", "news@x.com"]
    assert aws.from_address_values(["a.b@x.com", "a*b@x.com"]) == ["a*b@x.com"]
    assert aws.from_address_values(["a+b@x.com", "a.b@x.com"]) == ["a+b@x.com", "a.b@x.com"]  # literal dots


def test_sixty_addresses_under_a_domain_wildcard_fit(tmp_path: Path) -> None:
    """The case the 60-address fixture fails on, with the domain's wildcard listed: it compresses."""
    stack = tmp_path / "stack"
    shutil.copytree(BASE, stack)
    big = (BAD / "iam-policy-too-large" / "tenants" / "alpha.yaml").read_text()
    wildcard = "    from:\n      - '*@alpha.example.com'\n"
    (stack / "tenants" / "alpha.yaml").write_text(big.replace("    from:\n", wildcard))
    fleet = load_stack(stack)  # no error: the policy fits
    sender = fleet.tenant("alpha").senders[1]
    assert len(sender.from_) == 61
    document = aws.to_json(aws.sender_policy("eu-north-1", "alpha", list(sender.from_)))
    assert aws.policy_size(document) <= aws.USER_INLINE_POLICY_MAX

    result = run(fleet, AwsMocks())
    declared = result.named(USER_POLICY, "alpha-campaigns").inputs["policy"]
    (statement,) = json.loads(declared)["Statement"]
    assert statement["Condition"] == {"StringLike": {"ses:FromAddress": ["*@alpha.example.com"]}}
    # the loader measured the very document the program declares (the account id aside: same length)
    assert declared == aws.to_json(aws.sender_policy("eu-north-1", "alpha", list(sender.from_), ACCOUNT))
    assert len(ACCOUNT) == len(aws.ACCOUNT_PLACEHOLDER)


def test_sixty_addresses_without_it_do_not_and_white_space_is_not_counted() -> None:
    addresses = [f"campaign-{i:02d}@alpha.example.com" for i in range(1, 61)]
    document = aws.to_json(aws.sender_policy("eu-north-1", "alpha", addresses))
    size = aws.policy_size(document)
    assert size == len(document) == 2245 > aws.USER_INLINE_POLICY_MAX
    pretty = json.dumps(json.loads(document), indent=4)
    assert aws.policy_size(pretty) == size < len(pretty)


def test_smtp_regions() -> None:
    assert {"eu-north-1", "us-east-1", "eu-west-1"} <= aws.SMTP_REGIONS
    assert not {"af-south-1", "ap-southeast-3", "il-central-1"} & aws.SMTP_REGIONS
    assert aws.ses_arn("us-gov-west-1", "1", "identity/x") == "arn:aws-us-gov:ses:us-gov-west-1:1:identity/x"


def test_a_region_without_smtp_is_fine_without_senders(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    shutil.copytree(BASE, stack)
    fleet_yaml = stack / "fleet.yaml"
    fleet_yaml.write_text(fleet_yaml.read_text().replace("region: eu-north-1", "region: af-south-1"))
    for tenant in ("alpha", "beta"):
        path = stack / "tenants" / f"{tenant}.yaml"
        text = path.read_text()
        path.write_text(text[: text.index("senders:")])
    assert load_stack(stack).settings.ses.region == "af-south-1"
