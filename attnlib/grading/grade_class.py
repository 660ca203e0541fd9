"""Autograde a whole class in parallel: ``python -m attnlib autograde <chapter> --jobs N``.

nbgrader's ``autograde`` grades the students one after another, and parallel
runs of it would share one SQLite gradebook. Here the work is split in two:

1. Workers (``jobs`` processes) grade the submissions, each in a throwaway
   course of its own, exactly as ``python -m attnlib grade`` does (sandbox,
   limits, tamper checks), and keep the executed notebooks.
2. One process, nbgrader's own ``autograde``, then writes every result into the
   course: its execution step, ``ReplayExecution``, hands over the notebook a
   worker executed instead of running it again. nbgrader itself fills the
   gradebook (SQLite, or a server database through ``CourseDirectory.db_url``),
   ``autograded/``, late penalties and the zero of a missing notebook, so
   ``nbgrader generate_feedback`` and ``nbgrader export`` work as after a plain
   ``nbgrader autograde``.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
from nbgrader.converters import Autograde
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode
from traitlets.utils.importstring import import_item

from .course import CourseError, course_config, nbgrader
from .sandbox import why_not


@dataclass
class Student:
    """One student's result."""
    id: str
    score: float | None = None          # None: not graded (see error)
    max_score: float | None = None
    notes: list[str] = field(default_factory=list)
    needs_manual_grading: bool = False
    error: str | None = None


@dataclass
class ClassReport:
    """The outcome of grading a class."""
    assignment: str
    students: list[Student]
    jobs: int
    seconds: float
    sandbox: str  # "bubblewrap", or why there was none

    def table(self) -> str:
        width = max([len("student"), *(len(s.id) for s in self.students)])
        rows = [f"{'student':<{width}}  points"]
        for s in self.students:
            points = "not graded" if s.score is None else f"{s.score:g} / {s.max_score:g}"
            flag = "  needs manual grading" if s.needs_manual_grading else ""
            rows.append(f"{s.id:<{width}}  {points}{flag}")
            rows += [f"{'':<{width}}    {line}" for line in ([s.error] if s.error else s.notes)]
        graded = sum(s.score is not None for s in self.students)
        rows.append(f"\n{self.assignment}: {graded} of {len(self.students)} students graded, "
                    f"{self.jobs} at a time, in {self.seconds:.0f} s; sandbox: {self.sandbox}")
        return "\n".join(rows)


class ReplayExecution(NbGraderPreprocessor):
    """Stands in for the execution step of ``nbgrader autograde``: the notebook a
    worker executed, from ``results/<student>/<notebook>.ipynb``."""

    results = Unicode(help="the folder of the executed notebooks").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(self.results) / info["student"] / f"{info['notebook']}.ipynb"
        executed = nbformat.read(path, as_version=4)
        if [c.source for c in executed.cells] != [c.source for c in nb.cells]:
            raise ValueError(f"the executed notebook of {info['student']} does not match the "
                             "submission: grade again")
        return executed, resources


