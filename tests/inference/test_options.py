"""One options value for every entry point: defaults, validation, the CLI's parser is the
library's."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.errors import TilingError
from geoseg.inference import (
    PredictOptions,
    parse_overlap,
    predict_block,
    predict_raster,
    register_blend,
)
from geoseg.inference.blending import BLEND_KERNELS
from geoseg.models.checkpoint import LoadedModel


def test_defaults_are_declared_once() -> None:
    opts = PredictOptions()
    assert (opts.precision, opts.blend, opts.tta, opts.device, opts.workers) == (
        "auto",
        None,  # the model's tiling's kernel: gaussian, core for a Deepness export
        "none",
        "auto",
        2,
    )
    # no entry point re-declares an option as a keyword with its own default
    fields = {f.name for f in dataclasses.fields(PredictOptions)}
    from geoseg.evaluation.evaluate import evaluate

    for fn in (predict_raster, predict_block, evaluate):
        assert not fields & set(inspect.signature(fn).parameters), fn.__name__


@pytest.mark.parametrize(
    ("text", "expected"), [("128", 128), ("0.25", 0.25), ("0", 0), (64, 64), (None, None)]
)
def test_parse_overlap(text: str | int | None, expected: float | int | None) -> None:
    assert parse_overlap(text) == expected


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"overlap": 1.5}, "neither whole pixels"),
        ({"overlap": "abc"}, "pixels .* or a fraction"),
        ({"overlap": -3}, ">= 0"),
        ({"blend": "nope"}, "unknown blend 'nope'; expected one of .*gaussian"),
        ({"precision": "fp64"}, "unknown precision 'fp64'; expected one of auto, fp32, bf16, fp16"),
        ({"tta": "d8"}, "unknown tta 'd8'; expected one of none, flip, d4"),
        ({"tile_size": 0}, "tile_size must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"bands": (0, 1)}, "1-based"),
    ],
)
def test_validation_names_the_fix(changes: dict[str, object], match: str) -> None:
    with pytest.raises(TilingError, match=match):
        PredictOptions(**changes)  # type: ignore[arg-type]


def test_parse_takes_cli_text_and_refuses_unknown_keys() -> None:
    opts = PredictOptions.parse(
        {"overlap": "0.5", "bands": "3,2,1", "tile_size": "256", "device": None}
    )
    assert opts == PredictOptions(overlap=0.5, bands=(3, 2, 1), tile_size=256)
    with pytest.raises(TilingError, match=r"unknown prediction option.*tile"):
        PredictOptions.parse({"tile": 256})
    with pytest.raises(TilingError, match="unknown prediction option"):
        PredictOptions.of(None, tilesize=3)


def test_options_value_equals_keywords(
    pointwise: LoadedModel,
    make_raster: Callable[..., Path],
    textured_rgb: Callable[..., np.ndarray],
) -> None:
    from rasterio.windows import Window

    src = make_raster(textured_rgb(40, 50))
    opts = PredictOptions(tile_size=32, overlap=8, blend="cosine", precision="fp32", device="cpu")
    a = predict_block(src, pointwise, Window(0, 0, 50, 40), opts)
    b = predict_block(
        src,
        pointwise,
        Window(0, 0, 50, 40),
        tile_size=32,
        overlap=8,
        blend="cosine",
        precision="fp32",
        device="cpu",
    )
    c = predict_block(
        src, pointwise, Window(0, 0, 50, 40), opts.replace(blend="gaussian"), blend="cosine"
    )
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.data, c.data)


def test_cli_refuses_fractional_pixels_like_the_library(
    tmp_path: Path, make_raster: Callable[..., Path], textured_rgb: Callable[..., np.ndarray]
) -> None:
    src = make_raster(textured_rgb(20, 20))
    result = CliRunner().invoke(
        cli, ["predict", str(src), str(tmp_path / "m.tif"), "--overlap", "1.5"]
    )
    assert result.exit_code == 2
    assert "neither whole pixels nor a fraction" in result.output
    assert not (tmp_path / "m.tif").exists()


def test_cli_can_choose_a_registered_blend(tmp_path: Path) -> None:
    register_blend("flat-test", lambda tile, overlap: np.ones((tile, tile)))
    try:
        bad = CliRunner().invoke(
            cli,
            ["evaluate", "--images", str(tmp_path), "--labels", str(tmp_path), "--blend", "nope"],
        )
        assert (
            bad.exit_code == 2
            and "unknown blend 'nope'" in bad.output
            and "flat-test" in bad.output
        )
        opts = PredictOptions.parse({"blend": "flat-test"})
        assert opts.blend == "flat-test"
    finally:
        BLEND_KERNELS.pop("flat-test")


def test_options_import_needs_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from geoseg.inference import PredictOptions; PredictOptions(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
