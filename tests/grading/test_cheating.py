"""Cheating inside the kernel: tampering with the checks scores 0, with a note saying what changed.

Each fixture (tests/grading/fixtures/cheat_*.ipynb) is a chapter 01 submission whose
answers are all wrong, plus one way of making the tests pass anyway; its first cell says
which. Without the tamper checks of attnlib.grading.tamper_checks, several of them score 10 / 10.
"""


from attnlib.grading.limits import Outcome
from attnlib.grading.grade_one import grade
from tests.grading.helpers import FIXTURES


def assert_caught(name, *changed):
    report = grade(FIXTURES / f"{name}.ipynb")
    assert report.chapter == "01_softmax"
    assert report.score == 0 and report.max_score == 10, report.table()
    assert report.needs_manual_grading
    notes = " ".join(report.notes)
    assert "tampered with the checks" in notes, report.table()
    for what in changed:
        assert what in notes, f"{what} not named in: {notes}"
    tests = [c for c in report.executed.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests and all(any(o.get("ename") == Outcome.TAMPERING.value for o in c.outputs) for c in tests)


def test_rebinding_np_testing_assert_allclose():
    assert_caught("cheat_assert_allclose", "numpy.testing.assert_allclose was changed")


def test_rebinding_allclose_isclose_and_assert_close():
    assert_caught("cheat_comparisons", "numpy.allclose", "torch.allclose", "math.isclose",
                  "torch.testing.assert_close")


def test_silencing_ipython_showtraceback():
    assert_caught("cheat_showtraceback", "shell.showtraceback was added",
                  "ZMQInteractiveShell._showtraceback was changed")


def test_swapping_a_checker_only_while_a_test_runs():
    # the fake puts the original back when called: only the watch during the test sees it
    assert_caught("cheat_during_test",
                  "numpy.testing.assert_allclose was replaced (during the test stable_softmax)")


def test_replacing_the_reference_implementation():
    assert_caught("cheat_reference", "attnlib.softmax", "attnlib.log_softmax")


def test_an_input_transformer_that_empties_the_tests():
    assert_caught("cheat_transformer", "shell.input_transformers_post was changed")
