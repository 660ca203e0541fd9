"""Grade a learner's notebook with the hidden tests: ``python -m attnlib grade``.

The notebook is autograded by nbgrader (in this process) in a throwaway course
folder that holds only this chapter's source (with its hidden tests), so nothing
in the repository is written and it works from any current directory. The
kernel runs in the sandbox, with the limits and the checks of
:mod:`attnlib.grading.execute`; what they found is reported as notes.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import cgroup
from .course import (CourseError, chapter_ids, course_config, nbgrader, new_gradebook,
                     source_notebook)
from .limits import STDERR_KEY, Outcome, outcomes
from .restore_cells import REPAIRS_KEY
from .sandbox import why_not

STUDENT = "learner"
# outcomes whose note concerns the whole notebook: said once, not once per cell
WHOLE_NOTEBOOK = {Outcome.TAMPERING.value, Outcome.NOTEBOOK_TIMEOUT.value}


@dataclass
class Exercise:
    """Points earned on one graded test cell (its nbgrader ``grade_id``), and why points
    were lost: the failing check's message (``None`` with full marks)."""
    id: str
    score: float
    max_score: float
    message: str | None = None


@dataclass
class Report:
    """The outcome of grading one notebook."""
    notebook: str
    chapter: str
    exercises: list[Exercise]
    executed: nbformat.NotebookNode = field(repr=False)  # the notebook as the grader ran it
    sandbox: str | None = "bubblewrap"   # None: graded without a sandbox (see notes)
    notes: list[str] = field(default_factory=list)
    needs_manual_grading: bool = False

    @property
    def score(self) -> float:
        return sum(e.score for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.max_score for e in self.exercises)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "score": self.score, "max_score": self.max_score,
                "exercises": [{"id": e.id, "score": e.score, "max_score": e.max_score,
                               "message": e.message} for e in self.exercises],
                "sandbox": self.sandbox, "notes": self.notes,
                "needs_manual_grading": self.needs_manual_grading}

    def table(self) -> str:
        width = max([len("exercise"), *(len(e.id) for e in self.exercises)])
        rows = [f"{self.notebook} (chapter {self.chapter})", "",
                f"{'exercise':<{width}}  points"]
        for e in self.exercises:
            rows.append(f"{e.id:<{width}}  {e.score:g} / {e.max_score:g}")
            rows += [f"{'':<{width}}    {line}" for line in (e.message or "").splitlines()]
        rows += [f"{'total':<{width}}  {self.score:g} / {self.max_score:g}", ""]
        rows += [f"sandbox: {self.sandbox or 'none'}"]
        rows += [f"note: {note}" for note in self.notes]
        if self.needs_manual_grading:
            rows += ["needs manual grading: see the notes"]
        return "\n".join(rows)


