"""Without the Dubai set, the training notebook builds a labelled set from the shipped sample.

The suite usually runs its notebooks with the Dubai set beside it, so this path would go untested:
here the notebook's data cell runs on its own, with ``GEOSEG_DATA`` unset, and the set it writes
must read back through geoseg's own Dubai reader with the sample's labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import REPO

nbformat = pytest.importorskip(
    "nbformat", reason="notebook tests need the dev extra (nbformat, nbclient, ipykernel)"
)
SAMPLE = REPO / "sample_data" / "dubai-heldout"


def _cells_up_to(path: Path, marker: str) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    last = next(i for i, s in enumerate(code) if marker in s)
    return code[: last + 1]


def test_training_notebook_labels_the_shipped_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geoseg.datasets.dubai import find_dubai, read_mask

    monkeypatch.delenv("GEOSEG_DATA", raising=False)
    monkeypatch.setenv("GEOSEG_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.chdir(REPO / "notebooks")
    scope: dict[str, object] = {}
    for source in _cells_up_to(REPO / "notebooks" / "02_training.ipynb", "HAVE ="):
        exec(compile(source, "02_training.ipynb", "exec"), scope)
    assert scope["HAVE"] is False
    root = Path(str(scope["DUBAI"]))

    with rasterio.open(SAMPLE / "labels" / "tile8_image_part_003.tif") as src:
        labels = src.read(1)
    items = find_dubai(root)
    assert len(items) == 2
    decoded = np.concatenate([read_mask(item) for item in items], axis=1)
    assert decoded.shape == labels.shape
    assert np.array_equal(decoded, labels), "the written masks do not decode to the sample's labels"
    assert (decoded < 5).mean() > 0.5
