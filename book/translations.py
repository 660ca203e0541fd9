"""The book in other languages: one source, the prose translated through gettext catalogs.

    python book/translations.py extract OUT    the English messages, one .pot per page, into OUT
    python book/translations.py update         locales/<lang>/LC_MESSAGES/*.po follow the English
    python book/translations.py check          fail on any message that is new, changed (fuzzy),
                                               untranslated or mangled, naming its file
    python book/translations.py build LANG OUT [DOCTREES]
                                               the site in LANG into OUT (warnings are errors),
                                               its doctrees into DOCTREES (OUT/../.doctrees-LANG)
    python book/translations.py notebook LANG NOTEBOOK OUT
                                               NOTEBOOK, a page of the book, with its markdown
                                               cells translated from its LANG catalog, into OUT

Only prose is translated. Code cells, outputs, math blocks and the API reference's
docstrings are not messages at all (``book/_ext/languages.py`` marks them so).

A translation must keep what a reader copies or a build resolves: inline math, code
spans, link targets, the targets of roles such as ``{term}`` and ``{ref}`` (their
text may change: ``{term}`注意力 <attention>```), footnote labels and numbers. And
where the English uses one of the central terms of the glossary, the translation
uses the glossary's Chinese for it: the glossary is the single source of the pairs.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))

from notebook_translation import catalog_translations, translate_notebook  # noqa: E402

LOCALES = ROOT / "locales"
LANGUAGES = ("zh_CN",)
GLOSSARY = ROOT / "book" / "glossary.md"

# The glossary terms whose translation every page must use. English forms are matched
# as whole words, case-insensitively, plurals included; the Chinese comes from the glossary.
CENTRAL_TERMS = (
    "attention", "self-attention", "cross-attention", "query", "scaled dot-product attention",
    "positional encoding", "multi-head attention", "mask", "padding mask", "causal mask",
    "KV cache", "temperature", "encoder", "decoder", "residual connection",
    "layer normalization", "feed-forward network", "perplexity", "teacher forcing",
    "greedy decoding", "nucleus sampling", "multi-query attention", "grouped-query attention",
    "sparse attention", "sliding window attention", "linear attention", "online softmax",
    "masked language model", "causal language model", "relative position", "tokenizer",
)

# Spans a translation keeps unchanged, in the order they are cut out of a message.
ROLE = re.compile(r"\{([\w:.-]+)\}`([^`]*)`")
CODE = re.compile(r"(`+)(.+?)\1", re.S)
MATH = re.compile(r"\$\$.+?\$\$|\$[^$\n]+?\$", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>\s]+)>")
FOOTNOTE = re.compile(r"\[\^[^\]]+\]")
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


def role_target(role: str, content: str) -> str:
    """The part of a role that must survive translation: an explicit ``<target>`` or,
    for a cross-reference written without one, its whole text (its text is its target)."""
    found = re.search(r"<([^<>]+)>\s*$", content)
    return found.group(1) if found else content


def protected(message: str) -> tuple[dict[str, list[str]], str]:
    """``(spans, prose)``: the spans of ``message`` a translation must keep, by kind,
    and what is left once they are cut out (the prose the terms are looked for in)."""
    spans: dict[str, list[str]] = {}

    def cut(kind, pattern, text, keep):
        spans[kind] = sorted(keep(m) for m in pattern.finditer(text))
        return pattern.sub(" ", text)

    prose = cut("role", ROLE, message, lambda m: f"{{{m[1]}}}{role_target(m[1], m[2])}")
    prose = cut("code", CODE, prose, lambda m: m[2])
    prose = cut("math", MATH, prose, lambda m: m[0])
    prose = cut("link", LINK, prose, lambda m: m[1] or m[2])
    prose = cut("footnote", FOOTNOTE, prose, lambda m: m[0])
    spans["number"] = sorted(set(NUMBER.findall(prose)))
    return spans, prose


def glossary_pairs(path: Path = GLOSSARY) -> dict[str, str]:
    """``{english: chinese}`` for each glossary entry given in both languages."""
    block = path.read_text(encoding="utf-8").split("```{glossary}", 1)[1].split("```", 1)[0]
    pairs = {}
    for entry in re.split(r"\n\s*\n", block.strip("\n")):
        names = [line for line in entry.splitlines() if line and not line[0].isspace()]
        if len(names) == 2:
            pairs[names[0]] = names[1]
    return pairs


def english_form(term: str) -> re.Pattern:
    """Whole-word pattern for ``term`` and its plural ("query" finds "queries")."""
    words = [re.escape(w) for w in term.split()]
    last = words[-1]
    plural = last[:-1] + "(?:y|ies)" if last.endswith("y") else last + "(?:e?s)?"
    if term == "mask":
        plural = "mask(?:s|ed|ing)?"
    return re.compile(r"(?<![\w-])" + r"[\s-]+".join(words[:-1] + [plural]) + r"(?![\w-])",
                      re.I)


def problems(msgid: str, msgstr: str, terms: dict[str, str],
             names: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with ``msgstr`` as a translation of ``msgid`` (empty when nothing).
    ``terms`` ({english: chinese}) must be translated as given; a message that is one
    of the English ``names`` (the glossary's terms, where both names are listed) may
    also be kept as it is."""
    found = []
    want, english = protected(msgid)
    got, chinese = protected(msgstr)
    for kind in want:
        if want[kind] != got[kind]:
            missing = sorted(set(want[kind]) - set(got[kind]))
            extra = sorted(set(got[kind]) - set(want[kind]))
            found.append(f"{kind} spans differ: missing {missing}, unexpected {extra}")
    if msgid in names and msgstr == msgid:
        return found
    for term, chinese_term in terms.items():
        if english_form(term).search(english) and chinese_term not in chinese:
            found.append(f"the English says {term!r}: the translation must use {chinese_term!r}")
    return found


