"""A class of 20 graded on a real Dask cluster (a scheduler and 2 worker processes started
here, as on several machines) gets the grades a serial ``nbgrader autograde`` gives."""

import json
import shutil

import pytest
from nbgrader.api import Gradebook

from attnlib.grading import distributed
from attnlib.grading.course import ROOT, CourseError
from tests.grading.classes import QUICK, QUICK_ANSWERS, dask_cluster, quick_class, run


def cell_grades(course) -> dict[tuple[str, str], tuple[float, float]]:
    """``(student, test cell): (score, max score)`` from the course's gradebook."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {(submission.student_id, grade.name): (grade.score, grade.max_score)
                for submission in gb.assignment_submissions("quick")
                for notebook in submission.notebooks for grade in notebook.grades}


def test_a_class_graded_on_a_dask_cluster_matches_serial_nbgrader(tmp_path):
    roster = quick_class(tmp_path / "dask", students=20)
    quick_class(tmp_path / "serial", students=20)

    with dask_cluster(tmp_path, workers=2) as address:
        done = run("attnlib", "autograde", "quick", "--scheduler", address, "--json",
                   cwd=tmp_path / "dask")
    summary = json.loads(done.stdout)
    assert "quick: 100%" in done.stderr and "20/20" in done.stderr  # the workers' progress bar
    assert "quick: gradebook: 100%" in done.stderr  # and the gradebook's
    assert summary["graded"] == 20 and summary["sandbox"] == "bubblewrap"
    assert summary["workers"] == f"the Dask cluster at {address}"
    assert {s["id"]: s["score"] for s in summary["students"]} == {
        student: QUICK_ANSWERS[fixture] for student, fixture in roster.items()}

    run("nbgrader", "autograde", "quick", cwd=tmp_path / "serial")
    serial = cell_grades(tmp_path / "serial")
    assert len(serial) == 40
    assert cell_grades(tmp_path / "dask") == serial


@pytest.mark.parametrize("args, message", [
    (["--scheduler", "nowhere"], "--scheduler: cannot reach a Dask scheduler at 'nowhere'"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2"],
     "argument --jobs: not allowed with argument --scheduler"),
])
def test_a_bad_scheduler_is_refused_clearly(tmp_path, args, message):
    (tmp_path / "solutions" / "quick").mkdir(parents=True)  # a course, unreleased
    shutil.copy(QUICK / "quick.ipynb", tmp_path / "solutions" / "quick")
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "submitted" / "someone" / "quick").mkdir(parents=True)
    shutil.copy(QUICK / "submissions" / "right.ipynb",
                tmp_path / "submitted" / "someone" / "quick" / "quick.ipynb")
    done = run("attnlib", "autograde", "quick", *args, cwd=tmp_path, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_scheduler_without_workers_is_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 3)
    with dask_cluster(tmp_path, workers=0) as address:
        with pytest.raises(CourseError, match=rf"^--scheduler: the Dask scheduler at '{address}' "
                                              r"has no workers after 3 s: start them with"):
            list(distributed.run_tasks(print, {"task": ("nothing",)}, jobs=1, scheduler=address))
