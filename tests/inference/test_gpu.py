"""The CUDA paths: device choice, reduced precisions checked against fp32, and outputs on the very
grid and nodata of a CPU run. Marked ``gpu``: skipped where torch sees no CUDA device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from geoseg.errors import DeviceError
from geoseg.inference import predict_block, predict_raster
from geoseg.inference.runtime import Runner, fast_precision, resolve_device
from geoseg.models.checkpoint import LoadedModel
from tests.inference.conftest import config_for, conv3_model

pytestmark = pytest.mark.gpu


@pytest.fixture
def scene(make_raster, textured_rgb) -> Path:
    data = textured_rgb(300, 260)
    data[:, :20, :30] = 0
    return make_raster(data, nodata=0)


@pytest.fixture
def conv3() -> LoadedModel:
    return LoadedModel(conv3_model(), config_for(tile=64, overlap=16))


def test_auto_picks_the_gpu_and_absent_gpus_are_refused() -> None:
    count = torch.cuda.device_count()
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device(f"cuda:{count - 1}") == torch.device(f"cuda:{count - 1}")
    with pytest.raises(
        DeviceError,
        match=rf"'cuda:{count}' was asked for but only {count} CUDA GPU\(s\) are visible",
    ):
        resolve_device(f"cuda:{count}")


def test_a_prediction_runs_on_the_gpu(tmp_path: Path, scene: Path, conv3: LoadedModel) -> None:
    res = predict_raster(scene, tmp_path / "gpu.tif", conv3, device="auto", precision="fp32")
    assert (res.device, res.precision) == ("cuda", "fp32")
    assert res.tiles_run > 0


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precisions_agree_with_fp32(
    scene: Path, conv3: LoadedModel, precision: str
) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    window = Window(0, 0, 260, 300)
    ref = predict_block(scene, conv3, window, device="cuda", precision="fp32", workers=1)
    got = predict_block(scene, conv3, window, device="cuda", precision=precision, workers=1)
    assert (got.data.argmax(0) == ref.data.argmax(0))[ref.valid].mean() >= Runner.AGREEMENT
    assert np.abs(got.data - ref.data)[:, ref.valid].max() < 0.05


def test_auto_precision_follows_its_agreement_check(conv3: LoadedModel) -> None:
    runner = Runner(conv3.model.cuda(), torch.device("cuda"), "auto", freeze=False)
    with torch.inference_mode():
        runner(torch.rand(2, 3, 64, 64))
    fast = fast_precision(torch.device("cuda"))
    assert runner.agreement is not None
    expected = fast if runner.agreement >= Runner.AGREEMENT else "fp32"
    assert runner.precision == expected


def test_gpu_output_has_the_cpu_outputs_grid_and_nodata(
    tmp_path: Path, scene: Path, conv3: LoadedModel
) -> None:
    common = {"precision": "fp32", "workers": 1}
    predict_raster(scene, tmp_path / "cpu.tif", conv3, device="cpu", **common)
    predict_raster(scene, tmp_path / "gpu.tif", conv3, device="cuda", **common)
    with rasterio.open(tmp_path / "cpu.tif") as a, rasterio.open(tmp_path / "gpu.tif") as b:
        assert (a.transform, a.crs, a.shape, a.nodata, a.dtypes) == (
            b.transform,
            b.crs,
            b.shape,
            b.nodata,
            b.dtypes,
        )
        assert a.colormap(1) == b.colormap(1)
        cpu, gpu = a.read(1), b.read(1)
    assert np.array_equal(cpu == 255, gpu == 255) and (cpu[:20, :30] == 255).all()
    assert (cpu == gpu).mean() >= 0.999
