"""Put back the solution cells a submission deleted, before nbgrader puts back its tests.

nbgrader restores a deleted test cell after the cell that precedes it in the
source (``OverwriteCells.add_missing_cells``), usually the exercise's solution
cell; when a learner deleted the whole exercise, that cell is gone too and
nbgrader fails on the notebook. ``RestoreSolutionCells`` runs first in
``nbgrader autograde`` (see ``nbgrader_config.py``) and puts back each missing
solution cell as it was released: unsolved, so its test scores 0.
"""

from __future__ import annotations

import nbformat
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


class RestoreSolutionCells(NbGraderPreprocessor):
    """Insert the released version of every solution cell missing from a submission."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(info["notebook"], info["assignment"])
            graded = {cell.name for cell in source.grade_cells}
            missing = {cell.name for cell in source.solution_cells} - graded \
                - {_grade_id(cell) for cell in nb.cells}
            position = 0
            for cell in source.source_cells:  # in the source's order
                ids = [_grade_id(c) for c in nb.cells]
                if cell.name in ids:
                    position = ids.index(cell.name) + 1
                elif cell.name in missing:
                    nb.cells.insert(position, nbformat.v4.new_code_cell(cell.source, metadata={
                        "nbgrader": {"grade": False, "grade_id": cell.name, "locked": False,
                                     "schema_version": 3, "solution": True, "task": False}}))
                    position += 1
                    self.log.warning("Missing solution cell %s: put back unsolved", cell.name)
        return nb, resources
