"""Grading end to end: `python -m attnlib grade` on both editions and on broken input."""

import json
import re

import nbformat
import pytest

from tests.notebooks import learner_notebook

from attnlib.grading.course import chapter_ids, source_notebook
from attnlib.grading.grade_one import grade
from tests.grading.helpers import run_cli

CHAPTERS = chapter_ids()


def is_test_cell(cell):
    return bool(cell.metadata.get("nbgrader", {}).get("grade"))


def errors(cell):
    return [o for o in cell.get("outputs", []) if o.output_type == "error"]


def stderr(cell):
    return [o for o in cell.get("outputs", []) if o.get("name") == "stderr"]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_edition_full_marks_and_runs_clean(chapter):
    report = grade(source_notebook(chapter))
    assert report.max_score > 0 and report.score == report.max_score, report.table()
    notes = [n for n in report.notes if "without a sandbox" not in n]
    assert not report.needs_manual_grading and not notes, report.table()
    for cell in report.executed.cells:
        assert not errors(cell) and not stderr(cell), f"{chapter}: {cell.source[:200]}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_learner_edition_scores_zero_and_only_checks_fail(chapter):
    report = grade(learner_notebook(chapter))
    assert report.score == 0 and report.max_score > 0, report.table()
    for cell in report.executed.cells:
        if is_test_cell(cell):
            assert errors(cell), f"check {cell.metadata.nbgrader.grade_id} passed untouched"
        else:
            assert not errors(cell), f"{chapter}: a non-check cell failed: {cell.source[:200]}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_one_wrong_exercise_keeps_the_others(chapter, tmp_path):
    nb = nbformat.read(source_notebook(chapter), as_version=4)
    solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
                 and c.cell_type == "code"]
    broken = solutions[0]
    broken.source = re.sub(r"(?s)( *)### BEGIN SOLUTION.*?### END SOLUTION",
                           r'\1raise ValueError("wrong on purpose")', broken.source)
    path = tmp_path / f"{chapter}.ipynb"
    nbformat.write(nb, path)
    report = grade(path)
    scores = {e.id: (e.score, e.max_score) for e in report.exercises}
    wrong = [i for i, (s, m) in scores.items() if s < m]
    assert len(wrong) == 1, report.table()
    assert scores[wrong[0]][0] == 0
    assert report.score == report.max_score - scores[wrong[0]][1]


def test_cli_json_from_another_directory(tmp_path):
    chapter = CHAPTERS[0]
    run = run_cli("grade", source_notebook(chapter), "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert set(out) == {"notebook", "score", "max_score", "exercises", "sandbox", "notes",
                        "needs_manual_grading"}
    assert out["score"] == out["max_score"] > 0
    assert out["sandbox"] == "bubblewrap" or "without a sandbox" in out["notes"][0]
    assert out["needs_manual_grading"] is False
    assert all(set(e) == {"id", "score", "max_score", "message"} for e in out["exercises"])
    assert all(e["message"] is None for e in out["exercises"])  # full marks: nothing to explain
    assert sum(e["max_score"] for e in out["exercises"]) == out["max_score"]
    assert not list(tmp_path.iterdir()), "grading wrote into the current directory"


def test_cli_table(tmp_path):
    chapter = CHAPTERS[0]
    run = run_cli("grade", learner_notebook(chapter), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert re.search(r"^total\s+0 / \d+", run.stdout, re.M), run.stdout


@pytest.mark.parametrize("content, message", [
    (None, "no such notebook"),
    ("{not json", "not a valid notebook"),
    ('{"cells": 3}', "not a valid notebook"),
])
def test_cli_rejects_unreadable_notebooks(tmp_path, content, message):
    path = tmp_path / f"{CHAPTERS[0]}.ipynb"
    if content is not None:
        path.write_text(content)
    run = run_cli("grade", path, cwd=tmp_path)
    assert run.returncode == 1
    assert message in run.stderr and "Traceback" not in run.stderr + run.stdout


def test_cli_rejects_a_notebook_that_is_no_chapter(tmp_path):
    path = tmp_path / "my_notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    run = run_cli("grade", path, cwd=tmp_path)
    assert run.returncode == 1
    assert "not a chapter of the book" in run.stderr and "Traceback" not in run.stderr


def test_renamed_notebook_is_recognised_by_its_test_cells(tmp_path):
    path = tmp_path / "my copy.ipynb"
    path.write_bytes(source_notebook(CHAPTERS[0]).read_bytes())
    report = grade(path)
    assert report.chapter == CHAPTERS[0] and report.score == report.max_score
