"""Every PowerMTA directive and block the renderer may emit, where, and the guide section it comes from.

The template (``templates/powermta/config.j2``) may write nothing that is not listed here, and
everything listed here is documented PowerMTA v5.0 syntax in that context: ``tests/mta/test_catalogue.py``
holds every rendered config to this table, this table to the catalogue in ``docs/powermta.md``
(written from the PowerMTA v5.0 User's Guide, ``g`` = its section, ``pub`` = the public edition's
chapter where the 2020 text is missing), and this table to ``pmta-lint``'s own catalogue.

Contexts are the enclosing blocks joined by ``/`` (``virtual-mta/domain`` is a ``<domain>`` inside a
``<virtual-mta>``), ``global`` for the top level; a block is written ``<tag>``.
"""

from __future__ import annotations

EMITTED: dict[tuple[str, str], str] = {
    # top level
    ("global", "run-as-root"): "g 3.3.1.8",
    ("global", "log-file"): "g 3.3.1.47.2",
    ("global", "postmaster"): "g 3.3.1.3",
    ("global", "smtp-listener"): "g 3.3.1.24",
    ("global", "http-mgmt-port"): "g 3.3.1.46.1",
    ("global", "http-access"): "g 3.3.1.46.3",
    ("global", "relay-domain"): "g 3.3.1.42.2",
    ("global", "<spool>"): "g 3.3.2",
    ("global", "<source>"): "g 3.3.7",
    ("global", "<acct-file>"): "g 3.3.11",
    ("global", "<bounce-processor>"): "g 3.3.3",
    ("global", "<feedback-loop-processor>"): "g 3.3.4",
    ("global", "<smtp-pattern-list>"): "g 3.3.15",
    ("global", "<mx-rollup-list>"): "pub 10.17",
    ("global", "<domain>"): "g 3.3.10",
    ("global", "<virtual-mta>"): "g 3.3.12",
    ("global", "<virtual-mta-pool>"): "g 3.3.13",
    # <spool DIR>
    ("spool", "deliver-only"): "g 3.3.2",
    # <source CIDR>
    ("source", "always-allow-relaying"): "g 3.3.1.42.1",
    ("source", "process-x-virtual-mta"): "g 3.3.7",
    ("source", "default-virtual-mta"): "g 3.3.7.29",
    ("source", "smtp-service"): "g 3.3.7",
    ("source", "add-received-header"): "g 3.3.7",
    # <acct-file PATH>
    ("acct-file", "records"): "g 3.3.11.11",
    ("acct-file", "max-size"): "g 3.3.11",
    ("acct-file", "delete-after"): "g 3.3.11",
    # inbound processors
    ("bounce-processor", "deliver-unmatched-email"): "g 3.3.3",
    ("bounce-processor", "deliver-matched-email"): "g 3.3.3",
    ("bounce-processor", "<address-list>"): "g 3.3.5",
    ("bounce-processor/address-list", "domain"): "g 3.3.5",
    ("feedback-loop-processor", "deliver-unmatched-email"): "g 3.3.4",
    ("feedback-loop-processor", "deliver-matched-email"): "g 3.3.4",
    ("feedback-loop-processor", "<address-list>"): "g 3.3.5",
    ("feedback-loop-processor/address-list", "address"): "g 3.3.5",
    # backoff and provider grouping
    ("smtp-pattern-list", "reply"): "g 3.3.15",
    ("mx-rollup-list", "mx"): "pub 10.17",
    # <domain PATTERN> at the top level: connection habits, backoff, signing; discard for report domains
    ("domain", "max-msg-per-connection"): "g 3.3.10",
    ("domain", "retry-after"): "g 3.3.10.39",
    ("domain", "backoff-retry-after"): "g 3.3.10.39",
    ("domain", "backoff-to-normal-after"): "g 3.3.10",
    ("domain", "smtp-pattern-list"): "g 3.3.10",
    ("domain", "use-starttls"): "g 3.3.10.95",
    ("domain", "dkim-sign"): "g 3.3.10.19",
    ("domain", "bounce-after"): "g 3.3.10",
    ("domain", "type"): "g 3.3.10.52",
    # <virtual-mta NAME>
    ("virtual-mta", "smtp-source-host"): "g 3.3.1.19",
    ("virtual-mta", "max-smtp-msg-rate"): "g 3.3.12",
    ("virtual-mta", "max-smtp-out"): "g 3.3.12",
    ("virtual-mta", "domain-key"): "g 3.3.1.43.1",
    ("virtual-mta", "<domain>"): "g 3.3.12",
    ("virtual-mta/domain", "max-msg-rate"): "g 3.3.10.33",
    ("virtual-mta/domain", "backoff-max-msg-rate"): "g 3.3.10.33",
    ("virtual-mta/domain", "max-smtp-out"): "g 3.3.10",
    ("virtual-mta/domain", "type"): "g 3.3.10.52",
    ("virtual-mta/domain", "discard-as-bounce"): "g 3.3.10.52",
    # <virtual-mta-pool NAME>
    ("virtual-mta-pool", "virtual-mta"): "g 3.3.13",
}