def central_terms() -> dict[str, str]:
    """``{english: chinese}`` of the central terms, read from the glossary."""
    pairs = glossary_pairs()
    missing = [t for t in CENTRAL_TERMS if t not in pairs]
    if missing:
        raise ValueError(f"CENTRAL_TERMS: no Chinese in the glossary for {missing}")
    return {t: pairs[t] for t in CENTRAL_TERMS}


def sphinx(builder: str, out: Path, language: str = "en", doctrees: Path | None = None,
           **overrides) -> int:
    """Build the book with ``builder`` into ``out`` as ``jupyter-book build`` does
    (its configuration, its table of contents, warnings as errors), in ``language``,
    keeping its doctrees in ``doctrees`` (default ``out/../.doctrees-<language>``).
    Returns the exit status."""
    from jupyter_book.sphinx import build_sphinx

    config = {"external_toc_path": str(ROOT / "_toc.yml"), "nitpicky": True,
              "latex_individualpages": False,
              "language": language, **overrides}
    return build_sphinx(ROOT, out, noconfig=True, path_config=str(ROOT / "_config.yml"),
                        confoverrides=config,
                        doctreedir=doctrees or out.parent / f".doctrees-{language}",
                        builder=builder, warningiserror=True, keep_going=True)


def extract(out: Path) -> int:
    """Write the English messages, one ``.pot`` per page, into ``out``."""
    # outputs are never messages, so the notebooks need not run
    return sphinx("gettext", out, nb_execution_mode="off")


def read(path: Path):
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        return read_po(f)


def check(templates: Path, locales: Path = LOCALES) -> list[str]:
    """One line per problem of the catalogs in ``locales`` against the English
    messages in ``templates``: new, changed (fuzzy), untranslated, mangled or stale."""
    terms, names = central_terms(), frozenset(glossary_pairs())
    report = []
    for language in LANGUAGES:
        folder = locales / language / "LC_MESSAGES"
        pots = {p.relative_to(templates).with_suffix(".po"): p
                for p in sorted(templates.rglob("*.pot"))}
        for rel in sorted(set(pots) | {p.relative_to(folder) for p in folder.rglob("*.po")}):
            where = f"locales/{language}/LC_MESSAGES/{rel}"
            if rel not in pots:
                report.append(f"{where}: no English page has this catalog")
                continue
            english = read(pots[rel])
            po_path = folder / rel
            catalog = read(po_path) if po_path.is_file() else None
            for message in english:
                if not message.id:
                    continue
                entry = catalog.get(message.id) if catalog else None
                short = message.id if len(message.id) < 90 else message.id[:87] + "..."
                if entry is None:
                    report.append(f"{where}: new message, not in the catalog: {short!r}")
                elif entry.fuzzy:
                    report.append(f"{where}: changed in English (fuzzy): {short!r}")
                elif not entry.string:
                    report.append(f"{where}: untranslated: {short!r}")
                else:
                    report += [f"{where}: {p}: {short!r}"
                               for p in problems(message.id, entry.string, terms, names)]
            if catalog is not None and catalog.fuzzy:
                report.append(f"{where}: its header is marked fuzzy (a draft): "
                              "`python book/translations.py update` finishes it")
            if catalog:
                stale = [m.id for m in catalog if m.id and m.id not in english]
                report += [f"{where}: stale, no longer in the English: {m[:87]!r}"
                           for m in stale]
    return report


def update(templates: Path) -> None:
    """Bring every language's catalogs in line with the English ``templates``: new
    messages empty, changed ones fuzzy, and catalogs of removed pages deleted."""
    from sphinx_intl.basic import update as sphinx_intl_update

    sphinx_intl_update(str(LOCALES), str(templates), LANGUAGES)
    for language in LANGUAGES:
        folder = LOCALES / language / "LC_MESSAGES"
        for po in folder.rglob("*.po"):
            if not (templates / po.relative_to(folder)).with_suffix(".pot").is_file():
                po.unlink()
            else:
                finish_header(po)


