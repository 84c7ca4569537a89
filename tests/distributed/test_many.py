from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.distributed import predict_many
from geoseg.distributed.blocks import block_grid
from geoseg.distributed.inputs import OutputSet
from geoseg.distributed.vectorize import vectorize_on_cluster
from geoseg.inference import PredictOptions, predict_raster
from geoseg.models.checkpoint import LoadedModel
from geoseg.vectorize import vectorize_raster
from tests.conftest import write_raster
from tests.distributed.conftest import read, textured
from tests.vectorize.conftest import landcover, normalized
from tests.vectorize.conftest import read as read_polygons

OPTS = PredictOptions(device="cpu", precision="fp32", workers=1)
pytestmark = pytest.mark.slow  # a cluster, a server and several predictions: seconds each


def reference(
    src: Path, tmp_path: Path, model: LoadedModel, **kwargs: Any
) -> dict[str, np.ndarray]:
    out = tmp_path / "ref" / src.stem
    out.mkdir(parents=True)
    predict_raster(
        src,
        out / "m.tif",
        model,
        OPTS,
        probabilities=out / "p.tif",
        confidence=out / "c.tif",
        **kwargs,
    )
    return {
        "mask": read(out / "m.tif"),
        "probabilities": read(out / "p.tif"),
        "confidence": read(out / "c.tif"),
    }


def test_many_rasters_on_a_cluster_equal_single_process_runs_and_resume(
    rasters: list[Path], tmp_path: Path, tiny_model: LoadedModel, client: Any
) -> None:
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    result = predict_many(
        [str(rasters[0].parent)],
        out,
        tiny_model,
        OPTS,
        scheduler=client,
        probabilities=True,
        confidence=True,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert result.predicted == 3 and result.skipped == 0 and seen[-1] == (3, 3)
    for src, done in zip(rasters, result.done, strict=True):
        ref = reference(src, tmp_path, tiny_model)
        assert done.outputs.src == str(src)
        np.testing.assert_array_equal(read(done.outputs.mask), ref["mask"])
        np.testing.assert_array_equal(read(done.outputs.probabilities), ref["probabilities"])  # type: ignore[arg-type]
        np.testing.assert_array_equal(read(done.outputs.confidence), ref["confidence"])  # type: ignore[arg-type]
    # a second run finds every output and does nothing; a removed output is redone
    stamp = os.stat(result.done[0].outputs.mask).st_mtime_ns
    os.remove(result.done[2].outputs.probabilities)  # type: ignore[arg-type]
    again = predict_many(
        [str(rasters[0].parent)],
        out,
        tiny_model,
        OPTS,
        scheduler=client,
        probabilities=True,
        confidence=True,
    )
    assert (
        again.skipped == 2
        and again.predicted == 1
        and os.stat(result.done[0].outputs.mask).st_mtime_ns == stamp
    )
    assert Path(result.done[2].outputs.probabilities).exists()  # type: ignore[arg-type]


@pytest.mark.parametrize("block", [64, 100])
def test_one_raster_as_blocks_is_bit_identical(
    tmp_path: Path, tiny_model: LoadedModel, client: Any, block: int
) -> None:
    src = write_raster(tmp_path / "big.tif", textured(260, 300, seed=3), nodata=1)
    ref = reference(src, tmp_path, tiny_model)
    res = predict_many(
        [src],
        tmp_path / "out",
        tiny_model,
        OPTS,
        scheduler=client,
        probabilities=True,
        confidence=True,
        block_size=block,
    )
    done = res.done[0]
    assert done.extra["blocks"] == len(block_grid(260, 300, block)) > 4
    ref_files = {"mask": "m.tif", "probabilities": "p.tif", "confidence": "c.tif"}
    for name, ref_name in ref_files.items():
        got_path = getattr(done.outputs, name)
        np.testing.assert_array_equal(read(got_path), ref[name], err_msg=name)
        with (
            rasterio.open(got_path) as got,
            rasterio.open(tmp_path / "ref" / src.stem / ref_name) as want,
        ):  # the same nodata value and masks as a single-process run
            assert (got.nodata, got.mask_flag_enums) == (want.nodata, want.mask_flag_enums), name


def test_named_output_sets_run_in_this_process(tmp_path: Path, tiny_model: LoadedModel) -> None:
    src = write_raster(tmp_path / "a.tif", textured(70, 90))
    named = OutputSet(str(src), str(tmp_path / "any name.tif"))
    res = predict_many([named], None, tiny_model, OPTS)
    assert res.workers == 0 and res.done[0].outputs == named
    np.testing.assert_array_equal(read(named.mask), reference(src, tmp_path, tiny_model)["mask"])
    with pytest.raises(TypeError, match="output sets alone"):
        predict_many([named, str(src)], tmp_path / "out", tiny_model, OPTS)
    with pytest.raises(TypeError, match="output sets alone"):
        predict_many([str(src)], None, tiny_model, OPTS)


def test_blocks_resolve_auto_precision_once(
    tmp_path: Path, tiny_model: LoadedModel, client: Any
) -> None:
    src = write_raster(tmp_path / "a.tif", textured(130, 140))
    res = predict_many(
        [src],
        tmp_path / "out",
        tiny_model,
        OPTS.replace(precision="auto"),
        scheduler=client,
        block_size=64,
    )
    # what a single-process run chooses for the same raster and model
    single = predict_raster(
        src, tmp_path / "single.tif", tiny_model, OPTS.replace(precision="auto")
    )
    assert res.done[0].precision == single.precision


def test_vectorize_on_a_cluster_gives_the_same_polygons(tmp_path: Path, client: Any) -> None:
    mask = write_raster(tmp_path / "mask.tif", landcover((257, 301), 2), nodata=255)
    ref = vectorize_raster(mask, tmp_path / "ref.fgb", block_size=64, workers=0, exclude=[0])
    got = vectorize_on_cluster(
        mask, tmp_path / "got.fgb", scheduler=client, block_size=64, exclude=[0]
    )
    a, b = read_polygons(ref.path), read_polygons(got.path)
    assert got.features == ref.features == len(b)
    assert normalized(a.geometry.values) == normalized(b.geometry.values)
    assert sorted(a.class_id) == sorted(b.class_id)


def test_cli_several_inputs_into_a_folder_then_resume(rasters: list[Path], tmp_path: Path) -> None:
    """Several inputs take a bundled model by name, as one input does."""
    out = tmp_path / "out"
    args = [
        "predict",
        str(rasters[0]),
        str(rasters[1]),
        str(out) + "/",
        "--model",
        "fast",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--vector",
        ".gpkg",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "2 raster(s) predicted, 0 already done" in first.output
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith((".qml", ".aux.xml"))) == [
        "catalog.json",
        "scene0_classes.stac.json",
        "scene0_classes.tif",
        "scene0_polygons.gpkg",
        "scene1_classes.stac.json",
        "scene1_classes.tif",
        "scene1_polygons.gpkg",
    ]
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "0 raster(s) predicted, 2 already done" in second.output
    bad = CliRunner().invoke(cli, ["predict", str(rasters[0]), str(out), "--scheduler", "local:0"])
    assert bad.exit_code != 0 and "expected local" in bad.output
