"""The built website in a real browser: headless Chromium driven by Playwright.

Uses the system's Chromium (Debian package `chromium`); nothing downloads a
browser. Screenshots of every page are saved in _build/screenshots/.
"""

import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.notebooks import learner_notebook

from attnlib.grading.course import ROOT, chapter_ids

CHAPTERS = chapter_ids()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "_build" / "screenshots"
PAGES = ["book/intro", *(f"chapters/{c}/{c}" for c in CHAPTERS),
         "book/solutions", "book/api", "book/glossary", "book/references"]
# No network in the browser but this machine's own server, and no background services.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.xdist_group("site"),
              pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def base_url(site):
    """Serves the built site on a free loopback port for the duration of the module."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors, uncaught exceptions and failed requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.problems = []
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"exception: {e}"))
    # A load the browser cancels because the page navigated away ends as ERR_ABORTED;
    # a missing file is a 404 response, caught below.
    pg.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
          and pg.problems.append(f"failed: {r.url} ({r.failure})"))
    pg.on("response", lambda r: r.status >= 400 and pg.problems.append(f"{r.status}: {r.url}"))
    yield pg
    context.close()


def wait_for_mathjax(pg):
    """Wait until MathJax has typeset the page (pages without math do not load it)."""
    if pg.locator("script[src*='mathjax']").count() == 0:
        return
    pg.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise")
    pg.evaluate("MathJax.startup.promise")


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_cleanly(page, base_url, path):
    page.goto(f"{base_url}/{path}.html", wait_until="networkidle")
    wait_for_mathjax(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{path.replace('/', '__')}.png", full_page=True)
    assert page.problems == []
    broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.src)")
    assert broken == [], f"images that did not load: {broken}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_math_figures_and_download(page, base_url, chapter):
    page.goto(f"{base_url}/chapters/{chapter}/{chapter}.html", wait_until="networkidle")
    wait_for_mathjax(page)
    assert page.locator("mjx-container").count() > 0, "MathJax typeset nothing"
    assert page.locator("article img").count() > 0, "no figure on the page"
    # the download menu offers the .ipynb, and it is the learner edition
    link = page.locator("a.btn-download-source-button")
    assert link.get_attribute("href").endswith(".ipynb")
    page.locator(".dropdown-download-buttons button").first.click()
    with page.expect_download() as download:
        link.click()
    got = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert got == json.loads(learner_notebook(chapter).read_text(encoding="utf-8"))


def test_search_finds_softmax(page, base_url):
    page.goto(f"{base_url}/search.html?q=softmax", wait_until="networkidle")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for()
    assert results.count() > 0
    assert page.problems == []


def test_navigation_links(page, base_url):
    page.goto(f"{base_url}/index.html", wait_until="networkidle")
    assert page.url.endswith("book/intro.html"), "index.html should lead to the landing page"
    # walk the getting-started page and every chapter with the "next" button
    for path in ["book/running", *(f"chapters/{c}/{c}" for c in CHAPTERS)]:
        page.locator("a.right-next").click()
        page.wait_for_load_state("networkidle")
        assert page.url.endswith(f"{path}.html")
    page.locator("nav.bd-docs-nav a", has_text="Solutions").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("book/solutions.html")
    assert page.problems == []


def test_a_solution_opens_with_one_click(page, base_url):
    page.goto(f"{base_url}/book/solutions.html", wait_until="networkidle")
    fold = page.locator(".dropdown.admonition").first
    code = fold.locator("div.highlight")
    assert not code.is_visible(), "solutions should start folded"
    fold.locator("button.toggle-button").click()
    code.wait_for(state="visible")
    assert "def " in code.inner_text()
