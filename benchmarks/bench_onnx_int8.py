"""Would an int8 ONNX file (QDQ, onnxruntime's static quantization) run faster than the fp32 ONNX
file on this CPU? Measured, with how often its classes agree with fp32.

Exports the bundled ``quality`` model to ONNX (dynamic shapes, ``geoseg export``), quantizes a
copy statically in onnxruntime's QDQ format (int8 weights per channel, uint8 activations,
calibrated on tiles of the Dubai training images as the engine reads them), then times one 512²
tile through each file in onnxruntime on the CPU and through geoseg's own fp32 path (the
frozen TorchScript trace), alternating, ``--repeat`` rounds of ``--runs``
calls each (medians), and measures the argmax agreement on held-out Tile 8 tiles. With
``--dubai`` absent, the sample scene's tiles calibrate and measure (the agreement then says less).

Usage: python benchmarks/bench_onnx_int8.py [--dubai "PATH/Semantic segmentation dataset"]
    [--calibration-tiles 32] [--repeat 5] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_int8 import cpu_flags
from bench_predict import machine_facts

from geoseg.export import export_onnx
from geoseg.export.quantize import training_split
from geoseg.inference.runtime import make_runner
from geoseg.inference.session import open_session
from geoseg.models.default import named_model
from geoseg.models.resolve import resolve_model

SCENE = Path(__file__).resolve().parents[1] / "sample_data" / "rotterdam_ps_rgb.tif"


def tiles_of(images: list[str], model: str, count: int) -> list[np.ndarray]:
    """Up to ``count`` full tiles ``(1, C, 512, 512)`` of the images, spread over them, read and
    normalized as ``geoseg predict`` feeds the network."""
    plans: list[tuple[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for image in images:
            with open_session(image, model, device="cpu") as session:
                plans += [(image, t.window) for t in session.plan]
        picks = sorted({int(i) for i in np.linspace(0, len(plans) - 1, count)})
        out = []
        for k in picks:
            image, window = plans[k]
            with open_session(image, model, device="cpu") as session:
                item = session.read_tile(window)
            if item is not None and item[1].all():
                out.append(item[0][None].astype(np.float32))
    return out


class Reader:
    """onnxruntime's calibration data reader over a list of input arrays."""

    def __init__(self, name: str, tiles: list[np.ndarray]) -> None:
        self.items = iter([{name: t} for t in tiles])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def session_of(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 0  # all cores, as geoseg's onnxruntime path runs it
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dubai", type=Path)
    parser.add_argument("--calibration-tiles", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    print(machine_facts())
    print(f"CPU int8/bf16 instructions: {cpu_flags()}")
    model = str(named_model("quality"))
    if args.dubai:
        train, heldout = training_split("dubai-default", [f"data.root={args.dubai}"])
        calibration = tiles_of(train, model, args.calibration_tiles)
        check = tiles_of([p.image for p in heldout], model, 18)
        on = f"{len(check)} full tiles of Dubai Tile 8 (held out)"
    else:
        tiles = tiles_of([str(SCENE)], model, 2 * args.calibration_tiles)
        calibration, check = tiles[::2], tiles[1::2]
        on = f"{len(check)} tiles of the sample scene that did not calibrate"
    with tempfile.TemporaryDirectory(prefix="geoseg-onnx-int8-") as tmp:
        root = Path(tmp)
        fp32 = export_onnx(model, root / "fp32.onnx").path
        pre = root / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        int8 = root / "int8.onnx"
        start = time.perf_counter()
        name = session_of(fp32).get_inputs()[0].name
        quantize_static(
            str(pre),
            str(int8),
            Reader(name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        print(f"calibrated on {len(calibration)} tiles in {time.perf_counter() - start:.1f} s")
        sessions = {"fp32": session_of(fp32), "int8 (QDQ)": session_of(int8)}
        runner = make_runner(resolve_model(model).model, torch.device("cpu"), "fp32", "none")
        same = total = 0
        for x in check:
            a = sessions["fp32"].run(None, {name: x})[0].argmax(1)
            b = sessions["int8 (QDQ)"].run(None, {name: x})[0].argmax(1)
            same, total = same + int((a == b).sum()), total + a.size
        x = calibration[0]
        calls = {key: (lambda s=s: s.run(None, {name: x})) for key, s in sessions.items()}
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
        head = f"one 512² tile, CPU, median of {args.repeat} x {args.runs}"
        print(f"\n## {head}")
        for key, v in times.items():
            print(f"{key}: {1000 * med[key]:.1f} ms ({1000 * min(v):.1f}..{1000 * max(v):.1f})")
        print(f"onnxruntime int8 / fp32 speed: {med['fp32'] / med['int8 (QDQ)']:.2f}x")
        own = med["geoseg PyTorch fp32 (frozen trace)"] / med["int8 (QDQ)"]
        print(f"onnxruntime int8 / geoseg PyTorch fp32 speed: {own:.2f}x")
        print(f"agreement of int8 classes with fp32: {same / total:.4%} of {on}")
        sizes = {k: p.stat().st_size / 1e6 for k, p in (("fp32", fp32), ("int8", int8))}
        print(f"file sizes: fp32 {sizes['fp32']:.1f} MB, int8 {sizes['int8']:.1f} MB")


if __name__ == "__main__":
    main()
