"""Edited, broken and unusual submissions: graded on the instructor's terms, or refused clearly.

The fixtures (tests/grading/fixtures/*.ipynb) are chapter 01 submissions; their first
cell says what is special about each. None is named 01_softmax.ipynb: they are matched
to the chapter by their test cells, as a renamed copy is.
"""


import pytest

from attnlib.grading.course import course_config
from attnlib.grading.grade_one import grade, machine_notes
from tests.grading.helpers import FIXTURES, run_cli


def test_a_right_submission_scores_full_marks_without_notes():
    report = grade(FIXTURES / "right.ipynb")
    assert report.chapter == "01_softmax"
    assert report.score == report.max_score == 10, report.table()
    assert not report.needs_manual_grading
    assert report.notes == machine_notes(course_config()), report.notes


def test_an_exercise_that_lost_points_says_why_in_words():
    report = grade(FIXTURES / "partial.ipynb")
    messages = {e.id: e.message for e in report.exercises}
    assert messages["stable_softmax"] is None and messages["masked_softmax"] is None
    lost = messages["log_softmax_lse"]
    assert lost.startswith("AssertionError: Not equal to tolerance"), lost
    assert "log_softmax_lse([2, 3, 1]) differs from attnlib.log_softmax" in lost
    assert "Traceback" not in lost and "\x1b[" not in lost and len(lost) <= 300
    assert "log_softmax_lse([2, 3, 1]) differs" in report.table()


def test_a_deleted_test_cell_is_put_back_and_graded():
    report = grade(FIXTURES / "deleted_test_cell.ipynb")
    assert report.score == report.max_score == 10, report.table()
    assert "the test cell log_softmax_lse was deleted: it was put back and graded" in report.notes


def test_a_deleted_exercise_is_put_back_unsolved_and_graded():
    # nbgrader alone cannot place a test cell whose solution cell is gone too
    report = grade(FIXTURES / "deleted_exercise.ipynb")
    assert {e.id: e.score for e in report.exercises} == {
        "stable_softmax": 2, "log_softmax_lse": 0, "masked_softmax": 3, "softmax_jacobian": 3}
    assert report.notes == [
        "the solution cell log_softmax_lse_solution was deleted: it was put back unsolved",
        "the test cell log_softmax_lse was deleted: it was put back and graded"]


def test_an_edited_test_cell_and_edited_points_are_restored():
    report = grade(FIXTURES / "edited_test_cell.ipynb")
    scores = {e.id: (e.score, e.max_score) for e in report.exercises}
    assert scores["stable_softmax"] == (0, 2), report.table()  # its `pass` test was replaced
    assert scores["log_softmax_lse"] == (2, 2)
    assert report.max_score == 10
    assert "the test cell stable_softmax was edited: the original was graded" in report.notes
    assert "the points of stable_softmax were changed: the original 2 count" in report.notes
    assert "the points of log_softmax_lse were changed: the original 2 count" in report.notes


def test_a_notebook_naming_another_kernel_is_graded_with_python():
    report = grade(FIXTURES / "wrong_kernel.ipynb")
    assert report.score == report.max_score == 10, report.table()
    assert report.executed.metadata.kernelspec.name == "python3"


def test_warnings_on_stderr_from_a_right_solution_cost_no_points():
    report = grade(FIXTURES / "stderr_warnings.ipynb")
    assert report.score == report.max_score == 10, report.table()
    tests = [c for c in report.executed.cells if c.metadata.get("nbgrader", {}).get("grade")]
    text = "".join(o.get("text", "") for c in tests for o in c.outputs)
    for shown in ("overflow encountered in exp", "debugging output", "UserWarning",
                  "DeprecationWarning"):
        assert shown in text  # kept for the learner to read ...
    assert not [o for c in tests for o in c.outputs if o.get("name") == "stderr"]  # ... not failed
    assert sum("wrote to stderr" in n for n in report.notes) == 4


def test_malformed_json_is_refused_clearly(tmp_path):
    run = run_cli("grade", FIXTURES / "malformed.ipynb", cwd=tmp_path)
    assert run.returncode == 1
    assert "is not a valid notebook (malformed JSON?)" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_a_missing_notebook_is_refused_clearly(tmp_path):
    run = run_cli("grade", tmp_path / "01_softmax.ipynb", "--json", cwd=tmp_path)
    assert run.returncode == 1 and "no such notebook" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


@pytest.mark.parametrize("option, message", [
    ("--memory=lots", "expected a size such as 4GiB"),
    ("--timeout=0", "expected a positive whole number"),
    ("--cpu-time=ten", "expected a positive whole number"),
])
def test_bad_limits_are_refused_clearly(tmp_path, option, message):
    run = run_cli("grade", FIXTURES / "right.ipynb", option, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
