"""Drawing primitives for the book's diagrams: labelled boxes, arrows and matrices.

A diagram is drawn in its chapter, on the axes that `canvas` makes, in the
drawing's own units (x to the right, y up, one unit the same length both ways).
These functions only draw; what a diagram shows stays in the chapter's cell.
Every figure gets an opaque white background, so that it reads the same on a
light and on a dark page.

    fig, ax = canvas(8, 3)
    q = box(ax, 0.5, 1, 2, 1, "$Q$\\n(Lq, d_k)", kind="data")
    s = box(ax, 5, 1, 2.5, 1, "$QK^T$", kind="op")
    arrow(ax, q.right, s.left)
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch, Rectangle

# Fill colour of each kind of box: what flows (data), what is learned (weight),
# what is computed (op), what is masked or dropped (mask), what comes out (output).
FILLS = {"data": "#dbe9f6", "weight": "#fde2c4", "op": "#ececec", "mask": "#f6d2d2",
         "output": "#d5efd5", "plain": "white"}
INK = "#222222"


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in diagram units: lower-left corner ``(x, y)``, width ``w``,
    height ``h``. Its anchors are the points arrows start from and end at."""

    x: float
    y: float
    w: float
    h: float

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    @property
    def left(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w, self.y + self.h / 2)

    @property
    def top(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)


def canvas(width: float, height: float, unit: float = 0.55):
    """A new figure whose one axes spans ``[0, width] x [0, height]`` diagram units.

    ``unit`` is the length of one unit in inches. The axes has no frame or ticks and
    an equal aspect; the figure's background is opaque white. Returns ``(fig, ax)``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got width={width}, height={height}")
    fig = plt.figure(figsize=(width * unit, height * unit), facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def box(ax, x: float, y: float, w: float, h: float, text: str = "", *, kind: str = "op",
        fontsize: float = 11, **style) -> Box:
    """Draw a rounded box with lower-left corner ``(x, y)``, size ``w`` by ``h``, and
    ``text`` centred in it. ``kind`` picks the fill (a key of `FILLS`); ``style``
    goes to the patch (``linestyle="--"``, ``facecolor=...``). Returns its `Box`."""
    if kind not in FILLS:
        raise ValueError(f"kind must be one of {sorted(FILLS)}, got {kind!r}")
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.12",
                           **{"facecolor": FILLS[kind], "edgecolor": INK, "linewidth": 1.2, **style})
    ax.add_patch(patch)
    shape = Box(x, y, w, h)
    if text:
        ax.text(*shape.center, text, ha="center", va="center", fontsize=fontsize, color=INK)
    return shape


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", *,
          offset: tuple[float, float] = (0.0, 0.25), fontsize: float = 10, **style) -> None:
    """Draw an arrow from the point ``start`` to the point ``end``, with ``text`` at its
    middle moved by ``offset`` (diagram units). ``style`` goes to the arrow
    (``linestyle="--"``, ``color=...``, ``connectionstyle="arc3,rad=0.3"``)."""
    props = {"arrowstyle": "-|>", "color": INK, "linewidth": 1.3, "shrinkA": 2, "shrinkB": 2,
             "mutation_scale": 14, **style}
    ax.annotate("", xy=end, xytext=start, arrowprops=props)
    if text:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*mid, text, ha="center", va="center", fontsize=fontsize, color=INK)


def matrix(ax, x: float, y: float, values, *, cell: float = 0.45, cmap: str = "Blues",
           vmin: float | None = None, vmax: float | None = None, fmt: str | None = None,
           fontsize: float = 8) -> Box:
    """Draw the 2-D array ``values`` of shape ``(rows, cols)`` as a grid of coloured
    cells, row 0 at the top, with the lower-left corner at ``(x, y)``.

    Each cell is ``cell`` units wide and high and coloured by ``cmap`` between ``vmin``
    and ``vmax`` (default: the array's finite range). A NaN cell is drawn hatched:
    masked, or not computed. ``fmt`` (e.g. ``"{:.2f}"``) writes each finite value in its
    cell. Returns the `Box` around the grid.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (rows, cols), got shape {values.shape}")
    rows, cols = values.shape
    shape = Box(x, y, cols * cell, rows * cell)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
    colors = plt.get_cmap(cmap).with_extremes(bad="white")   # NaN cells: white, hatched below
    ax.imshow(np.ma.masked_invalid(values), cmap=colors, vmin=lo, vmax=hi, interpolation="nearest",
              extent=(x, x + shape.w, y, y + shape.h), origin="upper", aspect="auto")
    ax.vlines(x + cell * np.arange(1, cols), y, y + shape.h, color="white", linewidth=0.8)
    ax.hlines(y + cell * np.arange(1, rows), x, x + shape.w, color="white", linewidth=0.8)
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        ax.add_patch(Rectangle((x + j * cell, y + (rows - 1 - i) * cell), cell, cell, fill=False,
                               edgecolor="#999999", hatch="///", linewidth=0.8))
    if fmt is not None:
        for i, j in zip(*np.nonzero(np.isfinite(values))):
            face = colors(0.5 if hi == lo else (np.clip(values[i, j], lo, hi) - lo) / (hi - lo))
            dark = 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] < 0.5
            ax.text(x + (j + 0.5) * cell, y + (rows - 1 - i + 0.5) * cell, fmt.format(values[i, j]),
                    ha="center", va="center", fontsize=fontsize, color="white" if dark else INK)
    ax.add_patch(Rectangle((x, y), shape.w, shape.h, fill=False, edgecolor=INK, linewidth=1.0))
    return shape
