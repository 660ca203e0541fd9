"""A notebook in another language: its markdown cells translated from a gettext catalog.

Sphinx extracts one message per block of prose: a heading, a paragraph (also the
paragraph of a list item) or a table cell, whose message id is the block's markdown
source with newlines replaced by spaces, stripped. Here the same blocks are found with
the markdown-it parser MyST uses, and each block's source lines are replaced by the
translation, keeping list markers, heading hashes, indentation and blank lines. Math
blocks, code fences and every code cell (source, outputs, metadata, nbgrader ids) stay
as they are.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

# the MyST extensions the book enables in _config.yml (parse.myst_enable_extensions)
MYST_EXTENSIONS = {"amsmath", "colon_fence", "dollarmath"}


@dataclass
class Block:
    """One translatable block of a markdown cell: ``message`` is its message id,
    ``line`` its first line (0-based), ``end`` the line after it and ``prefix`` what
    comes before the text on its first line (indentation, list marker, heading hashes).
    For a table cell ``end`` is None: the block is the text ``message`` in row ``line``
    from character ``column`` on."""

    message: str
    line: int
    end: int | None
    prefix: str = ""
    column: int = 0


@lru_cache(maxsize=1)
def parser():
    """MyST's markdown-it parser, configured as the book's build configures it."""
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    return create_md_parser(MdParserConfig(enable_extensions=MYST_EXTENSIONS), RendererHTML)


def message_id(source: str) -> str:
    """The message id Sphinx extracts for a block of markdown ``source``."""
    return source.replace("\n", " ").strip()


def blocks(markdown: str) -> list[Block]:
    """The translatable blocks of ``markdown`` (one cell's source), in order."""
    found, line_of_row, cursor = [], None, 0
    lines = markdown.split("\n")
    tokens = parser().parse(markdown)
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "tr_open":
            line_of_row, cursor = opening.map[0], 0
        if inline.type != "inline" or not inline.content.strip():
            continue
        if opening.type in ("th_open", "td_open"):   # cells left to right along the row
            text = message_id(inline.content)
            column = lines[line_of_row].index(text, cursor)
            cursor = column + len(text)
            found.append(Block(text, line_of_row, None, column=column))
        elif opening.type in ("heading_open", "paragraph_open"):
            first, text = lines[opening.map[0]].rstrip(), inline.content.split("\n", 1)[0].strip()
            if not first.endswith(text):
                raise ValueError(f"markdown: cannot find {text!r} at the end of line {first!r}")
            found.append(Block(message_id(inline.content), *opening.map, first[:len(first) - len(text)]))
    return found


def translate_markdown(markdown: str, translations: dict[str, str]) -> tuple[str, set[str]]:
    """``(translated, applied)``: ``markdown`` with every block whose message id has a
    translation in ``translations`` ({msgid: msgstr}) replaced by it, and the ids applied."""
    lines = markdown.split("\n")
    applied = set()
    for block in reversed(blocks(markdown)):    # from the end: earlier line numbers hold
        target = translations.get(block.message)
        if not target:
            continue
        if block.end is None:                   # a table cell, inside its row
            row, start = lines[block.line], block.column
            lines[block.line] = row[:start] + target.replace("|", "\\|") + row[start + len(block.message):]
        else:
            lines[block.line:block.end] = [block.prefix + target.replace("\n", " ")]
        applied.add(block.message)
    return "\n".join(lines), applied


def translate_notebook(nb, translations: dict[str, str]):
    """``(translated, applied)``: a copy of the nbformat notebook ``nb`` whose markdown
    cells are translated with ``translations`` ({msgid: msgstr}), and the ids applied.
    Code cells, outputs and all metadata are copied unchanged."""
    nb = copy.deepcopy(nb)
    applied = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, done = translate_markdown(cell.source, translations)
            applied |= done
    return nb, applied


def catalog_translations(po_path) -> dict[str, str]:
    """``{msgid: msgstr}`` of the finished translations of the catalog at ``po_path``
    (fuzzy and empty ones left out, as Sphinx leaves them out)."""
    from babel.messages.pofile import read_po

    with open(po_path, "rb") as f:
        catalog = read_po(f)
    return {m.id: m.string for m in catalog
            if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}
