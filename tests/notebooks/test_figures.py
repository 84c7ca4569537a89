"""The notebook figure check flags what a person would see wrong, and nothing else."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.backend_bases import FigureCanvasBase

from tests.notebooks.figures import figure_problems, install, read_records

RNG = np.random.default_rng(0)
TEXTURE = RNG.normal(0, 1, (64, 64)).cumsum(0)  # a real-looking scalar field


@pytest.fixture
def ax() -> Iterator[plt.Axes]:
    fig, ax = plt.subplots()
    ax.set_title("panel")
    yield ax
    plt.close(fig)


def problems(ax: plt.Axes) -> list[str]:
    return [p["problem"] for p in figure_problems(ax.figure)]


def test_a_textured_image_an_rgb_photo_and_a_histogram_pass(ax: plt.Axes) -> None:
    ax.imshow(TEXTURE, cmap="gray")
    fig, (a, b) = plt.subplots(1, 2)
    a.imshow(RNG.integers(0, 255, (32, 32, 3)).astype(np.uint8))
    b.hist(TEXTURE.ravel(), bins=20)
    ax.figure.colorbar(ax.images[0], ax=ax)
    assert problems(ax) == [] and figure_problems(fig) == []
    plt.close(fig)


def test_a_constant_chip_is_flat(ax: plt.Axes) -> None:
    ax.imshow(np.full((32, 32, 3), 0.4))
    assert problems(ax) == ["near-uniform: 100% of the image drawn is one shade"]


def test_an_all_nan_array_is_named(ax: plt.Axes) -> None:
    ax.imshow(np.full((8, 8), np.nan), cmap="gray")
    assert problems(ax) == ["draws an array of (8, 8) without one finite value (all NaN or masked)"]


def test_mostly_nan_draws_a_white_panel(ax: plt.Axes) -> None:
    data = np.full((100, 100), np.nan)
    data[:3] = RNG.normal(0, 1, (3, 100))  # 3 % of the pixels hold values
    ax.imshow(data, cmap="gray")
    assert problems(ax) == ["near-uniform: 97% of the image drawn is one shade"]


def test_limits_that_clip_nearly_everything(ax: plt.Axes) -> None:
    ax.imshow(TEXTURE + 60, cmap="gray", vmin=-30, vmax=10)  # dB of 39-78 drawn on -30..10
    (problem,) = problems(ax)
    assert problem.startswith("vmin=-30, vmax=10 clip 100% of the values drawn")


def test_rgb_floats_out_of_range_are_drawn_white(ax: plt.Axes) -> None:
    ax.imshow(RNG.uniform(20, 200, (16, 16, 3)))  # matplotlib clips them to 0..1 when drawn
    assert problems(ax) == ["near-uniform: 100% of the image drawn is one shade"]


def test_an_empty_panel_and_an_empty_histogram(ax: plt.Axes) -> None:
    fig, (a, b) = plt.subplots(1, 2)
    a.axis("off")
    b.hist(np.array([]), bins=10)
    assert [p["problem"] for p in figure_problems(fig)] == ["draws nothing", "draws nothing"]
    plt.close(fig)


def test_a_uniform_panel_saved_to_a_file_is_not_a_fault(ax: plt.Axes) -> None:
    ax.imshow(np.zeros((8, 8, 3)))  # e.g. a ground-truth panel that is one class
    assert figure_problems(ax.figure, shown=False) == []
    ax.imshow(np.full((8, 8), np.nan))
    assert [p["problem"] for p in figure_problems(ax.figure, shown=False)] == [
        "draws an array of (8, 8) without one finite value (all NaN or masked)"
    ]


def test_install_records_every_printed_figure(tmp_path: Path) -> None:
    original = FigureCanvasBase.print_figure
    try:
        install(tmp_path / "figures")
        fig, (a, b) = plt.subplots(1, 2)
        a.imshow(TEXTURE)
        b.imshow(np.zeros((4, 4)), vmin=0, vmax=1)
        b.set_title("flat")
        fig.savefig(tmp_path / "out.png")  # a file: the flat panel is not counted
        fig.savefig(io.BytesIO(), format="png")  # as a notebook shows a figure
        plt.close(fig)
    finally:
        FigureCanvasBase.print_figure = original  # type: ignore[method-assign]
    saved, record = read_records(tmp_path / "figures")
    assert (saved["shown"], saved["problems"]) == (False, [])
    assert record["titles"] == ["", "flat"] and (record["figure"], record["shown"]) == (2, True)
    assert record["problems"] == [
        {
            "panel": 1,
            "title": "flat",
            "problem": "near-uniform: 100% of the image drawn is one shade",
        }
    ]
    assert (tmp_path / "figures" / "figure-02.png").is_file() and (tmp_path / "out.png").is_file()
