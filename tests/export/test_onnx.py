from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from geoseg.cli import cli
from geoseg.errors import (
    CheckpointError,
    DeepnessWarning,
    ExportError,
    OutputExistsError,
    TilingError,
)
from geoseg.export import export_onnx, export_torchscript, load_onnx, read_metadata
from geoseg.export.metadata import DEEPNESS_KEYS, deepness_metadata, deepness_standardization
from geoseg.inference import predict_block, predict_raster
from geoseg.models.checkpoint import LoadedModel
from geoseg.normalize import Normalization
from tests.conftest import REPO
from tests.inference.conftest import config_for, conv3_model

pytest.importorskip("onnxruntime")


@pytest.fixture
def conv3_64() -> LoadedModel:
    cfg = config_for(tile=64, overlap=16).replace(gsd=0.5)
    return LoadedModel(conv3_model(), cfg)


def test_export_writes_checked_dynamic_and_fixed_graphs(
    tmp_path: Path, conv3_64: LoadedModel
) -> None:
    res = export_onnx(conv3_64, tmp_path / "m.onnx", fixed=tmp_path / "m.deepness.onnx")
    assert res.path.is_file() and res.fixed is not None and res.fixed.is_file()
    assert not list(tmp_path.glob(".*partial"))
    for parity in res.parity.values():
        assert parity.agreement >= 0.999 and parity.max_abs_diff < 1e-4
    import onnx

    proto = onnx.load(str(res.path))
    assert proto.opset_import[0].version >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    fixed = [
        d.dim_param or d.dim_value
        for d in onnx.load(str(res.fixed)).graph.input[0].type.tensor_type.shape.dim
    ]
    assert fixed == ["batch", 3, 64, 64]
    out = [
        d.dim_param or d.dim_value
        for d in onnx.load(str(res.fixed)).graph.output[0].type.tensor_type.shape.dim
    ]
    assert out == ["batch", 4, 64, 64]  # no height axis named "batch"
    out = [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert out == ["batch", 4, "height", "width"]
    meta = read_metadata(res.fixed)
    assert set(meta) == {*DEEPNESS_KEYS, "geoseg_config", "geoseg_output"}
    assert json.loads(meta["model_type"]) == "Segmentor"
    assert json.loads(meta["class_names"]) == {str(c.id): c.name for c in conv3_64.config.classes}
    assert json.loads(meta["resolution"]) == 50.0
    assert json.loads(meta["tile_size"]) == 64
    assert json.loads(meta["tiles_overlap"]) == 25
    # Deepness' defaults: threshold 0.5 and a small-segment filter; it turns both off at 0
    assert json.loads(meta["seg_thresh"]) == json.loads(meta["seg_small_segment"]) == 0
    assert json.loads(meta["standardization_mean"]) == [0.0, 0.0, 0.0]
    assert json.loads(meta["standardization_std"]) == [1.0, 1.0, 1.0]
    assert json.loads(meta["geoseg_config"])["tile_size"] == 64


def test_deepness_standardization_reproduces_meanstd() -> None:
    cfg = config_for().replace(
        normalization=Normalization("meanstd", mean=(100.0, 110.0, 120.0), std=(50.0, 60.0, 70.0)),
        band_dtype="uint8",
    )
    mean, std = deepness_standardization(cfg)  # type: ignore[misc]
    x = np.array([0.0, 37.0, 255.0])
    for b in range(3):
        ours = (x - cfg.normalization.mean[b]) / cfg.normalization.std[b]
        theirs = (x / 255 - mean[b]) / std[b]
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"normalization": Normalization("percentile", low=(0.0,) * 3, high=(1.0,) * 3)},
            "percentile",
        ),
        ({"band_dtype": "uint16"}, "uint16"),
        ({"normalization": Normalization("scale", scale=1.0, sar_db=True)}, "decibels"),
    ],
)
def test_deepness_warns_when_normalization_does_not_translate(changes: dict, match: str) -> None:
    cfg = config_for().replace(gsd=1.0, **changes)
    with pytest.warns(DeepnessWarning, match=match):
        meta = deepness_metadata(cfg)
    assert "standardization_mean" not in meta


def test_deepness_export_refuses_an_unknown_ground_resolution(
    tmp_path: Path, conv3_64: LoadedModel
) -> None:
    unknown = LoadedModel(conv3_64.model, conv3_64.config.replace(gsd=None))
    with pytest.raises(ExportError, match=r"no ground sample distance.*pass --resolution CM"):
        export_onnx(unknown, tmp_path / "m.onnx", fixed=tmp_path / "d.onnx")
    assert not list(tmp_path.iterdir())  # refused before any file
    with pytest.raises(ExportError, match="expected a ground resolution in cm/px > 0"):
        export_onnx(unknown, tmp_path / "m.onnx", fixed=tmp_path / "d.onnx", resolution_cm=0)
    res = export_onnx(unknown, tmp_path / "m.onnx", fixed=tmp_path / "d.onnx", resolution_cm=30)
    assert json.loads(read_metadata(res.fixed)["resolution"]) == 30.0  # type: ignore[arg-type]
    alone = export_onnx(unknown, tmp_path / "a.onnx")  # no Deepness file: nothing to refuse
    assert "resolution" not in read_metadata(alone.path)


