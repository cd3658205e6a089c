"""The Pulumi program under mocks: every resource kind with its inputs, least privilege, secrets."""

from __future__ import annotations

import base64
import functools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cloud_mocks import ACCOUNT, ZONE_IDS, AwsMocks, rsa_key, tokens_for
from cryptography.hazmat.primitives import serialization
from pulumi.runtime import rpc

from mailplane.cloud.engine import Declared, Run, run
from mailplane.model.loader import load_stack
from mailplane.model.records import split_txt
from mailplane.model.stack import Fleet

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"

T = {
    "identity": "aws:sesv2/emailIdentity:EmailIdentity",
    "mail_from": "aws:sesv2/emailIdentityMailFromAttributes:EmailIdentityMailFromAttributes",
    "record": "aws:route53/record:Record",
    "config_set": "aws:sesv2/configurationSet:ConfigurationSet",
    "destination": "aws:sesv2/configurationSetEventDestination:ConfigurationSetEventDestination",
    "pool": "aws:sesv2/dedicatedIpPool:DedicatedIpPool",
    "topic": "aws:sns/topic:Topic",
    "topic_policy": "aws:sns/topicPolicy:TopicPolicy",
    "subscription": "aws:sns/topicSubscription:TopicSubscription",
    "user": "aws:iam/user:User",
    "user_policy": "aws:iam/userPolicy:UserPolicy",
    "access_key": "aws:iam/accessKey:AccessKey",
    "key": "tls:index/privateKey:PrivateKey",
    "ses_tenant": "aws:sesv2/tenant:Tenant",
    "association": "aws:sesv2/tenantResourceAssociation:TenantResourceAssociation",
    "reputation": "pulumi-python:dynamic/mailplane:TenantReputationPolicy",
}


@pytest.fixture(scope="module")
def prod_run() -> tuple[Fleet, Run]:
    """stacks/prod and the Pulumi program's run over it under the mocks."""
    fleet = load_stack(PROD)
    return fleet, run(fleet, AwsMocks(fleet.settings.ses.region))


def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def _records(result: Run, domain: str) -> list[Declared]:
    return [r for r in result.of_type(T["record"]) if r.parent == f"mailplane:cloud:Domain::{domain}"]


