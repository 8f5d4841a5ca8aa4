"""Output paths checked before anything runs: a long sweep must not end in a traceback because
``--out`` names a folder or sits under a file."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError


def _ancestors_are_folders(flag: str, path: Path) -> None:
    for parent in path.parents:  # the nearest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
            return


def writable_file(flag: str, path: str | Path, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` if a file can be written there (created with its folders, or replaced)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {p} is a directory; give a file path")
    if suffixes and p.suffix not in suffixes:
        raise UserError(f"{flag} {p}: the file name must end in {' or '.join(suffixes)}")
    _ancestors_are_folders(flag, p)
    return p


def writable_dir(flag: str, path: str | Path) -> Path:
    """``path`` if it is a folder or one can be created there."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p} is a file; give a directory")
    _ancestors_are_folders(flag, p)
    return p
