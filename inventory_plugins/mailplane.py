"""Ansible inventory plugin ``mailplane``: the MTA hosts of a stack, read through ``mailplane.model``.

Why a plugin and not a generated inventory file: the fleet YAML is the only source of truth, and
an inventory written by hand (or generated and committed) would drift from it.  The plugin loads
the stack with the same loader as ``mailplane validate``, so a fleet with errors stops the run
with the same located problems (``file:line:col: path: message``) instead of a traceback, and
the per-host PowerMTA view handed to the role is the one the Python renderer uses.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

DOCUMENTATION = r"""
    name: mailplane
    short_description: MTA hosts, tenant groups and the PowerMTA view of a mailplane stack
    description:
        - Loads a mailplane stack (C(fleet.yaml) and C(tenants/*.yaml)) with C(mailplane.model.loader.load_stack).
        - Adds every key of C(mta_hosts) as a host (C(ansible_host) from the fleet) to the group C(mta),
          and to one group C(tenant_<name>) (hyphens become underscores) per tenant with an IP on that host.
        - Sets the host variables C(mailplane_stack), C(mailplane_date), C(mailplane_pmta) (the per-host
          PowerMTA view that C(mailplane.mta.view.host_view) computes, as plain data) and
          C(mailplane_dkim_domains) (the selector, domain and key file name of every DKIM key the host
          signs with) and C(mailplane_deployed) (the record of the config's VMTAs and their DKIM domains
          that the powermta role writes once PowerMTA reloaded it, for the sender on the host).
        - A stack with errors fails the inventory with every located problem.
        - The inventory file name must end in C(mailplane.yml) or C(mailplane.yaml).
    extends_documentation_fragment:
        - constructed
    options:
        plugin:
            description: Marks this file as a source for the mailplane plugin.
            required: true
            choices: ['mailplane']
        stack:
            description:
                - The stack folder (holding C(fleet.yaml) and C(tenants/)).
                - A relative path is taken from the working directory, like every mailplane command;
                  run Ansible from the repository root, where C(ansible.cfg) is.
            required: true
            type: path
        date:
            description:
                - Day (YYYY-MM-DD) whose warmup caps the PowerMTA view carries. Default today.
                - Meant for tests and for previewing a future day with C(--check --diff).
                - Written unquoted (a YAML date) or quoted.
            type: raw
"""

EXAMPLES = r"""
# inventory/mailplane.yml
plugin: mailplane
stack: stacks/prod
"""

MTA_GROUP = "mta"
FILE_SUFFIXES = ("mailplane.yml", "mailplane.yaml")


def tenant_group(tenant: str) -> str:
    """Tenant names are slugs (``sos-expat``); Ansible group names may not hold hyphens."""
    return "tenant_" + tenant.replace("-", "_")


def _json_safe(value: Any) -> Any:
    """Host variables must be plain data: the view promises JSON, so hold it to that promise."""
    return json.loads(json.dumps(value))


JINJA_MARKERS = ("{{", "{%", "{#")


def _trust_function() -> Callable[[str], str]:
    """Ansible 2.19 and later mark every string an inventory plugin hands over as untrusted
    (``ansible-inventory --list`` then shows ``{"__ansible_unsafe": ...}``) unless the plugin
    vouches for it; older versions have no notion of trust and take the value as it is."""
    try:
        from ansible.template import trust_as_template
    except ImportError:
        return lambda text: text
    return trust_as_template  # type: ignore[no-any-return]


def trusted(value: Any, trust: Callable[[str], str]) -> Any:
    """Vouch for the fleet's values: they come from the repository's stack, checked by the loader.

    Trusted means "may be templated", so a string holding Jinja delimiters stays untrusted and is
    used literally: a value of the fleet (a bounce pattern, say) must never be evaluated as a template.
    """
    if isinstance(value, dict):
        return {key: trusted(item, trust) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item, trust) for item in value]
    if isinstance(value, str) and not any(marker in value for marker in JINJA_MARKERS):
        return trust(value)
    return value


class InventoryModule(BaseInventoryPlugin, Constructable):
    """The mailplane fleet as an Ansible inventory."""

    NAME = "mailplane"

    def verify_file(self, path: str) -> bool:
        """Claim only files named for this plugin, so other YAML inventories are left to their plugins."""
        return super().verify_file(path) and path.endswith(FILE_SUFFIXES)

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = False) -> None:
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        on = self._date()
        fleet = self._load(self.get_option("stack"))
        host_view, deployed_record = _mailplane_functions()
        trust = _trust_function()
        strict = self.get_option("strict")
        self.inventory.add_group(MTA_GROUP)
        for host, refs in fleet.ips_by_host.items():
            settings = fleet.settings.mta_hosts[host]
            self.inventory.add_host(host, group=MTA_GROUP)
            for tenant in sorted({ref.tenant.name for ref in refs}):
                group = self.inventory.add_group(tenant_group(tenant))
                self.inventory.add_child(group, host)
            pmta = _json_safe(host_view(fleet, host, on).to_vars())
            host_vars = {
                "ansible_host": str(settings.ansible_host),
                "mailplane_stack": fleet.stack,
                "mailplane_date": on.isoformat(),
                "mailplane_pmta": pmta,
                "mailplane_dkim_domains": dkim_domains(pmta),
                "mailplane_deployed": deployed_record(pmta),
            }
            for name, value in host_vars.items():
                self.inventory.set_variable(host, name, trusted(value, trust))
            # Constructable: compose/groups/keyed_groups from the inventory file, as other plugins offer.
            self._set_composite_vars(self.get_option("compose"), host_vars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, host, strict=strict)

    def _date(self) -> datetime.date:
        value = self.get_option("date")
        if value is None or value == "":
            return datetime.date.today()
        if isinstance(value, datetime.datetime):
            raise AnsibleParserError(f"mailplane inventory: date: {value} is a time: write a day, YYYY-MM-DD")
        if isinstance(value, datetime.date):
            return value
        try:
            return datetime.date.fromisoformat(str(value))
        except ValueError as err:
            raise AnsibleParserError(f"mailplane inventory: date: {value!r} is not a YYYY-MM-DD date") from err

    @staticmethod
    def _load(stack: str) -> Any:
        """Load the fleet; its problems become one parser error, one located problem per line.

        ``stack`` is already absolute: Ansible resolves ``type: path`` options from the working directory.
        """
        try:
            from mailplane.model.loader import load_stack
            from mailplane.model.problems import StackError
        except ImportError as err:
            raise AnsibleParserError(
                f"mailplane inventory: cannot import mailplane ({err}) in {sys.executable}: run the Ansible "
                "installed in mailplane's virtualenv (make install; .venv/bin/ansible-playbook)") from None
        try:
            return load_stack(stack)
        except StackError as err:
            lines = "\n".join(str(problem) for problem in err.problems)
            count = len(err.problems)
            raise AnsibleParserError(
                f"mailplane inventory: stack {stack} has {count} error{'s' if count != 1 else ''}:\n{lines}") from None


def _mailplane_functions() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Import the view and the deployed record lazily: Ansible loads this module for every inventory source
    it tries."""
    from mailplane.mta.deployed import record
    from mailplane.mta.view import host_view

    return host_view, record


def dkim_domains(pmta: dict[str, Any]) -> list[dict[str, str]]:
    """The DKIM keys this host signs with, once each: selector, domain and key file name.

    Read from the view's VMTAs (a tenant's keys are listed on each of its VMTAs), so the key files
    the role writes are exactly those the config's ``domain-key`` lines name.
    """
    keys = {(k["domain"], k["selector"], k["key_file"]) for vmta in pmta["vmtas"] for k in vmta["dkim"]}
    return [{"selector": selector, "domain": domain, "key_file": key_file}
            for domain, selector, key_file in sorted(keys)]
