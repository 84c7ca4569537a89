"""The library's command-line advice, rewritten for the page."""

from __future__ import annotations

import pytest

from geoseg.app.wording import in_app_words


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "a.tif: the model expects 3 band(s) (red, green, blue) but 1 were selected from a "
            "raster of 1; use imagery with 3 bands, or repeat bands with --bands 1,1,1 (1-based; "
            "e.g. a grey band as red, green and blue; expect poorer results)",
            "a.tif: the model expects 3 band(s) (red, green, blue) but 1 were selected from a "
            "raster of 1; use imagery with 3 bands, or repeat bands with Bands: 1,1,1 (Prediction "
            "settings) (1-based; e.g. a grey band as red, green and blue; expect poorer results)",
        ),
        (
            "a.tif: band(s) [5] do not exist; the raster has 3 band(s), numbered 1..3. Pick bands "
            "in that range, e.g. --bands 1,2,3",
            "a.tif: band(s) [5] do not exist; the raster has 3 band(s), numbered 1..3. Pick bands "
            "in that range, e.g. Bands: 1,2,3 (Prediction settings)",
        ),
        (
            "fp16 is not supported on CPU; use --precision bf16 or fp32",
            "fp16 is not supported on CPU; use Precision: bf16 or fp32 (Prediction settings)",
        ),
        (
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or "
            "--device auto",
            "device 'cuda' was asked for but no CUDA GPU is visible; ask the server's operator "
            "to change its device setting",
        ),
        (
            "a.tif: input unlike the model's training data: values 0..4000 (2-98 %; model: "
            "0..255); the map may be confidently wrong. Fix: --scale 0,4000 or --scale auto (a "
            "2-98 % stretch) maps the values onto the model's range, or --strict to refuse such "
            "input",
            "a.tif: input unlike the model's training data: values 0..4000 (2-98 %; model: "
            "0..255); the map may be confidently wrong. Fix: Value range: 0,4000 (Prediction "
            "settings) or Value range: auto (Prediction settings) (a 2-98 % stretch) maps the "
            "values onto the model's range",
        ),
        (
            "a.tif: pixel size 10 m (model: 0.5 m); the map may be confidently wrong. Fix: "
            "--resample-to-model predicts at the model's pixel size",
            "a.tif: pixel size 10 m (model: 0.5 m); the map may be confidently wrong. Fix: "
            "resampling the image to the model's pixel size before uploading it",
        ),
        (
            "tile_size=60 is not a multiple of the model's output stride 8; use 56 or 64",
            "Tile size 60 is not a multiple of the model's output stride 8; use 56 or 64",
        ),
        (
            "out.tif: already exists; pass --overwrite",
            "out.tif: already exists; pass a setting this page does not have",
        ),
        ("two\nlines", "two lines"),
    ],
)
def test_cli_advice_becomes_page_advice(message: str, expected: str) -> None:
    assert in_app_words(message) == expected
    assert "--" not in in_app_words(message)
