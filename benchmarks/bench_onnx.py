"""Benchmark ``geoseg predict`` through onnxruntime against geoseg's PyTorch CPU path, in one run.

Builds a 1800 x 1800 raster from the sample scene (2 x 2 copies, so the plan has 16 tiles of
512 px and the PyTorch path runs its frozen TorchScript trace), exports each model to ONNX, and
times ``predict_raster`` end to end with the checkpoint (fp32, the TorchScript path; and
``--precision auto``) and with the ``.onnx`` file (onnxruntime, CPU; CUDA provider too when a GPU
is present). Models: the bundled one and a U-Net with a ResNet-34 encoder (random weights: speed
does not depend on them). Prints Mpx/s and the ratio onnxruntime / PyTorch.

Usage: python benchmarks/bench_onnx.py [--repeat 2] [--models bundled,unet-resnet34] [--no-auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch

from geoseg.classes import ClassTable
from geoseg.errors import DeepnessWarning
from geoseg.export import export_onnx
from geoseg.inference import predict_raster
from geoseg.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from geoseg.models.default import default_model

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "rotterdam_ps_rgb.tif"


def mosaic(dst: Path) -> Path:
    with rasterio.open(SCENE) as src:
        data, profile = src.read(), src.profile
    big = np.tile(data, (1, 2, 2))
    profile.update(
        height=big.shape[1],
        width=big.shape[2],
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    )
    with rasterio.open(dst, "w", **profile) as out:
        out.write(big)
    return dst


def rate(src: Path, out: Path, model: str, repeat: int, **kw: object) -> float:
    runs = [
        predict_raster(src, out, model, overwrite=True, **kw).megapixels_per_second  # type: ignore[arg-type]
        for _ in range(repeat)
    ]
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--models", default="bundled,unet-resnet34", help="Comma-separated: bundled, unet-resnet34."
    )
    ap.add_argument(
        "--no-auto", action="store_true", help="Skip the --precision auto run of the PyTorch path."
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-onnx-") as tmp_dir:
        tmp = Path(tmp_dir)
        src = mosaic(tmp / "scene.tif")
        bundled = load_checkpoint(default_model()).config
        r34 = tmp / "unet-resnet34.safetensors"
        cfg = ModelConfig(
            "unet",
            "resnet34",
            3,
            bundled.classes or ClassTable.default(5),
            band_names=bundled.band_names,
            band_dtype="uint8",
            normalization=bundled.normalization,
            tile_size=512,
            overlap=32,
        )
        torch.manual_seed(0)
        save_checkpoint(
            build_model("unet", "resnet34", in_channels=3, classes=cfg.num_classes), cfg, r34
        )
        print(
            f"1800 x 1800 px raster (16 tiles of 512 px), {torch.get_num_threads()} torch "
            f"threads, median of {args.repeat} runs"
        )
        for label, ckpt in (("bundled", str(default_model())), ("unet-resnet34", str(r34))):
            if label not in args.models.split(","):
                continue
            onnx_path = tmp / f"{label}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeepnessWarning)
                export_onnx(ckpt, onnx_path, check_raster=SCENE)
            out = tmp / "out.tif"
            ts = rate(src, out, ckpt, args.repeat, device="cpu", precision="fp32")
            auto = (
                float("nan")
                if args.no_auto
                else rate(src, out, ckpt, args.repeat, device="cpu", precision="auto")
            )
            ort = rate(src, out, str(onnx_path), args.repeat, device="cpu")
            line = (
                f"  {label}: PyTorch fp32 (TorchScript) {ts:.3f} Mpx/s, PyTorch auto {auto:.3f} "
                f"Mpx/s, onnxruntime CPU {ort:.3f} Mpx/s; onnxruntime / TorchScript = "
                f"{ort / ts:.2f}, onnxruntime / auto = {ort / auto:.2f}"
            )
            if torch.cuda.is_available():
                cuda_t = rate(src, out, ckpt, args.repeat, device="cuda")
                cuda_o = rate(src, out, str(onnx_path), args.repeat, device="cuda")
                line += f"; CUDA: PyTorch {cuda_t:.2f} Mpx/s, onnxruntime {cuda_o:.2f} Mpx/s"
            print(line)


if __name__ == "__main__":
    main()
