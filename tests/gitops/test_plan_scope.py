"""``plan --base`` runs the Pulumi program only for the tenants a change touches: the resource changes it
finds must be exactly those of running the whole program on both sides, and the share of the stack a
change destroys is still taken of the whole stack."""

from __future__ import annotations

import datetime
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from plan_repo import SHOP, commit, edit, make_repo, plan_base

from mailplane.cloud.engine import run
from mailplane.cloud.inventory import stack_count, tenant_count
from mailplane.cloud.plan import PlanMocks, plan
from mailplane.gitops.diff import compare, item_changes
from mailplane.gitops.scope import scope_of
from mailplane.model.loader import load_stack
from mailplane.model.stack import Fleet

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "stacks" / "prod"
ON = datetime.date(2026, 11, 25)

EDITS: dict[str, Callable[[Path], None]] = {
    "a domain added": lambda s: edit(s / "tenants" / "sos-expat.yaml", "ips:\n", SHOP),
    "a sender removed": lambda s: edit(s / "tenants" / "initech.yaml", "senders:\n",
                                       "senders: []\nold_senders:\n"),
    "a tenant's events changed": lambda s: edit(s / "tenants" / "globex.yaml", "events: [bounce, complaint]",
                                                "events: [bounce, complaint, delivery]"),
    "a domain moved between tenants": lambda s: _move_domain(s),
    "the SES region changed": lambda s: edit(s / "fleet.yaml", "region: eu-north-1", "region: eu-west-1"),
}


def _move_domain(stack: Path) -> None:
    """shop.example.com, sos-expat's in the base (:data:`BASE_EDITS`), is initech's in the head."""
    edit(stack / "tenants" / "initech.yaml", "ips:\n", SHOP)


BASE_EDITS: dict[str, Callable[[Path], None]] = {
    "a domain moved between tenants": lambda s: edit(s / "tenants" / "sos-expat.yaml", "ips:\n", SHOP),
}


def _sender_removed_fixup(stack: Path) -> None:
    """Make the "sender removed" edit a valid file: drop the renamed key and what it held."""
    path = stack / "tenants" / "initech.yaml"
    text = path.read_text()
    path.write_text(text[:text.index("old_senders:\n")])


def _full_and_scoped(base: Fleet, head: Fleet) -> tuple[list[object], list[object], str]:
    full = compare(base, head, ON, plan(base), plan(head)).resources
    scope = scope_of(item_changes(base, head), base, head)
    planned_base, planned_head = scope.planned(base), scope.planned(head)
    assert planned_base is not None and planned_head is not None
    scoped = compare(base, head, ON, plan(planned_base), plan(planned_head)).resources
    return list(full), list(scoped), scope.why


@pytest.mark.parametrize("what", sorted(EDITS))
def test_the_scoped_plan_finds_exactly_the_full_plans_resource_changes(what: str, tmp_path: Path) -> None:
    base_dir, head_dir = tmp_path / "base" / "prod", tmp_path / "head" / "prod"
    shutil.copytree(PROD, base_dir)
    shutil.copytree(PROD, head_dir)
    EDITS[what](head_dir)
    if what in BASE_EDITS:
        BASE_EDITS[what](base_dir)
    if what == "a sender removed":
        _sender_removed_fixup(head_dir)
    base, head = load_stack(base_dir), load_stack(head_dir)
    full, scoped, why = _full_and_scoped(base, head)
    assert full, what  # every edit changes some resource
    assert scoped == full
    if what == "the SES region changed":
        assert why.startswith("Pulumi program run for all 3 tenants: fleet.yaml's ses changed")
    else:
        assert why.startswith("Pulumi program run for ") and " of 3 tenants" in why


def test_one_domain_runs_one_tenant_and_the_review_says_so(tmp_path: Path) -> None:
    stack = make_repo(tmp_path / "repo")
    edit(stack / "tenants" / "sos-expat.yaml", "ips:\n", SHOP)
    commit(stack, "add shop.example.com")
    result = plan_base(stack, "--format", "json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["pulumi_scope"] == ("Pulumi program run for 1 of 3 tenants, those the change touches (sos-expat); "
                                    "the others' resources are unchanged")
    text = plan_base(stack).stdout
    assert "Pulumi program run for 1 of 3 tenants" in text.splitlines()[2]


def test_the_destroy_share_is_of_the_whole_stack(tmp_path: Path) -> None:
    """Removing initech's sender deletes 3 resources: 3 of prod's 85, not of initech's 25."""
    stack = make_repo(tmp_path / "repo")
    _sender_removed = EDITS["a sender removed"]
    _sender_removed(stack)
    _sender_removed_fixup(stack)
    commit(stack, "drop initech's sender")
    data = json.loads(plan_base(stack, "--format", "json", "--allow-destroy").stdout)
    assert data["destroy"]["base_total"] == stack_count(load_stack(PROD)) == 85
    assert data["destroy"]["destroyed"] == 3


def test_the_model_counts_what_the_program_declares(tmp_path: Path) -> None:
    """The count of the tenants a scoped plan does not run, held to the program on the examples and a
    generated stack with both DKIM modes, Route53 and external DNS, dedicated pools and senders."""
    sys.path.insert(0, str(ROOT / "bench"))
    from gen_stack import generate

    generated = tmp_path / "big"
    generate(generated, tenants=12)
    for folder in (PROD, ROOT / "stacks" / "dev", generated):
        fleet = load_stack(folder)
        declared = run(fleet, PlanMocks(fleet.settings.ses.region), preview=True).resources
        resources = [r for r in declared if not r.type.startswith("mailplane:")]
        assert stack_count(fleet) == len(resources), folder
        for tenant in fleet.tenants:
            assert tenant_count(fleet, tenant) == sum(r.tenant == tenant.name for r in resources), tenant.name


def test_the_pull_request_comment_shows_the_changed_files_findings_and_counts_the_rest(tmp_path: Path) -> None:
    stack = make_repo(tmp_path / "repo")
    edit(stack / "tenants" / "sos-expat.yaml", "ips:\n", SHOP)
    commit(stack, "add shop.example.com")
    md = plan_base(stack, "--format", "markdown").stdout
    full = json.loads(plan_base(stack, "--format", "json").stdout)["policy"]["findings"]
    elsewhere = [f for f in full if not f["file"].endswith("tenants/sos-expat.yaml")]
    assert elsewhere and any("globex" in f["file"] for f in elsewhere)  # prod's own waivers, not this change's
    assert "Globex's DNS team" not in md
    assert f"{len(elsewhere)} more finding{'s' if len(elsewhere) != 1 else ''} (warnings and waivers) in files " \
           "this change does not touch" in md
    shown = [f for f in full if f["file"].endswith("tenants/sos-expat.yaml")]
    assert md.count("\n- ") == len(shown)
    text = plan_base(stack).stdout  # the text output, for people at a terminal, keeps every finding
    assert "Globex's DNS team" in text
