"""Put back the instructor's cells in a submission, whatever the learner did to them.

Two steps of ``nbgrader autograde`` (see ``nbgrader_config.py``), before nbgrader's
own ``OverwriteCells`` puts back the source of every locked and graded cell and,
with ``add_missing_cells``, the test cells that are missing:

- ``RepairCells`` runs first. Each id of the instructor's cells is given to one
  cell of the submission, the one most like the instructor's (a duplicate keeps
  its code but loses the id, as does a cell with an id the instructor never
  made), and that cell gets back the instructor's type (code or markdown) and
  nbgrader metadata (test or solution, locked, points). Without this, nbgrader
  refuses such a notebook ("Inconsistent checksums", a bare ``KeyError``).
- ``RestoreSolutionCells`` puts back each missing solution cell as it was
  released: unsolved, so its test scores 0. nbgrader restores a deleted test
  cell after the cell that precedes it in the source, usually the exercise's
  solution cell; when a learner deleted the whole exercise, that cell is gone
  too and nbgrader fails on the notebook.

What was repaired is listed in the notebook's metadata (:data:`REPAIRS_KEY`),
which the report reads.
"""

from __future__ import annotations

from collections import defaultdict

import nbformat
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

REPAIRS_KEY = "attnlib_repairs"  # notebook metadata: what RepairCells put back, in words


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _likeness(cell, original, solution: bool) -> tuple[bool, bool]:
    """How much ``cell`` looks like the instructor's cell ``original`` (a gradebook
    SourceCell, a solution cell if ``solution``): greater is more alike."""
    claims_solution = bool(cell.metadata["nbgrader"].get("solution"))
    same = claims_solution if solution else cell.source.strip() == original.source.strip()
    return same, cell.cell_type == original.cell_type


class RepairCells(NbGraderPreprocessor):
    """Give every instructor's id to one cell, with the instructor's type and metadata."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            source = gb.find_notebook(info["notebook"], info["assignment"])
            originals = {cell.name: cell for cell in source.source_cells}
            points = {cell.name: cell.max_score for cell in source.grade_cells}
            solutions = {cell.name for cell in source.solution_cells}
            tasks = {cell.name for cell in source.task_cells}
        repairs, claims = [], defaultdict(list)
        for index, cell in enumerate(nb.cells):
            if "nbgrader" not in cell.get("metadata", {}):
                continue
            if _grade_id(cell) in originals:
                claims[_grade_id(cell)].append(index)
            else:
                what = f"the unknown id {_grade_id(cell)!r}" if _grade_id(cell) else "no id"
                repairs.append(f"a cell carried nbgrader metadata with {what}: it was graded "
                               "as an ordinary cell")
                del cell.metadata["nbgrader"]
        for name, indices in claims.items():
            original = originals[name]
            keep = max(indices, key=lambda i: _likeness(nb.cells[i], original, name in solutions))
            if len(indices) > 1:
                repairs.append(f"{len(indices)} cells carried the id {name}: the one most like "
                               "the instructor's kept it, the others were graded as ordinary "
                               "cells")
                for index in indices:
                    if index != keep:
                        del nb.cells[index].metadata["nbgrader"]
            cell = nb.cells[keep]
            if cell.cell_type != original.cell_type:
                repairs.append(f"the cell {name} was made a {cell.cell_type} cell: it was put "
                               f"back as a {original.cell_type} cell")
                make = nbformat.v4.new_code_cell if original.cell_type == "code" else \
                    nbformat.v4.new_markdown_cell
                nb.cells[keep] = cell = make(cell.source, metadata=cell.metadata)
            wanted = {"grade": name in points, "solution": name in solutions,
                      "locked": original.locked, "task": name in tasks}
            changed = [key for key, value in wanted.items()
                       if bool(cell.metadata.nbgrader.get(key)) != value]
            if changed:
                repairs.append(f"the nbgrader metadata of {name} was edited "
                               f"({', '.join(changed)}): the instructor's was put back")
            cell.metadata.nbgrader.update(wanted, grade_id=name, schema_version=3,
                                          cell_type=original.cell_type)
            if name in points:  # (a change is noted by the report, from the submission)
                cell.metadata.nbgrader["points"] = points[name]
        nb.metadata[REPAIRS_KEY] = repairs
        for repair in repairs:
            self.log.warning("Repaired: %s", repair)
        return nb, resources


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
