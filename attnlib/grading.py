"""Grade a learner's notebook with the hidden tests: ``python -m attnlib grade``.

The notebook is autograded by nbgrader in a throwaway course folder that holds
only this chapter's source (with its hidden tests), so nothing in the
repository is written and it works from any current directory.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import CONFIG, CourseError, chapter_ids, nbgrader, source_notebook

STUDENT = "learner"


@dataclass
class Exercise:
    """Points earned on one graded test cell (its nbgrader ``grade_id``)."""
    id: str
    score: float
    max_score: float


@dataclass
class Report:
    """The outcome of grading one notebook."""
    notebook: str
    chapter: str
    exercises: list[Exercise]
    executed: nbformat.NotebookNode = field(repr=False)  # the notebook as the grader ran it

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "score": self.score, "max_score": self.max_score,
                "exercises": [{"id": e.id, "score": e.score, "max_score": e.max_score}
                              for e in self.exercises]}

    def table(self) -> str:
        width = max([len("exercise"), *(len(e.id) for e in self.exercises)])
        rows = [f"{self.notebook} (chapter {self.chapter})", "",
                f"{'exercise':<{width}}  points"]
        rows += [f"{e.id:<{width}}  {e.score:g} / {e.max_score:g}" for e in self.exercises]
        rows += [f"{'total':<{width}}  {self.score:g} / {self.max_score:g}"]
        return "\n".join(rows)


def graded_cell_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The ``grade_id`` of every autograded test cell of ``nb``, in order."""
    return [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
            and cell.cell_type == "code"]


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook file, or raise ``CourseError`` saying why it cannot be read."""
    if not path.is_file():
        raise CourseError(f"no such notebook: {path}")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several kinds for broken files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CourseError(f"{path} is not a valid notebook (malformed JSON?): {reason}") from None


def chapter_of(path: Path, nb: nbformat.NotebookNode) -> str:
    """The chapter a submitted notebook belongs to: by file name, else by its test cells."""
    chapters = chapter_ids()
    if path.stem in chapters:
        return path.stem
    ids = set(graded_cell_ids(nb))
    overlap = {c: len(ids & set(graded_cell_ids(read_notebook(source_notebook(c)))))
               for c in chapters}
    best = max(overlap, key=overlap.get, default=None)
    if best is None or overlap[best] == 0:
        raise CourseError(f"{path.name} is not a chapter of the book; the chapters are "
                          f"{', '.join(c + '.ipynb' for c in chapters)}")
    return best


def grade(notebook) -> Report:
    """Autograde ``notebook`` (a path) against its chapter's hidden tests."""
    path = Path(notebook)
    nb = read_notebook(path)
    chapter = chapter_of(path, nb)
    with tempfile.TemporaryDirectory(prefix="attnlib-grade-") as tmp:
        course = Path(tmp)
        (course / "nbgrader_config.py").write_text(
            f"c = get_config()\nload_subconfig({str(CONFIG)!r})\n"
            f"c.CourseDirectory.root = {str(course)!r}\n")
        for step, student in (("solutions", "."), ("submitted", STUDENT)):
            (course / step / student / chapter).mkdir(parents=True)
        shutil.copy(source_notebook(chapter), course / "solutions" / "." / chapter)
        nbgrader("generate_assignment", chapter, "--force", cwd=course)
        nbformat.write(nb, course / "submitted" / STUDENT / chapter / f"{chapter}.ipynb")
        nbgrader("autograde", chapter, "--force", f"--student={STUDENT}", cwd=course)
        return Report(notebook=str(notebook), chapter=chapter,
                      exercises=_scores(course, chapter),
                      executed=read_notebook(course / "autograded" / STUDENT / chapter
                                             / f"{chapter}.ipynb"))


def _scores(course: Path, chapter: str) -> list[Exercise]:
    """Points per test cell from the throwaway gradebook, in the source's cell order."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grades = {g.name: g for g in gb.find_submission_notebook(chapter, chapter, STUDENT).grades}
        order = graded_cell_ids(read_notebook(source_notebook(chapter)))
        return [Exercise(id=name, score=float(grades[name].score),
                         max_score=float(grades[name].max_score)) for name in order]