def _dkim_txt(public_pem: str) -> str:
    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def test_every_domain_gets_an_identity_in_its_tenants_configuration_set(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    for tenant in fleet.tenants:
        for domain in tenant.domains:
            identity = result.named(T["identity"], domain.name)
            assert identity.inputs["emailIdentity"] == domain.name
            assert identity.inputs["configurationSetName"] == tenant.configuration_set
            assert identity.parent == f"mailplane:cloud:Domain::{domain.name}"
            assert identity.tenant == tenant.name


def test_easy_dkim_asks_for_2048_bit_keys_and_publishes_three_cnames(prod_run: tuple[Fleet, Run]) -> None:
    _, result = prod_run
    identity = result.named(T["identity"], "mail1.example.com")
    assert identity.inputs["dkimSigningAttributes"] == {"nextSigningKeyLength": "RSA_2048_BIT"}
    cnames = {(r.inputs["name"], r.inputs["records"][0]) for r in _records(result, "mail1.example.com")
              if r.inputs["type"] == "CNAME"}
    assert cnames == {(f"{t}._domainkey.mail1.example.com", f"{t}.dkim.amazonses.com")
                      for t in tokens_for("mail1.example.com")}


def test_byodkim_signs_with_the_generated_key_held_as_a_secret(prod_run: tuple[Fleet, Run]) -> None:
    _, result = prod_run
    key = result.named(T["key"], "news.example.com-dkim")
    assert (key.inputs["algorithm"], key.inputs["rsaBits"]) == ("RSA", 2048)
    attributes = result.named(T["identity"], "news.example.com").inputs["dkimSigningAttributes"]
    assert rpc.is_rpc_secret(attributes), "the private key must reach SES as a secret"
    attributes = _plain(attributes)
    private_pem, public_pem = rsa_key("news.example.com-dkim")
    body = "".join(line for line in private_pem.splitlines() if not line.startswith("-----"))
    assert attributes == {"domainSigningPrivateKey": body, "domainSigningSelector": "s2026a"}
    txt = [r for r in _records(result, "news.example.com") if r.name.endswith("-dkim-1")]
    assert len(txt) == 1 and txt[0].inputs["name"] == "s2026a._domainkey.news.example.com"
    assert txt[0].inputs["type"] == "TXT"
    assert txt[0].inputs["records"] == ['""'.join(split_txt(_dkim_txt(public_pem)))]


def test_mail_from_has_mx_spf_and_an_explicit_mx_failure_behaviour(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    attrs = result.named(T["mail_from"], "mail1.example.com-mail-from").inputs
    assert attrs == {"emailIdentity": "mail1.example.com", "mailFromDomain": "bounce.mail1.example.com",
                     "behaviorOnMxFailure": "USE_DEFAULT_VALUE"}
    records = {(r.inputs["type"], r.inputs["name"]): r.inputs for r in _records(result, "mail1.example.com")}
    mx = records[("MX", "bounce.mail1.example.com")]
    assert mx["records"] == [f"10 feedback-smtp.{fleet.settings.ses.region}.amazonses.com"]
    assert records[("TXT", "bounce.mail1.example.com")]["records"] == ["v=spf1 include:amazonses.com ~all"]
    assert all(r["zoneId"] == ZONE_IDS["example.com"] and r["ttl"] == 300 for r in records.values())


def test_dmarc_record_carries_policy_and_report_addresses(prod_run: tuple[Fleet, Run]) -> None:
    _, result = prod_run
    records = {(r.inputs["type"], r.inputs["name"]): r.inputs for r in _records(result, "initech.example.org")}
    dmarc = records[("TXT", "_dmarc.initech.example.org")]
    assert dmarc["records"] == ["v=DMARC1; p=quarantine; rua=mailto:dmarc@initech.example.org"]
    assert dmarc["zoneId"] == ZONE_IDS["initech.example.org"]


def test_external_dns_domain_gets_no_route53_records_but_a_complete_list(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    assert _records(result, "globex.example.net") == []
    listed = [r for r in result.outputs["external_dns_records"] if r["name"].endswith("globex.example.net")]
    by_key = {(r["type"], r["name"]): r for r in listed}
    _, public_pem = rsa_key("globex.example.net-dkim")
    dkim = by_key[("TXT", "gx2026._domainkey.globex.example.net")]
    assert dkim["value"] == _dkim_txt(public_pem)
    assert len(dkim["value"]) > 255 and all(len(s) <= 255 for s in dkim["strings"])
    assert "".join(dkim["strings"]) == dkim["value"]
    assert by_key[("MX", "mf.globex.example.net")]["value"] == "10 feedback-smtp.eu-north-1.amazonses.com"
    assert by_key[("TXT", "mf.globex.example.net")]["value"] == "v=spf1 include:amazonses.com ~all"
    assert by_key[("TXT", "_dmarc.globex.example.net")]["value"] == (
        "v=DMARC1; p=reject; sp=reject; rua=mailto:reports@globex.example.net")
    tenant = fleet.tenant("globex")
    apex = by_key[("TXT", "globex.example.net")]["value"]
    assert apex.startswith("v=spf1 include:amazonses.com ") and apex.endswith(" include:spf.example.org -all")
    for ip in tenant.ips:
        assert f"ip{6 if ':' in ip.address else 4}:{ip.address}" in apex
    # the PowerMTA return path of the transactional route: its MX takes bounces at the route's IPs (by
    # their PTR names) and its SPF lists exactly those IPs
    rp = "transactional.rp.globex.example.net"
    assert by_key[("MX", rp)]["values"] == ["10 out1.globex.example.net", "10 out6.globex-infra.example.org"]
    assert by_key[("TXT", rp)]["value"] == "v=spf1 ip4:198.51.100.31 ip6:2001:db8:100::31 -all"
    assert ("MX", "marketing.rp.globex.example.net") not in by_key  # marketing goes by SES
    # the feedback-loop address fbl@rp.globex.example.net: its MX names every PowerMTA IP of globex
    assert by_key[("MX", "rp.globex.example.net")]["values"] == [
        "10 out1.globex.example.net", "10 out6.globex-infra.example.org"]
    assert len(listed) == 8 and all(r["ttl"] == 300 for r in listed)


def test_configuration_sets_require_tls_track_reputation_and_suppress(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    for tenant in fleet.tenants:
        cs = result.named(T["config_set"], tenant.name).inputs
        assert cs["configurationSetName"] == tenant.configuration_set
        assert cs["deliveryOptions"]["tlsPolicy"] == "REQUIRE"
        assert cs["reputationOptions"] == {"reputationMetricsEnabled": True}
        assert cs["suppressionOptions"] == {"suppressedReasons": ["BOUNCE", "COMPLAINT"]}
        assert cs["sendingOptions"] == {"sendingEnabled": True}
    assert result.named(T["config_set"], "globex").inputs["deliveryOptions"]["sendingPoolName"] == "globex-pool"
    assert "sendingPoolName" not in result.named(T["config_set"], "initech").inputs["deliveryOptions"]
    pools = result.of_type(T["pool"])
    assert [(p.inputs["poolName"], p.inputs["scalingMode"]) for p in pools] == [("globex-pool", "MANAGED")]


def test_events_go_to_a_topic_only_ses_of_this_account_may_publish_to(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    for tenant in fleet.tenants:
        topic_arn = f"arn:aws:sns:eu-north-1:{ACCOUNT}:mailplane-{tenant.name}-ses-events"
        cs_arn = f"arn:aws:ses:eu-north-1:{ACCOUNT}:configuration-set/{tenant.configuration_set}"
        topic = result.named(T["topic"], f"{tenant.name}-events").inputs
        assert topic["name"] == f"mailplane-{tenant.name}-ses-events"
        assert topic["signatureVersion"] == 2  # SHA256withRSA: the sender's verifier accepts nothing else
        policy_res = result.named(T["topic_policy"], f"{tenant.name}-events").inputs
        assert policy_res["arn"] == topic_arn
        (statement,) = json.loads(policy_res["policy"])["Statement"]
        assert statement["Principal"] == {"Service": "ses.amazonaws.com"}
        assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Allow", "sns:Publish", topic_arn)
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": cs_arn}}
        destination = result.named(T["destination"], f"{tenant.name}-events").inputs
        assert destination["configurationSetName"] == tenant.configuration_set
        event = destination["eventDestination"]
        assert event["enabled"] is True
        assert event["matchingEventTypes"] == sorted(e.upper() for e in tenant.ses.events)
        assert event["snsDestination"] == {"topicArn": topic_arn}
        subscription = result.named(T["subscription"], f"{tenant.name}-webhook").inputs
        assert subscription == {"topic": topic_arn, "protocol": "https",
                                "endpoint": "https://mailplane.example.com/v1/webhooks/ses"}


def test_each_sender_may_only_send_from_its_addresses_through_its_identities(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    for tenant in fleet.tenants:
        cs_arn = f"arn:aws:ses:eu-north-1:{ACCOUNT}:configuration-set/{tenant.configuration_set}"
        for sender in tenant.senders:
            name = f"{tenant.name}-{sender.name}"
            user = result.named(T["user"], name).inputs
            assert (user["name"], user["path"]) == (name, "/mailplane/")
            policy = result.named(T["user_policy"], name).inputs
            assert policy["user"] == name
            document = json.loads(policy["policy"])
            (statement,) = document["Statement"]
            assert statement["Effect"] == "Allow"
            assert sorted(statement["Action"]) == ["ses:SendEmail", "ses:SendRawEmail"]
            domains = {a.rpartition("@")[2] for a in sender.from_}
            identities = sorted(f"arn:aws:ses:eu-north-1:{ACCOUNT}:identity/{d}" for d in domains)
            assert statement["Resource"] == [*identities, cs_arn]
            assert statement["Condition"] == {"StringLike": {"ses:FromAddress": sorted(sender.from_)}}
            assert "*" not in json.dumps({k: v for k, v in statement.items() if k != "Condition"})
            assert result.named(T["access_key"], name).inputs == {"user": name}


def test_each_tenant_is_an_ses_tenant_with_every_resource_a_send_names(prod_run: tuple[Fleet, Run]) -> None:
    """A send naming the tenant is refused unless its identity and configuration set are associated."""
    fleet, result = prod_run
    arn = functools.partial("arn:aws:ses:eu-north-1:{}:{}".format, ACCOUNT)
    tenants = {t.inputs["tenantName"]: t for t in result.of_type(T["ses_tenant"])}
    assert set(tenants) == {t.ses_tenant for t in fleet.tenants}
    associations = {(a.inputs["tenantName"], a.inputs["resourceArn"]) for a in result.of_type(T["association"])}
    assert associations == {
        *((t.ses_tenant, arn(f"configuration-set/{t.configuration_set}")) for t in fleet.tenants),
        *((t.ses_tenant, arn(f"identity/{d.name}")) for t in fleet.tenants for d in t.domains)}
    for tenant in fleet.tenants:
        assert tenants[tenant.ses_tenant].parent == f"mailplane:cloud:Tenant::{tenant.name}"
        assert tenants[tenant.ses_tenant].inputs["tags"] == {"mailplane:tenant": tenant.name}
    # the reputation policy: the fleet's default, or the tenant's own
    policies = {r.name: r.inputs for r in result.of_type(T["reputation"])}
    assert {name: (p["policy"], p["region"]) for name, p in policies.items()} == {
        f"{t.name}-reputation": (fleet.reputation_policy_for(t), "eu-north-1") for t in fleet.tenants}
    # the tenant's ARN as SES made it (it ends in an id SES assigns), not one spelt out
    assert policies["globex-reputation"]["tenant_arn"].startswith(arn("tenant/globex/tn-"))
    assert result.outputs["tenants"]["globex"]["ses_tenant"] == "globex"


def test_a_tenants_own_reputation_policy_and_ses_name_win(tmp_path: Path) -> None:
    stack = tmp_path / "prod"
    shutil.copytree(PROD, stack)
    path = stack / "tenants" / "globex.yaml"
    text = path.read_text()
    assert "\nses:\n" in text and "reputation_policy" not in text
    path.write_text(text.replace("\nses:\n", "\nses:\n  tenant: globex-prod\n  reputation_policy: strict\n", 1))
    fleet = load_stack(stack)
    result = run(fleet, AwsMocks())
    assert "globex-prod" in {t.inputs["tenantName"] for t in result.of_type(T["ses_tenant"])}
    assert result.named(T["reputation"], "globex-reputation").inputs["policy"] == "strict"
    assert result.named(T["reputation"], "initech-reputation").inputs["policy"] == \
        fleet.settings.ses.reputation_policy == "standard"
    assert {a.inputs["tenantName"] for a in result.of_type(T["association"])
            if a.parent == "mailplane:cloud:Tenant::globex"} == {"globex-prod"}
    assert result.named(T["reputation"], "globex-reputation").inputs["tenant_arn"].split(":")[-1].startswith(
        "tenant/globex-prod/tn-")


def test_secrets_are_secret_outputs_and_never_plain(prod_run: tuple[Fleet, Run]) -> None:
    _fleet, result = prod_run
    assert {"dkim_private_keys", "sender_credentials"} <= result.secret_outputs
    keys = result.outputs["dkim_private_keys"]
    # the key PowerMTA signs each domain with: BYODKIM ones, and the Easy DKIM domains' own
    assert set(keys) == {"globex.example.net", "news.example.com", "initech.example.org", "mail1.example.com"}
    assert keys["news.example.com"] == rsa_key("news.example.com-dkim")[0]
    credentials = result.outputs["sender_credentials"]["sos-expat/app"]
    assert credentials["secret_access_key"] == "SECRET-sos-expat-app-xyz"
    assert credentials["smtp_password"] == "SMTP-sos-expat-app-xyz"
    plain = json.dumps({k: v for k, v in result.outputs.items() if k not in result.secret_outputs})
    for secret in ["SECRET-", "SMTP-", "PRIVATE KEY", rsa_key("news.example.com-dkim")[0].splitlines()[1]]:
        assert secret not in plain


def test_outputs_name_what_ansible_and_the_sender_read(prod_run: tuple[Fleet, Run]) -> None:
    _fleet, result = prod_run
    out = result.outputs
    assert out["smtp_endpoint"] == "email-smtp.eu-north-1.amazonaws.com"
    assert out["tenants"]["initech"]["configuration_set"] == "initech-marketing"
    assert out["tenants"]["initech"]["topic_arns"] == [f"arn:aws:sns:eu-north-1:{ACCOUNT}:mailplane-initech-ses-events"]
    assert out["tenants"]["sos-expat"]["senders"]["app"]["iam_user"] == "sos-expat-app"
    assert out["domains"]["news.example.com"]["dkim_selectors"] == ["s2026a"]
    assert out["domains"]["mail1.example.com"]["dkim_selectors"] == tokens_for("mail1.example.com")


def test_one_provider_in_the_fleets_region_serves_every_resource(prod_run: tuple[Fleet, Run]) -> None:
    fleet, result = prod_run
    providers = result.of_type("pulumi:providers:aws")
    assert [p.inputs.get("region") for p in providers] == [fleet.settings.ses.region]


def _keys(result: Run) -> set[tuple[str, str, str | None]]:
    return {(r.type, r.name, r.parent) for r in result.resources}


def test_logical_names_are_stable_between_runs(prod_run: tuple[Fleet, Run]) -> None:
    fleet, first = prod_run
    second = run(fleet, AwsMocks())
    assert [(r.type, r.name, r.parent) for r in sorted(first.resources, key=lambda r: (r.type, r.name))] == \
        [(r.type, r.name, r.parent) for r in sorted(second.resources, key=lambda r: (r.type, r.name))]


def test_adding_a_domain_adds_exactly_its_resources(prod_run: tuple[Fleet, Run], tmp_path: Path) -> None:
    _, before = prod_run
    stack = tmp_path / "prod"
    shutil.copytree(PROD, stack)
    path = stack / "tenants" / "initech.yaml"
    path.write_text(path.read_text().replace("ips:\n", "  - name: promo.initech.example.org\n"
                                             "    dkim: {mode: easy}\n"
                                             "    dns: {zone: initech.example.org}\n"
                                             "ips:\n", 1))
    after = run(load_stack(stack), AwsMocks())
    added = _keys(after) - _keys(before)
    parent = "mailplane:cloud:Domain::promo.initech.example.org"
    assert _keys(before) - _keys(after) == set()
    # the domain's component is the stack's, not the tenant's (its URN names no tenant), and belongs to it
    [component] = [r for r in after.resources if r.type == "mailplane:cloud:Domain"
                   and r.name == "promo.initech.example.org"]
    assert component.tenant == "initech"
    assert added == {("mailplane:cloud:Domain", "promo.initech.example.org", None),
                     (T["identity"], "promo.initech.example.org", parent),
                     *((T["record"], f"promo.initech.example.org-dkim-{i}", parent) for i in (1, 2, 3)),
                     # PowerMTA's own key (initech's marketing goes through its IPs), and the return path
                     ("tls:index/privateKey:PrivateKey", "promo.initech.example.org-dkim-pmta", parent),
                     (T["record"], "promo.initech.example.org-dkim-pmta", parent),
                     (T["record"], "promo.initech.example.org-marketing-return-path-mx", parent),
                     (T["record"], "promo.initech.example.org-feedback-loop-mx", parent),
                     (T["record"], "promo.initech.example.org-marketing-return-path-txt", parent),
                     # associated with initech's SES tenant, or a send naming the tenant is refused
                     (T["association"], "initech-promo.initech.example.org", "mailplane:cloud:Tenant::initech")}


def test_removing_a_tenant_removes_only_its_resources(prod_run: tuple[Fleet, Run], tmp_path: Path) -> None:
    _, before = prod_run
    stack = tmp_path / "prod"
    shutil.copytree(PROD, stack)
    (stack / "tenants" / "initech.yaml").unlink()
    after = run(load_stack(stack), AwsMocks())
    removed = {(r.type, r.name, r.parent) for r in before.resources} - _keys(after)
    assert _keys(after) <= _keys(before)
    assert removed == {(r.type, r.name, r.parent) for r in before.resources if r.tenant == "initech"}
    # tenant: component, configuration set, topic, topic policy, event destination, subscription (6),
    # SES tenant, its reputation policy, the configuration set's association (3);
    # its domain: component, identity, MAIL FROM, 3 DKIM + MX + SPF + DMARC records (9), PowerMTA's key
    # and its TXT, the marketing return path's MX and SPF, the feedback-loop MX, its association (6);
    # its sender: 4.
    assert len(removed) == 6 + 3 + 9 + 6 + 4


def test_dev_stack_without_sender_url_has_no_subscription_and_no_zones() -> None:
    fleet = load_stack(ROOT / "stacks" / "dev")
    result = run(fleet, AwsMocks(fleet.settings.ses.region))
    assert result.of_type(T["subscription"]) == [] and result.of_type(T["record"]) == []
    assert {r["purpose"] for r in result.outputs["external_dns_records"]} == {
        "dkim", "dkim-powermta", "mail-from", "dmarc", "return-path", "feedback-loop"}


# --- what a change cannot take back -------------------------------------------------------------

def test_identities_and_dkim_keys_are_protected_and_nothing_else(prod_run: tuple[Fleet, Run]) -> None:
    """pulumi up refuses to delete or replace them (an operator unprotects first); the rest may go."""
    _fleet, result = prod_run
    protected = {(r.type, r.name) for r in result.resources if r.protect}
    identities = {(T["identity"], r.name) for r in result.of_type(T["identity"])}
    keys = {(T["key"], r.name) for r in result.of_type(T["key"])}
    assert identities and keys
    assert protected == identities | keys
    assert {name for _, name in keys} == {"news.example.com-dkim", "globex.example.net-dkim",
                                          "mail1.example.com-dkim-pmta", "initech.example.org-dkim-pmta"}


def test_a_domain_keeps_its_urns_when_it_moves_to_another_tenant(prod_run: tuple[Fleet, Run], tmp_path: Path) -> None:
    """Moving news.example.com from sos-expat to globex: the same URNs (so Pulumi updates, never
    recreates, the identity and its key), and the alias to the URN a domain had as its tenant's
    child keeps stacks deployed before this layout from recreating theirs."""
    _, before = prod_run
    stack = tmp_path / "prod"
    shutil.copytree(PROD, stack)
    source, target = stack / "tenants" / "sos-expat.yaml", stack / "tenants" / "globex.yaml"
    block = ("  - name: news.example.com\n"
             "    dkim: {mode: byo, selector: s2026a}    # one key for SES and PowerMTA\n"
             "    mail_from: bounce.news.example.com\n"
             "    dmarc: {policy: none, rua: [mailto:dmarc@example.com]}\n"
             "    dns: {zone: example.com}               # provider: the fleet's default (route53)\n")
    text = source.read_text()
    assert text.count(block) == 1
    source.write_text(text.replace(block, "").replace('from: ["*@news.example.com"]', "from: [news@mail1.example.com]"))
    target.write_text(target.read_text().replace("domains:\n", "domains:\n" + block, 1))
    fleet = load_stack(stack)
    assert fleet.tenant("globex").domains[0].name == "news.example.com"
    after = run(fleet, AwsMocks())

    def urns(result: Run) -> dict[tuple[str, str], str]:
        return {(r.type, r.name): r.urn for r in result.resources
                if r.name.startswith("news.example.com") and r.type in (T["identity"], T["key"], T["mail_from"])}

    assert urns(before) and urns(after) == urns(before)
    identity = after.named(T["identity"], "news.example.com")
    assert identity.tenant == "globex" and identity.inputs["tags"] == {"mailplane:tenant": "globex"}
    component = after.named("mailplane:cloud:Domain", "news.example.com")
    tenant_urn = after.named("mailplane:cloud:Tenant", "globex").urn
    assert "mailplane:cloud:Tenant" not in component.urn
    assert component.alias_parents == (tenant_urn,)

