"""The Dubai aerial imagery dataset (Humans in the Loop / MBRSC): 8 tiles of JPG images, PNG masks.

Layout, as distributed: ``<root>/Tile N/images/image_part_NNN.jpg`` with ``<root>/Tile N/masks/
image_part_NNN.png``. The images are not georeferenced; scenes get an identity transform.

Masks are decoded by the colours the PNGs actually hold (the ``classes.json`` shipped with the
dataset lists other colours). Palette PNGs (tiles 2 and 4) are converted to RGB first. Black
(#000000, unannotated) and any colour not in the table become ``IGNORE_INDEX``; so does
"unlabeled" (#9B9B9B) unless asked to keep it as a class.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.classes import IGNORE_INDEX, ClassInfo, ClassTable
from geoseg.datasets.check import CheckReport, _handle, _start
from geoseg.datasets.kind import DatasetKind
from geoseg.datasets.scene import Scene
from geoseg.datasets.source import DataSource, EvalPair, OnError, Progress, SceneSet
from geoseg.datasets.stats import StatsResult, stream_stats
from geoseg.errors import ConfigError, DatasetError

__all__ = [
    "DUBAI_CLASSES",
    "DUBAI_COLOURS",
    "DubaiItem",
    "decode_mask",
    "find_dubai",
    "load_dubai",
    "read_item",
    "read_mask",
    "split_tiles",
]

# colour in the mask PNGs -> (class id, name). Ids 0-4 are the five land-cover classes.
DUBAI_COLOURS: dict[str, tuple[int, str]] = {
    "#3c1098": (0, "building"),
    "#8429f6": (1, "land"),
    "#6ec1e4": (2, "road"),
    "#fedd3a": (3, "vegetation"),
    "#e2a929": (4, "water"),
    "#9b9b9b": (5, "unlabeled"),
}
UNLABELED = 5

# The classes a model trained on this dataset carries, with colours people can tell apart on a map
# and over imagery (the mask PNGs' own colours above are two purples and two yellows): buildings
# red, land tan, roads yellow, vegetation green, water blue. The bundled models carry this table.
DUBAI_CLASSES = ClassTable(
    (
        ClassInfo(0, "building", (230, 25, 75)),
        ClassInfo(1, "land", (222, 184, 135)),
        ClassInfo(2, "road", (255, 215, 0)),
        ClassInfo(3, "vegetation", (60, 180, 75)),
        ClassInfo(4, "water", (0, 110, 230)),
    )
)
_LUT_KEYS = np.array([int(h[1:], 16) for h in DUBAI_COLOURS], np.int64)
_LUT_VALUES = np.array([i for i, _ in DUBAI_COLOURS.values()], np.uint8)
_ORDER = np.argsort(_LUT_KEYS)


def decode_mask(rgb: np.ndarray, *, keep_unlabeled: bool = False) -> np.ndarray:
    """``(rows, cols, 3)`` uint8 mask colours to class ids; unknown colours to ``IGNORE_INDEX``."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise DatasetError(f"expected an RGB mask (rows, cols, 3), got shape {rgb.shape}")
    packed = (
        (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    )
    keys = _LUT_KEYS[_ORDER]
    pos = np.clip(np.searchsorted(keys, packed), 0, keys.size - 1)
    out = np.where(keys[pos] == packed, _LUT_VALUES[_ORDER][pos], IGNORE_INDEX).astype(np.uint8)
    if not keep_unlabeled:
        out[out == UNLABELED] = IGNORE_INDEX
    return out


@dataclass(frozen=True)
class DubaiItem:
    tile: int
    image: Path
    mask: Path


_TILE = re.compile(r"^Tile (\d+)$")


def find_dubai(root: str | os.PathLike[str]) -> list[DubaiItem]:
    """Every image/mask pair under ``root`` (the dataset folder or any folder above its tiles).

    Raises:
        DatasetError: no ``Tile N`` folder, or an image without its mask.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(
            f"{base}: not a folder; expected the Dubai dataset folder holding 'Tile 1' ... 'Tile 8'"
        )
    tiles = sorted(
        (p for p in base.rglob("Tile *") if p.is_dir() and _TILE.match(p.name)),
        key=lambda p: int(p.name.split()[1]),
    )
    if not tiles:
        raise DatasetError(
            f"{base}: no 'Tile N' folder found; expected the Dubai layout "
            "'Tile N/images/image_part_NNN.jpg' + 'Tile N/masks/image_part_NNN.png'"
        )
    items, missing = [], []
    for t in tiles:
        n = int(t.name.split()[1])
        for img in sorted((t / "images").glob("*.jpg")):
            mask = t / "masks" / (img.stem + ".png")
            if mask.is_file():
                items.append(DubaiItem(n, img, mask))
            else:
                missing.append(str(img))
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) have no mask of the same name under masks/ (first: "
            f"{missing[0]})"
        )
    if not items:
        raise DatasetError(
            f"{base}: 'Tile N' folders hold no images/*.jpg; expected the Dubai layout"
        )
    return items


def split_tiles(
    items: Iterable[DubaiItem], *, val: Sequence[int] = (1,), test: Sequence[int] = (8,)
) -> dict[str, list[DubaiItem]]:
    """Split by tile folder, so neighbouring patches of one tile never straddle splits."""
    out: dict[str, list[DubaiItem]] = {"train": [], "val": [], "test": []}
    for it in items:
        out["test" if it.tile in test else "val" if it.tile in val else "train"].append(it)
    return out


def _rgb(path: Path, item: DubaiItem) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path.name} of tile {item.tile}: {exc}") from None


def read_mask(item: DubaiItem, *, keep_unlabeled: bool = False) -> np.ndarray:
    """The class ids of one mask PNG (RGB or palette), ``IGNORE_INDEX`` where unannotated."""
    return decode_mask(_rgb(item.mask, item), keep_unlabeled=keep_unlabeled)


def read_item(item: DubaiItem, *, keep_unlabeled: bool = False) -> Scene:
    """Decode one pair into a :class:`Scene` (image ``(3, rows, cols)`` uint8)."""
    image = _rgb(item.image, item)
    mask = read_mask(item, keep_unlabeled=keep_unlabeled)
    if mask.shape != image.shape[:2]:
        raise DatasetError(
            f"{item.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    return Scene(
        image=np.ascontiguousarray(image.transpose(2, 0, 1)),
        mask=mask,
        name=str(item.image),
        group=f"Tile {item.tile}",
    )


def load_dubai(
    root: str | Path, tiles: Sequence[int] | None = None, *, keep_unlabeled: bool = False
) -> list[Scene]:
    """Decode every pair of the given tiles (all when None) into memory."""
    items = [it for it in find_dubai(root) if tiles is None or it.tile in tiles]
    if not items:
        raise DatasetError(f"{root}: no image in tile(s) {list(tiles or [])}")
    return [read_item(it, keep_unlabeled=keep_unlabeled) for it in items]


def _held_out(source: DataSource) -> tuple[list[int], list[int]]:
    split = source.split or {}
    val, test = split.get("val", [1]), split.get("test", [8])
    if (
        not isinstance(val, list | tuple)
        or not isinstance(test, list | tuple)
        or not all(isinstance(t, int) for t in [*val, *test])
    ):
        raise ConfigError(
            f"data.split: for dubai, expected tile numbers like {{val: [1], test: [8]}}, got "
            f"{split!r}"
        )
    return list(val), list(test)


def stats_dubai(
    source: DataSource, sar_db: bool | None = None, *, tiles: Sequence[int] | None = None
) -> StatsResult:
    """Statistics of the Dubai images (of ``tiles`` only, when given)."""
    items = [it for it in find_dubai(source.root) if tiles is None or it.tile in tiles]
    if not items:
        raise DatasetError(f"{source.root}: no image in tile(s) {list(tiles or [])}")
    return stream_stats((read_item(it).arrays()[0], None) for it in items)


class DubaiKind(DatasetKind):
    """The ``dubai`` kind: Humans in the Loop aerial imagery, split by tile folder."""

    name = "dubai"
    description = "Humans in the Loop aerial imagery: 'Tile N/images/*.jpg' + 'Tile N/masks/*.png'"

    def classes(self, source: DataSource) -> ClassTable:
        """The five land-cover classes."""
        return DUBAI_CLASSES

    def find(self, source: DataSource) -> list[DubaiItem]:
        """Every image/mask pair under ``source.root``."""
        if not source.root:
            raise ConfigError(
                "data.root: give the Dubai dataset folder (the one holding 'Tile 1' ... 'Tile 8')"
            )
        return find_dubai(source.root)

    def split(
        self, items: Sequence[DubaiItem], source: DataSource, seed: int = 0
    ) -> dict[str, list[DubaiItem]]:
        """Split by the tile numbers of ``source.split`` (``{val: [1], test: [8]}``)."""
        val, test = _held_out(source)
        return split_tiles(items, val=val, test=test)

    def scene(self, item: DubaiItem, source: DataSource) -> Scene:
        """One pair decoded into memory."""
        return read_item(item)

    def scenes(self, source: DataSource, seed: int = 0) -> SceneSet:
        """Training and validation scenes, split by tile folder."""
        val, test = _held_out(source)
        parts = self.split(self.find(source), source, seed)
        return SceneSet(
            [read_item(it) for it in parts["train"]],
            [read_item(it) for it in parts["val"]],
            DUBAI_CLASSES,
            band_names=("red", "green", "blue"),
            description={
                "dataset": "Dubai aerial imagery (Humans in the Loop / MBRSC)",
                "split": {"val_tiles": val, "test_tiles": test},
            },
        )

    def pairs(self, source: DataSource, split: str = "test", seed: int = 0) -> list[EvalPair]:
        """The images of the ``split`` tiles with their decoded masks."""
        part = self.split(self.find(source), source, seed)[split]
        if not part:
            raise DatasetError(
                f"the {split} split of {source.root} holds no image; check data.split"
            )
        return [
            EvalPair(
                str(it.image), read_mask(it).astype(np.int64), f"Tile {it.tile}/{it.image.name}"
            )
            for it in part
        ]

    def check(
        self, source: DataSource, on_error: OnError = "stop", progress: Progress | None = None
    ) -> CheckReport:
        """Every mask decoded once: unknown colours, class pixels, tile sizes."""
        from PIL import Image

        base, report, counts = _start(source)
        total = 0
        items = find_dubai(base)
        report.files, report.images, report.labels = 2 * len(items), len(items), len(items)
        report.groups = dict(Counter(f"Tile {it.tile}" for it in items))
        unknown = 0
        for k, it in enumerate(items):
            try:
                m = read_mask(it, keep_unlabeled=True)
                with Image.open(it.image) as im:
                    size = im.size
            except (OSError, DatasetError) as exc:
                _handle(report, str(it.mask), exc, on_error)
                continue
            if (m.shape[1], m.shape[0]) != size:
                report.problems.append(
                    f"{it.mask}: mask {m.shape[1]}x{m.shape[0]} differs from its image "
                    f"{size[0]}x{size[1]}"
                )
            counts.update(dict(zip(*np.unique(m, return_counts=True), strict=True)))
            unknown += int((m == IGNORE_INDEX).sum())
            total += m.size
            if progress:
                progress(k + 1, len(items))
        names = {i: n for i, n in DUBAI_COLOURS.values()}
        report.class_pixels = {
            names[int(c)]: int(v) for c, v in sorted(counts.items()) if c != IGNORE_INDEX
        }
        report.class_pixels["unannotated (ignored)"] = unknown
        report.crs = {"none (not georeferenced)": len(items)}
        return report

    def stats(self, source: DataSource, sar_db: bool | None = None) -> StatsResult:
        """Statistics of the images."""
        return stats_dubai(source, sar_db)
