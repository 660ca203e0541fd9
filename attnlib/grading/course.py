"""The course: where the chapter sources live, and running nbgrader on them.

The repository is an nbgrader course directory (see ``nbgrader_config.py``):
``solutions/<id>/<id>.ipynb`` holds each chapter's source and
``chapters/<id>/<id>.ipynb`` its generated learner edition.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def course_config(config_file: Path = CONFIG, **sections: dict):
    """The nbgrader configuration in ``config_file`` (default: this repository's),
    updated with ``sections``, e.g. ``GradingExecute={"timeout": 5}``."""
    from traitlets.config import Config, PyFileConfigLoader

    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    config.merge(Config(sections))
    return config


def nbgrader(command: str, assignment: str, config, student: str = "*") -> None:
    """Run ``nbgrader generate_assignment`` or ``nbgrader autograde`` (with
    ``--force``) in this process, with the nbgrader ``config``.

    Raises ``CourseError`` with the end of nbgrader's log if the command fails.
    """
    from nbgrader import converters
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    converter = {"generate_assignment": converters.GenerateAssignment,
                 "autograde": converters.Autograde}[command]
    coursedir = CourseDirectory(config=config, assignment_id=assignment, student_id=student)
    app = converter(coursedir=coursedir, config=config)
    app.force = True
    with warnings.catch_warnings():  # nbgrader's SQLAlchemy warnings are not the user's business
        warnings.simplefilter("ignore")
        result = capture_log(app)
    if not result["success"]:  # the errors raised, else nbgrader's last messages
        log = result.get("log", "").splitlines()
        raised = [re.sub(r"^[\w.]+\.(?=\w+: )", "", line.strip()) for line in log
                  if re.match(r"\s*[\w.]+(Error|Exception): ", line)]
        lines = [line for line in log
                 if line[:1].strip() and "Traceback (most recent call last)" not in line]
        raise CourseError(f"`nbgrader {command} {assignment}` failed:\n"
                          + "\n".join(list(dict.fromkeys(raised)) or lines[-8:]))


def new_gradebook(path: Path) -> None:
    """Create an empty nbgrader gradebook at ``path``.

    nbgrader would do it on first use, but it runs the ``alembic`` program (a
    second Python) to learn the schema version: reading it here is faster.
    """
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from nbgrader.dbutil import ALEMBIC_DIR
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        db.execute(text("INSERT INTO alembic_version VALUES (:head)"),
                   {"head": ScriptDirectory(ALEMBIC_DIR).get_current_head()})
    engine.dispose()


def release(chapters: list[str], release_dir: Path | None = None) -> None:
    """Write the learner edition of each chapter with ``nbgrader generate_assignment``.

    By default into ``chapters/``; ``release_dir`` writes them elsewhere instead
    (the drift test compares such a copy with ``chapters/``).
    """
    known = chapter_ids()
    for chapter in chapters:
        if chapter not in known:
            raise CourseError(f"unknown chapter {chapter!r}; the chapters are {', '.join(known)}")
        config = course_config(SaveCells={"enabled": False},
                               GenerateAssignment={"no_database": True})
        if release_dir is not None:
            config.CourseDirectory.release_directory = str(Path(release_dir).resolve())
        nbgrader("generate_assignment", chapter, config)
