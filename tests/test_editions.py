"""One source, two editions: chapters/ is exactly what nbgrader makes of solutions/."""

import json

import nbformat
import pytest
from tests.notebooks import learner_notebook, secret_lines

from attnlib.grading.course import ROOT, chapter_ids, release, source_notebook
from attnlib.grading.grade_one import graded_cell_ids

CHAPTERS = chapter_ids()

@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    release(CHAPTERS, release_dir=out)
    return out


def test_every_chapter_has_a_learner_edition():
    assert CHAPTERS, "no chapter sources found in solutions/"
    released = sorted(p.parent.name for p in (ROOT / "chapters").glob("*/*.ipynb"))
    assert released == CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_drift(chapter, fresh_release):
    fresh = json.loads((fresh_release / chapter / f"{chapter}.ipynb").read_text())
    committed = json.loads(learner_notebook(chapter).read_text())
    assert committed == fresh, (f"chapters/{chapter} differs from what nbgrader generates from "
                                f"solutions/{chapter}: run `make chapters`")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_solution_or_hidden_test_leaks(chapter):
    learner = learner_notebook(chapter).read_text()
    assert "BEGIN SOLUTION" not in learner and "BEGIN HIDDEN TESTS" not in learner
    secret = secret_lines(chapter)
    assert secret, "found no solution lines to look for"
    learner_text = "\n".join(c.source for c in nbformat.reads(learner, as_version=4).cells)
    leaked = sorted(line for line in secret if line in learner_text)
    assert not leaked, f"solution or hidden-test lines in chapters/{chapter}: {leaked[:5]}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_is_a_graded_notebook(chapter):
    nb = nbformat.read(source_notebook(chapter), as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(graded_cell_ids(nb)) >= 4, "a chapter has at least 4 graded exercises"
    for cell in tests:
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{cell.metadata.nbgrader.grade_id}: no hidden tests"
        # the website executes the learner edition, where these checks fail by design
        assert {"raises-exception", "remove-output"} <= set(cell.metadata.get("tags", []))
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the source notebook is committed without outputs"
