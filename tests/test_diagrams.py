"""attnlib.diagrams: what each primitive draws, where, and how it rejects bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyBboxPatch, Rectangle

from attnlib.diagrams import FILLS, Box, arrow, box, canvas, matrix


@pytest.fixture
def ax():
    fig, ax = canvas(10, 4)
    yield ax
    plt.close(fig)


def test_box_anchors():
    b = Box(1.0, 2.0, 4.0, 2.0)
    assert (b.center, b.left, b.right, b.top, b.bottom) == ((3, 3), (1, 3), (5, 3), (3, 4), (3, 2))


def test_canvas_is_opaque_white_and_spans_the_units(ax):
    assert ax.get_xlim() == (0, 10) and ax.get_ylim() == (0, 4)
    assert to_rgba(ax.figure.get_facecolor()) == (1.0, 1.0, 1.0, 1.0)
    assert tuple(ax.figure.get_size_inches()) == pytest.approx((5.5, 2.2))
    with pytest.raises(ValueError, match="width and height must be positive"):
        canvas(0, 3)


def test_box_draws_a_filled_patch_with_centred_text(ax):
    b = box(ax, 1, 1, 3, 2, "$Q$", kind="weight")
    (patch,) = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert to_rgba(patch.get_facecolor()) == to_rgba(FILLS["weight"])
    assert (patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()) == (1, 1, 3, 2)
    (label,) = ax.texts
    assert label.get_text() == "$Q$" and label.get_position() == b.center == (2.5, 2)
    with pytest.raises(ValueError, match="kind must be one of"):
        box(ax, 0, 0, 1, 1, kind="blue")


def test_arrow_joins_the_two_points_and_labels_its_middle(ax):
    arrow(ax, (1, 1), (5, 3), "$W_Q$", offset=(0, 0.5))
    head, label = ax.texts
    assert head.xy == (5, 3) and head.xyann == (1, 1)
    assert label.get_text() == "$W_Q$" and label.get_position() == (3, 2.5)


def test_matrix_draws_one_cell_per_entry_and_hatches_nan(ax):
    values = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan]])
    b = matrix(ax, 2, 1, values, cell=0.5, fmt="{:g}")
    assert b == Box(2, 1, 1.5, 1.0)
    (image,) = ax.images
    assert image.get_extent() == [2, 3.5, 1, 2.0] and image.get_array().mask.sum() == 2
    hatched = [(p.get_x(), p.get_y()) for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert hatched == [(2.5, 1.5), (3.0, 1.0)]              # (row 0, col 1) and (row 1, col 2)
    # row 0 is at the top: the value 1 sits in the upper-left cell
    texts = {t.get_text(): t.get_position() for t in ax.texts}
    assert texts["1"] == (2.25, 1.75) and texts["5"] == (2.75, 1.25) and len(texts) == 4
    with pytest.raises(ValueError, match=r"values must be 2-D \(rows, cols\), got shape \(3,\)"):
        matrix(ax, 0, 0, np.ones(3))
