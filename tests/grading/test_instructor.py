"""The instructor's workflow end to end, with the real nbgrader commands and this repository's
nbgrader_config.py, on a copy of the course with a class of generated students:

release (generate_assignment), collect (submitted/<student>/...), autograde the class in
parallel (python -m attnlib autograde --jobs 2), generate_feedback, export grades.csv.
The gradebook lives where CourseDirectory.db_url says, outside the course folder: once a
SQLite file, once a real PostgreSQL server started for the test.
"""

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from nbgrader.api import Gradebook

from attnlib.grading.course import ROOT, source_notebook
from tests.grading.classes import QUICK, hidden_lines, quick_class, run
from tests.grading.postgres import postgres_server
from tests.grading.helpers import FIXTURES

CHAPTER = "01_softmax"
NBGRADER_OUTPUTS = ("gradebook.db", "submitted", "autograded", "feedback", "grades.csv")
PRESENT_BEFORE = {name for name in NBGRADER_OUTPUTS if (ROOT / name).exists()}

# student -> (fixture submitted, points expected); None: not graded
CLASS = {
    **{f"right{i}": ("right", 10) for i in range(1, 5)},
    **{f"partial{i}": ("partial", 5) for i in range(1, 5)},
    **{f"wrong{i}": ("wrong", 0) for i in range(1, 4)},
    "cheat_checker": ("cheat_assert_allclose", 0),
    "cheat_reference": ("cheat_reference", 0),
    "cheat_while_tested": ("cheat_during_test", 0),
    "crash_exit": ("os_exit", 7),
    "crash_killed": ("killed_kernel", 8),
    "reads_solutions": ("read_secrets", 8),
    "writes_gradebook": ("write_gradebook", 10),
    "deletes_a_test": ("deleted_test_cell", 10),
    "sends_broken_json": ("malformed", None),
    "sends_nothing": (None, None),
}
FLAGGED = {"cheat_checker", "cheat_reference", "cheat_while_tested", "crash_exit", "crash_killed"}


def grades_csv(course):
    with open(course / "grades.csv") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


