"""The built website in a real browser: headless Chromium driven by Playwright.

Both sites are served as published: the English one, with the Chinese one in its
folder zh/. Uses the system's Chromium (Debian package `chromium`) and, for Chinese
text, a CJK font (Debian package `fonts-noto-cjk`); nothing downloads a browser. Screenshots of every page are saved in _build/screenshots/, of every
chapter also in the theme's light and dark modes (``<page>.light.png``,
``<page>.dark.png``). No page may send a request anywhere but the site's own server.
"""

import functools
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image
from tests.notebooks import chinese_learner_notebook, learner_notebook

from attnlib import interactive
from attnlib.grading.course import ROOT, chapter_ids

CHAPTERS = chapter_ids()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "_build" / "screenshots"
PAGES = ["book/intro", *(f"chapters/{c}/{c}" for c in CHAPTERS),
         "book/solutions", "book/api", "book/glossary", "book/references"]
CHINESE = "zh/"  # the Chinese site's folder in the published one
# No network in the browser but this machine's own server, and no background services.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The interactive figures of each chapter, by the name its cell gives them, with their number of controls.
INTERACTIVE = {"01_softmax": {"softmax-temperature": 1}, "02_attention": {"dk-scaling": 1},
               "03_positional_encoding": {"offset-dot-products": 1}, "05_bert": {"bert-attention": 2},
               "06_decoder": {"kv-cache-memory": 2}, "08_sparse_attention": {"sparse-masks": 4}}
# The data every Bokeh document of the page draws, as one string.
DRAWN_DATA = """() => Bokeh.documents.map(doc => [...doc.all_models]
    .filter(m => m.type === "ColumnDataSource")
    .map(m => JSON.stringify(Object.entries(m.data), (k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v))
    .join("|")).join("||")"""

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


