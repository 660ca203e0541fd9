"""Notebook and website helpers shared by the tests: editions, secrets, site builds."""

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
from attnlib.grading.course import ROOT, source_notebook

BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)


def learner_notebook(chapter):
    """Path of the committed learner edition of ``chapter``."""
    return ROOT / "chapters" / chapter / f"{chapter}.ipynb"


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


def build_site(name, **env):
    """Build the website into _build/<name>/_build/html with warnings as errors.

    Runs from the repository root, so every build shares the execution cache in
    _build/.jupyter_cache. Builds run one at a time (a file lock: two builds that
    create the cache at once break it), and each site is built once per test run,
    whichever test worker asks first. Fails the calling test with the build log on
    any warning.
    """
    out = ROOT / "_build" / name
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    out.parent.mkdir(exist_ok=True)
    with open(ROOT / "_build" / ".site-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = out / ".built-by-test-run"
        if not (built.is_file() and built.read_text() == run_id):
            jupyter_book = Path(sys.executable).with_name("jupyter-book")
            run = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output",
                                  str(out), "-W", "-n", "--keep-going"], cwd=ROOT,
                                 capture_output=True, text=True, env={**os.environ, **env})
            assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
            built.write_text(run_id)
    return out / "_build" / "html"