@contextmanager
def sqlite_file(folder: Path):
    """A gradebook in a SQLite file of ``folder``; yields its URL."""
    folder.mkdir()
    yield f"sqlite:///{folder / 'gradebook.db'}"
    db = sqlite3.connect(folder / "gradebook.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_class_from_release_to_grades_csv(tmp_path, database):
    """One test per database, so that the class is graded once each (the slow part)."""
    with (sqlite_file(tmp_path / "server") if database == "sqlite" else postgres_server()) as url:
        a_class_from_release_to_grades_csv(tmp_path / "course", url)


def a_class_from_release_to_grades_csv(course: Path, db_url: str):
    shutil.copytree(ROOT / "solutions" / CHAPTER, course / "solutions" / CHAPTER)
    (course / "nbgrader_config.py").write_text(
        (ROOT / "nbgrader_config.py").read_text()
        + f"\nc.CourseDirectory.db_url = {db_url!r}\n")
    assert len(CLASS) >= 20

    # 1. release
    run("nbgrader", "generate_assignment", CHAPTER, cwd=course)
    released = (course / "chapters" / CHAPTER / f"{CHAPTER}.ipynb").read_text()
    assert "### BEGIN HIDDEN TESTS" not in released and "### BEGIN SOLUTION" not in released
    assert "raise NotImplementedError" in released

    # 2. collect
    for student, (fixture, _) in CLASS.items():
        folder = course / "submitted" / student / CHAPTER
        folder.mkdir(parents=True)
        if fixture:
            shutil.copy(FIXTURES / f"{fixture}.ipynb", folder / f"{CHAPTER}.ipynb")

    # 3. autograde, in parallel: the report says who needs a person, and who was not graded
    report = run("attnlib", "autograde", CHAPTER, "--jobs", "2", cwd=course).stdout
    line = {ln.split()[0]: ln for ln in report.splitlines() if ln and not ln.startswith(" ")}
    for student, (_, points) in CLASS.items():
        if points is None:
            assert "not graded" in line[student], report
        else:
            assert f"{points} / 10" in line[student], report
            assert ("needs manual grading" in line[student]) == (student in FLAGGED), report
    assert "malformed JSON" in report and "no notebook was submitted" in report
    graded = sorted(s for s, (_, points) in CLASS.items() if points is not None)
    assert f"{len(graded)} of {len(CLASS)} students graded" in report

    # the gradebook is where db_url says, holds one submission per graded student,
    # and was untouched by the submissions
    assert not (course / "gradebook.db").exists()
    with Gradebook(db_url) as gb:
        submissions = gb.assignment_submissions(CHAPTER)
        assert sorted(s.student_id for s in submissions) == graded
        assert {s.student_id: s.score for s in submissions} == {
            student: CLASS[student][1] for student in graded}
        assert not [g for s in submissions for nb in s.notebooks for g in nb.grades
                    if g.manual_score is not None]

    # 4. feedback: one per graded student, saying why a cheater or a crash lost points
    run("nbgrader", "generate_feedback", CHAPTER, cwd=course)
    feedback = course / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == graded
    html = (feedback / "cheat_checker" / CHAPTER / f"{CHAPTER}.html").read_text()
    assert "TamperingDetected" in html and "numpy.testing.assert_allclose" in html
    assert "KernelDied" in (feedback / "crash_exit" / CHAPTER / f"{CHAPTER}.html").read_text()
    hidden = hidden_lines(source_notebook(CHAPTER))
    for page in feedback.glob(f"*/{CHAPTER}/{CHAPTER}.html"):
        text = BeautifulSoup(page.read_text(), "html.parser").get_text()
        assert not [line for line in hidden if line in text], page

    # 5. export
    run("nbgrader", "export", cwd=course)
    rows = grades_csv(course)
    assert sorted(rows) == graded
    for student in graded:
        assert float(rows[student]["score"]) == CLASS[student][1], student
        assert float(rows[student]["max_score"]) == 10

    # plain `nbgrader autograde` runs a submission with the same sandbox and checks
    run("nbgrader", "autograde", CHAPTER, "--student=cheat_checker", "--force", cwd=course)
    run("nbgrader", "export", cwd=course)
    assert float(grades_csv(course)["cheat_checker"]["score"]) == 0
    autograded = course / "autograded" / "cheat_checker" / CHAPTER / f"{CHAPTER}.ipynb"
    assert "TamperingDetected" in autograded.read_text()

    # and the repository itself was left alone
    assert {name for name in NBGRADER_OUTPUTS if (ROOT / name).exists()} == PRESENT_BEFORE


def test_the_class_command_refuses_bad_input_clearly(tmp_path):
    def attempt(*args):
        done = subprocess.run([sys.executable, "-m", "attnlib", "autograde", *args],
                              cwd=tmp_path, capture_output=True, text=True)
        assert "Traceback" not in done.stdout + done.stderr
        return done

    done = attempt(CHAPTER)
    assert done.returncode == 1 and "is not an nbgrader course" in done.stderr
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    done = attempt("no_such_chapter")
    assert done.returncode == 1 and "no source notebooks for 'no_such_chapter'" in done.stderr
    done = attempt(CHAPTER, "--jobs", "0")
    assert done.returncode == 2 and "expected a positive whole number" in done.stderr


def test_odd_submissions_cost_only_their_own_student(tmp_path):
    """Links, odd student ids and broken timestamps: each refused or noted on its own,
    the rest of the class graded (the quick assignment, two workers)."""
    course = tmp_path / "course"
    course.mkdir()
    quick_class(course, 2)  # student000 (right) and student001 (add_negatives)
    submitted, right = course / "submitted", QUICK / "submissions" / "right.ipynb"
    graded = {"student000": 5, "student001": 3}
    for odd in ("a,b", "with space", "ünïcødé", "-dash", "x..y"):
        (submitted / odd / "quick").mkdir(parents=True)
        shutil.copy(right, submitted / odd / "quick" / "quick.ipynb")
        graded[odd] = 5
    refused = {}
    for odd in (".hidden", "..x", "glob[1]"):
        (submitted / odd / "quick").mkdir(parents=True)
        shutil.copy(right, submitted / odd / "quick" / "quick.ipynb")
        refused[odd] = "cannot be graded: nbgrader skips a folder"
    # a notebook that links to the instructor's solutions, a folder that links elsewhere,
    # and a submission that holds a link to a system file
    (submitted / "links_solutions" / "quick").mkdir(parents=True)
    (submitted / "links_solutions" / "quick" / "quick.ipynb").symlink_to(
        course / "solutions" / "quick" / "quick.ipynb")
    refused["links_solutions"] = "links_solutions/quick/quick.ipynb"
    (submitted / "links_folder").mkdir()
    (submitted / "links_folder" / "quick").symlink_to(submitted / "student000" / "quick")
    refused["links_folder"] = "links_folder/quick is a symbolic link: refused"
    (submitted / "holds_a_link" / "quick").mkdir(parents=True)
    shutil.copy(right, submitted / "holds_a_link" / "quick" / "quick.ipynb")
    (submitted / "holds_a_link" / "quick" / "data.txt").symlink_to("/etc/passwd")
    refused["holds_a_link"] = "holds a symbolic link, holds_a_link/quick/data.txt: refused"
    # timestamps: a valid one, and garbage
    (submitted / "student000" / "quick" / "timestamp.txt").write_text("2026-01-05 10:00:00 UTC")
    (submitted / "student001" / "quick" / "timestamp.txt").write_text("the day before the deadline")

    report = json.loads(run("attnlib", "autograde", "quick", "--json", cwd=course).stdout)
    students = {s["id"]: s for s in report["students"]}
    assert sorted(students) == sorted(graded | refused)
    for student, points in graded.items():
        assert students[student]["score"] == points, students[student]
        assert students[student]["error"] is None
    for student, reason in refused.items():
        assert students[student]["score"] is None and reason in students[student]["error"], \
            students[student]
    assert report["graded"] == len(graded)
    assert not students["student000"]["notes"]
    assert any("its timestamp.txt could not be read" in n for n in students["student001"]["notes"])
    # nothing behind a link reached the course's autograded notebooks
    autograded = course / "autograded"
    assert sorted(p.name for p in autograded.iterdir()) == sorted(graded)
    assert not list(autograded.rglob("data.txt"))
