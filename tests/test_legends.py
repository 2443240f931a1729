"""Legends hide no data: a legend over a line, a band or markers moves out of its axes; one
over empty space stays where it was put."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from normbench.report.legends import covers_data, legends_off_data  # noqa: E402


def _covers(fig) -> list[bool]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [covers_data(ax, ax.get_legend(), renderer) for ax in fig.axes if ax.get_legend()]


def _inside_axes(ax) -> bool:
    fig = ax.figure
    fig.canvas.draw()
    box, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return frame.x0 <= box.x0 and box.x1 <= frame.x1


@pytest.mark.parametrize("kind", ["line", "band", "markers", "bars"])
def test_a_legend_over_data_moves_out_of_the_axes(kind):
    """Like BN-Fig.1's panel (c): the p85 line runs through the upper right corner."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3))
    x = np.linspace(0, 1, 50)
    for ax in (left, right):
        if kind == "line":
            ax.plot(x, np.ones_like(x), label="p85")
            ax.plot(x, np.zeros_like(x), label="p15")
        elif kind == "band":
            ax.fill_between(x, 0, 1, label="min-max")
        elif kind == "markers":
            ax.scatter(np.r_[x, 0.95], np.r_[x * 0, 0.97], label="runs")
        else:
            ax.bar([0, 1, 2, 3], [1, 1, 1, 1], label="ms")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(loc="upper right")
    assert all(_covers(fig))  # the situation the fix is for
    legends_off_data(fig)
    assert not any(_covers(fig))
    assert not _inside_axes(left) and not _inside_axes(right)
    # the left panel's legend does not reach into the right panel
    fig.canvas.draw()
    assert left.get_legend().get_window_extent().x1 < right.get_window_extent().x0
    plt.close(fig)


def test_a_legend_over_empty_space_stays():
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 50)
    ax.plot(x, x, label="rising")
    ax.legend(loc="upper left")
    legends_off_data(fig)
    assert not any(_covers(fig)) and _inside_axes(ax)
    plt.close(fig)


def test_a_legend_moved_out_narrows_the_next_panel_whose_legend_is_checked_again():
    """As in `bench norms`' figure: moving the first panels' legends out narrows the last
    panel, whose bottom bar then reaches under its legend; it moves out too."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 6), sharey=True)
    at = np.arange(18)
    for i, ax in enumerate(axes):
        ax.barh(at, np.full(18, 1.0), 0.8, label="eager")
        ax.set_xlim(0, 3.0)
        if i < 2:
            ax.axvline(2.9, color="k", ls="--")  # under the legend from the start
        ax.legend(loc="lower right")
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.canvas.draw()
    last = axes[2]
    box = last.get_legend().get_window_extent()
    end = last.transData.inverted().transform((box.x0 - 8, 0))[0]  # 8 px left of the legend
    last.patches[-1].set_width(end)  # the bottom bar
    assert _covers(fig) == [True, True, False]
    legends_off_data(fig)
    assert not any(_covers(fig))
    assert not _inside_axes(last)
    plt.close(fig)
