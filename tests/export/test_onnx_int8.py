"""``geoseg export --int8``: int8 ONNX files (QDQ) calibrated on a user's images, checked against
fp32 on held-out tiles, refused below 99 %, and run by ``geoseg predict`` as int8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from geoseg.errors import DatasetError, ExportError
from geoseg.export.onnx import export_onnx, read_metadata
from geoseg.export.onnx_int8 import Int8Export, module_of
from geoseg.inference.engine import predict_raster
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.variants import Int8Variant
from tests.inference.conftest import config_for, conv3_model

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture
def images(make_raster: Any, textured_rgb: Any, tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "cal").mkdir()
    (tmp_path / "held").mkdir()
    return {
        "a": make_raster(textured_rgb(160, 200, seed=1), "cal/a.tif"),
        "b": make_raster(textured_rgb(150, 150, seed=2), "cal/b.tif"),
        "held": make_raster(textured_rgb(140, 170, seed=3), "held/c.tif"),
    }


def _model(variant_floats: tuple[str, ...] | None = None, *, drowned: bool = False) -> LoadedModel:
    """conv3 at 64-px tiles; ``drowned``: its first layer has one channel 10^4 times larger than
    the others, which carry the classes, so 8-bit activations over that channel's range lose
    them."""
    net = conv3_model()
    if drowned:
        with torch.no_grad():
            net[0].weight[0].mul_(1e4)
            net[0].bias[0] = 1e4
            net[2].weight[:, 0].zero_()
    cfg = config_for(tile=64, overlap=16).replace(gsd=0.5)
    if variant_floats is not None:
        variant = Int8Variant(qparams={}, float_layers=variant_floats)
        cfg = cfg.replace(variants={"int8": variant.to_dict()})
    return LoadedModel(net, cfg)


def test_node_names_map_to_the_modules_they_come_from() -> None:
    assert module_of("/model/encoder/model/blocks.5/blocks.5.0/conv_pw/Conv") == (
        "encoder.model.blocks.5.0.conv_pw"
    )
    assert module_of("/model/decoder/blocks.2/conv1/conv1.0/Conv") == "decoder.blocks.2.conv1.0"
    assert module_of("/model/model.0/Conv") == "0"
    assert module_of("/Softmax") == ""


def test_int8_files_are_quantized_record_their_agreement_and_predict_as_int8(
    tmp_path: Path, images: dict[str, Path], make_raster: Any, textured_rgb: Any
) -> None:
    loaded = _model()
    spec = Int8Export([images["a"], images["b"]], heldout=[images["held"]], tiles=8)
    res = export_onnx(loaded, tmp_path / "q.onnx", fixed=tmp_path / "q.deepness.onnx", int8=spec)
    for path in (res.path, res.fixed):
        assert path is not None
        record = res.int8[str(path)]
        assert record["agreement"]["value"] >= 0.99 and record["agreement"]["pixels"] > 0
        assert "1 held-out image" in record["agreement"]["on"]
        proto = onnx.load(str(path))
        ops = {n.op_type for n in proto.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        # the opsets it uses only, as the fp32 file: other runtimes need not know onnxruntime's
        assert {o.domain for o in proto.opset_import} == {""}
        int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert int8_weights, "no int8 weight in the graph"
        meta = read_metadata(path)
        assert json.loads(meta["geoseg_int8"]) == record
        assert "geoseg_config" in meta  # runs as the fp32 export does
        assert res.parity[str(path)].agreement == record["agreement"]["value"]
    assert (
        json.loads(read_metadata(res.fixed)["model_type"]) == "Segmentor"
    )  # still a Deepness model
    fp32 = export_onnx(loaded, tmp_path / "f.onnx")
    data = np.asarray(textured_rgb(140, 170, seed=4))
    data[:, :20, :30] = 0
    scene = make_raster(data, name="scene.tif", nodata=0)
    notes = {}
    for name, model in (("fp32", fp32.path), ("int8", res.path)):
        result = predict_raster(scene, tmp_path / f"{name}.tif", str(model), device="cpu")
        notes[name] = result.precision_note
    assert notes["int8"].startswith("int8 (the ONNX graph is quantized (QDQ); its classes agreed")
    assert notes["fp32"] == "fp32"
    with rasterio.open(tmp_path / "fp32.tif") as a, rasterio.open(tmp_path / "int8.tif") as b:
        assert (a.crs, a.transform, a.shape, a.nodata) == (b.crs, b.transform, b.shape, b.nodata)
        x, y = a.read(1), b.read(1)
    assert ((x == a.nodata) == (y == b.nodata)).all() and (y[:20, :30] == b.nodata).all()
    assert float((x == y).mean()) >= 0.99


def test_an_int8_file_below_99_percent_is_refused_and_nothing_is_written(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    spec = Int8Export([images["a"]], heldout=[images["held"]], tiles=6)
    with pytest.raises(ExportError, match=r"agree with fp32 on .* expected >= 99%") as err:
        export_onnx(
            _model(drowned=True), tmp_path / "q.onnx", fixed=tmp_path / "q.deepness.onnx", int8=spec
        )
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal", "held"]


def test_the_layers_the_int8_variant_keeps_in_float_stay_in_float(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    """Kept in float as the checkpoint's int8 variant says, the network refused above passes."""
    spec = Int8Export([images["a"]], heldout=[images["held"]], tiles=6)
    res = export_onnx(_model(("0", "1", "2"), drowned=True), tmp_path / "q.onnx", int8=spec)
    record = res.int8[str(res.path)]
    assert record["float_layers"] == ["0", "1", "2"]
    assert record["float_nodes"] == 4 and record["agreement"]["value"] >= 0.99
    kinds = {n.name: n.op_type for n in onnx.load(str(res.path)).graph.node}
    assert kinds["/model/model.2/Conv"] == "Conv"  # its weight stays float32
    weights = {t.name: t.data_type for t in onnx.load(str(res.path)).graph.initializer}
    assert weights["model.2.weight"] == onnx.TensorProto.FLOAT


