"""Record and policy builders: pure functions, checked without the Pulumi runtime."""

from __future__ import annotations

import json

from cloud_mocks import rsa_key

from mailplane.cloud.policies import send_only_policy, ses_publish_policy, to_json
from mailplane.model.records import Record, byo_dkim_record, dkim_p_from_pem, pem_body, split_txt
from mailplane.model.tenant import Domain


def test_long_txt_values_split_at_255_and_reassemble() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 392
    chunks = split_txt(value)
    assert [len(c) for c in chunks] == [255, len(value) - 255]
    assert "".join(chunks) == value
    record = Record("s._domainkey.example.com", "TXT", 300, value, "dkim")
    assert record.route53_value == chunks[0] + '""' + chunks[1]
    assert split_txt("short") == ["short"]
    assert Record("x.example.com", "MX", 300, "10 mx.example.com", "m").route53_value == "10 mx.example.com"


def test_a_2048_bit_dkim_record_is_split_and_carries_the_key() -> None:
    private, public = rsa_key("records-test")
    domain = Domain.model_validate({"name": "example.com", "dkim": {"mode": "byo", "selector": "s1"}})
    record = byo_dkim_record(domain, public, 300)
    assert record.name == "s1._domainkey.example.com"
    assert len(record.value) > 255 and len(record.strings) == 2
    assert "".join(record.strings) == record.value == f"v=DKIM1; k=rsa; p={dkim_p_from_pem(public)}"
    assert "\n" not in pem_body(private) and "-----" not in pem_body(private)


def test_send_policy_has_no_wildcard_and_pins_from_addresses() -> None:
    policy = send_only_policy(["arn:b", "arn:a"], "arn:cs", ["z@example.com", "*@example.org"])
    (statement,) = policy["Statement"]
    assert statement["Resource"] == ["arn:a", "arn:b", "arn:cs"]
    assert statement["Condition"]["StringLike"]["ses:FromAddress"] == ["*@example.org", "z@example.com"]
    assert json.loads(to_json(policy)) == policy
    assert to_json(policy) == to_json(send_only_policy(["arn:a", "arn:b"], "arn:cs",
                                                       ["*@example.org", "z@example.com"]))


def test_topic_policy_names_the_account_and_configuration_set() -> None:
    (statement,) = ses_publish_policy("arn:topic", "123", "arn:cs")["Statement"]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": "123", "aws:SourceArn": "arn:cs"}
