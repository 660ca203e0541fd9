"""The two websites as published: the English one, the Chinese one in its folder zh/.

Both are built with warnings as errors (``tests/notebooks.py``). Every page links to
the same page in the other language; the Chinese site speaks Chinese down to the
theme's labels, offers Chinese learner notebooks and searches Chinese words.
"""

import json
import re
from html.parser import HTMLParser

import nbformat
import pytest
from tests.notebooks import chinese_learner_notebook, learner_notebook

from attnlib.grading.course import chapter_ids

CHAPTERS = chapter_ids()
pytestmark = pytest.mark.xdist_group("site")  # with the other site tests (one build)


class Languages(HTMLParser):
    """A page's language (``<html lang>``), its language switcher (the attributes and
    text of ``<a class="language-switch">``) and its ``<link rel="alternate">``s."""

    def __init__(self):
        super().__init__()
        self.lang, self.switch, self.label, self.alternates = None, [], "", {}
        self._in_switch = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.lang = attrs.get("lang")
        if tag == "a" and "language-switch" in (attrs.get("class") or "").split():
            self.switch.append(attrs)
            self._in_switch = True
        if tag == "link" and attrs.get("rel") == "alternate" and attrs.get("hreflang"):
            self.alternates[attrs["hreflang"]] = attrs["href"]

    def handle_data(self, data):
        if self._in_switch:
            self.label += data

    def handle_endtag(self, tag):
        if tag == "a":
            self._in_switch = False


def languages(page):
    parsed = Languages()
    parsed.feed(page.read_text(encoding="utf-8"))
    return parsed


def pages(html):
    """The HTML pages of the site in ``html``, not those of a site in a subfolder."""
    return sorted(p for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0] in ("zh", "_static"))


def test_both_sites_have_the_same_pages(site):
    english = [p.relative_to(site) for p in pages(site)]
    chinese = [p.relative_to(site / "zh") for p in pages(site / "zh")]
    assert len(english) > 15 and english == chinese


@pytest.mark.parametrize("folder, lang, other, label", [("", "en", "zh-CN", "中文"),
                                                        ("zh", "zh-CN", "en", "English")])
def test_every_page_switches_to_the_same_page_in_the_other_language(site, folder, lang, other,
                                                                      label):
    html = site / folder
    other_html = site if folder else site / "zh"
    for page in pages(html):
        if page.name == "index.html" and page.parent == html:
            continue  # the redirect to the landing page
        here = languages(page)
        name = page.relative_to(html)
        assert here.lang == lang, f"{name}: <html lang={here.lang!r}>"
        assert len(here.switch) == 1, f"{name}: {len(here.switch)} language switchers"
        switch = here.switch[0]
        assert (switch["hreflang"], switch["lang"], here.label.strip()) == (other, other, label)
        target = (page.parent / switch["href"]).resolve()
        assert target == (other_html / name).resolve(), f"{name}: switches to {switch['href']}"
        assert target.is_file(), f"{name}: {switch['href']} does not exist"
        back = languages(target).switch[0]["href"]
        assert (target.parent / back).resolve() == page.resolve(), f"{name}: no way back"
        for hreflang, href in here.alternates.items():
            assert (page.parent / href).resolve() == (
                page if hreflang == lang else target).resolve(), f"{name}: alternate {href}"
        assert set(here.alternates) == {"en", "zh-CN"}, f"{name}: {here.alternates}"


def test_the_theme_speaks_chinese_on_the_chinese_site(site):
    """sphinx-book-theme and pydata-sphinx-theme ship Chinese labels (previous/next,
    the download and fullscreen buttons); the search box's is the extension's."""
    page = "chapters/02_attention/02_attention.html"
    english = (site / page).read_text(encoding="utf-8")
    chinese = (site / "zh" / page).read_text(encoding="utf-8")
    for en, zh in [('placeholder="Search this book', 'placeholder="搜索本书'),
                   (">previous<", ">上一页<"), (">next<", ">下一页<"),
                   ('title="Download source file"', 'title="下载源文件"'),
                   ('title="Fullscreen mode"', 'title="全屏模式"')]:
        assert en in english, f"the English page has no {en!r}"
        assert zh in chinese and en not in chinese, f"the Chinese page has {en!r}, not {zh!r}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chinese_download_is_the_chinese_learner_edition(site, chapter):
    download = f"_sources/chapters/{chapter}/{chapter}.ipynb"
    assert nbformat.read(site / "zh" / download, as_version=4) == chinese_learner_notebook(chapter)
    assert nbformat.read(site / download, as_version=4) == nbformat.read(
        learner_notebook(chapter), as_version=4)


def search_index(html):
    """``(pages, terms)`` of the site's search index: the page names, and for each
    indexed word the indices of the pages it is on (in the text or in a title)."""
    text = (html / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(re.fullmatch(r"Search\.setIndex\((.*)\)\s*", text, re.S)[1])
    terms = {}
    for kind in ("terms", "titleterms"):
        for term, pages in index[kind].items():
            terms.setdefault(term, set()).update([pages] if isinstance(pages, int) else pages)
    return index["docnames"], terms


def test_chinese_search_index_is_segmented_into_words(site):
    """jieba cuts Chinese text into words, the glossary's terms kept whole."""
    docnames, terms = search_index(site / "zh")
    glossary = docnames.index("book/glossary")
    for word in ("注意力", "多头注意力", "位置编码", "键值缓存"):
        assert glossary in terms.get(word, []), f"{word!r} is not a word of the index"
    assert not [t for t in terms if len(t) > 12 and re.search(r"[\u4e00-\u9fff]", t)], \
        "unsegmented runs of Chinese in the index"


@pytest.mark.parametrize("word, chapter", [("注意力", "02_attention"),
                                           ("位置编码", "03_positional_encoding"),
                                           ("多头注意力", "04_multi_head_attention")])
def test_chinese_search_finds_the_chapter_of_a_term(site, word, chapter):
    """Complete catalogs only: the Chinese chapter uses its term."""
    docnames, terms = search_index(site / "zh")
    pages = [docnames[i] for i in terms.get(word, [])]
    assert f"chapters/{chapter}/{chapter}" in pages, (
        f"{word!r} is not on the Chinese page of {chapter} (it is on {pages}): is "
        f"locales/zh_CN/LC_MESSAGES/chapters/{chapter}/{chapter}.po translated? "
        "(python book/translations.py check)")
