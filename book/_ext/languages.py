"""Sphinx extension: the book in more than one language (see ``book/translations.py``).

- Only prose is a message to translate. Before Sphinx extracts or translates messages,
  this marks as untranslatable what must read the same in every language: math blocks,
  notebook cell outputs, and the API reference's signatures and docstrings (they are
  code, and the code stays English).
- Every page links to the same page in the other language, in the article header
  (``<a hreflang lang>``) and in the head (``<link rel="alternate" hreflang>``). The
  English site is the published folder; the Chinese one is its subfolder ``zh/``.
- The Chinese site's search segments words with jieba, which also knows every Chinese
  term of the glossary as one word (多头注意力, 位置编码): a search for a term finds
  the pages that use it.
- On a site in another language than English, the notebook a chapter's download
  button offers (``_sources/<page>.ipynb``) is the learner edition with its markdown
  cells translated from the page's catalog (``notebook_translation.py``).
"""

from __future__ import annotations

import html
import sys
from pathlib import Path

import nbformat
from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform

from notebook_translation import catalog_translations, translate_notebook

sys.path.insert(0, str(Path(__file__).parents[1]))
from translations import glossary_pairs  # noqa: E402

# language of a site: (its folder under the published one, its label, its BCP 47 tag)
SITES = {"en": ("", "English", "en"), "zh_CN": ("zh", "中文", "zh-CN")}
# theme options in the site's language: labels the themes take as given, untranslated
THEME_LABELS = {"zh_CN": {"search_bar_text": "搜索本书……"}}
TEMPLATES = Path(__file__).with_name("templates")


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


def site(language: str | None) -> str:
    """The key of ``SITES`` for Sphinx's ``language`` setting (English when unset)."""
    if language not in (None, "en") and language not in SITES:
        raise ValueError(f"language: no site for {language!r}; the sites are {sorted(SITES)}")
    return language or "en"


def page_url(pagename: str, from_language: str, to_language: str) -> str:
    """The relative URL, from page ``pagename`` of the site in ``from_language``, of the
    same page in the site in ``to_language`` (works at any depth, served or file://)."""
    up = "../" * (pagename.count("/") + bool(SITES[from_language][0]))
    folder = SITES[to_language][0]
    return f"{up}{folder + '/' if folder else ''}{pagename}.html"


def _switcher(app, pagename, templatename, context, doctree):
    here = site(app.config.language)
    other = "zh_CN" if here == "en" else "en"
    href = html.escape(page_url(pagename, here, other))
    label, tag = SITES[other][1], SITES[other][2]
    context["language_switch"] = (
        f'<a class="btn btn-sm language-switch" href="{href}" hreflang="{tag}" lang="{tag}">'
        f'{label}</a>')
    context["metatags"] = context.get("metatags", "") + "".join(
        f'\n<link rel="alternate" hreflang="{SITES[lang][2]}" '
        f'href="{html.escape(page_url(pagename, here, lang))}" />' for lang in SITES)


def _add_switcher_to_header(app, config):
    config.html_theme_options.update(THEME_LABELS.get(site(config.language), {}))
    config.templates_path.append(str(TEMPLATES))
    end = config.html_theme_options.get("article_header_end", ["article-header-buttons.html"])
    end = [end] if isinstance(end, str) else list(end)
    config.html_theme_options["article_header_end"] = [*end, "language-switcher.html"]


def _glossary_words_for_search(app, config):
    """On the Chinese site, give jieba the glossary's Chinese terms as words."""
    if not site(config.language).startswith("zh"):
        return
    words = Path(app.doctreedir, "glossary-words.txt")
    words.parent.mkdir(parents=True, exist_ok=True)
    # one word a line (a space would start jieba's frequency column: such terms stay out)
    terms = sorted({t for t in glossary_pairs().values() if len(t.split()) == 1})
    words.write_text("".join(f"{term}\n" for term in terms), encoding="utf-8")
    config.html_search_options = {**(config.html_search_options or {}), "dict": str(words)}


def _translated_notebooks(app, exception):
    """Write each notebook page's translated learner edition over its downloadable copy."""
    if exception is not None or app.builder.format != "html" or site(app.config.language) == "en":
        return
    locales = [Path(app.srcdir, d) for d in app.config.locale_dirs]
    for docname in sorted(app.env.found_docs):
        source = Path(app.env.doc2path(docname))
        offered = Path(app.outdir, "_sources", docname + ".ipynb")
        if source.suffix != ".ipynb" or not offered.is_file():
            continue
        catalogs = [d / app.config.language / "LC_MESSAGES" / f"{docname}.po" for d in locales]
        catalog = next((c for c in catalogs if c.is_file()), None)
        if catalog is None:
            continue
        nb, _ = translate_notebook(nbformat.read(source, as_version=4), catalog_translations(catalog))
        nbformat.write(nb, offered)


def setup(app):
    app.add_transform(KeepCodeAndMath)
    app.connect("config-inited", _add_switcher_to_header)
    app.connect("config-inited", _glossary_words_for_search)
    app.connect("html-page-context", _switcher)
    app.connect("build-finished", _translated_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