def finish_header(po: Path) -> None:
    """Give the header of the catalog ``po`` the book's title and authors (from
    ``_config.yml``) and clear its fuzzy flag: sphinx-intl copies Sphinx's placeholders
    into a new catalog's header and marks it a draft. Whether each message is done is
    told by its own flags. Rewrites the file only if the header changes."""
    import yaml
    from babel.messages.pofile import write_po

    book = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    catalog = read(po)
    before = (catalog.fuzzy, catalog.header_comment, catalog.mime_headers)
    catalog.fuzzy = False
    catalog.project, catalog.version = book["title"], ""
    catalog.copyright_holder = catalog.last_translator = book["author"]
    catalog.msgid_bugs_address = ""
    catalog.language_team = book["author"]
    catalog.revision_date = catalog.creation_date
    catalog.header_comment = (f"# {catalog.locale.english_name} translation of {book['title']}.\n"
                              f"# Copyright (C) {book['copyright']} {book['author']}")
    if (catalog.fuzzy, catalog.header_comment, catalog.mime_headers) != before:
        with open(po, "wb") as f:
            write_po(f, catalog, width=76)


def catalog_of(language: str, page: Path) -> Path:
    """The catalog of ``page`` (a file of the book) in ``language``."""
    return LOCALES / language / "LC_MESSAGES" / page.resolve().relative_to(ROOT).with_suffix(".po")


def notebook(language: str, source: Path, out: Path) -> int:
    """Write ``source`` with its markdown cells translated into ``language`` to ``out``;
    print how many messages of its catalog were applied."""
    import nbformat

    translations = catalog_translations(catalog_of(language, source))
    nb, applied = translate_notebook(nbformat.read(source, as_version=4), translations)
    nbformat.write(nb, out)
    print(f"{out}: {len(applied)} of {len(translations)} translated messages applied")
    return 0


class UsageError(Exception):
    """A command line argument that cannot be used: the message names it."""


def checked(argv: list[str]) -> tuple[str, list]:
    """``(command, arguments)`` of ``argv``, the arguments as the command takes them."""
    usage = __doc__.split("\n\n")[1]
    commands = {"extract": 1, "update": 0, "check": 0, "build": (2, 3), "notebook": 3}
    if not argv or argv[0] not in commands:
        raise UsageError(f"COMMAND must be one of {', '.join(commands)}\nusage:\n{usage}")
    command, args = argv[0], argv[1:]
    counts = commands[command]
    if len(args) not in (counts if isinstance(counts, tuple) else (counts,)):
        raise UsageError(f"{command}: wrong number of arguments\nusage:\n{usage}")
    if command in {"build", "notebook"} and args[0] not in LANGUAGES:
        raise UsageError(f"{command}: LANG must be one of {', '.join(LANGUAGES)}, got {args[0]!r}")
    if command == "notebook":
        source = Path(args[1]).resolve()
        if not source.is_file() or source.suffix != ".ipynb":
            raise UsageError(f"notebook: NOTEBOOK {args[1]!r} is not a notebook file")
        if not source.is_relative_to(ROOT):
            raise UsageError(f"notebook: NOTEBOOK {args[1]!r} is not a page of the book in {ROOT}")
        if not catalog_of(args[0], source).is_file():
            raise UsageError(f"notebook: NOTEBOOK {args[1]!r} has no catalog "
                             f"{catalog_of(args[0], source).relative_to(ROOT)}")
        if not Path(args[2]).resolve().parent.is_dir():
            raise UsageError(f"notebook: OUT {args[2]!r} is not in an existing folder")
        return command, [args[0], source, Path(args[2])]
    return command, [args[0], *map(Path, args[1:])] if command == "build" else [*map(Path, args)]


def main(argv: list[str]) -> int:
    try:
        command, args = checked(argv)
    except UsageError as error:
        print(f"translations.py {error}", file=sys.stderr)
        return 2
    if command == "extract":
        return extract(args[0].resolve())
    if command == "build":
        language, out, *doctrees = args
        return sphinx("html", out.resolve(), language=language,
                      doctrees=doctrees[0].resolve() if doctrees else None)
    if command == "notebook":
        return notebook(*args)
    with tempfile.TemporaryDirectory() as tmp:
        templates = Path(tmp) / "gettext"
        status = extract(templates)
        if status:
            return status
        if command == "update":
            update(templates)
            return 0
        report = check(templates)
    for line in report:
        print(line)
    print(f"{len(report)} problems in the catalogs" if report else "catalogs in sync")
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
