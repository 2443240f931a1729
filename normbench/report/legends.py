"""Legends that hide no data: every figure the reports and benches write goes through
:func:`legends_off_data` before it is saved.

A legend is first left where its call put it (``loc="best"`` by default: matplotlib picks the
corner with the fewest data points under it). If the legend's box still crosses a line, a band
or a marker of its axes (checked on the drawn figure, segment by segment, not only at the data
points), it moves outside the axes, to their right; the layout then makes room for it.
"""

from __future__ import annotations

from typing import Any

from matplotlib.collections import Collection, LineCollection, PathCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import Bbox

#: Gap between an axes and a legend moved to its right, in axes widths.
OUTSIDE_PAD = 0.02


def covers_data(ax: Any, legend: Any, renderer: Any) -> bool:
    """Whether ``legend``'s box (on the drawn figure) crosses any line, band, bar or marker of
    ``ax``."""
    extent = legend.get_window_extent(renderer)
    box = Bbox.from_extents(extent.x0 - 1, extent.y0 - 1, extent.x1 + 1, extent.y1 + 1)
    for artist in [*ax.lines, *ax.collections, *ax.patches]:
        if not artist.get_visible():
            continue
        if isinstance(artist, Line2D):
            path = artist.get_transform().transform_path(artist.get_path())
            has_line = artist.get_linestyle() not in ("None", "", " ")
            if has_line and len(path.vertices) > 1 and path.intersects_bbox(box, filled=False):
                return True
            if artist.get_marker() not in (None, "None", "", " ") and _inside(box, path.vertices):
                return True
        elif isinstance(artist, PathCollection):  # scatter: markers at data positions
            offsets = artist.get_offset_transform().transform(artist.get_offsets())
            if _inside(box, offsets):
                return True
        elif isinstance(artist, Collection):  # fill_between's band, errorbar's lines
            filled = not isinstance(artist, LineCollection)
            transform = artist.get_transform()
            for path in artist.get_paths():
                if transform.transform_path(path).intersects_bbox(box, filled=filled):
                    return True
        elif isinstance(artist, Patch):  # bars
            path = artist.get_transform().transform_path(artist.get_path())
            if path.intersects_bbox(box, filled=True):
                return True
    return False


def _inside(box: Bbox, points: Any) -> bool:
    return any(box.contains(x, y) for x, y in points)


def legends_off_data(fig: Any) -> None:
    """Move every legend of ``fig`` that covers data outside its axes (to the right) and lay
    the figure out again; call it right before saving (after ``tight_layout``). Moving one
    legend out narrows the other axes, which can bring their data under their legends: the
    check repeats until no legend moves."""
    outside: set[int] = set()
    for _ in range(len(fig.axes) + 1):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        moved = False
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None or id(ax) in outside or not covers_data(ax, legend, renderer):
                continue
            legend.set_loc("upper left")
            legend.set_bbox_to_anchor((1 + OUTSIDE_PAD, 1.0), transform=ax.transAxes)
            outside.add(id(ax))
            moved = True
        if not moved:
            return
        if not fig.get_constrained_layout():
            fig.tight_layout()
