"""The stack as it was at a git revision, loaded without touching the working tree.

A pull request is reviewed against its base (``origin/main``): CI has the head checked out, and
checking the base out as well would disturb the working tree (and anything else running in it).
So the files are read from git's object store (``git ls-tree`` lists them, ``git cat-file
--batch`` reads them all in one process), written into a temporary folder under the stack's own
name (the stack name is part of resource names and generated configs) and loaded there with the
same loader as the head.  Nothing is written to the repository, not even the index.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mailplane.model.loader import FLEET_FILE, TENANTS_DIR, load_stack
from mailplane.model.problems import StackError, YamlProblem, display_path
from mailplane.model.stack import Fleet

GIT_TIMEOUT = 60
"""Seconds; a local read of a few files never takes that long, a hung credential prompt could."""


class GitError(Exception):
    """git could not answer: not a repository, unknown revision, git missing.  The message is
    meant for the person running the command, so it says what to do."""


@dataclass(frozen=True)
class Revision:
    ref: str
    """The revision as given (``origin/main``)."""
    commit: str
    """The commit it resolved to, so a review names exactly what it compared against."""
    path: str
    """The stack folder relative to the repository root, in git's spelling (``stacks/prod``)."""
    fleet: Fleet | None
    """None when the stack did not exist at that revision: a new stack, everything is added."""


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    # Literal pathspecs: a folder name with * or [ is a name, not a pattern.  No pager, no prompt.
    env = {**os.environ, "GIT_LITERAL_PATHSPECS": "1", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], input=stdin, capture_output=True, env=env,
                              timeout=GIT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed (or not on PATH); --base reads the base revision with git") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {message[-1] if message else f'exit status {done.returncode}'}")
    return done.stdout


def _locate(stack_dir: Path) -> tuple[Path, str]:
    """The repository root and the stack's path inside it (git's own answer, so symlinked
    checkouts and nested folders agree with what ``ls-tree`` sees)."""
    if not stack_dir.is_dir():
        raise GitError(f"{stack_dir}: no such folder")
    try:
        out = _git(stack_dir, "rev-parse", "--show-toplevel", "--show-prefix")
    except GitError as err:
        raise GitError(f"{stack_dir} is not inside a git repository ({err}); --base compares two revisions "
                       "of a repository") from None
    lines = out.decode("utf-8", "surrogateescape").split("\n")
    return Path(lines[0]), lines[1].rstrip("/")


def _resolve(root: Path, ref: str) -> str:
    if not ref or ref.startswith("-"):
        raise GitError(f"{ref!r} is not a git revision")
    try:
        out = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(f"unknown git revision {ref!r} in {root} (in CI, fetch it first: "
                       "`git fetch origin main`, or actions/checkout with fetch-depth: 0)") from None
    return out.decode("ascii").strip()


def _stack_files(root: Path, commit: str, path: str) -> tuple[bool, list[str]]:
    """Whether the stack folder existed at ``commit``, and the files of it the loader reads:
    fleet.yaml and what lies directly in tenants/ (so a stray ``.yml`` there is reported at the
    base as it would be in a checkout)."""
    out = _git(root, "ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--", path or ".")
    names = [n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n]
    prefix = f"{path}/" if path else ""
    wanted = []
    for name in names:
        rel = name[len(prefix):]
        if rel == FLEET_FILE or (posixpath.dirname(rel) == TENANTS_DIR and "\n" not in rel):
            wanted.append(name)
    return bool(names), wanted


def _read_blobs(root: Path, commit: str, names: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """Contents by name, following symlinks inside the tree (a linked tenant file is allowed);
    also the names that could not be read (a link out of the repository, a dangling link)."""
    request = "".join(f"{commit}:{name}\n" for name in names).encode("utf-8", "surrogateescape")
    out = _git(root, "cat-file", "--batch", "--follow-symlinks", stdin=request)
    blobs: dict[str, bytes] = {}
    unreadable: list[str] = []
    pos = 0
    for name in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].split(b" ")
        pos = end + 1
        if header[-1] == b"missing":
            unreadable.append(name)
            continue
        size = int(header[-1])
        body = out[pos:pos + size]
        pos += size + 1  # the contents, then a newline
        if len(header) == 3 and header[1] == b"blob":
            blobs[name] = body
        else:  # symlink (out of the repository), dangling, loop, notdir: followed by the path
            unreadable.append(name)
    return blobs, unreadable


def _relocate(problem: YamlProblem, tmp_stack: Path, shown: str) -> YamlProblem:
    """A problem in the temporary copy, named as ``REF:path`` (git's spelling of a file at a revision)."""
    file = problem.file
    for candidate in (str(tmp_stack), os.path.realpath(tmp_stack), display_path(tmp_stack)):
        if file == candidate or file.startswith(candidate + os.sep):
            file = shown + file[len(candidate):].replace(os.sep, "/")
            break
    return dataclasses.replace(problem, file=file)


def load_revision(stack_dir: Path, ref: str) -> Revision:
    """Load ``stack_dir`` as it was at ``ref``.

    Raises :class:`GitError` when git cannot answer, and :class:`~mailplane.model.problems.StackError`
    when the stack at ``ref`` is invalid, its problems named ``REF:path:line:col``.
    """
    root, path = _locate(stack_dir)
    commit = _resolve(root, ref)
    exists, names = _stack_files(root, commit, path)
    if not exists:
        return Revision(ref, commit, path, None)
    blobs, unreadable = _read_blobs(root, commit, names)
    shown = f"{ref}:{path}" if path else f"{ref}:."
    prefix = f"{path}/" if path else ""
    # The folder is named like the stack: the name is part of the fleet (resource and config names).
    with tempfile.TemporaryDirectory(prefix="mailplane-base-") as tmp:
        tmp_stack = Path(tmp) / stack_dir.resolve().name
        (tmp_stack / TENANTS_DIR).mkdir(parents=True)
        for name, data in blobs.items():
            (tmp_stack / name[len(prefix):]).write_bytes(data)
        problems = [YamlProblem(f"{ref}:{name}", 1, 1, "(document)", "cannot read at this revision",
                            "a symlink that leaves the repository or points nowhere") for name in unreadable]
        if not any(posixpath.dirname(n[len(prefix):]) == TENANTS_DIR for n in names):
            (tmp_stack / TENANTS_DIR).rmdir()  # as in a checkout: git keeps no empty folder
        try:
            fleet = load_stack(tmp_stack)
        except StackError as err:
            raise StackError([_relocate(p, tmp_stack, shown) for p in [*err.problems, *problems]]) from None
        if problems:
            raise StackError(problems)
        for doc in fleet.sources.values():  # later reports about the base (policy checks) name git's path
            doc.file = _relocate(YamlProblem(doc.file, 1, 1, "", ""), tmp_stack, shown).file
    return Revision(ref, commit, path, fleet)
