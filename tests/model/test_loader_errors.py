"""Bad input to the loader: every failure located at the offending key or value.

One folder per failure case under ``tests/fixtures/bad/<case>/``, as octoDNS does: the files that
differ from the good stack ``tests/fixtures/base/`` (copied first) and ``expected.yaml``::

    remove: [tenants/beta.yaml]     # optional: base files or folders to delete first
    xfail: "..."                    # optional: a known product bug, with what is wrong
    max_seconds: 1                  # optional: the whole load must fail this fast
    errors:                         # every problem load_stack reports, in its sorted order
      - file: tenants/alpha.yaml    # relative to the stack
        line: 3                     # 1-based, as editors count
        col: 11
        at: alpha.example.com       # the case's text found at line:col (checked on its own)
        path: domains[0].name
        message: is already used    # a distinctive part of the message
        hint: first at tenants/...  # a part of the hint; "" asserts there is none

The ``at`` check keeps the expected positions honest: it reads the fixture itself, so a line or
column that does not point at the offending text fails whatever the loader says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mailplane.cli import app
from mailplane.model import source
from mailplane.model.loader import load_stack
from mailplane.model.problems import StackError, YamlProblem
from mailplane.model.stack import Fleet

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASE = FIXTURES / "base"
BAD = FIXTURES / "bad"
SPEC = "expected.yaml"


def _spec(case: str) -> dict[str, Any]:
    return yaml.safe_load((BAD / case / SPEC).read_text(encoding="utf-8"))


ALL_CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir())


def _cases(*, xfail: str) -> list[Any]:
    """The cases, with the known product bugs marked ("mark") or left out ("skip")."""
    params: list[Any] = []
    for case in ALL_CASES:
        reason = _spec(case).get("xfail")
        if reason is None:
            params.append(case)
        elif xfail == "mark":
            params.append(pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=reason)))
    return params


def _build(case: str, dest: Path) -> Path:
    """The base stack with the case's removals, then its files on top."""
    shutil.copytree(BASE, dest)
    for rel in _spec(case).get("remove", []):
        target = dest / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    for file in sorted((BAD / case).rglob("*")):
        rel = file.relative_to(BAD / case)
        if file.is_file() and rel != Path(SPEC):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, dest / rel)
    return dest


def _located(problems: list[YamlProblem]) -> list[tuple[str, int, int, str]]:
    return [(p.file, p.line, p.col, p.path) for p in problems]


def _expected_located(errors: list[dict[str, Any]]) -> list[tuple[str, int, int, str]]:
    return [(e["file"], e["line"], e["col"], e["path"]) for e in errors]


def _assert_messages(problems: list[YamlProblem], errors: list[dict[str, Any]]) -> None:
    for problem, want in zip(problems, errors, strict=True):
        assert "\n" not in str(problem), "one line per problem"
        assert want["message"] in problem.message, problem
        if "hint" in want:
            if want["hint"]:
                assert want["hint"] in problem.hint, problem
            else:
                assert problem.hint == "", problem


# --- the data-driven cases ---------------------------------------------------------------


