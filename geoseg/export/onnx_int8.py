"""int8 ONNX files: an exported graph quantized statically in onnxruntime's QDQ format.

Weights become int8 per output channel and activations uint8, calibrated on tiles of images like
the model's training data as the tile engine reads them (min/max ranges). The layers a
checkpoint's int8 variant keeps in float (``geoseg quantize``'s search) stay in float here too:
their nodes are left out of the quantization. The classes of the quantized graph are then compared
with PyTorch fp32 on tiles that did not calibrate; a file that agrees on fewer than
:data:`~geoseg.models.variants.MIN_AGREEMENT` of their valid pixels is refused, so an int8 file is
never written without the figure that says how far it may be trusted (``geoseg_int8`` in its
metadata).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoseg.errors import ExportError
from geoseg.export._deps import require
from geoseg.inference.options import PredictOptions
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.variants import MIN_AGREEMENT

__all__ = ["Int8Export", "Int8Tiles", "float_nodes", "int8_tiles", "module_of", "quantize_graph"]

CHECK_TILES = 32  # tiles of the calibration images that did not calibrate, when none is held out
MIN_CHECK_TILES = 8  # fewer such tiles say too little to record an agreement


@dataclass(frozen=True)
class Int8Export:
    """What quantizes an export to int8.

    Attributes:
        calibration: images like the model's training data (files, folders or glob patterns).
        heldout: images that never calibrate, on which the agreement is measured; without any,
            on tiles of the calibration images that did not calibrate.
        tiles: calibration tiles at most, spread evenly over the images.
        options: how the images are read (bands, scale), as ``geoseg predict`` takes them.
    """

    calibration: Sequence[str | os.PathLike[str]]
    heldout: Sequence[str | os.PathLike[str]] = ()
    tiles: int = 32
    options: PredictOptions | None = None


@dataclass
class Int8Tiles:
    """Normalized ``(1, bands, tile, tile)`` float32 tiles: those that calibrate, and those that
    check (with their validity ``(1, tile, tile)``), and what the check tiles are."""

    calibration: list[np.ndarray]
    check: list[tuple[np.ndarray, np.ndarray]]
    on: str


def int8_tiles(loaded: LoadedModel, spec: Int8Export, tile: int) -> Int8Tiles:
    """``tile``-px tiles of the calibration (and held-out) images as the engine feeds them to the
    network (read, adapted, normalized, padded at an image's edge).

    Raises:
        DatasetError: an image path that names nothing, or a held-out image that calibrates;
            ExportError: no tile with data to calibrate, or too few to check.
    """
    from geoseg.export.quantize import calibration_images, check_held_out, sample_tiles

    options = PredictOptions.of(spec.options).replace(
        tile_size=tile, precision="fp32", device="cpu", tta="none"
    )
    images = calibration_images(spec.calibration)
    held = calibration_images(spec.heldout) if spec.heldout else []
    check_held_out(images, held)

    def arrays(found: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[Any, Any]]:
        # the engine pads a tile short of an image's edge: a fixed-tile graph takes them all
        return [
            (x.numpy().astype(np.float32), v.numpy())
            for x, v in found
            if tuple(x.shape[-2:]) == (tile, tile)
        ]

    if held:
        (cal,) = sample_tiles(images, loaded, options, (spec.tiles,))
        (check,) = sample_tiles(held, loaded, options, (CHECK_TILES,))
        where = f"of {len(held)} held-out image(s)"
    else:
        cal, check = sample_tiles(images, loaded, options, (spec.tiles, CHECK_TILES))
        where = "of the calibration images that did not calibrate"
    checked = arrays(check)
    out = Int8Tiles([x for x, _ in arrays(cal)], checked, f"{len(checked)} tiles {where}")
    least = 1 if held else MIN_CHECK_TILES  # tiles of other images, or of the same images
    if not out.calibration or len(out.check) < least:
        raise ExportError(
            f"the images give {len(out.calibration)} {tile}-px tile(s) with data to calibrate "
            f"and {len(out.check)} to check the agreement on, expected >= 1 and >= {least}; "
            "give held-out images (--heldout), or more calibration images (or fewer --tiles)"
        )
    return out


def module_of(node: str) -> str:
    """The module an exported ONNX node comes from, as a dotted name of the network
    (``/model/encoder/model/blocks.5/blocks.5.0/conv_pw/Conv`` ->
    ``encoder.model.blocks.5.0.conv_pw``; ``/model/model.0/Conv`` -> ``0``), or ``""`` for a node
    of the export wrapper (the final softmax): the exporter names a node by its module scopes, the
    first being the network's attribute of the wrapper, and a container's children carry the
    container's name."""
    scopes = node.strip("/").split("/")[:-1]
    path: list[str] = []
    for part in scopes:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    name, root = ".".join(path), (scopes[0] + "." if scopes else "")
    return name[len(root) :] if root and name.startswith(root) else ""


def float_nodes(proto: Any, layers: Sequence[str]) -> list[str]:
    """The nodes of the ONNX graph ``proto`` that belong to ``layers`` (module names) or their
    children, and the export's own final softmax: probabilities in 8 bits (steps of 1/255) would
    tie where the engine blends overlapping tiles."""

    def kept(module: str) -> bool:
        return module == "" or any(
            module == layer or module.startswith(layer + ".") for layer in layers
        )

    return [n.name for n in proto.graph.node if kept(module_of(n.name))]


class _Reader:
    """onnxruntime's calibration data reader over a list of input arrays."""

    def __init__(self, name: str, tiles: Sequence[np.ndarray]) -> None:
        self.items = iter([{name: t} for t in tiles])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def quantize_graph(
    graph: bytes,
    tiles: Int8Tiles,
    input_name: str,
    layers: Sequence[str],
    reference: Callable[[np.ndarray], np.ndarray],
) -> tuple[bytes, dict[str, Any]]:
    """``graph`` (a finished fp32 export) quantized to QDQ int8, with its metadata, and the record
    of how it was made and how closely its classes agree with PyTorch fp32 (``geoseg_int8`` in
    its metadata). ``layers`` (module names) stay in float; ``reference`` gives PyTorch's fp32
    probabilities of a tile.

    Raises:
        ExportError: its classes agree with fp32 on fewer than ``MIN_AGREEMENT`` of the check
            tiles' valid pixels.
    """
    onnx = require("onnx")
    ort = require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load_from_string(graph)
    with tempfile.TemporaryDirectory(prefix="geoseg-int8-") as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(source, str(pre))
        exclude = float_nodes(onnx.load(str(pre)), layers)
        quantize_static(
            str(pre),
            str(out),
            _Reader(input_name, tiles.calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
        )
        proto = onnx.load(str(out))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    same = total = 0
    worst = 0.0
    for x, valid in tiles.check:
        got = session.run(None, {input_name: x})[0]
        ref = reference(x)
        hit = (got.argmax(1) == ref.argmax(1))[valid]
        same, total = same + int(hit.sum()), total + int(hit.size)
        if hit.size:
            worst = max(worst, float(np.abs(got - ref).max(axis=1)[valid].max()))
    value = same / total if total else 0.0
    record = {
        "format": "QDQ",
        "weights": "int8 per output channel",
        "activations": "uint8 per tensor, min/max",
        "float_layers": list(layers),
        "float_nodes": len(exclude),
        "calibration": {"tiles": len(tiles.calibration)},
        "agreement": {"value": value, "pixels": total, "on": tiles.on},
        "max_abs_diff": worst,
    }
    if value < MIN_AGREEMENT:
        raise ExportError(
            f"the int8 graph's classes agree with fp32 on {value:.2%} of the valid pixels of "
            f"{tiles.on}, expected >= {MIN_AGREEMENT:.0%}; keep more layers in float (geoseg "
            "quantize CKPT OUT --calibration ..., then export OUT) or export fp32"
        )
    del proto.metadata_props[:]
    for prop in source.metadata_props:
        entry = proto.metadata_props.add()
        entry.key, entry.value = prop.key, prop.value
    entry = proto.metadata_props.add()
    entry.key, entry.value = "geoseg_int8", json.dumps(record)
    proto.producer_name, proto.doc_string = source.producer_name, source.doc_string + " (int8 QDQ)"
    used = {n.domain for n in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used]  # the quantizer declares more
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(), record
