"""The book cannot point at a missing object: every ``literalinclude`` of attnlib's code
names a file and an object that exist (checked with ``ast``, without building the site)."""

import ast
import re

import nbformat
import pytest

from attnlib.grading.course import ROOT

DIRECTIVE = re.compile(r"```\{literalinclude\}\s+(\S+)\s*\n((?::[\w-]+:.*\n)*)")

# Private helpers the chapters show on purpose (the plain and fast paths, step by step).
# Renaming one breaks the chapter that shows it, so this list pins them.
PINNED_PRIVATE = {
    "attnlib/softmax.py": {"_masked_logits", "_shifted_numpy", "_torch_rows"},
    "attnlib/attention.py": {"_sdpa_torch"},
    "attnlib/positional.py": {"_inverse_frequencies"},
    "attnlib/bert.py": {"_hf_encoder_keys"},
    "attnlib/chunked.py": {"_chunked_plain", "_chunked_torch"},
    "attnlib/linear.py": {"_causal_chunked"},
    "attnlib/benchmark.py": {"_measure_in_child"},
}


def includes():
    """``(page, file, pyobject)`` for every literalinclude in the chapters and book pages."""
    pages = [(p, "\n".join(c.source for c in nbformat.read(p, as_version=4).cells
                           if c.cell_type == "markdown"))
             for p in sorted((ROOT / "solutions").glob("*/*.ipynb"))]
    pages += [(p, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "book").glob("*.md"))]
    found = []
    for page, text in pages:
        for match in DIRECTIVE.finditer(text + "\n"):
            options = dict(re.findall(r":([\w-]+):\s*(.*)", match.group(2)))
            target = (page.parent / match.group(1)).resolve()
            found.append((page.relative_to(ROOT).as_posix(), target, options.get("pyobject")))
    return found


INCLUDES = includes()


def defined(tree: ast.Module, dotted: str) -> bool:
    """Whether ``dotted`` (``name`` or ``Class.method``) is defined at the top of ``tree``."""
    body = tree.body
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.ClassDef)) and n.name == part), None)
        if node is None:
            return False
        body = node.body
    return True


def test_the_chapters_include_code():
    assert len(INCLUDES) >= 30, "found fewer literalincludes than the chapters hold"


@pytest.mark.parametrize("page, target, pyobject", INCLUDES,
                         ids=[f"{p}:{o}" for p, _, o in INCLUDES])
def test_every_literalinclude_resolves(page, target, pyobject):
    assert target.is_file(), f"{page} includes {target}, which does not exist"
    if pyobject is None:
        return
    rel = target.relative_to(ROOT).as_posix()
    tree = ast.parse(target.read_text(encoding="utf-8"))
    assert defined(tree, pyobject), f"{page} includes {pyobject} from {rel}: no such object"
    private = [part for part in pyobject.split(".") if part.startswith("_")]
    assert not private or pyobject in PINNED_PRIVATE.get(rel, set()), (
        f"{page} shows the private {pyobject} of {rel}: make it public, or pin it in "
        "PINNED_PRIVATE")


def test_every_pinned_helper_is_shown():
    shown = {(t.relative_to(ROOT).as_posix(), o) for _, t, o in INCLUDES}
    stale = {(f, o) for f, names in PINNED_PRIVATE.items() for o in names} - shown
    assert not stale, f"pinned but no longer shown by any chapter: {sorted(stale)}"
