"""The website: built with warnings as errors, in both the full and the student edition."""

import html as htmllib
import re
from html.parser import HTMLParser

import nbformat
import pytest
from jupyter_cache import get_cache
from tests.notebooks import learner_notebook, secret_lines

from attnlib import interactive
from attnlib.grading.course import ROOT, chapter_ids, source_notebook

CHAPTERS = chapter_ids()
pytestmark = pytest.mark.xdist_group("site")  # the site tests together (build_site builds once)


class Links(HTMLParser):
    """Collects the src of every <img> and <script> and the href of every <a> of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.scripts, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def page_text(html):
    """The text of an HTML page, without tags and with entities decoded."""
    return htmllib.unescape(re.sub(r"<[^>]+>", "", html))


def parse(page):
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page(site, chapter):
    page = site / "chapters" / chapter / f"{chapter}.html"
    html = page.read_text(encoding="utf-8")
    links = parse(page)
    figures = [src for src in links.images if src.endswith((".png", ".svg"))
               and "_images" in src]
    assert figures, "the chapter shows no figure"
    for src in links.images:
        if not src.startswith(("http:", "https:", "data:")):
            assert (page.parent / src).is_file(), f"missing image {src}"
    # math is marked up for MathJax, which is served with the site (no CDN needed)
    assert re.search(r'class="math', html), "no math on the page"
    mathjax = [src for src in links.scripts if "mathjax" in src.lower()]
    assert mathjax and all((page.parent / src.split("?")[0]).is_file() for src in mathjax), mathjax
    assert "Traceback" not in html, "an error output reached the page"
    # the download button offers the learner edition, exactly as committed
    download = f"_sources/chapters/{chapter}/{chapter}.ipynb"
    assert any(href.endswith(download) for href in links.links), "no .ipynb download link"
    offered = nbformat.read(site / download, as_version=4)
    assert offered == nbformat.read(learner_notebook(chapter), as_version=4)


def test_internal_links_and_anchors_resolve(site):
    ids = {}  # page -> the ids it defines

    def anchors(page):
        if page not in ids:
            ids[page] = set(re.findall(r'\bid="([^"]+)"', page.read_text(encoding="utf-8")))
        return ids[page]

    for page in site.rglob("*.html"):
        for href in parse(page).links:
            if re.match(r"^[a-z]+:", href):
                continue  # external, mailto:, javascript:
            target, _, anchor = href.partition("#")
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"{page.relative_to(site)}: broken link {href}"
            if anchor and path.suffix == ".html":
                assert anchor in anchors(path), f"{page.relative_to(site)}: no anchor {href}"


def test_search(site):
    assert (site / "search.html").is_file()
    assert "softmax" in (site / "searchindex.js").read_text(encoding="utf-8").lower()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solutions_one_click_away(site, chapter):
    html = (site / "book" / "solutions.html").read_text(encoding="utf-8")
    assert "togglebutton" in html and re.search(r'class="dropdown admonition', html), \
        "solutions are not folded"
    text = page_text(html)
    shown = [line for line in secret_lines(chapter) if line in text]
    assert shown, "the solutions page shows no solution code"
    assert "HIDDEN TESTS" not in html


def test_student_site_has_no_solutions(student_site):
    html = (student_site / "book" / "solutions.html").read_text(encoding="utf-8")
    assert "built without solutions" in html
    secrets = set().union(*(secret_lines(c) for c in CHAPTERS))
    for page in student_site.rglob("*.html"):
        text = page_text(page.read_text(encoding="utf-8"))
        assert not [s for s in secrets if s in text], f"solution text in {page.name}"


MAX_NOTEBOOK_BYTES = 2 * 2**20


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_no_notebook_grows_past_2_mb(site, chapter):
    """Both committed editions, the learner edition as the site executed it (from the
    execution cache), and a learner's own executed copy, which also carries BokehJS (packed)
    in its first interactive figure, stay under 2 MB."""
    learner = nbformat.read(learner_notebook(chapter), as_version=4)
    cache = get_cache(ROOT / "_build" / ".jupyter_cache")        # the site's, see tests/notebooks.py
    executed = cache.get_cache_bundle(cache.match_cache_notebook(learner).pk).nb
    sizes = {"solution edition": source_notebook(chapter).stat().st_size,
             "learner edition": learner_notebook(chapter).stat().st_size,
             "executed on the site": len(nbformat.writes(executed).encode())}
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    if any(interactive.CSS_CLASS in o.get("data", {}).get("text/html", "") for o in outputs):
        sizes["executed by a learner"] = sizes["executed on the site"] + len(interactive.bokehjs_script())
    too_big = {name: size for name, size in sizes.items() if size > MAX_NOTEBOOK_BYTES}
    assert not too_big, f"{chapter}: past 2 MB: {too_big}"
