"""schemathesis against a real `mailplane serve`: no 5xx, and every response matches the OpenAPI document.

Bounded and repeatable: a fixed number of examples per operation, derandomized (a fixed seed), no
shrinking, against one instance with a real SMTP sink behind it.  Authenticated operations are called
with a valid key of the stack, so schemathesis reaches the handlers, not only the 401.  One check is
left out: "schema-valid data is accepted" cannot hold for this API, whose rules go past a schema (a
From the key's sender may use, a subject or a template), and those refusals are documented 422s.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance
from sender_instance import KEYS, Instance, write_config, write_stack
from smtp_sink import SmtpSink

pytestmark = pytest.mark.processes

EXAMPLES = 25


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("openapi")
    stack = write_stack(root)
    with SmtpSink() as sink:
        config = write_config(root / "sender.yaml", db=f"sqlite:///{root / 'q.db'}", sink_port=sink.port)
        inst = Instance(stack, config, root / "serve.log")
        try:
            yield inst
        finally:
            inst.stop()


@pytest.fixture(scope="module")
def api_schema(instance: Instance) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(instance.url + "/openapi.json")


def test_api_matches_its_openapi_document(api_schema: schemathesis.BaseSchema, instance: Instance) -> None:
    headers = {"Authorization": f"Bearer {KEYS['acme']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=instance.url, headers=headers, excluded_checks=[positive_data_acceptance])

        check()


def test_the_document_lists_every_error_status_with_its_body(api_schema: schemathesis.BaseSchema) -> None:
    raw = api_schema.raw_schema
    submit = raw["paths"]["/v1/messages"]["post"]["responses"]
    assert {"202", "401", "409", "413", "415", "422"} <= set(submit)
    for status in ("401", "409", "413", "415", "422"):
        assert submit[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert {"200", "401", "404"} <= set(raw["paths"]["/v1/messages/{message_id}"]["get"]["responses"])
    assert {"400", "403", "413", "503"} <= set(raw["paths"]["/v1/webhooks/ses"]["post"]["responses"])

