"""The sender service's own settings: one YAML file beside the stack, holding its secrets.

The fleet (``stacks/<name>/``) says what may be sent and how fast; this file says how this
instance runs: its database, where it listens, the API keys' hashes, the unsubscribe signing
keys.  It is written on the host by ``roles/sender`` from Ansible variables (Vault for the
secrets) at mode 0600 and is never committed; ``mailplane sender-config`` prints a starting one.
It is read with the stack's loader, so a mistake is reported as ``file:line:col: path: message``.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from mailplane.model.base import Model
from mailplane.model.loader import load_file
from mailplane.model.types import Listener

KEY_PREFIX = "mpk_"
"""API keys start with this, so a leaked one is recognisable by secret scanners."""
HASH_PREFIX = "sha256:"


def new_api_key() -> str:
    """A fresh random API key (256 bits); only its hash is ever stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of a key.

    A plain SHA-256 is the right tool here, not a password hash: the keys are 256 random bits,
    so there is nothing to brute-force, and a slow hash would cost every API request.
    """
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


ACCOUNT_ID_PATTERN = r"^\d{12}$"


class AwsSettings(Model):
    account_id: StrictStr = Field(pattern=ACCOUNT_ID_PATTERN, description="Account of the fleet's SNS topics.")
    partition: Literal["aws", "aws-cn", "aws-us-gov"] = "aws"
    endpoint_url: StrictStr | None = Field(
        None, description="Another endpoint for SES and SNS (a test double such as moto); unset in production.")


class AwsKey(Model):
    access_key_id: StrictStr = Field(min_length=16)
    secret_access_key: StrictStr = Field(min_length=16)


class RenderSettings(Model):
    """What rendering one template may use; over a budget the submission gets a 422 naming it."""

    cpu_seconds: float = Field(2.0, gt=0, le=60, description="CPU time of one render.")
    memory_mb: StrictInt = Field(512, ge=128, le=8192, description="Address space of a render worker process.")
    wall_seconds: float = Field(5.0, gt=0, le=120, description="Wall-clock time before a worker is killed.")
    workers: StrictInt = Field(2, ge=1, le=64, description="Render worker processes of this instance.")
    queue_seconds: float = Field(10.0, gt=0, le=300, description="Longest wait for a free worker.")


SES_MAX_MESSAGE_BYTES = 40 * 1024 * 1024
"""SES v2 takes raw messages of up to 40 MB (PowerMTA has no lower limit of its own)."""


class SubmissionListener(Model):
    listen: Listener = Field(description="ADDRESS:PORT, e.g. 0.0.0.0:587 (STARTTLS) or 0.0.0.0:465 (implicit TLS).")
    tls: Literal["starttls", "implicit", "none"] = Field(
        "starttls", description="`starttls`: TLS required before AUTH and MAIL (port 587); `implicit`: TLS from the "
        "first byte (port 465); `none`: plain text, for a loopback address only.")


class SubmissionSettings(Model):
    """SMTP submission into the queue (``mailplane.sender.front.smtp``): for applications that speak SMTP."""

    listeners: list[SubmissionListener] = Field(min_length=1, description="Where it listens.")
    certificate: StrictStr | None = Field(None, description="PEM file of the server certificate (with its chain), "
                                          "for the `starttls` and `implicit` listeners.")
    key: StrictStr | None = Field(None, description="PEM file of the certificate's private key.")
    hostname: StrictStr | None = Field(None, description="The name in the greeting and EHLO reply (default: the "
                                       "host's).")
    max_message_bytes: StrictInt = Field(10 * 1024 * 1024, ge=1024, le=SES_MAX_MESSAGE_BYTES,
                                         description="Largest message (SIZE); larger ones get 552.")
    max_recipients: StrictInt = Field(100, ge=1, le=1000, description="Recipients of one message (RCPT TO).")
    max_connections: StrictInt = Field(500, ge=1, le=100_000, description="Sessions at once, all clients together.")
    max_connections_per_client: StrictInt = Field(20, ge=1, le=10_000,
                                                  description="Sessions at once from one client address.")
    max_sessions_per_tenant: StrictInt = Field(100, ge=1, le=100_000, description="Logged-in sessions at once of "
                                               "one tenant, whatever their addresses; more get 454 at AUTH.")
    max_tenant_bytes_in_flight: StrictInt = Field(
        32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="Bytes of one tenant's messages being checked "
        "and committed at once; its next message waits in its session, another tenant's never does. A message "
        "larger than this goes alone.")
    max_failed_logins: StrictInt = Field(5, ge=1, le=1000, description="Failed AUTH attempts from one client "
                                         "address before it is refused for `failed_login_window_seconds`.")
    failed_login_window_seconds: float = Field(600.0, ge=1, le=86400)
    streams: dict[StrictStr, Literal["transactional", "marketing"]] = Field(
        default_factory=dict, description="`tenant/sender` to the stream of its mail when the message has no "
        "`X-Mailplane-Stream` header (default `transactional`).")

    @field_validator("listeners")
    @classmethod
    def _check_plain_text(cls, value: list[SubmissionListener]) -> list[SubmissionListener]:
        import ipaddress

        from mailplane.model.addresses import parse_listener

        for listener in value:
            host = parse_listener(listener.listen)[0]
            if listener.tls == "none" and not ipaddress.ip_address(host).is_loopback:
                raise ValueError(f"{listener.listen}: plain text (`tls: none`) is for a loopback address only; "
                                 "credentials would cross the network in clear")
        return value

    @model_validator(mode="after")
    def _check_tls_files(self) -> SubmissionSettings:
        if any(lst.tls != "none" for lst in self.listeners) and not (self.certificate and self.key):
            raise ValueError("a `starttls` or `implicit` listener needs `certificate` and `key`")
        for name in self.streams:
            if name.count("/") != 1:
                raise ValueError(f"streams: {name!r}: name senders `tenant/sender`")
        return self


class SenderConfig(Model):
    """The whole of the sender service's configuration file."""

    database_url: StrictStr = Field(
        "sqlite:///mailplane-sender.db",
        description="sqlite:///FILE for one instance; postgresql://... for several sharing one queue.")
    listen: Listener = Field("127.0.0.1:8025", description="ADDRESS:PORT the HTTP API listens on.")
    aws: AwsSettings
    api_keys: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="`tenant/sender` to the key's hash (`sha256:<hex>`, from `mailplane sender-key`).")
    admin_keys: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="Operator name to the hash (`sha256:<hex>`) of a key for the admin API (`/v1/admin/...`: "
        "pauses, drains, queues). Separate from the senders' keys: no sender key opens the admin API.")
    ses_credentials: dict[StrictStr, AwsKey] = Field(
        default_factory=dict,
        description="`tenant/sender` to its IAM user's access key (Pulumi's `sender_credentials`): SES mail of "
        "that sender is sent as that user, whose policy allows only its From addresses and configuration set. "
        "Senders without one send with the service's own AWS credentials.")
    unsubscribe_keys: list[StrictStr] = Field(
        min_length=1, description="Secrets signing unsubscribe tokens; the first signs, all verify (rotation).")
    mta_hosts: list[StrictStr] | None = Field(
        None, description="The MTA hosts this instance submits to: its own (PowerMTA accepts mail only from its own "
        "host's sender). It then delivers only messages of tenants with an IP there, or without IPs (SES). "
        "Unset: every host (one instance for the whole fleet).")
    smtp_endpoints: dict[StrictStr, Listener] = Field(
        default_factory=dict,
        description="MTA host name to the ADDRESS:PORT to submit to, where not the fleet's `smtp_listener`.")
    deployed_records: dict[StrictStr, StrictStr] = Field(
        default_factory=dict,
        description="MTA host name to the file where `roles/powermta` records what PowerMTA there runs (its VMTAs and "
        "their DKIM domains), written after each successful reload: the sender hands a VMTA mail only once that "
        "record has it. A host of this instance without one is not judged: its VMTAs are named as the fleet "
        "says, with a warning at start.")
    handover_refusals_before_hold: StrictInt = Field(
        3, ge=1, le=1000, description="PowerMTA refusals about its configuration (an unknown VMTA, relaying "
        "denied) in a row on one IP before the IP is held; its mail waits meanwhile, nothing is failed.")
    handover_hold_seconds: float = Field(
        300.0, ge=1, le=86400, description="How long such a hold lasts before mail is tried on the IP again; the "
        "first hand-over PowerMTA accepts ends it.")
    accounting_files: list[StrictStr] = Field(
        default_factory=list, description="Glob patterns of PowerMTA accounting CSV files to ingest.")
    alert_webhook_url: StrictStr | None = Field(None, description="POSTed a JSON alert when an IP is held "
                                                "(its rates, or PowerMTA refusing its mail), a tenant paused by the "
                                                "guard, or a VMTA named by the fleet is not deployed on its host.")
    events_interval_seconds: float = Field(
        30.0, ge=0.5, le=3600, description="How often the accounting files are read and the tenant guard judges "
        "the tenants' rates: the longest a tenant over its thresholds goes on sending.")
    workers: StrictInt = Field(2, ge=1, le=64, description="Claim loops (coroutines) of this instance.")
    smtp_connections: StrictInt = Field(16, ge=1, le=256, description="SMTP connections per MTA host.")
    batch_size: StrictInt = Field(64, ge=1, le=1000, description="Messages a worker claims at once.")
    claim_lease_seconds: float = Field(
        60.0, ge=1, description="How long a worker's claim on a batch lasts unless renewed; a dead worker's "
        "messages are taken over after it.")
    retry_base_seconds: float = Field(60.0, gt=0, description="First retry delay after a temporary failure; doubles.")
    retry_max_seconds: float = Field(3600.0, gt=0, description="Longest delay between two attempts.")
    give_up_after_seconds: float = Field(
        3 * 86400.0, gt=0, description="A message still failing temporarily this long after acceptance fails.")
    render: RenderSettings = Field(RenderSettings(), description="Budgets of template rendering.")
    max_requests_per_tenant: StrictInt = Field(
        8, ge=1, le=10_000, description="HTTP submissions (`POST /v1/messages`) of one tenant being rendered, checked "
        "and committed at once; its next one waits in its connection until one is answered, another tenant's never "
        "does.")
    max_request_bytes_per_tenant: StrictInt = Field(
        32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="Bytes of one tenant's HTTP submissions being "
        "rendered, checked and committed at once (a request larger than this goes alone).")
    submission: SubmissionSettings | None = Field(
        None, description="SMTP submission: applications send with AUTH (`tenant/sender` and its API key) over TLS, "
        "through the same checks, queue and gates as the HTTP API. Unset: no SMTP listener.")
    insecure_skip_sns_signature: StrictBool = Field(
        False, description="Accept SNS messages without checking their signature. Tests only, never in production.")

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if name.count("/") != 1:
                raise ValueError(f"{name!r}: name API keys `tenant/sender`")
            if not stored.startswith(HASH_PREFIX) or len(stored) != len(HASH_PREFIX) + 64:
                raise ValueError(f"{name!r}: store the key's hash (`sha256:` and 64 hex digits), never the key")
        return value

    @field_validator("admin_keys")
    @classmethod
    def _check_admin_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for name, stored in value.items():
            if not stored.startswith(HASH_PREFIX) or len(stored) != len(HASH_PREFIX) + 64:
                raise ValueError(f"{name!r}: store the key's hash (`sha256:` and 64 hex digits), never the key")
        return value

    @field_validator("ses_credentials")
    @classmethod
    def _check_credential_names(cls, value: dict[str, AwsKey]) -> dict[str, AwsKey]:
        for name in value:
            if name.count("/") != 1:
                raise ValueError(f"{name!r}: name SES credentials `tenant/sender`")
        return value

    @field_validator("unsubscribe_keys")
    @classmethod
    def _check_unsubscribe(cls, value: list[str]) -> list[str]:
        for key in value:
            if len(key.encode()) < 16:
                raise ValueError("an unsubscribe key must be at least 16 bytes")
        return value


def load_config(path: Path | str) -> SenderConfig:
    """Read and check the file; raises ``StackError`` with located problems."""
    return load_file(Path(path), SenderConfig)


def main(argv: list[str] | None = None) -> int:
    """``python -m mailplane.sender.config FILE``: the ``validate:`` command of ``roles/sender``."""
    import sys

    from mailplane.model.problems import StackError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mailplane.sender.config FILE", file=sys.stderr)
        return 2
    try:
        load_config(args[0])
    except StackError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
