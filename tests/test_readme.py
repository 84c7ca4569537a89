"""The README's Python blocks run as written, in a folder of small generated data (the
documentation pages' blocks run the same way: ``test_docs.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import box

from geoseg.datasets import DATASET_KINDS
from tests.conftest import REPO, write_raster
from tests.datasets.conftest import write_dubai


def python_blocks(text: str) -> list[str]:
    """The fenced ```python blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_blocks_that_do_not_run_say_why() -> None:
    """``py`` blocks (not run here) must say what they need, e.g. a running server."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"^```py\n(.*?)^```$", text, flags=re.S | re.M):
        assert block.startswith("# needs "), block[:80]


def test_blocks_are_found() -> None:
    assert (
        len(python_blocks("x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\n```\n"))
        == 2
    )
    assert len(python_blocks((REPO / "README.md").read_text(encoding="utf-8"))) >= 1


def write_workspace(folder: Path) -> None:
    """What the blocks expect in their folder: ``scene.tif`` (4 bands, uint16), ``dubai/`` (the
    Dubai layout), ``images/a.tif`` and ``labels/a.gpkg``."""
    tmp_path = folder
    rng = np.random.default_rng(0)
    t = Affine(0.5, 0, 592_000.0, 0, -0.5, 5_747_500.0)
    y, x = np.mgrid[0:256, 0:256]
    scene = np.stack(
        [
            (np.sin(x / (9.0 + k)) + np.cos(y / 13.0)) * 900 + 2000 + rng.normal(0, 50, (256, 256))
            for k in range(4)
        ]
    ).astype(np.uint16)
    write_raster(tmp_path / "scene.tif", scene, transform=t, crs="EPSG:32631")
    write_dubai(tmp_path / "dubai", tiles=(1, 2, 8), parts=1, size=(256, 256))
    (tmp_path / "images").mkdir()
    image = rng.integers(20, 120, (3, 256, 256)).astype(np.uint8)
    image[:, 64:128, 64:160] = 220  # two bright roofs
    image[:, 210:240, 200:250] = 220
    image[:, :, :16] = 0  # no data on the left edge
    write_raster(
        tmp_path / "images" / "a.tif",
        image,
        transform=Affine(1.0, 0, 600_000.0, 0, -1.0, 5_750_000.0),
        nodata=0,
    )
    (tmp_path / "labels").mkdir()
    gpd.GeoDataFrame(
        {"class": ["building", "building"]},
        geometry=[
            box(600_064, 5_749_872, 600_160, 5_749_936),
            box(600_200, 5_749_760, 600_250, 5_749_790),
        ],
        crs="EPSG:32631",
    ).to_file(tmp_path / "labels" / "a.gpkg")


def run_blocks(page: Path) -> dict[str, object]:
    """Run a page's ``python`` blocks in order, in one namespace, in the current folder."""
    namespace: dict[str, object] = {"__name__": page.stem}
    kinds = dict(DATASET_KINDS)
    try:
        for block in python_blocks(page.read_text(encoding="utf-8")):
            exec(compile(block, str(page.relative_to(REPO)), "exec"), namespace)
    finally:  # a page may register a dataset kind: leave the registry as other tests expect it
        DATASET_KINDS.clear()
        DATASET_KINDS.update(kinds)
    return namespace


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks(REPO / "README.md")
    with rasterio.open("landcover.tif") as mask:
        assert mask.shape == (256, 256) and "vegetation" in mask.tags()["CLASS_NAMES"]
    polys = namespace["polys"]
    layer = polys.layers[0] if polys.layers else None  # type: ignore[attr-defined]
    polygons = gpd.read_file("landcover.gpkg", layer=layer)
    assert len(polygons) == polys.features > 0 and polygons.is_valid.all()  # type: ignore[attr-defined]
