"""The import rules of the layout: geoseg, geoseg.io, the vectorizer and the CLI's help stay torch-free."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import geoseg",
        "import geoseg.io",
        "import geoseg.models.config",
        "import geoseg.evaluation.metrics, geoseg.evaluation.spacenet, geoseg.datasets.stats",
        # the diagnostics arithmetic and the export/explain packages load without torch
        "import geoseg.evaluation.errormap, geoseg.evaluation.uncertainty, geoseg.evaluation.calibration, "
        "geoseg.export, geoseg.explain, geoseg.export.metadata, geoseg.io.overlay",
        # vectorizing a mask end to end, with a class table from a checkpoint's config, needs no torch
        "import numpy as np, rasterio, tempfile, os; from geoseg.vectorize import vectorize_raster; "
        "d = tempfile.mkdtemp(); p = os.path.join(d, 'm.tif'); "
        "ds = rasterio.open(p, 'w', driver='GTiff', width=8, height=8, count=1, dtype='uint8'); ds.write(np.eye(8, dtype='uint8'), 1); ds.close(); "
        "vectorize_raster(p, os.path.join(d, 'o.gpkg'), workers=0); from geoseg.models.config import read_config",
        "from click.testing import CliRunner; from geoseg.cli import cli; r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output",
    ],
)
def test_no_torch_import(code: str) -> None:
    loaded = _modules_after(code)
    assert "torch" not in loaded
    assert "torchgeo" not in loaded


def test_help_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "geoseg", "--help"], capture_output=True, text=True, check=True)
    assert "info" in out.stdout
