"""Would an int8 ONNX file (QDQ, onnxruntime's static quantization) run faster than the fp32 ONNX
file on this CPU? Measured, with how often its classes agree with fp32.

Exports the bundled ``quality`` model to ONNX (dynamic shapes, ``geoseg export``), quantizes a
copy statically in onnxruntime's QDQ format (int8 weights per channel, uint8 activations,
calibrated on tiles of the Dubai training images as the engine reads them), then times one 512²
tile through each file in onnxruntime on the CPU and through geoseg's own fp32 path (the
frozen TorchScript trace), alternating, ``--repeat`` rounds of ``--runs``
calls each (medians), and measures the argmax agreement on held-out Tile 8 tiles. With
``--dubai`` absent, the sample scene's tiles calibrate and measure (the agreement then says less).

With ``--keep-float CKPT`` (a checkpoint of the same network with an int8 variant, ``geoseg
quantize``), a second QDQ file keeps in float the layers that variant's search kept in float (the
ONNX nodes of those modules are left out of the quantization), and is measured beside the first.

Usage: python benchmarks/bench_onnx_int8.py [--dubai "PATH/Semantic segmentation dataset"]
    [--keep-float CKPT] [--calibration-tiles 32] [--repeat 5] [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
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
from geoseg.models.config import read_config
from geoseg.models.default import named_model
from geoseg.models.resolve import resolve_model
from geoseg.models.variants import Int8Variant

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


def module_of(node: str) -> str:
    """The module an ONNX node of ``geoseg export`` comes from, as a dotted name of the network
    (``/model/encoder/model/blocks.5/blocks.5.0/conv_pw/Conv`` ->
    ``encoder.model.blocks.5.0.conv_pw``): the exporter names a node by its module scopes, the
    first being the export wrapper's, and a container's children carry the container's name."""
    path: list[str] = []
    for part in node.strip("/").split("/")[1:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def float_nodes(onnx_path: Path, layers: Sequence[str]) -> list[str]:
    """The nodes of ``onnx_path`` that belong to ``layers`` (module names) or their children."""
    import onnx

    def kept(module: str) -> bool:
        return any(module == layer or module.startswith(layer + ".") for layer in layers)

    return [n.name for n in onnx.load(str(onnx_path)).graph.node if kept(module_of(n.name))]


def session_of(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 0  # all cores, as geoseg's onnxruntime path runs it
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dubai", type=Path)
    parser.add_argument("--keep-float", type=Path, help="a checkpoint with an int8 variant")
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
        name = session_of(fp32).get_inputs()[0].name
        variants = {"int8 (QDQ)": []}
        if args.keep_float:
            layers = Int8Variant.of(read_config(args.keep_float)).float_layers  # type: ignore[union-attr]
            variants["int8 (QDQ, float layers kept)"] = float_nodes(pre, layers)
            print(
                f"kept in float: {len(variants['int8 (QDQ, float layers kept)'])} nodes of "
                f"{', '.join(layers)}"
            )
        files = {}
        for key, exclude in variants.items():
            files[key] = root / f"int8-{len(files)}.onnx"
            start = time.perf_counter()
            quantize_static(
                str(pre),
                str(files[key]),
                Reader(name, calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=exclude,
            )
            took = time.perf_counter() - start
            print(f"{key}: calibrated on {len(calibration)} tiles in {took:.1f} s")
        sessions = {"fp32": session_of(fp32), **{k: session_of(f) for k, f in files.items()}}
        runner = make_runner(resolve_model(model).model, torch.device("cpu"), "fp32", "none")
        same = dict.fromkeys(files, 0)
        total = 0
        for x in check:
            a = sessions["fp32"].run(None, {name: x})[0].argmax(1)
            total += a.size
            for key in files:
                same[key] += int((a == sessions[key].run(None, {name: x})[0].argmax(1)).sum())
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
        own = med["geoseg PyTorch fp32 (frozen trace)"]
        for key, path in files.items():
            print(
                f"{key}: {med['fp32'] / med[key]:.2f}x the fp32 ONNX file, {own / med[key]:.2f}x "
                f"geoseg's PyTorch fp32; classes equal to fp32 on {same[key] / total:.4%} of {on}; "
                f"{path.stat().st_size / 1e6:.1f} MB (fp32 {fp32.stat().st_size / 1e6:.1f} MB)"
            )


if __name__ == "__main__":
    main()