def open_page(browser, base_url):
    """A fresh page that records console errors, uncaught exceptions, failed requests and
    requests that leave the site (those are stopped)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.problems = []

    def stay_on_site(route):
        if route.request.url.startswith((base_url, "data:", "blob:")):
            route.continue_()
        else:
            pg.problems.append(f"left the site: {route.request.url}")
            route.abort()

    context.route("**/*", stay_on_site)
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"exception: {e}"))
    # A load the browser cancels because the page navigated away ends as ERR_ABORTED;
    # a missing file is a 404 response, caught below.
    pg.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
          and pg.problems.append(f"failed: {r.url} ({r.failure})"))
    pg.on("response", lambda r: r.status >= 400 and pg.problems.append(f"{r.status}: {r.url}"))
    return pg


@pytest.fixture
def page(browser, base_url):
    pg = open_page(browser, base_url)
    yield pg
    pg.context.close()


def wait_for_mathjax(pg):
    """Wait until MathJax has typeset the page (pages without math do not load it)."""
    if pg.locator("script[src*='mathjax']").count() == 0:
        return
    pg.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise")
    pg.evaluate("MathJax.startup.promise")


@pytest.mark.parametrize("path", [*PAGES, *(CHINESE + p for p in PAGES)])
def test_page_loads_cleanly(page, base_url, path):
    page.goto(f"{base_url}/{path}.html", wait_until="networkidle")
    wait_for_mathjax(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{path.replace('/', '__')}.png", full_page=True)
    assert page.problems == []
    broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.src)")
    assert broken == [], f"images that did not load: {broken}"


@pytest.mark.parametrize("folder", ["", CHINESE], ids=["en", "zh"])
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_math_figures_and_download(page, base_url, chapter, folder):
    """Each chapter typesets its math and shows its figures, and its download button
    gives the learner edition: in English on the English site, in Chinese on the Chinese one."""
    page.goto(f"{base_url}/{folder}chapters/{chapter}/{chapter}.html", wait_until="networkidle")
    wait_for_mathjax(page)
    assert page.locator("mjx-container").count() > 0, "MathJax typeset nothing"
    assert page.locator("article img").count() > 0, "no figure on the page"
    # the download menu offers the .ipynb, and it is the learner edition
    link = page.locator("a.btn-download-source-button")
    assert link.get_attribute("href").endswith(".ipynb")
    page.locator(".dropdown-download-buttons button").first.click()
    with page.expect_download() as download:
        link.click()
    got = nbformat.read(download.value.path(), as_version=4)
    assert got == (chinese_learner_notebook(chapter) if folder else
                   nbformat.read(learner_notebook(chapter), as_version=4))


def test_search_finds_softmax(page, base_url):
    page.goto(f"{base_url}/search.html?q=softmax", wait_until="networkidle")
    results = page.locator("#search-results ul.search li")
    results.first.wait_for()
    assert results.count() > 0
    assert page.problems == []


# A Chinese search and the chapter it must list among its results.
CHINESE_SEARCHES = {"注意力": "02_attention", "位置编码": "03_positional_encoding",
                    "多头注意力": "04_multi_head_attention"}


@pytest.mark.parametrize("query", CHINESE_SEARCHES)
def test_chinese_search_finds_the_chapter(page, base_url, query):
    """Complete catalogs only: the chapter is found by its Chinese words."""
    chapter = CHINESE_SEARCHES[query]
    page.goto(f"{base_url}/{CHINESE}search.html?q={query}", wait_until="networkidle")
    # the summary is written when the search is done
    page.wait_for_function("document.querySelector('#search-results p.search-summary')?.innerText")
    found = page.locator("#search-results ul.search li a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))")
    assert any(f"chapters/{chapter}/{chapter}.html" in href for href in found), (
        f"searching {query!r} on the Chinese site does not list {chapter} (results: {found}); "
        f"is locales/zh_CN/LC_MESSAGES/chapters/{chapter}/{chapter}.po translated? "
        "(python book/translations.py check)")
    assert page.problems == []


def test_language_switcher_leads_to_the_same_chapter(page, base_url):
    path = "chapters/03_positional_encoding/03_positional_encoding.html"
    page.goto(f"{base_url}/{path}", wait_until="networkidle")
    assert page.evaluate("document.documentElement.lang") == "en"
    switch = page.locator("a.language-switch")
    assert switch.inner_text().strip() == "中文" and switch.is_visible()
    switch.click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{base_url}/{CHINESE}{path}"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    assert page.locator("a.language-switch").inner_text().strip() == "English"
    page.locator("a.language-switch").click()
    page.wait_for_load_state("networkidle")
    assert page.url == f"{base_url}/{path}"
    assert page.problems == []


# Font families that have the Chinese characters (Debian's fonts-noto-cjk gives Noto Sans CJK).
CJK_FONT = ("CJK", "Source Han", "WenQuanYi", "Droid Sans Fallback", "Noto Sans SC", "AR PL")


def test_chinese_text_is_drawn_with_a_cjk_font(page, base_url):
    """The fonts Chromium really drew a Chinese glossary term with (DevTools'
    CSS.getPlatformFontsForNode): one of them must have the characters, or every
    character is an empty box."""
    page.goto(f"{base_url}/{CHINESE}book/glossary.html", wait_until="networkidle")
    marked = page.evaluate("""() => {
        const term = [...document.querySelectorAll("dl.glossary dt")]
            .find(dt => dt.textContent.trim().startsWith("注意力"));
        if (term) term.setAttribute("data-cjk-probe", "");
        return Boolean(term);
    }""")
    assert marked, "the Chinese glossary has no term 注意力"
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "[data-cjk-probe]"})["nodeId"]
    cdp.send("CSS.enable")
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    drawn = {f["familyName"]: f["glyphCount"] for f in fonts}
    assert any(name in family for family in drawn for name in CJK_FONT), (
        f"the Chinese text is drawn with {drawn}, no CJK font: install one "
        "(apt-get install fonts-noto-cjk, as .ci/run does)")


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


def wait_for_figures(pg):
    """Wait until BokehJS has drawn every interactive figure of the page."""
    pg.wait_for_function(f"""() => document.querySelectorAll(".{interactive.CSS_CLASS}").length === 0
        || (window.Bokeh && Bokeh.documents.length === document.querySelectorAll(".{interactive.CSS_CLASS}").length
            && Bokeh.documents.every(doc => doc.is_idle))""")


# The text colour of each element, and the colour of the nearest box behind it (through shadow roots).
CONTROL_COLORS = """elements => elements.map(e => {
    let box = e;
    while (box && getComputedStyle(box).backgroundColor === "rgba(0, 0, 0, 0)")
        box = box.parentElement || (box.getRootNode().host ?? null);
    return [getComputedStyle(e).color, getComputedStyle(box ?? document.body).backgroundColor];
})"""


def luminance(css_color: str) -> float:
    """Luminance (0 black, 1 white) of a CSS ``rgb(r, g, b)`` or ``rgba(...)`` colour."""
    r, g, b = (float(v) for v in css_color.split("(")[1].rstrip(")").split(",")[:3])
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def ground_and_ink(png: bytes, width: int = 4) -> tuple[float, int]:
    """The median luminance (0 black, 1 white) of the outer ``width`` pixels of a screenshot,
    the ground that a figure's axis labels and titles are written on, and the number of its
    pixels at least 0.4 darker than that ground: the ink of axes, ticks and labels."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float) / 255 @ [0.299, 0.587, 0.114]
    margin = np.ones(pixels.shape, dtype=bool)
    margin[width:-width, width:-width] = False
    ground = float(np.median(pixels[margin]))
    return ground, int((pixels < ground - 0.4).sum())


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_interactive_figures_respond_to_their_controls(page, base_url, chapter):
    page.goto(f"{base_url}/chapters/{chapter}/{chapter}.html", wait_until="networkidle")
    wait_for_figures(page)
    figures = page.locator(f".{interactive.CSS_CLASS}")
    names = [figures.nth(k).get_attribute("data-name") for k in range(figures.count())]
    assert names == list(INTERACTIVE.get(chapter, {}))
    for k in range(figures.count()):
        figure = figures.nth(k)
        figure.scroll_into_view_if_needed()
        assert figure.locator("canvas").count() > 0, f"{names[k]}: nothing drawn"
        sliders, selects = figure.locator(".noUi-handle"), figure.locator("select")
        assert sliders.count() + selects.count() == INTERACTIVE[chapter][names[k]], f"{names[k]}: controls"
        for control in [*(sliders.nth(j) for j in range(sliders.count())),
                        *(selects.nth(j) for j in range(selects.count()))]:
            shot, data = figure.screenshot(), page.evaluate(DRAWN_DATA)
            if control.get_attribute("aria-valuenow") is not None:      # a slider: to its other end
                control.focus()
                at_end = control.get_attribute("aria-valuenow") == control.get_attribute("aria-valuemax")
                page.keyboard.press("Home" if at_end else "End")
            else:                                                       # a select: another option
                options = control.locator("option").all_inner_texts()
                control.select_option(next(o for o in options if o != control.input_value()))
            page.wait_for_function(f"() => ({DRAWN_DATA})() !== {json.dumps(data)}")
            page.wait_for_timeout(100)                                  # the next frame is painted
            assert figure.screenshot() != shot, f"{names[k]}: the picture did not change"
    assert page.problems == []


