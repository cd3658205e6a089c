"""The GitHub Actions workflows users get (.github/workflows): triggers, exit codes, secrets, commands.

No GitHub runner here, so the workflows are checked in three ways: zizmor audits them offline
and must find nothing; their YAML is read and its promises asserted (triggers, actions pinned to
commits, permissions, concurrency, regions); and the shell of the steps that matter is really run
with bash as GitHub runs it (`bash --noprofile --norc -eo pipefail`): the plan step's exit-code
handling against a stub `mailplane`, the vault step against a stub `pulumi` and the real
`ansible-vault`, the generated inventory against the real mailplane plugin.
(actionlint would be another check; its PyPI wrapper downloads the binary at build time, which
cannot work here, so it is not used.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from mailplane.cli import app

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
ZIZMOR = VENV_BIN / "zizmor"
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>.*?)\s*$")
PINNED_USES = re.compile(
    r"^(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40}) # (?P<version>v\d+\.\d+\.\d+)$")
"""`owner/repo@<full commit> # vX.Y.Z`: a commit cannot be moved the way a tag can; the comment names its release."""
ZIZMOR_IGNORE = re.compile(r"#\s*zizmor:\s*ignore\[(?P<rules>[^\]]*)\](?P<reason>.*)$")
ALLOWED_ZIZMOR_IGNORES = {("ansible.yml", "dangerous-triggers")}
"""The one deliberate exception: ansible.yml's workflow_run trigger (explained in that file)."""
COMMAND_START = re.compile(r"(^|[;&|(]\s*|\bthen\s+|\bdo\s+)mailplane\s")
SECRET = "SECRET-MARKER-7f3a"
"""A value that must never show up in a log or a file in clear."""

# Values the steps' variables take in the checks below: a variable outside this list fails them,
# so a new variable in a `mailplane` command line is noticed.
SAMPLE_VARIABLES = {"STACK": "prod", "BASE_REF": "main", "CHART_URL": "https://github.com/o/r/actions/runs/1/artifacts/2",
                    "destroy": "--allow-destroy"}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """``on:`` (YAML 1.1, as PyYAML reads it, makes the key ``True``; GitHub reads it as "on")."""
    return workflow.get("on", workflow.get(True))


