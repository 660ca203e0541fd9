"""Notebook and website helpers shared by the tests: editions, secrets, site builds."""

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from attnlib.grading.course import ROOT, source_notebook

sys.path.insert(0, str(ROOT / "book"))
import translations  # noqa: E402  (book/translations.py)
from notebook_translation import catalog_translations, translate_notebook  # noqa: E402

BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def learner_notebook(chapter):
    """Path of the committed learner edition of ``chapter``."""
    return ROOT / "chapters" / chapter / f"{chapter}.ipynb"


def chinese_catalog(chapter):
    """``{msgid: msgstr}``: the finished translations of ``chapter``'s Chinese catalog."""
    return catalog_translations(translations.catalog_of("zh_CN", learner_notebook(chapter)))


def chinese_learner_notebook(chapter):
    """The Chinese learner edition of ``chapter`` (an nbformat notebook), as the Chinese
    site offers it: the markdown cells translated from its catalog, nothing else changed."""
    nb = nbformat.read(learner_notebook(chapter), as_version=4)
    return translate_notebook(nb, chinese_catalog(chapter))[0]


def secret_lines(chapter):
    """Lines (stripped, longer than 8 characters) of the source notebook's solution
    and hidden-test blocks that appear nowhere public (outside those blocks, in any
    learner edition, or in attnlib's code): none of them may reach a learner."""
    sources = [c.source for c in nbformat.read(source_notebook(chapter), as_version=4).cells]
    public = "\n".join([BLOCK.sub("", s) for s in sources]
                       + [p.read_text(encoding="utf-8") for p in (ROOT / "chapters").glob("*/*.ipynb")]
                       + [p.read_text(encoding="utf-8") for p in (ROOT / "attnlib").rglob("*.py")])
    lines = {line.strip() for s in sources for m in BLOCK.finditer(s)
             for line in m.group(2).splitlines()}
    return {line for line in lines if len(line) > 8 and line not in public}


def _build_once(marker, command, env):
    """Run the site build ``command`` unless this test run already has (``marker``, a
    file, says which run built it). One build at a time: a file lock, since two builds
    that create the execution cache at once break it. Fails the calling test with the
    build log on any warning."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    (ROOT / "_build").mkdir(exist_ok=True)
    with open(ROOT / "_build" / ".site-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.is_file() and marker.read_text() == run_id):
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                 env={**os.environ, **env})
            assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(run_id)


def build_site(name, **env):
    """Build the website into _build/<name>/_build/html with warnings as errors.

    Runs from the repository root, so every build shares the execution cache in
    _build/.jupyter_cache. Each site is built once per test run, whichever test
    worker asks first.
    """
    out = ROOT / "_build" / name
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    _build_once(out / ".built-by-test-run",
                [str(jupyter_book), "build", str(ROOT), "--path-output", str(out),
                 "-W", "-n", "--keep-going"], env)
    return out / "_build" / "html"


def build_chinese_site(name, **env):
    """Build the English website as ``build_site(name)`` does, then the Chinese one
    into its folder zh/ (as ``make book`` publishes them), with warnings as errors.
    Returns the English site's folder; the Chinese site is its ``zh``."""
    html = build_site(name, **env)
    _build_once(html.parent / ".built-zh-by-test-run",
                [sys.executable, str(ROOT / "book" / "translations.py"), "build", "zh_CN",
                 str(html / "zh"), str(html.parent / ".doctrees-zh_CN")], env)
    return html
