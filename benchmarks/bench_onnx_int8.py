"""Does the int8 ONNX file ``geoseg export --int8`` writes run faster than the fp32 ONNX file on
this CPU? Measured, with how often its classes agree with fp32.

Exports MODEL (default: the bundled ``quality`` model; give a checkpoint with an int8 variant,
``geoseg quantize``, to keep its float layers in float) twice with ``export_onnx``: fp32, and int8
(QDQ) calibrated on tiles of the Dubai training images (tiles 1-7) with Tile 8 held out, as
``geoseg export MODEL OUT.onnx --int8 --calibration ... --heldout ...`` does. Then times one
512² tile through each file in onnxruntime on the CPU and through geoseg's own fp32 path (the
frozen TorchScript trace), alternating, ``--repeat`` rounds of ``--runs`` calls each (medians),
and runs ``geoseg predict`` on the sample scene with both files to compare their class masks.

Usage: python benchmarks/bench_onnx_int8.py --dubai "PATH/Semantic segmentation dataset"
    [--model CKPT] [--tiles 32] [--repeat 5] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import rasterio
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_int8 import cpu_flags
from bench_predict import machine_facts

from geoseg.errors import ExportError
from geoseg.export import export_onnx
from geoseg.export.onnx_int8 import Int8Export, int8_tiles
from geoseg.export.quantize import training_split
from geoseg.inference.engine import predict_raster
from geoseg.inference.runtime import make_runner
from geoseg.models.default import named_model
from geoseg.models.resolve import resolve_model

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "rotterdam_ps_rgb.tif"


def session_of(path: Path) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 0  # all cores, as geoseg's onnxruntime path runs it
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dubai", type=Path, required=True)
    parser.add_argument("--model", default="quality")
    parser.add_argument("--tiles", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(machine_facts())
    print(f"CPU int8/bf16 instructions: {cpu_flags()}")
    model = str(named_model(args.model))
    train, heldout = training_split("dubai-default", [f"data.root={args.dubai}"])
    spec = Int8Export(train, [p.image for p in heldout], args.tiles)
    with tempfile.TemporaryDirectory(prefix="geoseg-onnx-int8-") as tmp:
        root = Path(tmp)
        fp32 = export_onnx(model, root / "fp32.onnx").path
        start = time.perf_counter()
        try:
            int8 = export_onnx(model, root / "int8.onnx", int8=spec)
        except ExportError as exc:
            print(f"int8 export refused: {exc}")
            return
        took = time.perf_counter() - start
        record = int8.int8[str(int8.path)]
        agreement = record["agreement"]
        print(
            f"int8 export: {took:.0f} s; {record['float_nodes']} node(s) kept in float "
            f"({', '.join(record['float_layers']) or 'no layer'}, and the softmax); classes equal "
            f"to fp32 on {agreement['value']:.4%} of {agreement['pixels']} valid pixels of "
            f"{agreement['on']}"
        )
        loaded = resolve_model(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = int8_tiles(loaded, Int8Export(train[:2], train[2:4]), 512).calibration[0]
        sessions = {"fp32 ONNX": session_of(fp32), "int8 ONNX": session_of(int8.path)}
        runner = make_runner(loaded.model, torch.device("cpu"), "fp32", "none")
        calls = {k: (lambda s=s: s.run(None, {"image": x})) for k, s in sessions.items()}  # type: ignore[attr-defined]
        calls["geoseg PyTorch fp32 (frozen trace)"] = lambda: runner(torch.from_numpy(x))
        for call in calls.values():  # warm each (the trace is made on the first call)
            call()
            call()
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(args.repeat):
            for key, call in calls.items():
                start = time.perf_counter()
                for _ in range(args.runs):
                    call()
                times[key].append((time.perf_counter() - start) / args.runs)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n## one 512² tile, CPU, median of {args.repeat} x {args.runs}")
        for key, v in times.items():
            print(f"{key}: {1000 * med[key]:.1f} ms ({1000 * min(v):.1f}..{1000 * max(v):.1f})")
        own = med["geoseg PyTorch fp32 (frozen trace)"]
        print(
            f"int8 ONNX: {med['fp32 ONNX'] / med['int8 ONNX']:.2f}x the fp32 ONNX file, "
            f"{own / med['int8 ONNX']:.2f}x geoseg's PyTorch fp32; "
            f"{int8.path.stat().st_size / 1e6:.1f} MB (fp32 {fp32.stat().st_size / 1e6:.1f} MB)"
        )
        masks = {}
        for key, path in (("fp32", fp32), ("int8", int8.path)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                predict_raster(SCENE, root / f"{key}.tif", str(path), device="cpu")
            with rasterio.open(root / f"{key}.tif") as ds:
                masks[key] = (ds.read(1), ds.nodata)
        (a, nodata), (b, _) = masks["fp32"], masks["int8"]
        valid = a != nodata
        print(
            f"sample scene ({SCENE.name}, geoseg predict with each file): classes equal on "
            f"{float(np.mean((a == b)[valid])):.4%} of {int(valid.sum())} valid pixels"
        )


if __name__ == "__main__":
    main()
