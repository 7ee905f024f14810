"""The folder render writes into (`--out`): a new or empty folder, or one render wrote before, never anything else.

render leaves a marker, MARKER, listing every file it wrote (relative paths). A folder holding that marker is
render's: the next render deletes exactly the files listed there (and the folders that leaves empty), then writes
its own; a file someone else put beside them stays. Every other case is refused before anything is written or
deleted, with one line saying why and what to pass instead: the project checkout (or a folder holding it), a folder
holding anything without the marker, a file, a symlink to a file. `render --out .` in a checkout once deleted the
whole checkout, `.git` included (issue 31).

The marker is rewritten after every file, so a render stopped half-way leaves a folder the next render still
recognises and cleans up.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

MARKER = ".eks-gpu-spot-render.json"
WRITER = "python -m tools.render"


class OutputFolderError(ValueError):
    """`--out` names something render must not write into; the message is one line for the user."""


def _refuse(out: Path, why: str, example: str) -> OutputFolderError:
    return OutputFolderError(f"--out {out}: {why}; pass a new folder (render creates it), e.g. --out {example}")


def _listed_files(folder: Path) -> list[str]:
    """The files the marker says render wrote; a marker render cannot read is not render's marker."""
    try:
        document = json.loads((folder / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    files = document.get("files") if isinstance(document, dict) and document.get("writer") == WRITER else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _is_safe(relative: str) -> bool:
    """A listed path render could have written: relative, inside the folder, no `..`, no marker itself."""
    path = PurePosixPath(relative)
    return bool(relative) and not path.is_absolute() and ".." not in path.parts and relative != MARKER


class OutputFolder:
    """Check with `claim` (nothing touched), then `clear_previous` and `write_text` each file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written: list[str] = []

    @classmethod
    def claim(cls, out: Path, checkout: Path, example: str) -> OutputFolder:
        """`out` if render may write there, else OutputFolderError naming `example` as a folder to pass. Reads only."""
        if out.is_symlink() and not out.exists():
            raise _refuse(out, "is a symlink to nothing", example)
        if out.exists() and not out.is_dir():
            raise _refuse(out, "is not a folder" + (" (a symlink to a file)" if out.is_symlink() else ""), example)
        resolved, project = out.resolve(), checkout.resolve()
        if resolved == project or resolved in project.parents:
            why = f"is the project checkout {project} or holds it: render would mix its files with yours"
            raise _refuse(out, why, example)
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
            why = f"is a folder that is not empty and was not written by render (no {MARKER})"
            raise _refuse(out, why, example)
        return cls(out)

    def clear_previous(self) -> None:
        """Delete the files the previous render listed, and the folders that leaves empty. A listed path that escapes
        the folder or runs through a symlink is left alone."""
        if not (self.path / MARKER).is_file():
            return
        root = self.path.resolve()
        folders = set()
        for relative in _listed_files(self.path):
            target = self.path / relative
            if not _is_safe(relative) or target.parent.resolve() != (root / relative).parent:
                continue
            if target.is_file() or target.is_symlink():
                target.unlink()  # a symlink itself, never what it points to
            folders.update(p for p in (self.path / relative).parents if p != self.path and self.path in p.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        (self.path / MARKER).unlink()

    def write_text(self, relative: str, text: str) -> Path:
        """Write OUT/relative and record it in the marker."""
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative not in self.written:
            self.written.append(relative)
            self._write_marker()
        path.write_text(text)
        return path

    def _write_marker(self) -> None:
        document = {
            "writer": WRITER,
            "about": "render deletes the files listed here before its next render into this folder; nothing else",
            "files": sorted(self.written),
        }
        self.path.mkdir(parents=True, exist_ok=True)
        partial = self.path / f"{MARKER}.partial"
        partial.write_text(json.dumps(document, indent=2) + "\n")
        partial.replace(self.path / MARKER)
