"""Autograde a whole class in parallel: ``python -m attnlib autograde <chapter>
[--jobs N | --scheduler ADDRESS] [--json]``.

nbgrader's ``autograde`` grades the students one after another, and parallel
runs of it would share one gradebook. Here the work is split in two:

1. Dask workers (:mod:`.distributed`: ``jobs`` local processes, or the workers
   of a cluster at ``scheduler``) grade the submissions, each in a throwaway
   course of its own, exactly as ``python -m attnlib grade`` does (sandbox,
   limits, tamper checks), and send back the executed notebooks.
2. One process, nbgrader's own ``autograde``, then writes every result into the
   course, one student after another under a progress bar of its own: its execution step, ``ReplayExecution``, hands over the notebook a
   worker executed instead of running it again. nbgrader itself fills the
   gradebook (SQLite, or a server database through ``CourseDirectory.db_url``),
   ``autograded/``, late penalties and the zero of a missing notebook, so
   ``nbgrader generate_feedback`` and ``nbgrader export`` work as after a plain
   ``nbgrader autograde``.

Each student is taken on their own: a submission that is, or contains, a
symbolic link is refused (never followed: it could point at ``solutions/`` or
``/etc/passwd``), as is a student folder nbgrader cannot address (a name that
starts with a dot, or holds a glob pattern's ``*?[]``); a ``timestamp.txt``
that cannot be read is left out, with a note. Step 2 reads a copy of the
submissions that remain, so what one student sent never costs another.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import monotonic

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
from nbgrader.converters import Autograde
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import parse_utc
from traitlets import Unicode
from traitlets.utils.importstring import import_item

from . import cgroup
from .course import CourseError, course_config, nbgrader
from .distributed import run_tasks
from .grade_one import autograde, machine_notes, read_notebook
from .limits import JOBS
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
    workers: str   # who graded: "2 local workers", or "the Dask cluster at <address>"
    seconds: float
    sandbox: str   # "bubblewrap", or why there was none

    @property
    def graded(self) -> int:
        return sum(s.score is not None for s in self.students)

    def to_json(self) -> dict:
        """``{"assignment", "graded", "students": [{"id", "score", "max_score", "notes",
        "needs_manual_grading", "error"}], "workers", "seconds", "sandbox"}``."""
        return {"assignment": self.assignment, "graded": self.graded,
                "students": [asdict(s) for s in self.students], "workers": self.workers,
                "seconds": round(self.seconds, 1), "sandbox": self.sandbox}

    def table(self) -> str:
        width = max([len("student"), *(len(s.id) for s in self.students)])
        rows = [f"{'student':<{width}}  points"]
        for s in self.students:
            points = "not graded" if s.score is None else f"{s.score:g} / {s.max_score:g}"
            flag = "  needs manual grading" if s.needs_manual_grading else ""
            rows.append(f"{s.id:<{width}}  {points}{flag}")
            rows += [f"{'':<{width}}    {line}" for line in ([s.error] if s.error else s.notes)]
        manual = [s.id for s in self.students if s.needs_manual_grading]
        rows.append(f"\n{self.assignment}: {self.graded} of {len(self.students)} students "
                    f"graded by {self.workers} in {self.seconds:.0f} s; sandbox: {self.sandbox}")
        if manual:
            rows.append(f"needs manual grading: {', '.join(manual)}")
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


def autograde_class(course: str | Path, assignment: str, jobs: int = JOBS,
                    scheduler: str | None = None, timeout: int | None = None,
                    memory: str | None = None, cpu_time: int | None = None) -> ClassReport:
    """Autograde every submission of ``assignment`` in the nbgrader course folder
    ``course`` (which holds ``nbgrader_config.py``): ``jobs`` at a time on this
    machine, or on the Dask cluster whose scheduler is at ``scheduler``."""
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
    students = sorted(p.name for p in submitted.iterdir() if (p / assignment).exists()
                      or (p / assignment).is_symlink()) if submitted.is_dir() else []
    if not students:
        raise CourseError(f"no submissions of {assignment!r} in {submitted}")
    report = {s: Student(s) for s in students}
    for student in report.values():
        student.error = _refusal(submitted / student.id, assignment)
    tasks = _tasks(assignment, sources, submitted, report, _worker_config(config))
    sandboxes = set()
    with tempfile.TemporaryDirectory(prefix="attnlib-class-") as work:
        results, staged = Path(work) / "results", Path(work) / "submitted"
        for (student, name), result in run_tasks(grade_submission, tasks, jobs=jobs,
                                                 scheduler=scheduler, description=assignment):
            if "executed" in result:
                (results / student).mkdir(parents=True, exist_ok=True)
                nbformat.write(result.pop("executed"), results / student / name)
                sandboxes.add(result.pop("sandbox"))
            _merge(report[student], result)
        steps = config.Autograde.get("autograde_preprocessors") or \
            Autograde.class_traits()["autograde_preprocessors"].default()
        config.Autograde.autograde_preprocessors = [  # the execution step is replayed
            ReplayExecution if _is_execution(step) else step for step in steps]
        config.ReplayExecution.results = str(results)
        config.CourseDirectory.submitted_directory = str(staged)
        graded = [student for student in report.values() if not student.error]
        for student in graded:
            _stage(submitted / student.id / assignment, staged / student.id / assignment,
                   student)
        failed = None
        if staged.is_dir():
            from tqdm import tqdm  # (with Dask, in the grade-cluster extra: run_tasks needed it)
            # the gradebook is written one student after the other: a second bar, counted by
            # nbgrader's post_convert_hook unless the course's configuration has its own
            with tqdm(total=len(graded), desc=f"{assignment}: gradebook", unit="student",
                      file=sys.stderr, dynamic_ncols=True,
                      disable="post_convert_hook" in config.Autograde) as bar:
                if not bar.disable:
                    config.Autograde.post_convert_hook = lambda **_: bar.update()
                try:
                    nbgrader("autograde", assignment, config)
                except CourseError as err:  # the others were graded: whose failed is read below
                    failed = " ".join(str(err).splitlines())
    _read_scores(config, assignment, report, failed)
    if not sandboxes:  # nothing was graded: say what this machine would have done
        missing = why_not(config.GradingExecute.get("sandbox", True))
        sandboxes.add(f"none ({missing})" if missing else "bubblewrap")
    workers = f"the Dask cluster at {scheduler}" if scheduler else \
        f"{jobs} local worker{'s' if jobs > 1 else ''}"
    return ClassReport(assignment, list(report.values()), workers, monotonic() - started,
                       sandbox="; ".join(sorted(sandboxes)))


def _refusal(folder: Path, assignment: str) -> str | None:
    """Why the submission of the student whose folder is ``folder``
    (``submitted/<student>``) is refused, or None."""
    if folder.name.startswith(".") or set("*?[]") & set(folder.name):
        return (f"the student id {folder.name!r} cannot be graded: nbgrader skips a folder "
                "whose name starts with a dot and reads *?[] as a pattern; rename the folder")
    for path in (folder, folder / assignment):
        if path.is_symlink():
            return (f"{path.relative_to(folder.parent)} is a symbolic link: refused (a "
                    "submission is graded from its own files only, never through a link)")
    for where, dirs, files in os.walk(folder / assignment):
        for name in sorted(dirs + files):
            if (Path(where) / name).is_symlink():
                inside = (Path(where) / name).relative_to(folder.parent)
                return (f"the submission holds a symbolic link, {inside}: refused (a "
                        "submission is graded from its own files only, never through a link)")
    return None


def _stage(folder: Path, copy_to: Path, student: Student) -> None:
    """Copy the submission ``folder`` of ``student`` (which holds no links) to
    ``copy_to``, for nbgrader; a ``timestamp.txt`` it cannot read is left out, with a
    note."""
    stamp = folder / "timestamp.txt"
    try:
        if stamp.exists():
            parse_utc(stamp.read_text().strip())
        broken = None
    except (OSError, ValueError, OverflowError) as err:
        broken = " ".join(str(err).split()) or type(err).__name__
        student.notes.append(f"its timestamp.txt could not be read ({broken}): graded "
                             "without it, so no late penalty was applied")
    shutil.copytree(folder, copy_to, ignore=lambda where, names: ["timestamp.txt"]
                    if broken and Path(where) == folder else [])


def _tasks(assignment: str, sources: list[Path], submitted: Path,
           report: dict[str, Student], config) -> dict[tuple[str, str], tuple]:
    """The grading tasks ``(student, notebook name): arguments of grade_submission``
    of the students not refused already; a student whose notebook is missing or
    unreadable gets an error instead."""
    tasks, originals = {}, {source: read_notebook(source) for source in sources}
    for student in report:
        if report[student].error:
            continue
        for source in sources:
            path = submitted / student / assignment / source.name
            if path.is_file():
                try:
                    tasks[student, source.name] = (read_notebook(path), originals[source],
                                                   f"{assignment}/{source.name}", config)
                except CourseError as err:
                    report[student].error = " ".join(str(err).splitlines())
        if not report[student].error and not any((student, s.name) in tasks for s in sources):
            found = ", ".join(p.name for p in (submitted / student / assignment).glob("*.ipynb"))
            report[student].error = "no notebook was submitted" + (
                f" under the name {sources[0].name} (found {found})" if found else "")
    return {key: args for key, args in tasks.items() if not report[key[0]].error}


def _worker_config(config):
    """The settings a worker grades with: the course's, without its folders and
    database (a worker grades in a throwaway course; the database URL may hold
    a password)."""
    config = copy.deepcopy(config)
    config.pop("CourseDirectory", None)
    return config


def _is_execution(step) -> bool:
    """Whether an autograde step (a class or its import name) runs the notebook."""
    return issubclass(import_item(step) if isinstance(step, str) else step, ExecutePreprocessor)


def grade_submission(nb: nbformat.NotebookNode, source: nbformat.NotebookNode, path: str,
                     config) -> dict:
    """On a worker: grade the submitted notebook ``nb`` against the source notebook
    ``source`` found at ``path`` (``<assignment>/<notebook>.ipynb``) with the nbgrader
    ``config``. Returns ``{"executed": notebook, "sandbox", "notes",
    "needs_manual_grading"}``, or ``{"error": "<why it could not be graded>"}``."""
    with tempfile.TemporaryDirectory(prefix="attnlib-source-") as tmp:
        source_path = Path(tmp) / path
        source_path.parent.mkdir()
        nbformat.write(source, source_path)
        try:
            report = autograde(nb, source_path, source_path.name, config)
        except CourseError as err:
            return {"error": " ".join(str(err).splitlines())}
    missing = why_not(config.GradingExecute.get("sandbox", True))
    per_process = " (memory and processes limited per process)" if cgroup.unavailable() else ""
    return {"executed": report.executed,
            "sandbox": (f"none ({missing})" if missing else "bubblewrap") + per_process,
            "notes": [n for n in report.notes if n not in machine_notes(config)],
            "needs_manual_grading": report.needs_manual_grading}


def _merge(student: Student, result: dict) -> None:
    student.notes += result.get("notes", [])
    student.needs_manual_grading |= result.get("needs_manual_grading", False)
    student.error = student.error or result.get("error")


def _read_scores(config, assignment: str, report: dict[str, Student],
                 failed: str | None = None) -> None:
    """The students' totals, from the course's gradebook; ``failed``: what nbgrader
    said when it could not grade some of them."""
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
                student.error = f"nbgrader could not grade it: {failed}" if failed else \
                    "not in the gradebook: see nbgrader's log"
                continue
            student.score, student.max_score = submission.score, submission.max_score
