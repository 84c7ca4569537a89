"""The import rules of the layout, held in fresh interpreters.

geoseg, geoseg.io, geoseg.classes, the vectorizer, the dataset checker and kind registry, the
metrics, the configs and the CLI's help stay torch-free; io never imports from the layers above it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import geoseg",
        "import geoseg.io",
        "import geoseg.models.config",
        "import geoseg.evaluation.metrics, geoseg.evaluation.spacenet, geoseg.datasets.stats",
        "import geoseg.classes, geoseg.normalize, geoseg.errors",
        # checking a dataset folder and finding its files needs no torch (it once took 8 s to
        # import)
        "import geoseg.datasets.check, geoseg.datasets.kinds, geoseg.datasets.dubai, "
        "geoseg.datasets.spacenet6, geoseg.datasets.scene",
        "import geoseg.datasets, geoseg.training, geoseg.evaluation, geoseg.inference, "
        "geoseg.models",
        "import geoseg.training.config",
        "import geoseg.io.quicklook, geoseg.models.default",
        # the diagnostics arithmetic and the export/explain packages load without torch
        "import geoseg.evaluation.errormap, geoseg.evaluation.uncertainty, "
        "geoseg.evaluation.calibration, geoseg.export, geoseg.explain, geoseg.export.metadata, "
        "geoseg.io.overlay",
        # vectorizing a mask end to end, with a class table from a checkpoint's config, needs no
        # torch
        "import numpy as np, rasterio, tempfile, os; from geoseg.vectorize import "
        "vectorize_raster; d = tempfile.mkdtemp(); p = os.path.join(d, 'm.tif'); ds = "
        "rasterio.open(p, 'w', driver='GTiff', width=8, height=8, count=1, dtype='uint8'); "
        "ds.write(np.eye(8, dtype='uint8'), 1); ds.close(); vectorize_raster(p, os.path.join(d, "
        "'o.gpkg'), workers=0); from geoseg.models.config import read_config",
        "from click.testing import CliRunner; from geoseg.cli import cli; r = "
        "CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_import(code: str) -> None:
    loaded = _modules_after(code)
    assert "torch" not in loaded
    assert "torchgeo" not in loaded


def test_help_lists_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "geoseg", "--help"], capture_output=True, text=True, check=True
    )
    assert "info" in out.stdout


@pytest.mark.parametrize("package", ["geoseg.io", "geoseg.classes", "geoseg.normalize"])
def test_lower_layers_import_nothing_above(package: str) -> None:
    """io, classes and normalize sit at the bottom: importing them loads no other geoseg layer."""
    loaded = _modules_after(
        f"import {package}; import geoseg.io.quicklook"
        if package == "geoseg.io"
        else f"import {package}"
    )
    above = {
        "geoseg.vectorize",
        "geoseg.datasets",
        "geoseg.inference",
        "geoseg.models",
        "geoseg.training",
        "geoseg.evaluation",
        "geoseg.cli",
    }
    assert not {
        m for m in loaded if m.split(".")[0] == "geoseg" and ".".join(m.split(".")[:2]) in above
    }
