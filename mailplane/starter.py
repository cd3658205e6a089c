"""The files a new stack starts from: ``mailplane init`` and ``mailplane sender-config`` write them.

Pure text: every value that varies (region, paths, keys) is a parameter, so the same arguments give
the same bytes and the tests can load what a person would get.  Each file loads as written and says,
in comments, what to change before it reaches production; a value that cannot be guessed (the AWS
account) is a placeholder that fails loading, located, until it is replaced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SANDBOX_RATE = 1
SANDBOX_QUOTA = 200
"""What a new SES account allows (the sandbox): the sender paces by the lower of this file and SES."""
ACCOUNT_PLACEHOLDER = "<your AWS account id, 12 digits>"


def fleet_yaml(region: str, schema_ref: str) -> str:
    """A fleet.yaml that validates as it is, with the settings a new stack must think about next."""
    return f"""\
# yaml-language-server: $schema={schema_ref}
# Shared by every tenant of this stack; tenants live in tenants/<name>.yaml (`mailplane tenant add`).
# Reference: docs/reference/yaml.md.
ses:
  region: {region}
  # What the SES account allows: a new account is in the sandbox (200 a day at 1 a second). Raise both
  # once SES grants production access (`mailplane ses request-production`, then `mailplane ses status`).
  max_send_rate: {SANDBOX_RATE}
  daily_quota: {SANDBOX_QUOTA}
dns:
  # external: `pulumi up` outputs the records for a person to publish;
  # route53: Pulumi writes them into each domain's hosted zone (`mailplane domain add --zone`).
  default_provider: external
  ttl: 300
# Dedicated-IP hosts running PowerMTA, by name; a tenant's IPs name one (`mailplane ip add --host`).
# Without any, every tenant sends through SES.
mta_hosts: {{}}
#  mta1:
#    ansible_host: 198.51.100.10       # the address Ansible connects to
#    smtp_listener: 127.0.0.1:2525     # where PowerMTA takes mail from the sender service
# Where the sender service is reachable from the internet: SES events (SNS) and one-click
# unsubscribe links go there. A tenant with the marketing stream needs it.
#sender:
#  public_url: https://mailplane.example.com
#  submission_host: smtp.mailplane.example.com   # applications submit SMTP here (587, STARTTLS)
# PowerMTA's own notices, once there are MTA hosts:
#powermta:
#  postmaster: postmaster@example.com
"""


def stack_config_yaml(region: str, fleet_path: str) -> str:
    """``Pulumi.<stack>.yaml``: the stack's region and the folder its program reads."""
    return f"""\
config:
  aws:region: {region}
  mailplane:fleet: {fleet_path}
"""


@dataclass(frozen=True)
class WorkflowMatrix:
    """The stacks the workflows run for now, read from them (empty when they cannot be read)."""

    stacks: Sequence[str]
    regions: Mapping[str, str]


def workflow_advice(stack: str, region: str, current: WorkflowMatrix) -> list[str]:
    """Lines telling what the three workflows need to know of a new stack."""
    listed = [*current.stacks, stack] if stack not in current.stacks else list(current.stacks)
    matrix = ", ".join(listed)
    return [
        "The workflows run per stack; add this one to their matrices:",
        f"  .github/workflows/plan.yml and ansible.yml:  stack: [{matrix}]",
        f"  .github/workflows/pulumi-up.yml, under include:  - {{stack: {stack}, region: {region}}}",
        f"and create the GitHub environment {stack!r} with PULUMI_ACCESS_TOKEN, AWS_ROLE_ARN,",
        "ANSIBLE_VAULT_PASSWORD, MAILPLANE_SSH_PRIVATE_KEY, MAILPLANE_SSH_KNOWN_HOSTS and ANSIBLE_REMOTE_USER",
        "(docs/ci.md).",
    ]


def sender_config_yaml(stack_dir: str, *, account_id: str | None, unsubscribe_key: str,
                       api_keys: Mapping[str, str], senders: Sequence[str], admin_keys: Mapping[str, str]) -> str:
    """A sender config for ``mailplane serve``: SQLite on this host, the API on loopback.

    ``api_keys`` and ``admin_keys`` map names to key hashes (never keys); every sender of the stack
    without a hash gets a commented line with the command that mints one.
    """
    account = f'"{account_id}"' if account_id else f'"{ACCOUNT_PLACEHOLDER}"'
    lines = [
        f"# The sender service's config for stack {stack_dir}: mailplane serve {stack_dir} --config FILE",
        "# It holds a secret (unsubscribe_keys): keep it mode 0600 and out of git. On MTA hosts,",
        "# roles/sender writes it from Ansible variables instead. Reference: docs/sender.md.",
        "database_url: sqlite:///mailplane-sender.db   # postgresql://... for instances sharing one queue",
        "listen: 127.0.0.1:8025                       # the HTTP API",
        "aws:",
        f"  account_id: {account}   # the account of the stack's SNS topics",
    ]
    lines += _mapping("api_keys", "TENANT/SENDER: the hash of its key", api_keys,
                      [f"{name}: from `mailplane sender-key {name} --stack {stack_dir}`"
                       for name in senders if name not in api_keys])
    lines += _mapping("admin_keys", "OPERATOR: the hash of a key for /v1/admin", admin_keys,
                      [] if admin_keys else ["ops: from `mailplane sender-key ops --admin`"])
    lines += [
        "unsubscribe_keys:                            # signs one-click unsubscribe links; the first signs, all verify",
        f'  - "{unsubscribe_key}"',
        "# SES mail of a sender is sent as its own IAM user with Pulumi's `sender_credentials` output:",
        "#ses_credentials:",
        "#  TENANT/SENDER: {access_key_id: ..., secret_access_key: ...}",
        "# PowerMTA accounting files to read bounces and deliveries from (on an MTA host):",
        "#accounting_files: [/var/log/pmta/acct-*.csv]",
        "# SMTP submission for applications (MailWizz, WordPress): AUTH as TENANT/SENDER with its API key.",
        "#submission:",
        "#  listeners: [{listen: 0.0.0.0:587, tls: starttls}]",
        "#  certificate: /etc/mailplane/tls/fullchain.pem",
        "#  key: /etc/mailplane/tls/privkey.pem",
    ]
    return "\n".join(lines) + "\n"


def _mapping(key: str, what: str, hashes: Mapping[str, str], to_mint: Sequence[str]) -> list[str]:
    """``key:`` with its hashes; when it has none, ``{}`` (an empty key would read as null) and what to add."""
    if not hashes:
        return [f"{key}: {{}}".ljust(45) + f"# {what}; replace {{}} with lines such as:",
                *(f"#  {line}" for line in to_mint)]
    return [f"{key}:".ljust(45) + f"# {what}", *(f'  {name}: "{digest}"' for name, digest in sorted(hashes.items())),
            *(f"  # {line}" for line in to_mint)]