def test_the_bert_explorer_names_the_token_pair_under_the_pointer(page, base_url):
    page.goto(f"{base_url}/chapters/05_bert/05_bert.html", wait_until="networkidle")
    wait_for_figures(page)
    figure = page.locator(f".{interactive.CSS_CLASS}[data-name='bert-attention']")
    figure.scroll_into_view_if_needed()
    box = figure.locator("canvas").first.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.45, steps=5)
    tooltip = page.locator(".bk-tooltip-content")                # the only figure of the page with tooltips
    tooltip.first.wait_for()
    labels = tooltip.first.locator(".bk-tooltip-row-label").all_inner_texts()
    values = tooltip.first.locator(".bk-tooltip-row-value").all_inner_texts()
    assert [label.strip() for label in labels] == ["query:", "key:", "weight:"]
    assert all(v.strip() for v in values[:2]) and 0 <= float(values[2]) <= 1
    assert page.problems == []


FIGURE_CELL = """\
from bokeh import layouts
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure
from attnlib import interactive

line = ColumnDataSource()
k_slider = Slider(start=0, end=3, step=1, value=0, title="k")
interactive.link(line, [k_slider], {(k,): {"x": [0, 1], "y": [0, k]} for k in range(4)})
plot = figure(height=200, width=300)
plot.line("x", "y", source=line)
interactive.show(layouts.column(k_slider, plot), "in-jupyterlab")
"""


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab of this environment on a free loopback port, serving ``tmp_path``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_hex(8)
    server = subprocess.Popen([str(Path(sys.executable).with_name("jupyter-lab")), "--no-browser", "--allow-root",
                               f"--port={port}", f"--IdentityProvider.token={token}",
                               f"--ServerApp.root_dir={tmp_path}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={k: v for k, v in os.environ.items() if k != interactive.SERVED})
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    yield url, token
    server.terminate()
    server.wait(timeout=30)


def test_an_interactive_figure_works_in_jupyterlab(browser, jupyterlab, tmp_path):
    """A learner runs a figure's cell in JupyterLab: it draws, with the BokehJS its output
    carries, and its slider changes the drawing."""
    url, token = jupyterlab
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FIGURE_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "figure.ipynb")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"{url}/lab/tree/figure.ipynb?token={token}")
    pg.locator(".jp-Notebook .jp-Cell .jp-InputArea-editor").first.click(timeout=60_000)
    pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    pg.keyboard.press("Shift+Enter")
    figure = pg.locator(f".{interactive.CSS_CLASS}[data-name='in-jupyterlab']")
    figure.locator("canvas").first.wait_for(timeout=60_000)
    shot = figure.screenshot()
    figure.locator(".noUi-handle").focus()
    pg.keyboard.press("End")
    pg.wait_for_timeout(500)
    assert figure.screenshot() != shot, "the slider did not change the drawing"
    assert errors == []
    context.close()


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_figure_is_readable_in_light_and_dark_mode(page, base_url, chapter):
    """The reader switches the theme to dark with its button: every figure, image or
    interactive, keeps a light ground with dark ink on the dark page. Screenshots of both
    modes go to _build/screenshots/<page>.light.png and .dark.png."""
    path = f"chapters/{chapter}/{chapter}"
    page.goto(f"{base_url}/{path}.html", wait_until="networkidle")
    wait_for_mathjax(page)
    wait_for_figures(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for mode in ("light", "dark"):
        for _ in range(3):                       # the button cycles light, dark, auto
            if page.evaluate("document.documentElement.dataset.theme") == mode:
                break
            page.locator("button.theme-switch-button:visible").first.click()
        assert page.evaluate("document.documentElement.dataset.theme") == mode
        page.wait_for_timeout(200)
        page.screenshot(path=SHOTS / f"{path.replace('/', '__')}.{mode}.png", full_page=True)
        figures = page.locator(f"article .cell_output img, article .{interactive.CSS_CLASS}")
        assert figures.count() > 0
        for k in range(figures.count()):
            figure = figures.nth(k)
            figure.scroll_into_view_if_needed()
            ground, ink = ground_and_ink(figure.screenshot())
            assert ground > 0.6 and ink > 50, (
                f"{mode} mode, figure {k} of {chapter}: ground {ground:.2f}, {ink} dark pixels")
            # the controls write dark text on a light box (a screenshot can miss a blank select)
            for text, box in figure.locator("select, label, .bk-slider-title").evaluate_all(CONTROL_COLORS):
                assert luminance(text) < 0.4 and luminance(box) > 0.6, (
                    f"{mode} mode, a control of figure {k} of {chapter}: text {text} on {box}")
    assert page.problems == []
