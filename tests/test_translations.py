"""The Chinese edition's catalogs and notebooks (book/translations.py, book/_ext).

The catalogs are checked against the English of this commit: a message that is new,
changed (fuzzy), untranslated, stale or mangled fails ``test_catalogs_in_sync``, which
lists them all. The checker itself is tested on crafted messages, and the translated
learner notebooks on every chapter: prose translated, code and grading untouched.
"""

import re
import subprocess
import sys

import nbformat
import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po
from tests.notebooks import (chinese_catalog, chinese_learner_notebook, learner_notebook,
                             translations)

from attnlib.grading.course import ROOT, chapter_ids, source_notebook
from attnlib.grading.grade_one import grade
from notebook_translation import blocks, translate_markdown, translate_notebook

CHAPTERS = chapter_ids()
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """The English messages of this commit, one .pot per page (notebooks not executed).
    Extracted by the command line in a process of its own: Sphinx's table-of-contents
    extension scans every object of the process it runs in, and a test worker holds
    dead weak references left by other tests."""
    out = tmp_path_factory.mktemp("gettext")
    run = subprocess.run([sys.executable, str(ROOT / "book" / "translations.py"), "extract",
                          str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return out


# ---- the checker, on crafted messages ----------------------------------------------

TERMS = translations.central_terms()


@pytest.mark.parametrize("msgid, msgstr, complaint", [
    ("The scores $q \\cdot k$ grow.", "分数会变大。", "math spans differ"),
    ("The scores $q \\cdot k$ grow.", "分数 $q k$ 会变大。", "math spans differ"),
    ("Call `softmax(z)` on the row.", "对这一行调用 softmax。", "code spans differ"),
    ("Call `softmax(z)` on the row.", "对这一行调用 `softmax(x)`。", "code spans differ"),
    ("See {ref}`the overflow section <overflow>`.", "见{ref}`溢出一节 <溢出>`。", "role spans differ"),
    ("See {term}`logits`.", "见{term}`对数几率`。", "role spans differ"),
    ("Read [the paper](https://arxiv.org/abs/1706.03762).", "读[论文](https://arxiv.org)。",
     "link spans differ"),
    ("As noted[^fp], it holds.", "如前所述，它成立。", "footnote spans differ"),
    ("It takes 3 steps of 0.5 each.", "它需要三步，每步 0.5。", "number spans differ"),
    ("The attention layer averages.", "这一层求平均。", "must use '注意力'"),
    ("Each query is compared.", "每个注意力都被比较。", "must use '查询'"),
    ("A KV cache stores keys.", "缓存保存键。", "must use '键值缓存'"),
])
def test_checker_reports_a_mangled_translation(msgid, msgstr, complaint):
    found = translations.problems(msgid, msgstr, TERMS)
    assert any(complaint in p for p in found), found


def test_checker_passes_a_correct_translation():
    msgid = ("Attention compares each query with {term}`every key <key>` in $O(n^2)$ with "
             "`attnlib.softmax`, see [the paper](https://arxiv.org/abs/1706.03762) and 2 figures.")
    msgstr = ("注意力把每个查询与{term}`每个键 <key>`比较，代价 $O(n^2)$，用 `attnlib.softmax`，"
              "见[论文](https://arxiv.org/abs/1706.03762)和 2 幅图。")
    assert translations.problems(msgid, msgstr, TERMS) == []


def test_checker_lets_the_glossary_keep_an_english_term_as_it_is():
    names = frozenset(translations.glossary_pairs())
    assert translations.problems("sparse attention", "sparse attention", TERMS, names) == []
    assert translations.problems("sparse attention", "稀疏", TERMS, names) != []
    assert translations.problems("Use sparse attention.", "Use sparse attention.", TERMS,
                                 names) != []


def write_catalog(path, messages, fuzzy=(), draft=False):
    """A .po (or .pot) at ``path`` with ``messages`` ({msgid: msgstr}), ids in ``fuzzy``
    fuzzy, its header marked fuzzy if ``draft``."""
    catalog = Catalog(locale="zh_CN" if path.suffix == ".po" else None, fuzzy=draft)
    for msgid, msgstr in messages.items():
        catalog.add(msgid, msgstr, flags=["fuzzy"] if msgid in fuzzy else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        write_po(f, catalog)


def test_checker_reports_every_kind_of_catalog_problem(tmp_path):
    english = {"Softmax": "", "The temperature sharpens.": "", "Masks are boolean.": "",
               "It is new.": "", "It is good.": ""}
    write_catalog(tmp_path / "pot" / "chapters" / "x.pot", english)
    write_catalog(tmp_path / "pot" / "chapters" / "y.pot", {"Fine.": ""})
    folder = tmp_path / "locales" / "zh_CN" / "LC_MESSAGES"
    write_catalog(folder / "chapters" / "x.po",
                  {"Softmax": "Softmax", "The temperature sharpens.": "温度使分布更尖锐。",
                   "Masks are boolean.": "", "It is good.": "很好。", "It was removed.": "删了。"},
                  fuzzy={"The temperature sharpens."})
    write_catalog(folder / "chapters" / "y.po", {"Fine.": "好。"}, draft=True)
    write_catalog(folder / "chapters" / "gone.po", {"Old page.": "旧页。"})
    report = translations.check(tmp_path / "pot", tmp_path / "locales")
    where = "locales/zh_CN/LC_MESSAGES/chapters"
    assert sorted(report) == sorted([
        f"{where}/gone.po: no English page has this catalog",
        f"{where}/x.po: changed in English (fuzzy): 'The temperature sharpens.'",
        f"{where}/x.po: untranslated: 'Masks are boolean.'",
        f"{where}/x.po: new message, not in the catalog: 'It is new.'",
        f"{where}/x.po: stale, no longer in the English: 'It was removed.'",
        f"{where}/y.po: its header is marked fuzzy (a draft): "
        "`python book/translations.py update` finishes it",
    ]), report


def test_update_finishes_a_new_catalogs_header(tmp_path):
    po = tmp_path / "x.po"
    write_catalog(po, {"Fine.": "好。", "Changed.": "改了。"}, fuzzy={"Changed."}, draft=True)
    translations.finish_header(po)
    catalog = translations.read(po)
    text = po.read_text(encoding="utf-8")
    assert not catalog.fuzzy and "PROJECT" not in text and "EMAIL@ADDRESS" not in text
    assert catalog.project == "Attention, one runnable cell at a time"
    assert [(m.id, m.string, m.fuzzy) for m in catalog if m.id] == [
        ("Fine.", "好。", False), ("Changed.", "改了。", True)]     # the messages untouched


def test_glossary_gives_the_chinese_of_at_least_20_central_terms():
    pairs = translations.glossary_pairs()
    assert len(set(translations.CENTRAL_TERMS)) >= 20
    assert [t for t in translations.CENTRAL_TERMS if t not in pairs] == [], \
        "CENTRAL_TERMS must be entries of book/glossary.md"
    assert {t: pairs[t] for t in translations.CENTRAL_TERMS if not CJK.search(pairs[t])} == {}


def test_catalogs_in_sync(templates):
    """Complete catalogs only: every English message of this commit translated, none
    fuzzy, stale or mangled, every central term in its glossary Chinese."""
    report = translations.check(templates)
    assert report == [], (
        f"the Chinese catalogs are not in sync with the English ({len(report)} problems): "
        "run `make catalogs`, translate the new and fuzzy messages in locales/zh_CN and "
        "run `python book/translations.py check`:\n" + "\n".join(report))


# ---- the command line -----------------------------------------------------------------

def run_translations(*args):
    return subprocess.run([sys.executable, str(ROOT / "book" / "translations.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("args, names", [
    (["notebook", "fr", "chapters/01_softmax/01_softmax.ipynb", "out.ipynb"], "LANG"),
    (["notebook", "zh_CN", "chapters/01_softmax/missing.ipynb", "out.ipynb"], "NOTEBOOK"),
    (["notebook", "zh_CN", "chapters/01_softmax/01_softmax.ipynb", "/no/such/dir/out.ipynb"], "OUT"),
    (["build", "de", "_build/de"], "LANG"),
    (["translate"], "COMMAND"),
])
def test_command_line_errors_name_the_argument(args, names):
    run = run_translations(*args)
    assert run.returncode == 2
    assert names in run.stderr.splitlines()[0] and "Traceback" not in run.stderr, run.stderr


def test_notebook_command_writes_the_chinese_learner_edition(tmp_path):
    out = tmp_path / "01_softmax.ipynb"
    run = run_translations("notebook", "zh_CN", "chapters/01_softmax/01_softmax.ipynb", out)
    assert run.returncode == 0, run.stderr
    assert nbformat.read(out, as_version=4) == chinese_learner_notebook("01_softmax")


# ---- the Chinese learner notebooks -------------------------------------------------------

MARKDOWN = """\
## Softmax over a row

The scores are
real numbers:

$$
p_i = e^{z_i} / \\sum_j e^{z_j}
$$

- First item,
  on two lines.
  1. Nested item.

| name | meaning |
| --- | --- |
| mask | a mask of the scores |

```python
scores = q @ k.T  # The scores are real numbers:
```
"""

TRANSLATED = """\
## 一行上的 softmax

分数是实数：

$$
p_i = e^{z_i} / \\sum_j e^{z_j}
$$

- 第一项，占两行。
  1. 嵌套项。

| 名称 | 含义 |
| --- | --- |
| 掩码 | 分数的掩码 |

```python
scores = q @ k.T  # The scores are real numbers:
```
"""


def test_markdown_blocks_are_replaced_in_place():
    """Headings keep their hashes, list items their markers and indentation; math
    blocks and code fences stay; a table's cells are replaced in their own columns."""
    catalog = {"Softmax over a row": "一行上的 softmax", "The scores are real numbers:": "分数是实数：",
               "First item, on two lines.": "第一项，占两行。", "Nested item.": "嵌套项。",
               "name": "名称", "meaning": "含义", "mask": "掩码", "a mask of the scores": "分数的掩码"}
    assert [b.message for b in blocks(MARKDOWN)] == list(catalog)[:4] + [
        "name", "meaning", "mask", "a mask of the scores"]
    translated, applied = translate_markdown(MARKDOWN, catalog)
    assert translated == TRANSLATED
    assert applied == set(catalog)
    assert translate_markdown(MARKDOWN, {}) == (MARKDOWN, set())


def same_code_and_metadata(english, chinese):
    """Everything but the markdown cells' sources is equal in the two notebooks."""
    assert chinese.metadata == english.metadata
    assert [c.cell_type for c in chinese.cells] == [c.cell_type for c in english.cells]
    for en, zh in zip(english.cells, chinese.cells):
        assert zh.metadata == en.metadata          # nbgrader ids and points included
        assert zh.get("id") == en.get("id")
        if en.cell_type == "code":
            assert zh == en


def block_messages(nb):
    return [b.message for c in nb.cells if c.cell_type == "markdown" for b in blocks(c.source)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_message_of_a_chapter_is_a_markdown_block_and_is_applied(templates, chapter):
    """Each message Sphinx extracts from a chapter is found as a block of its markdown
    cells and replaced (a made-up translation of every message, so this holds whatever
    the state of the catalogs)."""
    from babel.messages.pofile import read_po

    with open(templates / "chapters" / chapter / f"{chapter}.pot", "rb") as f:
        ids = {m.id for m in read_po(f) if m.id}
    english = nbformat.read(learner_notebook(chapter), as_version=4)
    chinese, applied = translate_notebook(english, {i: f"【译】{i}" for i in ids})
    assert len(ids) > 50
    assert len(applied) == len(ids), f"not applied: {sorted(ids - applied)[:10]}"
    assert [m for m in block_messages(chinese) if m in ids] == []
    assert all(m.startswith("【译】") for m in block_messages(chinese))
    same_code_and_metadata(english, chinese)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chinese_learner_edition(chapter):
    """The catalog's translations are all applied, no English block that has one is
    left, and the code, outputs and nbgrader metadata are the English ones."""
    english = nbformat.read(learner_notebook(chapter), as_version=4)
    catalog = chinese_catalog(chapter)
    chinese, applied = translate_notebook(english, catalog)
    assert applied == set(catalog) & set(block_messages(english))
    # a message kept as it is in Chinese (a name, a formula) stays, of course
    assert [m for m in block_messages(chinese) if catalog.get(m, m) != m] == []
    assert chinese == chinese_learner_notebook(chapter)
    same_code_and_metadata(english, chinese)


def test_the_chinese_edition_needs_complete_catalogs():
    """Complete catalogs only: every chapter's Chinese learner edition translates every
    block of its markdown (its headings and paragraphs are Chinese)."""
    untranslated = {}
    for chapter in CHAPTERS:
        catalog = chinese_catalog(chapter)
        english = nbformat.read(learner_notebook(chapter), as_version=4)
        missing = [m for m in block_messages(english) if m not in catalog]
        if missing:
            untranslated[chapter] = f"{len(missing)} of {len(block_messages(english))}"
    assert untranslated == {}, (
        f"blocks of prose with no Chinese in locales/zh_CN, by chapter: {untranslated}")


# ---- grading the Chinese learner edition ----------------------------------------------------

CHAPTER = "01_softmax"


def with_solutions(nb):
    """``nb`` with each exercise cell's source replaced by the solution edition's cell
    of the same nbgrader grade_id."""
    solved = {c.metadata.nbgrader.grade_id: c.source
              for c in nbformat.read(source_notebook(CHAPTER), as_version=4).cells
              if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and grade_id in solved:
            cell.source = solved[grade_id]
    return nb


def table(report):
    return [(e.id, e.score, e.max_score, e.message) for e in report.exercises]


@pytest.mark.parametrize("filled", [False, True], ids=["untouched", "with-solutions"])
def test_chinese_learner_edition_grades_like_the_english(tmp_path, filled):
    editions = {"en": nbformat.read(learner_notebook(CHAPTER), as_version=4),
                "zh": chinese_learner_notebook(CHAPTER)}
    reports = {}
    for language, nb in editions.items():
        path = tmp_path / language / f"{CHAPTER}.ipynb"
        path.parent.mkdir()
        nbformat.write(with_solutions(nb) if filled else nb, path)
        reports[language] = grade(path)
    en, zh = reports["en"], reports["zh"]
    assert en.max_score > 0 and en.score == (en.max_score if filled else 0), en.table()
    assert table(zh) == table(en), zh.table()
    assert (zh.score, zh.max_score) == (en.score, en.max_score)