def test_calibration_and_held_out_images_must_differ(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    """The same path, a link to it, or a copy under another name: all refused."""
    import shutil

    link = tmp_path / "held" / "link.tif"
    link.symlink_to(images["a"])
    copy = shutil.copy(images["a"], tmp_path / "held" / "copy.tif")
    for held in (images["a"], link, copy):
        spec = Int8Export([images["a"]], heldout=[held])
        with pytest.raises(DatasetError, match="both a calibration and a held-out image"):
            export_onnx(_model(), tmp_path / "q.onnx", int8=spec)
    assert not (tmp_path / "q.onnx").exists()


def test_too_few_tiles_left_to_check_is_refused(tmp_path: Path, images: dict[str, Path]) -> None:
    """Without held-out images, the tiles that did not calibrate check: at least 8 of them."""
    spec = Int8Export([images["b"]], tiles=32)
    with pytest.raises(
        ExportError, match=r"and \d to check the agreement on, expected >= 1 and >= 8"
    ):
        export_onnx(_model(), tmp_path / "q.onnx", int8=spec)
    assert not (tmp_path / "q.onnx").exists()
    res = export_onnx(
        _model(), tmp_path / "q.onnx", int8=Int8Export([images["a"], images["b"]], tiles=4)
    )
    assert "calibration images that did not calibrate" in res.int8[str(res.path)]["agreement"]["on"]


def test_an_onnx_graph_runs_as_exported_whatever_precision_is_asked(
    tmp_path: Path, images: dict[str, Path]
) -> None:
    """--precision int8 (or bf16) with an ONNX file runs the graph as it is, and says which."""
    spec = Int8Export([images["a"]], heldout=[images["held"]], tiles=6)
    q = export_onnx(_model(), tmp_path / "q.onnx", int8=spec).path
    f = export_onnx(_model(), tmp_path / "f.onnx").path
    for model, said in ((q, "int8 (the ONNX graph is quantized"), (f, "fp32")):
        for precision in ("int8", "bf16", "auto"):
            out = tmp_path / f"{model.stem}-{precision}.tif"
            result = predict_raster(images["held"], out, str(model), precision=precision)
            assert result.precision_note.startswith(said), (model, precision)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--int8"], "--int8 needs --calibration IMAGES"),
        (
            ["--calibration", "x.tif"],
            "--calibration, --heldout, --tiles, --bands and --scale go with --int8",
        ),
        (["--tiles", "8"], "--calibration, --heldout, --tiles, --bands and --scale go with --int8"),
    ],
)
def test_cli_int8_refusals_are_one_line(
    tmp_path: Path, images: dict[str, Path], args: list[str], message: str
) -> None:
    from geoseg.cli import cli

    if args == ["--calibration", "x.tif"]:
        args = ["--calibration", str(images["a"])]
    result = CliRunner().invoke(cli, ["export", "quality", str(tmp_path / "q.onnx"), *args])
    assert result.exit_code == 2
    assert message in result.output
    result = CliRunner().invoke(
        cli, ["export", "quality", str(tmp_path / "q.pt"), "--int8", "--calibration", "a.tif"]
    )
    assert result.exit_code == 2 and "--int8 writes ONNX" in result.output
    assert not list(tmp_path.glob("q.*"))


def test_calibration_images_are_read_with_the_bands_asked_for(
    tmp_path: Path, images: dict[str, Path], make_raster: Any, textured_rgb: Any
) -> None:
    """A grey image calibrates and checks with --bands 1,1,1, as geoseg predict would read it."""
    from geoseg.errors import BandMismatchError
    from geoseg.inference.options import PredictOptions

    grey = [make_raster(textured_rgb(150, 170, seed=s)[:1], f"cal/grey{s}.tif") for s in (5, 6)]
    with pytest.raises(BandMismatchError, match="--bands 1,1,1"):
        export_onnx(_model(), tmp_path / "q.onnx", int8=Int8Export([grey[0]], [grey[1]]))
    spec = Int8Export([grey[0]], [grey[1]], 6, PredictOptions(bands=(1, 1, 1)))
    res = export_onnx(_model(), tmp_path / "q.onnx", int8=spec)
    assert res.int8[str(res.path)]["agreement"]["pixels"] > 0


def test_the_int8_graph_is_the_fp32_graph_quantized(tmp_path: Path, images: dict[str, Path]):
    """Same inputs and outputs, same geoseg config: a drop-in for the fp32 file."""
    spec = Int8Export([images["a"]], heldout=[images["held"]], tiles=6)
    q = export_onnx(_model(), tmp_path / "q.onnx", int8=spec)
    f = export_onnx(_model(), tmp_path / "f.onnx")
    a, b = onnx.load(str(q.path)), onnx.load(str(f.path))
    assert [i.name for i in a.graph.input] == [i.name for i in b.graph.input]
    assert [o.name for o in a.graph.output] == [o.name for o in b.graph.output]
    assert read_metadata(q.path)["geoseg_config"] == read_metadata(f.path)["geoseg_config"]
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 3, 96, 80)).astype(np.float32)
    out = ort.InferenceSession(str(q.path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )
    assert out[0].shape == (2, 4, 96, 80)
    np.testing.assert_allclose(out[0].sum(1), 1.0, atol=1e-3)