@pytest.mark.parametrize("case", _cases(xfail="mark"))
def test_bad_stack_reports_every_located_error(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(case)
    monkeypatch.chdir(_build(case, tmp_path / "stack"))
    start = time.perf_counter()
    with pytest.raises(StackError) as info:
        load_stack(".")
    elapsed = time.perf_counter() - start
    problems = info.value.problems
    assert _located(problems) == _expected_located(spec["errors"]), "\n".join(map(str, problems))
    _assert_messages(problems, spec["errors"])
    if "max_seconds" in spec:
        assert elapsed < spec["max_seconds"]


@pytest.mark.parametrize("case", ALL_CASES)
def test_expected_positions_point_at_the_offending_text(case: str, tmp_path: Path) -> None:
    """Checks the fixture, not the loader: each line:col lands on the text the case names."""
    stack = _build(case, tmp_path / "stack")
    for want in _spec(case)["errors"]:
        if "at" not in want:
            continue
        raw = (stack / want["file"]).read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # the non-UTF-8 cases: one character per byte
        lines = text.split("\n")
        assert 1 <= want["line"] <= len(lines), want
        assert lines[want["line"] - 1][want["col"] - 1:].startswith(want["at"]), want


@pytest.mark.parametrize("case", _cases(xfail="skip"))
def test_cli_validate_prints_the_errors_on_stderr_and_exits_1(case: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(_build(case, tmp_path / "stack"))
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stdout + result.stderr
    assert "ok (" not in result.stdout
    lines = result.stderr.splitlines()
    errors = _spec(case)["errors"]
    assert len(lines) == len(errors) + 1
    for line, want in zip(lines, errors, strict=False):
        assert line.startswith(f"{want['file']}:{want['line']}:{want['col']}: {want['path']}: "), line
        assert want["message"] in line
    assert lines[-1] == f"{len(errors)} error{'s' if len(errors) != 1 else ''}"


# --- the good stacks -----------------------------------------------------------------------


def test_the_base_stack_of_the_cases_is_valid() -> None:
    fleet = load_stack(BASE)
    assert [t.name for t in fleet.tenants] == ["alpha", "beta"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_validate(stack: str) -> None:
    result = CliRunner().invoke(app, ["validate", str(ROOT / "stacks" / stack)])
    assert result.exit_code == 0, result.stderr
    assert "ok (" in result.stdout
    assert result.stderr == ""


def test_idn_domain_is_accepted_and_stored_as_its_a_label(stack_copy: Callable[[str | Path], Path]) -> None:
    stack = stack_copy(BASE)
    (stack / "tenants" / "alpha.yaml").write_text(
        "name: alpha\n"
        "domains:\n"
        "  - name: Bücher.Example.COM\n"
        "    dkim: {mode: easy}\n"
        "    mail_from: bounce.bücher.example.com\n"
        "    dns: {zone: example.com}\n"
        "senders:\n"
        "  - name: app\n"
        "    from: [no-reply@bücher.example.com]\n", encoding="utf-8")
    fleet = load_stack(stack)
    (domain,) = fleet.tenant("alpha").domains
    assert domain.name == "xn--bcher-kva.example.com"
    assert domain.mail_from == "bounce.xn--bcher-kva.example.com"
    assert fleet.tenant("alpha").senders[0].from_ == ["no-reply@xn--bcher-kva.example.com"]
    assert "xn--bcher-kva.example.com" in fleet.domains


def test_invalid_idn_domain_is_located(stack_copy: Callable[[str | Path], Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_copy(BASE)
    (stack / "tenants" / "alpha.yaml").write_text(
        "name: alpha\ndomains:\n  - name: ☃☃.example.com\n    dkim: {mode: easy}\n", encoding="utf-8")
    monkeypatch.chdir(stack)
    with pytest.raises(StackError) as info:
        load_stack(".")
    (problem,) = info.value.problems
    assert _located([problem]) == [("tenants/alpha.yaml", 3, 11, "domains[0].name")]
    assert "not a valid internationalised domain name" in problem.message


# --- bounds ----------------------------------------------------------------------------


def _tenant_padded_to(size: int) -> bytes:
    head = b"name: alpha\n"
    pad = size - len(head)
    lines, rest = divmod(pad, 100)
    body = (b"#" * 99 + b"\n") * lines + (b"#" * (rest - 1) + b"\n" if rest else b"")
    data = head + body
    assert len(data) == size
    return data


def test_file_above_the_size_bound_is_rejected_unread(stack_copy: Callable[[str | Path], Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_copy(BASE)
    (stack / "tenants" / "alpha.yaml").write_bytes(_tenant_padded_to(source.MAX_FILE_BYTES + 1))
    monkeypatch.chdir(stack)
    with pytest.raises(StackError) as info:
        load_stack(".")
    (problem,) = info.value.problems
    assert _located([problem]) == [("tenants/alpha.yaml", 1, 1, "(document)")]
    assert f"{source.MAX_FILE_BYTES + 1:,} bytes, above the {source.MAX_FILE_BYTES:,}-byte limit" in problem.message


def test_file_of_exactly_the_size_bound_is_read(stack_copy: Callable[[str | Path], Path]) -> None:
    stack = stack_copy(BASE)
    (stack / "tenants" / "alpha.yaml").write_bytes(_tenant_padded_to(source.MAX_FILE_BYTES))
    assert load_stack(stack).tenant("alpha").domains == []


@pytest.mark.parametrize(("case", "path", "message"), [
    ("alias-bomb", "display_name[4][1]", "aliases expand to more than 20,000 nodes"),
    ("too-many-aliases", "display_name[8][0]", "more than 64 aliases in one file"),
    ("recursive-alias", "display_name[0]", "recursive alias"),
])
def test_alias_abuse_is_rejected_quickly_without_expanding(case: str, path: str, message: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """What the alias cases guarantee beyond their position: fast, bounded, and named by path."""
    monkeypatch.chdir(_build(case, tmp_path / "stack"))
    start = time.perf_counter()
    with pytest.raises(StackError) as info:
        load_stack(".")
    assert time.perf_counter() - start < 1
    found = [p for p in info.value.problems if p.path == path]
    assert len(found) == 1 and message in found[0].message, info.value.problems
    assert found[0].file == "tenants/alpha.yaml"
    assert len(str(info.value)) < 2000  # nothing expanded into the report either


def test_a_deeper_alias_bomb_is_no_slower(stack_copy: Callable[[str | Path], Path]) -> None:
    """Twenty levels of ten: 10^20 strings if expanded; bounded by the first few levels."""
    lines = ["name: alpha", "display_name:", "  - &l0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 20)]
    stack = stack_copy(BASE)
    (stack / "tenants" / "alpha.yaml").write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(StackError, match="alias bomb"):
        load_stack(stack)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(("value", "message"), [("31", "less than or equal to 30"),
                                               ("-1", "greater than or equal to 0"), ("two", "valid integer")])
def test_vmta_lead_days_out_of_bounds_is_located(stack_copy: Callable[[str | Path], Path],
                                                 monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    """0 to 30 days: more would deploy a VMTA (and want its keys) a month before its IP may send."""
    stack = stack_copy(BASE)
    monkeypatch.chdir(stack)
    fleet = stack / "fleet.yaml"
    text = fleet.read_text()
    fleet.write_text(text + f"powermta:\n  postmaster: postmaster@example.com\n  vmta_lead_days: {value}\n")
    line = len(text.splitlines()) + 3
    with pytest.raises(StackError) as info:
        load_stack(".")
    assert _located(info.value.problems) == [("fleet.yaml", line, 19, "powermta.vmta_lead_days")]
    assert message in info.value.problems[0].message
    for good in ("0", "30"):
        fleet.write_text(text + f"powermta:\n  postmaster: postmaster@example.com\n  vmta_lead_days: {good}\n")
        assert load_stack(".").settings.vmta_lead_days == int(good)


# --- all at once -----------------------------------------------------------------------


def _many_errors(stack: Path) -> None:
    """Problems in five files of one stack, each on its own."""
    fleet = (stack / "fleet.yaml").read_text()
    (stack / "fleet.yaml").write_text(fleet.replace("  default_provider: route53\n",
                                                    "  default_provider: route53\n  tll: 300\n"))
    alpha = (stack / "tenants" / "alpha.yaml").read_text()
    (stack / "tenants" / "alpha.yaml").write_text(alpha.replace("[no-reply@alpha.example.com]",
                                                                "[no-reply@alpha.example.com}"))
    beta = (stack / "tenants" / "beta.yaml").read_text()
    beta = beta.replace("    host: mta2\n", "    host: mta2\n    host: mta1\n")
    beta = beta.replace("    dns: {provider: external}\n",
                        "    mail_from: bounce.example.net\n    dns: {provider: external}\n")
    (stack / "tenants" / "beta.yaml").write_text(beta)
    (stack / "tenants" / "gamma.yml").write_text("name: gamma\n")
    (stack / "tenants" / "delta.yaml").write_text("name: delta\ndaily_quota: 0\n")


EXPECTED_MANY = [
    ("fleet.yaml", 8, 3, "dns.tll", "unknown key 'tll'", "did you mean 'ttl'?"),
    ("tenants/alpha.yaml", 14, 38, "(document)", "YAML syntax error", ""),
    ("tenants/beta.yaml", 5, 16, "domains[0].mail_from", "is not a subdomain of beta.example.net", ""),
    ("tenants/beta.yaml", 11, 5, "ips[0].host", "duplicate key 'host'", "first defined at line 10, column 5"),
    ("tenants/delta.yaml", 2, 14, "daily_quota", "Input should be greater than 0", ""),
    ("tenants/gamma.yml", 1, 1, "(stack)", "tenant files end in .yaml", "rename it to gamma.yaml"),
]


def test_errors_in_several_files_are_all_reported_sorted(stack_copy: Callable[[str | Path], Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_copy(BASE)
    _many_errors(stack)
    monkeypatch.chdir(stack)
    with pytest.raises(StackError) as info:
        load_stack(".")
    problems = info.value.problems
    assert problems == sorted(problems)
    assert _located(problems) == [want[:4] for want in EXPECTED_MANY], "\n".join(map(str, problems))
    for problem, (*_, message, hint) in zip(problems, EXPECTED_MANY, strict=True):
        assert message in problem.message and hint in problem.hint, problem
    assert str(info.value).splitlines() == [str(p) for p in problems]


def test_cli_reports_them_all_on_stderr_exits_1_and_never_a_traceback(
        stack_copy: Callable[[str | Path], Path]) -> None:
    stack = stack_copy(BASE)
    _many_errors(stack)
    mailplane = Path(sys.executable).parent / "mailplane"
    command = [str(mailplane)] if mailplane.exists() else [sys.executable, "-m", "mailplane.cli"]
    result = subprocess.run([*command, "validate", "."], cwd=stack, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(EXPECTED_MANY) + 1
    for line, (file, row, col, path, message, _hint) in zip(lines, EXPECTED_MANY, strict=False):
        assert line.startswith(f"{file}:{row}:{col}: {path}: ") and message in line, line
    assert lines[-1] == f"{len(EXPECTED_MANY)} errors"


def test_cli_on_a_missing_stack_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such stack folder" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_overrides_replace_files_without_writing_them(stack_copy: Callable[[str | Path], Path]) -> None:
    stack = stack_copy(BASE)
    alpha = stack / "tenants" / "alpha.yaml"
    before = alpha.read_bytes()
    with pytest.raises(StackError, match="unknown key 'bogus'"):
        load_stack(stack, overrides={alpha: before + b"bogus: 1\n"})
    new = stack / "tenants" / "gamma.yaml"
    with pytest.raises(StackError, match=r"tenant 'alpha' is in file gamma\.yaml"):
        load_stack(stack, overrides={new: before})
    assert alpha.read_bytes() == before and not new.exists()


def test_overriding_an_existing_tenant_of_a_relative_stack_path(stack_copy: Callable[[str | Path], Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: the file on disk and its override were both loaded, so alpha clashed with itself."""
    stack = stack_copy(BASE)
    monkeypatch.chdir(stack.parent)
    alpha = stack / "tenants" / "alpha.yaml"
    fleet = load_stack(stack.name, overrides={alpha: alpha.read_bytes()})
    assert isinstance(fleet, Fleet)
    assert [t.name for t in fleet.tenants] == ["alpha", "beta"]


# --- bugs the fuzzing and fixtures found once; each test keeps it fixed ---------------------


def _load_alpha(stack: Path, text: str | bytes, monkeypatch: pytest.MonkeyPatch) -> list[YamlProblem]:
    """Load the base stack with ``tenants/alpha.yaml`` replaced; the problems it reports."""
    (stack / "tenants" / "alpha.yaml").write_bytes(text.encode() if isinstance(text, str) else text)
    monkeypatch.chdir(stack)
    with pytest.raises(StackError) as info:
        load_stack(".")
    return info.value.problems

