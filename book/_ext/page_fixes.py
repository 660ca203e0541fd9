"""Sphinx extension: two fixes that keep every page free of browser console errors.

- sphinx-thebe registers its inline configuration script more than once, so a
  page could declare ``const THEBE_JS_URL`` twice, which the browser rejects.
  Each page keeps one copy of every script, in order.
- On a reader's first visit the theme finds no saved colour mode and logs an
  error before falling back to "auto"; an early script sets "auto" first.
"""

from __future__ import annotations

DEFAULT_MODE = ("if (!document.documentElement.dataset.mode) "
                "{ document.documentElement.dataset.mode = 'auto'; }")


def _drop_repeated_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # inline scripts come as filename None or "", with any priority
        key = (script.filename or "", tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # in place: handlers that run later may still add scripts to this list
    context["script_files"][:] = unique


def setup(app):
    app.add_js_file(None, body=DEFAULT_MODE, priority=1)
    # early: a handler that returns a template name ends the event for later ones
    app.connect("html-page-context", _drop_repeated_scripts, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