def graded_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The autograded test cells of ``nb`` by ``grade_id``, in order."""
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in nb.cells
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
            and cell.metadata["nbgrader"].get("grade_id") and cell.cell_type == "code"}


def graded_cell_ids(nb: nbformat.NotebookNode) -> list[str]:
    """The ``grade_id`` of every autograded test cell of ``nb``, in order."""
    return list(graded_cells(nb))


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """Read a notebook file, or raise ``CourseError`` saying why it cannot be read."""
    if not path.is_file():
        raise CourseError(f"no such notebook: {path}")
    try:
        with warnings.catch_warnings():  # (cells without ids: nbformat fixes that)
            warnings.simplefilter("ignore")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)  # read only warns about a code cell without outputs, say
        return nb
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


def grade(notebook, *, timeout: int | None = None, memory: str | None = None,
          cpu_time: int | None = None) -> Report:
    """Autograde ``notebook`` (a path) against its chapter's hidden tests.

    ``timeout`` (seconds per cell), ``memory`` (e.g. ``"4GiB"``) and ``cpu_time``
    (seconds) override the limits of ``nbgrader_config.py``.
    """
    path = Path(notebook)
    nb = read_notebook(path)
    chapter = chapter_of(path, nb)
    limits = {"timeout": timeout, "memory_limit": memory, "cpu_time_limit": cpu_time}
    config = course_config(GradingExecute={k: v for k, v in limits.items() if v is not None})
    return autograde(nb, source_notebook(chapter), str(notebook), config)


def autograde(nb: nbformat.NotebookNode, source: Path, name: str, config) -> Report:
    """Autograde the notebook ``nb`` against the source notebook ``source``
    (``<assignment>/<notebook>.ipynb``) in a throwaway course, with the nbgrader
    ``config`` of a course (its limits; its folders and database are replaced)."""
    assignment, notebook = source.parent.name, source.stem
    with tempfile.TemporaryDirectory(prefix="attnlib-grade-") as tmp:
        course = Path(tmp)
        config = copy.deepcopy(config)
        config.CourseDirectory.update(
            root=tmp, db_url=f"sqlite:///{course / 'gradebook.db'}",
            source_directory="source", release_directory="release",
            submitted_directory="submitted", autograded_directory="autograded")
        new_gradebook(course / "gradebook.db")
        (course / "source" / assignment).mkdir(parents=True)
        shutil.copy(source, course / "source" / assignment)
        nbgrader("generate_assignment", assignment, config)
        (course / "submitted" / STUDENT / assignment).mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / STUDENT / assignment / source.name)
        nbgrader("autograde", assignment, config, student=STUDENT)
        release = read_notebook(course / "release" / assignment / source.name)
        executed = read_notebook(course / "autograded" / STUDENT / assignment / source.name)
        exercises = _scores(course, assignment, notebook, graded_cell_ids(release))
    cells = graded_cells(executed)
    for exercise in exercises:
        if exercise.score < exercise.max_score and exercise.id in cells:
            exercise.message = failure(cells[exercise.id])
    sandbox_missing = why_not(config.GradingExecute.get("sandbox", True))
    notes, manual = findings(nb, read_notebook(source), release, executed)
    return Report(notebook=name, chapter=assignment, exercises=exercises, executed=executed,
                  sandbox=None if sandbox_missing else "bubblewrap",
                  notes=machine_notes(config) + notes,
                  needs_manual_grading=manual)


def machine_notes(config) -> list[str]:
    """What this machine could not hold a notebook graded with the nbgrader ``config`` to."""
    notes = []
    sandbox_missing = why_not(config.GradingExecute.get("sandbox", True))
    if sandbox_missing:
        notes.append(f"graded without a sandbox ({sandbox_missing}): the notebook ran with "
                     "the grader's permissions, network and files")
    if cgroup.unavailable():
        notes.append("memory and processes were limited per process, not for the notebook as "
                     f"a whole: no control group could be made ({cgroup.unavailable()})")
    return notes


def findings(submitted: nbformat.NotebookNode, source: nbformat.NotebookNode,
             release: nbformat.NotebookNode, executed: nbformat.NotebookNode
             ) -> tuple[list[str], bool]:
    """Notes on what grading found, and whether a person should look at it."""
    notes, manual = list(executed.metadata.get(REPAIRS_KEY, [])), False
    mine = {}  # grade_id -> the first cell that carries it
    for c in submitted.cells:
        mine.setdefault(c.get("metadata", {}).get("nbgrader", {}).get("grade_id"), c)
    full = graded_cells(source)
    for cell in release.cells:
        info = cell.metadata.get("nbgrader", {})
        if info.get("solution") and not info.get("grade") and info["grade_id"] not in mine:
            notes.append(f"the solution cell {info['grade_id']} was deleted: it was put back "
                         "unsolved")
    for grade_id, original in graded_cells(release).items():
        cell = mine.get(grade_id)
        if cell is None:
            notes.append(f"the test cell {grade_id} was deleted: it was put back and graded")
        elif cell.cell_type != "code" or cell.source.strip() not in (
                original.source.strip(), full[grade_id].source.strip()):
            notes.append(f"the test cell {grade_id} was edited: the original was graded")
        if cell is not None and cell.metadata["nbgrader"].get("points") != \
                original.metadata["nbgrader"]["points"]:
            notes.append(f"the points of {grade_id} were changed: the original "
                         f"{original.metadata['nbgrader']['points']:g} count")
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        where = cell.metadata.get("nbgrader", {}).get("grade_id") or f"code cell {number}"
        if cell.metadata.get(STDERR_KEY):
            notes.append(f"{where} wrote to stderr (a warning?): it is shown as output and "
                         "costs no points")
        found = outcomes(cell)
        manual |= any(outcome.needs_manual_grading for outcome in found)
        for output in cell.get("outputs", []):
            if output.output_type == "error" and output.ename in {o.value for o in found}:
                note = output.evalue if output.ename in WHOLE_NOTEBOOK else \
                    f"{where}: {output.ename}: {output.evalue}"
                if note not in notes:
                    notes.append(note)
    return notes, manual


def failure(cell, limit: int = 300) -> str | None:
    """Why the test ``cell`` failed, in words: its error's name and message (the
    assertion's text), without the traceback; at most ``limit`` characters."""
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            text = f"{output.ename}: {output.evalue.strip()}"
            return text if len(text) <= limit else text[:limit - 3] + "..."
    return None


def _scores(course: Path, assignment: str, notebook: str, order: list[str]) -> list[Exercise]:
    """Points per test cell from the throwaway gradebook, in the notebook's cell order."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grades = {g.name: g for g in
                  gb.find_submission_notebook(notebook, assignment, STUDENT).grades}
        return [Exercise(id=name, score=float(grades[name].score),
                         max_score=float(grades[name].max_score)) for name in order]
