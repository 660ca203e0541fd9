"""Sphinx extension: the interactive figures' JavaScript (BokehJS) served with the site.

BokehJS comes from the installed ``bokeh`` package (``attnlib.interactive.bokehjs_files``)
and is copied into ``_static/bokehjs/``; only pages that hold an interactive figure load
it, so no figure asks the network for anything. The chapters run with
``attnlib.interactive.SERVED`` set, so their figures leave BokehJS out of their output.
``interactive.css`` keeps the figures and their controls readable in the dark theme.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from attnlib import interactive

STYLESHEET = Path(__file__).resolve().parent.parent / "_static" / "interactive.css"


def _load_on_figure_pages(app, pagename, templatename, context, doctree):
    if f'class="{interactive.CSS_CLASS}"' in context.get("body", ""):
        for path in interactive.bokehjs_files():
            app.add_js_file(f"bokehjs/{path.name}")          # this page only


def _copy_files(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        (static / "bokehjs").mkdir(parents=True, exist_ok=True)
        for path in interactive.bokehjs_files():
            shutil.copyfile(path, static / "bokehjs" / path.name)
        shutil.copyfile(STYLESHEET, static / STYLESHEET.name)


def setup(app):
    # read by the kernels that execute the chapters, which inherit this environment
    os.environ[interactive.SERVED] = "1"
    app.add_css_file(STYLESHEET.name)
    app.connect("html-page-context", _load_on_figure_pages)
    app.connect("build-finished", _copy_files)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
