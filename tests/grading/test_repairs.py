"""Edited metadata, types and ids of the instructor's cells: repaired and graded, never refused.

The fixtures (tests/grading/fixtures/quick/edits/*.ipynb) are right answers to the quick
assignment with one edit of the instructor's cells (their first cell says which); without
the repair, nbgrader refuses several of them ("Inconsistent checksums", a bare KeyError).
"""

import subprocess
import sys

import nbformat
import pytest

from attnlib.grading.course import course_config
from attnlib.grading.grade_one import autograde
from tests.grading.helpers import FIXTURES

QUICK = FIXTURES / "quick"


def grade_edit(name):
    nb = nbformat.read(QUICK / "edits" / f"{name}.ipynb", as_version=4)
    return autograde(nb, QUICK / "quick.ipynb", f"{name}.ipynb", course_config())


@pytest.mark.parametrize("fixture, notes", [
    ("test_cell_to_markdown", ["the cell add was made a markdown cell: it was put back as a "
                               "code cell"]),
    ("removed_grade_id", ["a cell carried nbgrader metadata with no id: it was graded as an "
                          "ordinary cell",
                          "the test cell mean was deleted: it was put back and graded"]),
    ("duplicated_id", ["2 cells carried the id add: the one most like the instructor's kept "
                       "it, the others were graded as ordinary cells"]),
    ("copied_test_cell", ["2 cells carried the id add: the one most like the instructor's "
                          "kept it, the others were graded as ordinary cells"]),
    ("changed_points", ["the points of add were changed: the original 2 count",
                        "the points of mean were changed: the original 3 count"]),
    ("test_cell_made_solution", ["the nbgrader metadata of add was edited (grade, solution, "
                                 "locked): the instructor's was put back",
                                 "the test cell add was edited: the original was graded"]),
    ("deleted_test_cell", ["the test cell mean was deleted: it was put back and graded"]),
    ("solution_to_markdown", ["the cell add_solution was made a markdown cell: it was put "
                              "back as a code cell"]),
    ("solution_without_metadata", ["the solution cell add_solution was deleted: it was put "
                                   "back unsolved"]),
])
def test_an_edited_instructors_cell_is_repaired_and_graded(fixture, notes):
    report = grade_edit(fixture)
    # the right answers score, the instructor's points count, each test ran as written
    assert {e.id: (e.score, e.max_score) for e in report.exercises} == {
        "add": (2, 2), "mean": (3, 3)}, report.table()
    for note in notes:
        assert note in report.notes, report.notes
    source = nbformat.read(QUICK / "quick.ipynb", as_version=4)
    tests = {c.metadata.nbgrader.grade_id: c.source for c in source.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    graded = {c.metadata.nbgrader.grade_id: c for c in report.executed.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    assert sorted(graded) == sorted(tests)
    for grade_id, cell in graded.items():
        assert cell.cell_type == "code" and tests[grade_id] in cell.source


def test_edited_metadata_is_graded_from_the_command_line(tmp_path):
    fixture = FIXTURES / "metadata_edits.ipynb"  # chapter 01: a test made markdown, an id removed
    run = subprocess.run([sys.executable, "-m", "attnlib", "grade", fixture], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "total             10 / 10" in run.stdout, run.stdout
    assert "the cell stable_softmax was made a markdown cell" in run.stdout


@pytest.mark.parametrize("content, reason", [
    ("", "Notebook does not appear to be JSON"),
    ('{"hello": 1}', "missing a key: cells"),
    ("[1, 2]", "is not a valid notebook"),
    ('{"nbformat": 99, "nbformat_minor": 0, "metadata": {}, "cells": []}',
     "Unsupported nbformat version 99"),
    ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", '
     '"metadata": {"nbgrader": {"grade": true}}}]}', "'source' is a required property"),
])
def test_what_is_not_a_notebook_is_refused_clearly(tmp_path, content, reason):
    path = tmp_path / "01_softmax.ipynb"
    path.write_text(content)
    run = subprocess.run([sys.executable, "-m", "attnlib", "grade", path], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "is not a valid notebook" in run.stderr and reason in run.stderr
    assert "Traceback" not in run.stdout + run.stderr and "Warning" not in run.stderr
