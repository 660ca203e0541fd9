"""Feedback keeps the hidden tests hidden: ``nbgrader generate_feedback`` on an autograded
class, every feedback file scanned, and the nbgrader_config.py option that shows them."""

import nbformat
from bs4 import BeautifulSoup

from attnlib.grading.feedback import HideHiddenTests

from tests.grading.classes import HIDDEN_FAILURES, QUICK, hidden_lines, quick_class, run


def feedback_texts(course) -> dict[str, str]:
    """The text a learner reads in each feedback file, by student."""
    return {path.parts[-3]: BeautifulSoup(path.read_text(), "html.parser").get_text()
            for path in sorted((course / "feedback").glob("*/quick/quick.html"))}


def test_feedback_shows_the_messages_of_hidden_checks_but_not_their_code(tmp_path):
    course = tmp_path / "course"
    roster = quick_class(course, students=4)
    run("attnlib", "autograde", "quick", "--jobs", "2", cwd=course)
    hidden = hidden_lines(QUICK / "quick.ipynb")
    assert len(hidden) == 4

    run("nbgrader", "generate_feedback", "quick", cwd=course)
    texts = feedback_texts(course)
    assert sorted(texts) == sorted(roster)
    for student, text in texts.items():
        assert not [line for line in hidden if line in text], student
        assert "Traceback" not in text, student
        assert "def add(a, b):" in text, student  # the learner's own code is there
        fixture = roster[student]
        for failing, message in HIDDEN_FAILURES.items():
            assert (message in text) == (fixture == failing), (student, message)

    # the option in nbgrader_config.py that shows them: the same scan finds every line
    with open(course / "nbgrader_config.py", "a") as config:
        config.write("\nc.HideHiddenTests.enabled = False\n")
    run("nbgrader", "generate_feedback", "quick", "--force", cwd=course)
    for student, text in feedback_texts(course).items():
        assert hidden <= {line for line in hidden if line in text}, student


def test_only_test_cells_are_cleared():
    """A learner's cell that happens to hold the delimiter is shown as written (nbgrader's
    own step would stop the feedback: no end delimiter, or not a grade cell); a test cell
    loses its hidden lines, and its error keeps only the name and message."""
    nb = nbformat.read(QUICK / "quick.ipynb", as_version=4)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source += "\n# my notes: ### BEGIN HIDDEN TESTS would be cheating"
    written = answer.source
    test = next(c for c in nb.cells if "BEGIN HIDDEN TESTS" in c.source
                and c.metadata.get("nbgrader", {}).get("grade"))
    test.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="no",
                                           traceback=[test.source])]
    HideHiddenTests().preprocess(nb, {})
    assert answer.source == written
    assert "HIDDEN" not in test.source
    assert test.outputs[0].traceback == ["AssertionError: no"]
