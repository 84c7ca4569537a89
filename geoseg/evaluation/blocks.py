"""One image's prediction and labels, streamed together in bands of rows.

``evaluate`` and ``diagnose`` both walk an image through :func:`scored_blocks`: the engine's
blended probabilities (:func:`geoseg.inference.engine.iter_probabilities`, the values ``predict``
writes), the predicted class of each pixel, and the labels of the same window read through
:class:`~geoseg.io.labels.LabelReader`. Nothing of the image is held whole, so memory stays that of
one band of rows whatever the image's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.kinds import EvalPair
from geoseg.errors import DatasetError, NoCRSWarning
from geoseg.inference.options import PredictOptions
from geoseg.io.labels import LabelReader

__all__ = ["CHUNK_PIXELS", "ScoredBlock", "check_label_classes", "pair_name", "scored_blocks"]

# pixels per block handed out: the engine's bands of rows (thousands of columns wide) are cut into
# chunks of rows, so the per-pixel temporaries of scoring (int64 labels and counts, entropy...)
# stay a few MB whatever the raster's width
CHUNK_PIXELS = 1 << 20
GDAL_CACHE_BYTES = 128 * 2**20  # GDAL's block cache while an image streams


@dataclass
class ScoredBlock:
    """A window of an image with its prediction and labels.

    Attributes:
        window: where the block sits in the image.
        probs: ``(classes, rows, cols)`` float32 blended probabilities.
        valid: ``(rows, cols)`` pixels with input data that a tile covered.
        pred: ``(rows, cols)`` uint8 predicted class indexes (meaningless where not ``valid``).
        truth: ``(rows, cols)`` int64 label class indexes (``IGNORE_INDEX`` where unlabelled).
        counted: ``(rows, cols)`` pixels that count in the scores: valid and labelled.
    """

    window: Window
    probs: np.ndarray
    valid: np.ndarray
    pred: np.ndarray
    truth: np.ndarray
    counted: np.ndarray

    @property
    def offsets(self) -> tuple[int, int]:
        """``(row_off, col_off)``."""
        return int(self.window.row_off), int(self.window.col_off)


def pair_name(pair: EvalPair) -> str:
    """How reports name a pair: its name, else the image's file name."""
    return pair.name or Path(pair.image).name


def check_label_classes(truth: np.ndarray, names: Sequence[str], name: str) -> None:
    """Refuse labels that hold a class index the model does not know.

    Raises:
        DatasetError: naming the class, the model's classes and the likely cause.
    """
    top = int(truth[truth != IGNORE_INDEX].max(initial=-1))
    if top >= len(names):
        raise DatasetError(
            f"{name}: labels hold class {top} but the model knows {len(names)} classes "
            f"({', '.join(names)}); is this the right checkpoint for these labels?"
        )


def scored_blocks(
    pair: EvalPair, loaded: Any, options: PredictOptions, names: Sequence[str]
) -> Iterator[ScoredBlock]:
    """The image of ``pair`` predicted by ``loaded`` and its labels, in chunks of rows of at most
    :data:`CHUNK_PIXELS` pixels.

    Raises:
        DatasetError: labels of another size than the image, or holding an unknown class.
    """
    from geoseg.inference.engine import iter_probabilities
    from geoseg.inference.tiles import argmax_classes

    name = pair_name(pair)
    n = len(names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoCRSWarning)
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        labels = LabelReader(pair.labels, pair.image, name=name)
    # GDAL's block cache defaults to 5 % of RAM and fills with every decoded block of the image
    # and labels as they stream by (1.2 GB on a 20000² RGB image); a tile row's blocks suffice
    with labels, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        for block in iter_probabilities(pair.image, loaded, options):
            assert block.window is not None  # the engine's arrays carry their window
            r0, c0 = int(block.window.row_off), int(block.window.col_off)
            rows, cols = block.valid.shape
            step = max(1, CHUNK_PIXELS // max(cols, 1))
            for a in range(0, rows, step):  # views of the band: no copy of the probabilities
                probs, valid = block.data[:, a : a + step], block.valid[a : a + step]
                window = Window(c0, r0 + a, cols, valid.shape[0])
                pred = np.empty(probs.shape[1:], np.uint8)
                argmax_classes(probs, pred)
                truth = labels.read(window)
                check_label_classes(truth, names, name)
                counted = valid & (truth != IGNORE_INDEX) & (truth >= 0) & (truth < n)
                yield ScoredBlock(window, probs, valid, pred, truth, counted)