def autograde_class(course: str | Path, assignment: str, jobs: int = 2,
                    timeout: int | None = None, memory: str | None = None,
                    cpu_time: int | None = None) -> ClassReport:
    """Autograde every submission of ``assignment`` in the nbgrader course folder
    ``course`` (which holds ``nbgrader_config.py``), ``jobs`` at a time."""
    started = monotonic()
    course = Path(course).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise CourseError(f"{course} is not an nbgrader course: it has no nbgrader_config.py")
    limits = {"timeout": timeout, "memory_limit": memory, "cpu_time_limit": cpu_time}
    config = course_config(course / "nbgrader_config.py",
                           GradingExecute={k: v for k, v in limits.items() if v is not None})
    dirs = config.CourseDirectory
    dirs.setdefault("root", str(course))
    root = Path(dirs.root)
    sources = sorted((root / dirs.get("source_directory", "source") / assignment).glob("*.ipynb"))
    if not sources:
        raise CourseError(f"no source notebooks for {assignment!r} in "
                          f"{root / dirs.get('source_directory', 'source')}")
    submitted = root / dirs.get("submitted_directory", "submitted")
    students = sorted(p.parent.name for p in submitted.glob(f"*/{assignment}"))
    if not students:
        raise CourseError(f"no submissions of {assignment!r} in {submitted}")
    report = {s: Student(s) for s in students}
    with tempfile.TemporaryDirectory(prefix="attnlib-class-") as results:
        work = [(s, source, submitted / s / assignment / source.name, Path(results) / s)
                for s in students for source in sources
                if (submitted / s / assignment / source.name).is_file()]
        for student in set(students) - {s for s, *_ in work}:
            found = ", ".join(p.name for p in (submitted / student / assignment).glob("*.ipynb"))
            report[student].error = "no notebook was submitted" + (
                f" under the name {sources[0].name} (found {found})" if found else "")
        jobs_done = _grade_in_parallel(work, config, jobs)
        for student, result in jobs_done:
            _merge(report[student], result)
        steps = config.Autograde.get("autograde_preprocessors") or \
            Autograde.class_traits()["autograde_preprocessors"].default()
        config.Autograde.autograde_preprocessors = [  # the execution step is replayed
            ReplayExecution if _is_execution(step) else step for step in steps]
        config.ReplayExecution.results = results
        config.CourseDirectory.student_id_exclude = ",".join(
            s.id for s in report.values() if s.error)
        if any(not report[student].error for student, _ in jobs_done):
            nbgrader("autograde", assignment, config)
    _read_scores(config, assignment, report)
    missing = why_not(config.GradingExecute.get("sandbox", True))
    return ClassReport(assignment, list(report.values()), jobs, monotonic() - started,
                       sandbox=f"none ({missing})" if missing else "bubblewrap")


def _is_execution(step) -> bool:
    """Whether an autograde step (a class or its import name) runs the notebook."""
    return issubclass(import_item(step) if isinstance(step, str) else step, ExecutePreprocessor)


def _grade_in_parallel(work: list[tuple], config, jobs: int) -> list[tuple]:
    """Grade ``(student, source, submission, results folder)`` items, ``jobs`` at a time."""
    done = []
    spawn = multiprocessing.get_context("spawn")  # fresh workers: no copied kernel state
    with ProcessPoolExecutor(max_workers=jobs, mp_context=spawn) as pool:
        futures = {pool.submit(_grade_one, source, submission, folder, config): student
                   for student, source, submission, folder in work}
        for number, future in enumerate(as_completed(futures), start=1):
            done.append((futures[future], future.result()))
            print(f"[{number}/{len(futures)}] {futures[future]}", file=sys.stderr)
    return done


def _grade_one(source: Path, submission: Path, folder: Path, config) -> dict:
    """In a worker: grade one submitted notebook, keep the executed notebook in
    ``folder``; its notes, or why it could not be graded."""
    from .grade_one import autograde, read_notebook

    try:
        report = autograde(read_notebook(submission), source, submission.name, config)
    except CourseError as err:
        return {"error": " ".join(str(err).splitlines())}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(report.executed, folder / source.name)
    return {"notes": [n for n in report.notes if not n.startswith("graded without a sandbox")],
            "needs_manual_grading": report.needs_manual_grading}


def _merge(student: Student, result: dict) -> None:
    student.notes += result.get("notes", [])
    student.needs_manual_grading |= result.get("needs_manual_grading", False)
    student.error = student.error or result.get("error")


def _read_scores(config, assignment: str, report: dict[str, Student]) -> None:
    """The students' totals, from the course's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(config=config)
    with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
        for student in report.values():
            if student.error:
                continue
            try:
                submission = gb.find_submission(assignment, student.id)
            except MissingEntry:
                student.error = "not in the gradebook: see nbgrader's log"
                continue
            student.score, student.max_score = submission.score, submission.max_score
