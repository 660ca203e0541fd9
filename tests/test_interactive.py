"""attnlib.interactive: frames tied to controls, and the HTML a figure is shown as.

What the browser draws when a control moves is checked on the built site (tests/test_browser.py)."""

import base64
import gzip
import json

import numpy as np
import pytest
from bokeh.models import ColumnDataSource, CustomJS, Select, Slider

from attnlib import interactive
from attnlib.interactive import Interactive


def controls():
    return [Slider(start=0.5, end=2.0, step=0.5, value=1.0), Select(value="b", options=["a", "b"])]


def frames():
    return {(t, s): {"x": np.arange(3), "y": np.full(3, t) * (s == "b")} for t in (0.5, 1.0, 1.5, 2.0) for s in "ab"}


def test_bokehjs_comes_from_the_installed_package():
    files = interactive.bokehjs_files()
    assert [p.name for p in files] == list(interactive.JS_FILES)
    assert all(p.stat().st_size > 100_000 for p in files)


def test_link_starts_with_the_current_frame_and_indexes_the_frames_by_option():
    source, ctrl = ColumnDataSource(), controls()
    interactive.link(source, ctrl, frames())
    np.testing.assert_array_equal(source.data["y"], [1.0, 1.0, 1.0])
    (callback,) = {cb for c in ctrl for cb in c.js_property_callbacks["change:value"]}
    assert isinstance(callback, CustomJS) and all(callback in c.js_property_callbacks["change:value"] for c in ctrl)
    assert callback.args["options"] == [[0.5, 1.0, 1.5, 2.0], ["a", "b"]]
    assert sorted(callback.args["frames"]) == [f"{i},{j}" for i in range(4) for j in range(2)]
    np.testing.assert_array_equal(callback.args["frames"]["2,0"]["y"], [0.0, 0.0, 0.0])   # (1.5, "a")


def test_link_rejects_frames_that_do_not_fit_the_controls():
    with pytest.raises(ValueError, match="at least one"):
        interactive.link(ColumnDataSource(), controls(), {})
    with pytest.raises(ValueError, match="tuple of 2 control values, got"):
        interactive.link(ColumnDataSource(), controls(), {(1.0,): {"x": [1]}})
    with pytest.raises(ValueError, match=r"current values \(1.0, 'b'\) are not a key"):
        interactive.link(ColumnDataSource(), controls(), {(0.5, "b"): {"x": [1]}})


def test_show_carries_bokehjs_once_per_kernel_unless_the_page_serves_it(monkeypatch):
    plot = Slider(start=0, end=1, value=0)
    monkeypatch.delenv(interactive.SERVED, raising=False)
    monkeypatch.setattr(Interactive, "bokehjs_sent", False)
    first, second = (interactive.show(plot, "demo")._repr_html_() for _ in range(2))
    packed = json.loads(first.split("})(")[1].split(");")[0])
    assert [gzip.decompress(base64.b64decode(p)) for p in packed] == [
        p.read_bytes() for p in interactive.bokehjs_files()]
    assert "DecompressionStream" not in second and len(first) - len(second) < 700_000
    monkeypatch.setenv(interactive.SERVED, "1")
    monkeypatch.setattr(Interactive, "bokehjs_sent", False)
    served = interactive.show(plot, "demo")._repr_html_()
    assert "<script>" not in served.split("<div")[0] and len(served) < 10_000
    assert f'class="{interactive.CSS_CLASS}" data-name="demo"' in served
    # the embedded JSON is the layout's, and nothing in it can close the script early
    item = served.split("const item = ")[1].split("; const draw")[0]
    assert json.loads(item)["doc"]["roots"][0]["type"] == "object" and "</" not in item


def test_show_rejects_a_name_that_is_not_a_plain_label():
    with pytest.raises(ValueError, match="letters, digits and dashes"):
        interactive.show(Slider(start=0, end=1, value=0), "a b")
