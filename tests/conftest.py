"""Helpers shared by the notebook, grading and website tests."""

import re

import nbformat

from attnlib.course import ROOT, source_notebook

BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def learner_notebook(chapter):
    """Path of the committed learner edition of ``chapter``."""
    return ROOT / "chapters" / chapter / f"{chapter}.ipynb"


def secret_lines(chapter):
    """Lines (stripped, longer than 8 characters) that appear in the source notebook
    only inside solution or hidden-test blocks: none of them may reach a learner."""
    sources = [c.source for c in nbformat.read(source_notebook(chapter), as_version=4).cells]
    outside = "\n".join(BLOCK.sub("", s) for s in sources)
    lines = {line.strip() for s in sources for m in BLOCK.finditer(s)
             for line in m.group(2).splitlines()}
    return {line for line in lines if len(line) > 8 and line not in outside}
