"""Sphinx extension: the book in more than one language (see ``book/translations.py``).

Only prose is a message to translate. Before Sphinx extracts or translates messages,
this marks as untranslatable what must read the same in every language: math blocks,
notebook cell outputs, and the API reference's signatures and docstrings (they are
code, and the code stays English).
"""

from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform


def _inside(node: nodes.Node, test) -> bool:
    while node is not None:
        if test(node):
            return True
        node = node.parent
    return False


def _is_output(node: nodes.Node) -> bool:
    return isinstance(node, nodes.container) and "cell_output" in node.get("classes", [])


class KeepCodeAndMath(SphinxTransform):
    """Mark math blocks, cell outputs and autodoc entries as not translatable."""

    default_priority = 10  # before sphinx.transforms.i18n.Locale (20)

    def apply(self, **kwargs) -> None:
        for node in self.document.findall(nodes.TextElement):
            if (isinstance(node, nodes.math_block)
                    or _inside(node, lambda n: isinstance(n, addnodes.desc) or _is_output(n))):
                node["translatable"] = False


def setup(app):
    app.add_transform(KeepCodeAndMath)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