def test_onnx_predict_equals_torch_predict(
    tmp_path: Path, make_raster, textured_rgb, conv3_64: LoadedModel
) -> None:
    export_onnx(conv3_64, tmp_path / "m.onnx")
    src = make_raster(textured_rgb(150, 170), nodata=None)
    opts = {"device": "cpu", "precision": "fp32", "workers": 1}
    ref = predict_block(src, conv3_64, Window(0, 0, 170, 150), **opts)
    got = predict_block(src, tmp_path / "m.onnx", Window(0, 0, 170, 150), **opts)
    np.testing.assert_allclose(got.data, ref.data, atol=1e-5)
    assert got.transform == ref.transform
    # the whole predict path, nodata included
    data = textured_rgb(90, 100)
    data[:, :10, :10] = 0
    src2 = make_raster(data, name="nd.tif", nodata=0)
    predict_raster(src2, tmp_path / "a.tif", conv3_64, **opts)
    predict_raster(src2, tmp_path / "b.tif", str(tmp_path / "m.onnx"), **opts)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read() == b.read()).all()
        assert b.read(1)[0, 0] == 255 and b.colormap(1)


def test_fixed_graph_refuses_other_tile_sizes(
    tmp_path: Path, make_raster, textured_rgb, conv3_64: LoadedModel
) -> None:
    export_onnx(conv3_64, tmp_path / "m.onnx", fixed=tmp_path / "f.onnx")
    assert load_onnx(tmp_path / "f.onnx").config.tile_size == 64
    with pytest.raises(TilingError, match="--tile-size 64"):
        predict_block(
            make_raster(textured_rgb(40, 40)),
            tmp_path / "f.onnx",
            Window(0, 0, 40, 40),
            tile_size=32,
            device="cpu",
        )


def test_errors(tmp_path: Path, conv3_64: LoadedModel) -> None:
    with pytest.raises(ExportError, match=r"ending in \.onnx"):
        export_onnx(conv3_64, tmp_path / "m.bin")
    with pytest.raises(ExportError, match=">= 17"):
        export_onnx(conv3_64, tmp_path / "m.onnx", opset=13)
    (tmp_path / "x.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        export_onnx(conv3_64, tmp_path / "x.onnx")
    with pytest.raises(CheckpointError, match=r"not a readable ONNX|no geoseg_config"):
        load_onnx(tmp_path / "x.onnx")
    with pytest.raises(CheckpointError, match="no such ONNX"):
        load_onnx(tmp_path / "missing.onnx")


def test_torchscript_export(tmp_path: Path, conv3_64: LoadedModel) -> None:
    import torch

    parity = export_torchscript(conv3_64, tmp_path / "m.pt")
    assert parity.agreement == 1.0
    extra = {"geoseg_config.json": ""}
    scripted = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["geoseg_config.json"])["tile_size"] == 64
    assert scripted(torch.rand(2, 3, 48, 80)).shape == (2, 4, 48, 80)


@pytest.mark.slow
def test_bundled_model_export_parity_on_the_sample_scene(tmp_path: Path) -> None:
    scene = REPO / "sample_data" / "rotterdam_ps_rgb.tif"
    from geoseg.models.default import default_model

    model = default_model()
    with pytest.raises(ExportError, match="--resolution"):  # the Dubai images carry no GSD
        export_onnx(model, tmp_path / "m.onnx", fixed=tmp_path / "d.onnx", check_raster=scene)
    res = export_onnx(
        model, tmp_path / "m.onnx", fixed=tmp_path / "d.onnx", check_raster=scene, resolution_cm=50
    )
    for parity in res.parity.values():
        assert parity.agreement >= 0.999
        assert parity.max_abs_diff < 1e-3
        assert "rotterdam" in parity.source


def test_cli_export_and_predict(
    tmp_path: Path, conv3_64: LoadedModel, make_raster, textured_rgb
) -> None:
    from geoseg.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "c.safetensors"
    cfg = conv3_64.config.replace(
        architecture="unet",
        encoder="resnet18",
        model_kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        output_stride=8,
        tile_size=64,
    )
    from geoseg.models.checkpoint import model_from_config

    save_checkpoint(model_from_config(cfg), cfg, ckpt)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "export",
            str(ckpt),
            str(tmp_path / "m.onnx"),
            "--check-raster",
            str(make_raster(textured_rgb(64, 64))),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "agreement 100" in res.output and (tmp_path / "m.deepness.onnx").is_file()
    res = runner.invoke(
        cli,
        [
            "-q",
            "predict",
            str(make_raster(textured_rgb(70, 90), name="s.tif")),
            str(tmp_path / "o.tif"),
            "--model",
            str(tmp_path / "m.onnx"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["export", str(ckpt), str(tmp_path / "m.bin")])
    assert res.exit_code == 1 and "expected OUT.onnx or OUT.pt" in res.output


def test_calibration_temperature_is_applied_once(
    tmp_path: Path, make_raster, textured_rgb, conv3_64: LoadedModel
) -> None:
    calibrated = LoadedModel(
        conv3_64.model, conv3_64.config.replace(metrics={"calibration": {"temperature": 2.5}})
    )
    src = make_raster(textured_rgb(60, 70))
    opts = {"device": "cpu", "precision": "fp32", "workers": 1}
    plain = predict_block(src, conv3_64, Window(0, 0, 70, 60), **opts)
    hot = predict_block(src, calibrated, Window(0, 0, 70, 60), **opts)
    assert (plain.data.argmax(0) == hot.data.argmax(0)).all()
    assert hot.data.max(0).mean() < plain.data.max(0).mean()
    export_onnx(calibrated, tmp_path / "c.onnx")
    via_onnx = predict_block(src, tmp_path / "c.onnx", Window(0, 0, 70, 60), **opts)
    np.testing.assert_allclose(via_onnx.data, hot.data, atol=1e-5)


def test_a_bundled_model_exports_by_name(tmp_path: Path, make_raster, textured_rgb) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "-q",
            "export",
            "fast",
            str(tmp_path / "fast.pt"),
            "--check-raster",
            str(make_raster(textured_rgb(512, 512))),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fast.pt").stat().st_size > 1_000_000