def _steps(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job["steps"]


def _step(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in _steps(workflow) if s.get("name") == name)


def _all() -> dict[str, dict[str, Any]]:
    return {p.name: _load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def _run_step(script: str, cwd: Path, env: dict[str, str],
              path: list[Path] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a step's ``run:`` text as GitHub's ``shell: bash`` does, with a clean environment."""
    script_file = cwd / ".step.sh"
    script_file.write_text(script, encoding="utf-8")
    search = [str(p) for p in (path or [])] + [str(VENV_BIN), "/usr/bin", "/bin"]
    full_env = {"PATH": os.pathsep.join(search), "HOME": str(cwd), "LANG": "C.UTF-8", **env}
    try:
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)], cwd=cwd,
                              env=full_env, capture_output=True, text=True, timeout=120)
    finally:
        script_file.unlink()


def _github_files(tmp_path: Path) -> dict[str, str]:
    for name in ("output", "env", "summary", "path"):
        (tmp_path / f"github-{name}").touch()
    (tmp_path / "runner").mkdir(exist_ok=True)
    return {"GITHUB_OUTPUT": str(tmp_path / "github-output"), "GITHUB_ENV": str(tmp_path / "github-env"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "github-summary"), "GITHUB_PATH": str(tmp_path / "github-path"),
            "RUNNER_TEMP": str(tmp_path / "runner")}


def _github_output(tmp_path: Path) -> dict[str, str]:
    """What earlier steps put in $GITHUB_OUTPUT (``name=value`` lines): their step outputs."""
    lines = (tmp_path / "github-output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line)


def _stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)


# -- shape ------------------------------------------------------------------------------------


def test_the_three_workflows_parse_and_have_their_triggers() -> None:
    workflows = _all()
    assert set(workflows) == {"plan.yml", "pulumi-up.yml", "ansible.yml"}
    plan = _triggers(workflows["plan.yml"])
    assert list(plan) == ["pull_request"] and plan["pull_request"]["paths"] == ["stacks/**"]
    up = _triggers(workflows["pulumi-up.yml"])
    assert up["push"]["branches"] == ["main"]
    ansible = _triggers(workflows["ansible.yml"])
    run = ansible["workflow_run"]
    assert run["workflows"] == [workflows["pulumi-up.yml"]["name"]]
    assert run["types"] == ["completed"] and run["branches"] == ["main"]
    assert ansible["schedule"], "warmup caps change every day: PowerMTA must follow without a merge"
    job = workflows["ansible.yml"]["jobs"]["ansible"]
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    # workflow_run runs with this repository's secrets: only a run of main here, never a fork's code
    assert "github.event.workflow_run.head_branch == 'main'" in job["if"]
    assert "github.event.workflow_run.head_repository.full_name == github.repository" in job["if"]
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert "github.event.workflow_run.head_sha" in checkout["with"]["ref"]


def test_plan_checks_out_history_and_runs_every_stack() -> None:
    plan = _load("plan.yml")
    checkout = next(s for s in _steps(plan) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert plan["jobs"]["plan"]["strategy"]["matrix"]["stack"] == STACKS == ["dev", "prod"]
    assert plan["permissions"] == {}
    assert plan["jobs"]["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    uploads = [s for s in _steps(plan) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [u["with"]["path"] for u in uploads] == ["warmup-${{ matrix.stack }}.png"]


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    """zizmor's audits (offline: no GitHub API), every persona's default: injection, permissions, pins..."""
    result = subprocess.run([str(ZIZMOR), "--offline", "--format", "plain", ".github/workflows"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout, result.stdout + result.stderr


def test_zizmor_is_silenced_only_where_a_reason_is_given() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = ZIZMOR_IGNORE.search(line)
            if match:
                for rule in match["rules"].split(","):
                    assert (path.name, rule.strip()) in ALLOWED_ZIZMOR_IGNORES, f"{path.name}: {line.strip()}"
                assert len(match["reason"].strip()) > 10, f"{path.name}: an ignore needs its reason: {line.strip()}"


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    pins: dict[str, tuple[str, str]] = {}
    for path in sorted(WORKFLOWS.glob("*.yml")):
        refs = [m["ref"] for m in map(USES_LINE.match, path.read_text(encoding="utf-8").splitlines()) if m]
        parsed = [step["uses"] for step in _steps(_load(path.name)) if "uses" in step]
        assert len(refs) == len(parsed), f"{path.name}: a `uses:` this check cannot read"
        for ref in refs:
            match = PINNED_USES.match(ref)
            assert match, f"{path.name}: `uses: {ref}` is not `owner/repo@<40 hex digits> # vX.Y.Z`"
            pin = (match["sha"], match["version"])
            # one action, one commit: the same release everywhere
            assert pins.setdefault(match["action"], pin) == pin, f"{path.name}: {match['action']} pinned twice"
    assert pins  # the workflows use actions at all


def test_checkouts_keep_no_token_in_the_working_tree() -> None:
    """persist-credentials: false; no step pushes, so none needs the token in .git/config."""
    for name, workflow in _all().items():
        checkouts = [s for s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
        assert checkouts, name
        for checkout in checkouts:
            assert checkout["with"]["persist-credentials"] is False, name
        for step in _steps(workflow):
            assert not re.search(r"\bgit\s+(push|fetch|pull|clone)\b", step.get("run", "")), name


def test_applies_of_one_stack_never_overlap_and_are_never_cancelled() -> None:
    up = _load("pulumi-up.yml")["jobs"]["up"]
    ansible = _load("ansible.yml")["jobs"]["ansible"]
    assert up["concurrency"] == ansible["concurrency"]
    assert "matrix.stack" in up["concurrency"]["group"]
    assert up["concurrency"]["cancel-in-progress"] is False
    assert up["strategy"]["max-parallel"] == ansible["strategy"]["max-parallel"] == 1


def test_pulumi_up_uses_oidc_and_the_stack_regions() -> None:
    workflow = _load("pulumi-up.yml")
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["up"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    regions = {row["stack"]: row["region"] for row in job["strategy"]["matrix"]["include"]}
    for stack in STACKS:
        config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert regions[stack] == config["aws:region"], stack
    steps = job["steps"]
    names = [s.get("uses", s.get("name", "")).split("@")[0] for s in steps]
    assert names.index("Validate") < names.index("aws-actions/configure-aws-credentials") < names.index(
        "pulumi/actions")
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert "aws-access-key-id" not in aws["with"]
    up = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@"))
    # the inputs below are pulumi/actions v6's
    assert re.search(r"uses: pulumi/actions@[0-9a-f]{40} # v6\.", (WORKFLOWS / "pulumi-up.yml").read_text())
    assert up["with"]["command"] == "up" and up["with"]["stack-name"] == "${{ matrix.stack }}"
    assert up["with"]["work-dir"] == "." and up["with"]["suppress-outputs"] is True
    assert up["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


# -- secrets ----------------------------------------------------------------------------------


def _secret_env_names(workflow: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for job in workflow["jobs"].values():
        for scope in [job, *job["steps"]]:
            names |= {k for k, v in (scope.get("env") or {}).items() if "secrets." in str(v)}
    return names


def test_no_step_puts_a_secret_in_its_script_or_prints_one() -> None:
    for name, workflow in _all().items():
        secret_vars = _secret_env_names(workflow)
        for step in _steps(workflow):
            script = step.get("run", "")
            # Secrets reach scripts through env only: `${{ secrets.X }}` in the text lands in the
            # script file on the runner, and one `echo` away from the log.
            assert "${{ secrets." not in script, f"{name}: {step.get('name')}"
            assert "set -x" not in script and "xtrace" not in script, f"{name}: {step.get('name')}"
            for line in script.splitlines():
                words = line.strip().split()
                if words and words[0] == "echo":
                    used = set(re.findall(r"\$\{?(\w+)", line))
                    assert not used & secret_vars, f"{name}: {line.strip()}"
        for step in _steps(workflow):
            if step.get("uses", "").startswith("actions/upload-artifact@"):
                assert "vault" not in str(step["with"]["path"]) and "secret" not in str(step["with"]["path"])


def test_secret_outputs_are_never_exported_in_clear_by_pulumi_up() -> None:
    for step in _steps(_load("pulumi-up.yml")):
        assert "--show-secrets" not in step.get("run", "")


# -- the commands the workflows run ------------------------------------------------------------


def _mailplane_invocations() -> Iterator[tuple[str, list[str]]]:
    for name, workflow in _all().items():
        for step in _steps(workflow):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                if not COMMAND_START.search(line):
                    continue
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                tokens = list(lexer)
                start = tokens.index("mailplane")
                args: list[str] = []
                for token in tokens[start + 1:]:
                    if set(token) <= set("();<>|&"):  # a pipe, a redirection, the end of the command
                        if token[0] in "<>" and args and args[-1].isdigit():
                            args.pop()  # the 2 of 2>&1
                        break
                    args.append(token)
                yield name, args


def _expand(arg: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in SAMPLE_VARIABLES, f"unknown variable ${name} in a mailplane command"
        return SAMPLE_VARIABLES[name]

    return re.sub(r"\$\{?(\w+)\}?", value, arg)


def test_commands_the_workflows_run_exist_with_their_options() -> None:
    """Each `mailplane ...` line parses against the real CLI: command, options and their values."""
    root = typer.main.get_command(app)
    seen: set[str] = set()
    for workflow, args in _mailplane_invocations():
        group: Any = root  # typer's own click (typer._click): a group is what has `commands`
        path: list[str] = []
        args = [_expand(a) for a in args]
        while isinstance(getattr(group, "commands", None), dict):
            assert args and args[0] in group.commands, f"{workflow}: mailplane {' '.join(path + args)}"
            group = group.commands[args[0]]
            path.append(args.pop(0))
        group.make_context(" ".join(path), list(args))  # raises on an unknown option or a bad value
        seen.add(" ".join(["mailplane", *path]))
    assert {"mailplane validate", "mailplane plan", "mailplane warmup chart"} <= seen


# -- the plan step, really run -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "prints", "passes"),
    [(0, True, True), (2, True, True), (2, False, False), (1, True, False), (1, False, False), (3, True, False)],
)
def test_plan_step_passes_on_0_and_2_and_fails_on_1(tmp_path: Path, exit_code: int, prints: bool,
                                                     passes: bool) -> None:
    step = _step(_load("plan.yml"), "Plan against the base branch")
    script = step["run"]
    assert 'case "$status" in' in script and "2)" in script and "*)" in script
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "mailplane", f'echo "$@" > "{tmp_path}/args"\n'
                                + ('echo "## plan"\n' if prints else "") + f"exit {exit_code}\n")
    env = {**_github_files(tmp_path), "STACK": "prod", "BASE_REF": "main", "CHART_URL": "https://example.com/c"}
    result = _run_step(script, tmp_path, env, [bin_dir])
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert (tmp_path / "args").read_text().split() == [
        "plan", "stacks/prod", "--base", "origin/main", "--format", "markdown", "--chart-url", "https://example.com/c",
        "--no-allow-destroy"]
    assert ((tmp_path / "plan.md").read_text() == "## plan\n") is prints
    assert ("## plan" in (tmp_path / "github-summary").read_text()) is prints
    if not passes:
        assert "::error::" in result.stdout


@pytest.mark.parametrize(("label", "flag"), [("true", "--allow-destroy"), ("false", "--no-allow-destroy")])
def test_plan_step_maps_the_allow_destroy_label_to_the_flag(tmp_path: Path, label: str, flag: str) -> None:
    plan = _load("plan.yml")
    assert {"labeled", "unlabeled", "opened", "synchronize", "reopened"} <= set(
        _triggers(plan)["pull_request"]["types"])
    step = _step(plan, "Plan against the base branch")
    assert step["env"]["ALLOW_DESTROY"] == "${{ contains(github.event.pull_request.labels.*.name, 'allow-destroy') }}"
    assert "${{" not in step["run"]
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "mailplane", f'echo "$@" > "{tmp_path}/args"\necho "## plan"\nexit 2\n')
    env = {**_github_files(tmp_path), "STACK": "prod", "BASE_REF": "main", "CHART_URL": "https://example.com/c",
           "ALLOW_DESTROY": label}
    result = _run_step(step["run"], tmp_path, env, [bin_dir])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "args").read_text().split()[-1] == flag


def test_plan_comment_runs_after_a_failed_plan_but_not_after_a_skipped_one() -> None:
    comment = _step(_load("plan.yml"), "Comment the plan on the pull request")
    assert "!cancelled()" in comment["if"] and "steps.plan.outcome != 'skipped'" in comment["if"]
    assert comment["uses"].startswith("actions/github-script@")
    assert "updateComment" in comment["with"]["script"] and "mailplane-plan:" in comment["with"]["script"]


NODE_HARNESS = r"""
// Runs an actions/github-script script as that action does (an async function body given
// require, github, context and core), with a fake GitHub API that records its calls.
const fs = require('fs');
const script = fs.readFileSync(process.argv[2], 'utf8');
const existing = JSON.parse(process.argv[3]);
const calls = [];
const github = {
  rest: { issues: {
    listComments: 'listComments',
    updateComment: async (args) => { calls.push(['update', args]); },
    createComment: async (args) => { calls.push(['create', args]); },
  } },
  paginate: async (method, args) => (method === 'listComments' && args.issue_number === 5 ? existing : []),
};
const context = { serverUrl: 'https://github.com', repo: { owner: 'o', repo: 'r' }, runId: 7, issue: { number: 5 } };
const core = { info: () => {} };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => process.stdout.write(JSON.stringify(calls)));
"""


def _comment(tmp_path: Path, plan: str | None, existing: list[dict[str, Any]]) -> list[list[Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node to run the github-script step")
    script = _step(_load("plan.yml"), "Comment the plan on the pull request")["with"]["script"]
    (tmp_path / "script.js").write_text(script, encoding="utf-8")
    (tmp_path / "harness.js").write_text(NODE_HARNESS, encoding="utf-8")
    if plan is not None:
        (tmp_path / "plan.md").write_text(plan, encoding="utf-8")
    result = subprocess.run([node, "harness.js", "script.js", json.dumps(existing)], cwd=tmp_path,
                            env={**os.environ, "STACK": "prod"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_comment_is_created_once_then_edited_per_stack(tmp_path: Path) -> None:
    calls = _comment(tmp_path, "## Plan\n", [])
    assert calls == [["create", {"owner": "o", "repo": "r", "issue_number": 5,
                                 "body": "<!-- mailplane-plan:prod -->\n## Plan\n"}]]
    existing = [{"id": 1, "user": {"type": "User"}, "body": "<!-- mailplane-plan:prod -->\nquoted by a person"},
                {"id": 2, "user": {"type": "Bot"}, "body": "<!-- mailplane-plan:dev -->\nold dev plan"},
                {"id": 3, "user": {"type": "Bot"}, "body": "<!-- mailplane-plan:prod -->\nold prod plan"}]
    calls = _comment(tmp_path, "## New plan\n", existing)
    assert calls == [["update", {"owner": "o", "repo": "r", "comment_id": 3,
                                 "body": "<!-- mailplane-plan:prod -->\n## New plan\n"}]]


def test_plan_comment_says_when_there_is_no_plan_and_cuts_a_huge_one(tmp_path: Path) -> None:
    old = [{"id": 3, "user": {"type": "Bot"}, "body": "<!-- mailplane-plan:prod -->\nold prod plan"}]
    for name in ("none", "empty", "huge"):
        (tmp_path / name).mkdir()
    assert _comment(tmp_path / "none", None, []) == []  # no plan and nothing commented before: quiet
    [[verb, args]] = _comment(tmp_path / "empty", "", old)
    assert verb == "update" and "failed" in args["body"] and "https://github.com/o/r/actions/runs/7" in args["body"]
    [[verb, args]] = _comment(tmp_path / "huge", "x" * 100_000, [])
    assert verb == "create" and 60_000 < len(args["body"]) < 65_536 and "cut here" in args["body"]


def test_validate_step_turns_problems_into_annotations(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    shutil.copytree(ROOT / "stacks" / "prod", tmp_path / "stacks" / "prod")
    tenant = tmp_path / "stacks" / "prod" / "tenants" / "globex.yaml"
    tenant.write_text(tenant.read_text().replace("host: mta2", "host: mta9"), encoding="utf-8")
    script = _step(_load("plan.yml"), "Validate")["run"]
    result = _run_step(script, tmp_path, {"STACK": "prod"})
    assert result.returncode == 1
    assert re.search(r"^::error file=stacks/prod/tenants/globex\.yaml,line=\d+,col=\d+::ips\[0\]\.host: .*mta9",
                     result.stdout, re.M), result.stdout


def test_validate_step_marks_policy_warnings_as_warnings(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _stub(bin_dir, "mailplane", "cat >&2 <<'EOF'\n"
          "stacks/prod/tenants/a.yaml:3:5: ips[0]: far ahead (hint) [warning warmup-far-ahead]\n"
          "stacks/prod/tenants/a.yaml:7:9: domains[0].dkim: weak key [error dkim-key-2048]\n"
          "1 policy error, 1 warning\nEOF\nexit 1\n")
    result = _run_step(_step(_load("plan.yml"), "Validate")["run"], tmp_path, {"STACK": "prod"}, [bin_dir])
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "::warning file=stacks/prod/tenants/a.yaml,line=3,col=5::ips[0]: far ahead (hint) [warning warmup-far-ahead]",
        "::error file=stacks/prod/tenants/a.yaml,line=7,col=9::domains[0].dkim: weak key [error dkim-key-2048]",
        "1 policy error, 1 warning",
    ]


def test_a_failed_validation_still_gets_its_plan_commented_then_fails_the_job() -> None:
    steps = _load("plan.yml")["jobs"]["plan"]["steps"]
    names = [s.get("name", s.get("uses", "")) for s in steps]
    validate = _step(_load("plan.yml"), "Validate")
    assert validate["continue-on-error"] is True
    gate = steps[-1]
    assert gate["if"] == f"steps.{validate['id']}.outcome == 'failure'" and "exit 1" in gate["run"]
    assert names.index("Plan against the base branch") < names.index("Comment the plan on the pull request") < len(
        names) - 1


# -- the ansible workflow's secrets, really run ---------------------------------------------------


def _vault_steps(tmp_path: Path, password: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    workflow = _load("ansible.yml")
    env = {**_github_files(tmp_path), "STACK": "prod"}
    first_step = _step(workflow, "Vault password script")
    first = _run_step(first_step["run"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    # the script's path reaches the later steps as a step output, not through $GITHUB_ENV
    assert (tmp_path / "github-env").read_text() == ""
    env["ANSIBLE_VAULT_PASSWORD_FILE"] = _github_output(tmp_path)["file"]
    for later in ("Stack outputs into Ansible Vault", "ansible-playbook"):
        assert _step(workflow, later)["env"]["ANSIBLE_VAULT_PASSWORD_FILE"] == (
            f"${{{{ steps.{first_step['id']}.outputs.file }}}}")
    bin_dir = tmp_path / "bin"
    outputs = '{"region": "eu-north-1", "dkim_private_keys": {"news.example.com": "-----BEGIN ' + SECRET + '"}}'
    _stub(bin_dir, "pulumi", f'[ "$*" = "stack output --json --show-secrets --stack prod" ] || exit 9\n'
                             f"echo '{outputs}'\n")
    step = _step(workflow, "Stack outputs into Ansible Vault")
    assert set(step["env"]) == {"PULUMI_ACCESS_TOKEN", "ANSIBLE_VAULT_PASSWORD", "ANSIBLE_VAULT_PASSWORD_FILE"}
    result = _run_step(step["run"], tmp_path, {**env, "ANSIBLE_VAULT_PASSWORD": password}, [bin_dir])
    return result, env


def test_stack_outputs_reach_ansible_only_vault_encrypted(tmp_path: Path) -> None:
    password = "vault-" + SECRET
    result, env = _vault_steps(tmp_path, password)
    assert result.returncode == 0, result.stdout + result.stderr
    vault = tmp_path / "inventory" / "group_vars" / "all" / "pulumi.vault.yml"
    data = vault.read_text()
    assert data.startswith("$ANSIBLE_VAULT;1.1;AES256")
    assert SECRET not in data and SECRET not in result.stdout + result.stderr
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    password_script = Path(env["ANSIBLE_VAULT_PASSWORD_FILE"])
    assert SECRET not in password_script.read_text()  # the script reads the password from its environment
    view = subprocess.run([str(VENV_BIN / "ansible-vault"), "view", str(vault)], capture_output=True, text=True,
                          env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(password_script),
                               "ANSIBLE_VAULT_PASSWORD": password}, check=True)
    assert yaml.safe_load(view.stdout)["dkim_private_keys"] == {"news.example.com": "-----BEGIN " + SECRET}
    assert (ROOT / ".gitignore").read_text().count("inventory/group_vars/all/pulumi.vault.yml") == 1


def test_without_a_vault_password_nothing_is_written(tmp_path: Path) -> None:
    result, _ = _vault_steps(tmp_path, "")
    assert result.returncode == 1 and "ANSIBLE_VAULT_PASSWORD is not set" in result.stdout
    assert not (tmp_path / "inventory").exists()


def test_ssh_step_refuses_to_run_without_key_known_hosts_and_user(tmp_path: Path) -> None:
    script = _step(_load("ansible.yml"), "SSH agent and known hosts")["run"]
    result = _run_step(script, tmp_path, {**_github_files(tmp_path), "SSH_PRIVATE_KEY": "", "SSH_KNOWN_HOSTS": "",
                                          "ANSIBLE_REMOTE_USER": "", "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")})
    assert result.returncode == 1 and "MAILPLANE_SSH_PRIVATE_KEY" in result.stdout
    assert not (tmp_path / "agent.sock").exists()


def _gone(path: Path, *, deadline_s: float) -> bool:
    """Whether ``path`` disappears within ``deadline_s``: a process signalled to stop cleans up on its own time."""
    end = time.monotonic() + deadline_s
    while path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(shutil.which("ssh-agent") is None or shutil.which("ssh-keygen") is None,
                    reason="needs OpenSSH's ssh-agent and ssh-keygen")
def test_ssh_step_loads_the_key_into_an_agent_and_cleanup_stops_it(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(key)], check=True)
    workflow = _load("ansible.yml")
    sock = tmp_path / "agent.sock"
    env = {**_github_files(tmp_path), "SSH_PRIVATE_KEY": key.read_text(), "ANSIBLE_REMOTE_USER": "deploy",
           "SSH_KNOWN_HOSTS": "198.51.100.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample", "SSH_AUTH_SOCK": str(sock)}
    ssh_step = _step(workflow, "SSH agent and known hosts")
    result = _run_step(ssh_step["run"], tmp_path, env)
    agent_pid = _github_output(tmp_path).get("pid")
    cleanup_step = _step(workflow, "Remove the vault file and the SSH agent")
    assert cleanup_step["env"]["SSH_AGENT_PID"] == f"${{{{ steps.{ssh_step['id']}.outputs.pid }}}}"
    try:
        assert result.returncode == 0, result.stderr
        assert "PRIVATE KEY" not in result.stdout + result.stderr
        listed = subprocess.run(["ssh-add", "-l"], env={"SSH_AUTH_SOCK": str(sock)}, capture_output=True, text=True)
        assert listed.returncode == 0 and "ci (ED25519)" in listed.stdout
        assert (tmp_path / ".ssh" / "known_hosts").read_text() == env["SSH_KNOWN_HOSTS"] + "\n"
        cleanup = _run_step(cleanup_step["run"], tmp_path,
                            {"SSH_AGENT_PID": agent_pid or "", "SSH_AUTH_SOCK": str(sock)})
        assert cleanup.returncode == 0, cleanup.stderr
        # `ssh-agent -k` only signals the agent, which removes its socket as it exits: wait for that
        assert _gone(sock, deadline_s=30), "the agent's socket outlived the cleanup step"
        agent_pid = None
    finally:
        if agent_pid:
            os.kill(int(agent_pid), 15)


@pytest.mark.parametrize("stack", STACKS)
def test_generated_inventory_lists_the_stacks_hosts(tmp_path: Path, stack: str) -> None:
    """The ansible step's inventory file, read by the real plugin from the repository root."""
    (tmp_path / "inventory").mkdir()
    workflow = _load("ansible.yml")
    result = _run_step(_step(workflow, "Inventory of the stack")["run"], tmp_path, {"STACK": stack})
    assert result.returncode == 0, result.stderr
    inventory = tmp_path / "inventory" / f"ci-{stack}.mailplane.yml"
    playbook = _step(workflow, "ansible-playbook")["run"].splitlines()
    assert playbook[-1] == 'ansible-playbook -i "inventory/ci-$STACK.mailplane.yml" playbooks/site.yml'
    assert (ROOT / "playbooks" / "site.yml").is_file()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    graph = subprocess.run([str(VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--graph"], cwd=ROOT,
                           capture_output=True, text=True, env=env)
    assert graph.returncode == 0, graph.stderr
    fleet = yaml.safe_load((ROOT / "stacks" / stack / "fleet.yaml").read_text())
    for host in fleet["mta_hosts"]:
        assert host in graph.stdout


# -- the docs tell users what to set --------------------------------------------------------------


def test_the_ci_page_names_every_secret_and_variable_the_workflows_read() -> None:
    section = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    text = "\n".join((WORKFLOWS / name).read_text() for name in ("plan.yml", "pulumi-up.yml", "ansible.yml"))
    names = set(re.findall(r"\$\{\{\s*(?:secrets|vars)\.(\w+)", text))
    assert names == {"PULUMI_ACCESS_TOKEN", "AWS_ROLE_ARN", "ANSIBLE_VAULT_PASSWORD", "MAILPLANE_SSH_PRIVATE_KEY",
                     "MAILPLANE_SSH_KNOWN_HOSTS", "ANSIBLE_REMOTE_USER"}
    for name in names:
        assert f"`{name}`" in section, name
