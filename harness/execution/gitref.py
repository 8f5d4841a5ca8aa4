"""Git for same-job A/B: resolve a ref, check it out in a temporary worktree, clean up always.

The worktree is removed on any exit, also on Ctrl-C (a second Ctrl-C cannot interrupt the
cleanup) and on SIGTERM, which CI cancellation sends (``execution.interrupts``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError
from harness.execution.interrupts import no_interrupts


def git(repo: Path, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"git {args[0]} failed: {exc}") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"git {' '.join(args[:2])} failed in {repo}: {msg}")
    return proc.stdout.strip()


def repo_toplevel(path: Path) -> Path:
    try:
        return Path(git(path, "rev-parse", "--show-toplevel")).resolve()
    except UserError:
        raise UserError(f"{path} is not a git checkout; trainmark ab needs one") from None


def resolve_ref(top: Path, ref: str) -> str:
    sha = git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if not sha:
        raise UserError(f"unknown git ref {ref!r} in {top}")
    return sha


def is_ancestor(top: Path, older: str, newer: str) -> bool:
    """Is ``older`` an ancestor of ``newer`` (or the same commit)?"""
    try:
        return subprocess.run(["git", "-C", str(top), "merge-base", "--is-ancestor", older,
                               newer], capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"git merge-base failed: {exc}") from None


@contextlib.contextmanager
def worktree(top: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of ``sha`` in a temporary directory, removed on any exit."""
    tmp = Path(tempfile.mkdtemp(prefix="trainmark-ab-"))
    path = tmp / "ref"
    try:
        git(top, "worktree", "add", "--detach", str(path), sha)
        yield path
    finally:
        with no_interrupts():
            git(top, "worktree", "remove", "--force", str(path), check=False)
            git(top, "worktree", "prune", check=False)
            shutil.rmtree(tmp, ignore_errors=True)

