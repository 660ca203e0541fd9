"""The course: where the chapter sources live, and running nbgrader on them.

The repository is an nbgrader course directory (see ``nbgrader_config.py``):
``solutions/<id>/<id>.ipynb`` holds each chapter's source and
``chapters/<id>/<id>.ipynb`` its generated learner edition.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "solutions"
CONFIG = ROOT / "nbgrader_config.py"


class CourseError(Exception):
    """A problem the user can fix, reported as one clear message."""


def chapter_ids() -> list[str]:
    """The ids of all chapters, in order (``["01_softmax", ...]``)."""
    if not SOURCES.is_dir() or not CONFIG.is_file():
        raise CourseError(f"the chapter sources were not found in {ROOT}: install attnlib "
                          "from a clone of the book with `pip install -e .`")
    return sorted(p.name for p in SOURCES.iterdir() if (p / f"{p.name}.ipynb").is_file())


def source_notebook(chapter: str) -> Path:
    """Path of the source (solution) notebook of ``chapter``."""
    return SOURCES / chapter / f"{chapter}.ipynb"


def nbgrader(*args: str, cwd: Path) -> None:
    """Run an nbgrader command in ``cwd``, which must hold an ``nbgrader_config.py``.

    Raises ``CourseError`` with the end of nbgrader's log if the command fails.
    """
    # nbgrader runs helper programs (alembic) that live beside this Python
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd,
                         capture_output=True, text=True, env={**os.environ, "PATH": path})
    if run.returncode != 0:
        log = "\n".join((run.stdout + run.stderr).strip().splitlines()[-15:])
        raise CourseError(f"`nbgrader {' '.join(args)}` failed:\n{log}")


def release(chapters: list[str], release_dir: Path | None = None) -> None:
    """Write the learner edition of each chapter with ``nbgrader generate_assignment``.

    By default into ``chapters/``; ``release_dir`` writes them elsewhere instead
    (the drift test compares such a copy with ``chapters/``).
    """
    known = chapter_ids()
    for chapter in chapters:
        if chapter not in known:
            raise CourseError(f"unknown chapter {chapter!r}; the chapters are {', '.join(known)}")
        args = ["generate_assignment", chapter, "--force", "--no-db"]
        if release_dir is not None:
            args.append(f"--CourseDirectory.release_directory={Path(release_dir).resolve()}")
        nbgrader(*args, cwd=ROOT)
