"""Interactive figures that run in the browser without a kernel: Bokeh plots whose controls
choose among frames computed beforehand in numpy.

A chapter builds a Bokeh layout (figures, sliders, selects), computes every frame its
controls can ask for, ties them with `link`, and shows the result with `show`. Moving a
control only swaps the data a figure draws, in the browser's JavaScript (BokehJS), so the
figure works on the static website and in JupyterLab alike.

BokehJS comes from the installed ``bokeh`` package, never from the network. The website
serves its files with the pages that need them (the book's ``bokehjs`` Sphinx extension,
which sets the environment variable `SERVED` for the kernels that run the chapters). In a
notebook the first figure of a kernel carries them in its output, compressed (0.6 MB
instead of 1.7 MB), and the browser unpacks them with its own ``DecompressionStream``.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import uuid
from pathlib import Path

import bokeh
from bokeh.embed import json_item
from bokeh.models import CustomJS

# The environment variable that tells `show` the page loads BokehJS itself.
SERVED = "ATTNLIB_BOKEHJS_SERVED"
# The BokehJS files a figure needs (the core and the widgets), in load order.
JS_FILES = ("bokeh.min.js", "bokeh-widgets.min.js")
# The class of every figure's container, for stylesheets and the browser tests.
CSS_CLASS = "attnlib-interactive"


def bokehjs_files() -> list[Path]:
    """Paths of the `JS_FILES` shipped in the installed bokeh package."""
    folder = Path(bokeh.__file__).parent / "server" / "static" / "js"
    return [folder / name for name in JS_FILES]


# Unpacks the gzipped, base64-encoded BokehJS files of a notebook output and runs them in order.
_UNPACK = """
(async function (files) {
  for (const packed of files) {
    const bytes = Uint8Array.from(atob(packed), c => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const script = document.createElement("script");
    script.textContent = await new Response(stream).text();
    document.head.appendChild(script);
  }
})(%s);
"""


def bokehjs_script() -> str:
    """A ``<script>`` that loads BokehJS from a compressed copy of its files: what the first
    figure of a kernel carries in its output when no page serves BokehJS."""
    packed = [base64.b64encode(gzip.compress(path.read_bytes(), mtime=0)).decode("ascii")
              for path in bokehjs_files()]
    return "<script>" + _UNPACK % json.dumps(packed) + "</script>"


# Picks the frame of the controls' current values: a string value by its position in its
# option list, a number by the nearest option (slider steps are not exact in floating point).
_PICK = """
const key = controls.map((c, i) => {
  const opts = options[i];
  if (typeof c.value === "string") return opts.indexOf(c.value);
  let best = 0;
  opts.forEach((o, k) => { if (Math.abs(o - c.value) < Math.abs(opts[best] - c.value)) best = k; });
  return best;
}).join(",");
source.data = frames[key];
"""


def link(source, controls, frames: dict) -> None:
    """Make ``controls`` choose what ``source`` (a ``ColumnDataSource``) draws.

    ``frames`` maps a tuple of control values, one per control in order, to the columns
    of ``source`` for those values (``{name: 1-D array}``). Every combination the controls
    can reach must be a key. Sliders read their value; ``Select`` widgets their option
    string. The source starts with the frame of the controls' current values.
    """
    if not frames:
        raise ValueError("frames must map at least one tuple of control values to columns")
    for key in frames:
        if not isinstance(key, tuple) or len(key) != len(controls):
            raise ValueError(f"every key of frames must be a tuple of {len(controls)} control values, got {key!r}")
    options = [sorted({key[i] for key in frames}, key=lambda v: (isinstance(v, str), v))
               for i in range(len(controls))]
    index = {",".join(str(options[i].index(v)) for i, v in enumerate(key)): columns
             for key, columns in frames.items()}
    start = tuple(c.value for c in controls)
    if start not in frames:
        raise ValueError(f"the controls' current values {start} are not a key of frames")
    source.data = dict(frames[start])
    callback = CustomJS(args=dict(source=source, controls=list(controls), options=options, frames=index),
                        code=_PICK)
    for control in controls:
        control.js_on_change("value", callback)


class Interactive:
    """A Bokeh layout shown as HTML: a ``div`` that BokehJS fills from the layout's JSON."""

    # True once a figure of this kernel has carried BokehJS in its output
    bokehjs_sent = False

    def __init__(self, layout, name: str):
        self.layout = layout
        self.name = name

    def _repr_html_(self) -> str:
        target = f"{self.name}-{uuid.uuid4().hex[:8]}"
        item = json.dumps(json_item(self.layout, target)).replace("</", "<\\/")
        scripts = ""
        if not os.environ.get(SERVED) and not Interactive.bokehjs_sent:
            scripts = bokehjs_script()
            Interactive.bokehjs_sent = True
        return (f'{scripts}<div class="{CSS_CLASS}" data-name="{self.name}" id="{target}"></div>'
                f"<script>(function () {{ const item = {item}; const draw = () => window.Bokeh "
                f"&& Bokeh.Widgets ? Bokeh.embed.embed_item(item) : setTimeout(draw, 50); draw(); }})();</script>")


def show(layout, name: str) -> Interactive:
    """``layout`` (a Bokeh figure or layout) as an object that a notebook displays as HTML,
    when it is the last expression of a cell. ``name`` (letters, digits, dashes) labels its
    container for stylesheets and tests."""
    if not name.replace("-", "").isalnum():
        raise ValueError(f"name must hold only letters, digits and dashes, got {name!r}")
    return Interactive(layout, name)
