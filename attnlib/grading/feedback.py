"""Feedback that keeps the hidden tests hidden: a step of ``nbgrader generate_feedback``.

The autograded notebook that ``nbgrader generate_feedback`` turns into HTML
holds every test cell in full, hidden tests included, and the traceback of a
failed hidden check quotes their code. ``HideHiddenTests`` runs before the HTML
is written (``GenerateFeedback.preprocessors`` in ``nbgrader_config.py``):

- nbgrader's own ``ClearHiddenTests`` removes each ``### BEGIN/END HIDDEN TESTS``
  region from the test cells, as ``generate_assignment`` does for the learner
  edition;
- an error in such a cell keeps its name and message (``AssertionError:
  mean([1, 2]) should be 1.5``) and loses its traceback, the part that quotes
  the code.

The learner still sees their code, every check's points and, in words, why a
hidden check failed. Only the autograder's test cells are touched: a learner's
own cell is shown as written, even one that holds the delimiters.
``c.HideHiddenTests.enabled = False`` shows everything.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests


class HideHiddenTests(ClearHiddenTests):
    """nbgrader's ``ClearHiddenTests`` for feedback: also cuts the tracebacks of
    the cells it cleared down to ``<error name>: <message>``."""

    def preprocess_cell(self, cell, resources, cell_index):
        """``cell``: a notebook cell, returned without its hidden tests and their tracebacks."""
        if not utils.is_grade(cell) or utils.is_solution(cell):
            return cell, resources  # not a test cell: the learner's own, as they wrote it
        hidden = self.begin_test_delimeter in cell.source
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        for output in cell.get("outputs", []) if hidden else []:
            if output.output_type == "error":
                output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources
