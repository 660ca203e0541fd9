"""Sphinx directive ``solutions``: show a chapter's exercise solutions, folded.

Usage in a page::

    ```{solutions} solutions/01_softmax/01_softmax.ipynb
    ```

The argument is a source notebook, relative to the book's root. Every nbgrader
solution cell of that notebook becomes a collapsed dropdown (one deliberate click
to open) holding its code without the ``### BEGIN/END SOLUTION`` marker lines.
Test cells, and with them the hidden tests, are never shown.

With the environment variable ``BOOK_EDITION=student`` the directive shows a note
instead, so an instructor can publish the site without solutions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def solution_cells(notebook: Path) -> list[tuple[str, str]]:
    """``(grade_id, code)`` of each solution cell of ``notebook``, markers removed."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution") and not meta.get("grade"):
            source = "".join(cell["source"])
            code = "\n".join(line for line in source.splitlines()
                             if line.strip() not in MARKERS)
            found.append((meta["grade_id"], code))
    return found


class SolutionsDirective(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        if os.environ.get("BOOK_EDITION") == "student":
            note = nodes.note()
            note += nodes.paragraph(text="This edition of the book is built without solutions.")
            return [note]
        notebook = Path(self.env.srcdir) / self.arguments[0]
        if not notebook.is_file():
            raise self.error(f"solutions: no notebook at {self.arguments[0]}")
        self.env.note_dependency(str(notebook))
        folds = []
        for grade_id, code in solution_cells(notebook):
            fold = nodes.admonition(classes=["dropdown"])
            fold += nodes.title(text=f"Solution: {grade_id.removesuffix('_solution')}")
            fold += nodes.literal_block(code, code, language="python")
            folds.append(fold)
        return folds


def setup(app):
    app.add_directive("solutions", SolutionsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
