"""Export a geoseg model to ONNX, with its config and QGIS Deepness metadata, and check it.

Two graphs can be written from one checkpoint: one with dynamic batch, height and width (for
``geoseg predict --model model.onnx``, onnxruntime and Netron), and one with a fixed square tile
(what QGIS Deepness expects). Both end in a softmax, so they return class probabilities
``(N, classes, H, W)`` for a normalized float32 input ``(N, bands, H, W)``. Every file is checked
with ``onnx.checker`` and by a parity run in onnxruntime against PyTorch before it gets its final
name.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.windows import Window
from torch import nn

from geoseg.errors import ExportError, InputCompatibilityWarning
from geoseg.export._deps import require
from geoseg.export.metadata import export_metadata
from geoseg.export.onnx_int8 import Int8Export, Int8Tiles, int8_tiles, quantize_graph
from geoseg.inference.options import PredictOptions
from geoseg.inference.session import calibration_temperature
from geoseg.inference.tiles import stride_problem
from geoseg.io.atomic import atomic_output, publish_together
from geoseg.io.writer import check_destination
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.resolve import ModelRef as ModelSource
from geoseg.models.resolve import resolve_model
from geoseg.models.variants import Int8Variant

__all__ = ["MIN_AGREEMENT", "OPSET", "ExportResult", "Parity", "export_onnx", "parity_tile"]

log = logging.getLogger(__name__)

# >= 17: LayerNormalization and the resize modes U-Net decoders use, read by onnxruntime >= 1.14
OPSET = 17
MIN_AGREEMENT = 0.999  # argmax agreement with PyTorch below which an export is refused
INPUT, OUTPUT = "image", "probabilities"


class Probabilities(nn.Module):
    """The network followed by a softmax over classes: ``(N, C, H, W)`` probabilities."""

    def __init__(self, model: nn.Module, temperature: float | None = None) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return torch.softmax(logits / self.temperature if self.temperature else logits, dim=1)


@dataclass
class Parity:
    """How closely an exported graph reproduces PyTorch on one tile.

    Attributes:
        agreement: fraction of pixels whose argmax class is the same.
        max_abs_diff: largest absolute difference of a class probability.
        source: where the tile came from (a raster and window, or ``synthetic``).
    """

    agreement: float
    max_abs_diff: float
    source: str


@dataclass
class ExportResult:
    """What an export wrote and how it was checked.

    Attributes:
        path: the dynamic-shape ONNX file.
        fixed: the fixed square-tile ONNX file (for QGIS Deepness), if written.
        tile_size: the fixed variant's tile edge.
        opset: ONNX opset.
        parity: parity of each written file with PyTorch, by path.
        metadata: the metadata properties written into the Deepness file (the dynamic file's
            without one).
        int8: by path, how each file was quantized and its agreement with fp32 (its
            ``geoseg_int8`` metadata), when written as int8.
        seconds: wall time.
    """

    path: Path
    fixed: Path | None
    tile_size: int
    opset: int
    parity: dict[str, Parity] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    int8: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def sample_scene() -> Path | None:
    """The sample scene shipped with the repository, if this installation has it."""
    path = Path(__file__).resolve().parents[2] / "sample_data" / "rotterdam_ps_rgb.tif"
    return path if path.is_file() else None


PARITY_CANDIDATES = 16  # tiles of a check raster tried, fullest first, before it is refused


def parity_tile(
    loaded: LoadedModel, tile_size: int, raster: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, str]:
    """A normalized ``(1, bands, tile, tile)`` float32 tile for parity checks: a tile of
    ``raster`` as the tile engine hands it to the network (read, adapted, normalized), or a seeded
    synthetic tile without one.

    The tile is the first that holds valid pixels among the :data:`PARITY_CANDIDATES` fullest
    (by the raster's coarse validity mask, top-left first among equals), so a scene with nodata
    corners is checked on its data.

    Raises:
        ExportError: ``raster`` has too few bands, or none of those tiles holds a valid pixel.
    """
    cfg = loaded.config
    if raster is not None:
        from geoseg.inference.session import open_session
        from geoseg.io.reader import RasterReader

        with RasterReader(raster) as reader:
            count = reader.count
        if count < cfg.in_channels:
            raise ExportError(
                f"{raster}: has {count} band(s), the model takes {cfg.in_channels}; "
                "pass a check raster with the model's bands, or none for a synthetic tile"
            )
        bands = tuple(range(1, cfg.in_channels + 1))
        with warnings.catch_warnings():
            # the raster only gives the parity check a realistic tile: how far it is from the
            # model's training data does not matter here
            warnings.simplefilter("ignore", InputCompatibilityWarning)
            with open_session(raster, loaded, bands=bands, tile_size=tile_size) as session:
                for window in _fullest_tiles(raster, tile_size, PARITY_CANDIDATES):
                    got = session.read_tile(window)
                    if got is not None:
                        where = (window.col_off, window.row_off, tile_size, tile_size)
                        return got[0][None].astype(np.float32), f"{raster} window {where}"
        raise ExportError(
            f"{raster}: holds no valid pixel in its {tile_size}x{tile_size} px tiles (all nodata "
            "or NaN), expected data to check the export on; pass another --check-raster, or none "
            "for a synthetic tile"
        )
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, cfg.in_channels, tile_size, tile_size)).astype(
        np.float32
    ), "synthetic"


def _fullest_tiles(raster: str | os.PathLike[str], tile: int, n: int) -> list[Window]:
    """Up to ``n`` windows of a ``tile``-px grid over ``raster``, fullest first by its coarse
    validity mask (row-major among equals)."""
    from geoseg.io.open import open_raster
    from geoseg.io.reader import coarse_validity

    with open_raster(raster) as ds:
        share, _ = coarse_validity(ds, cell=tile)
    cols = share.shape[1]
    order = np.argsort(-share.ravel(), kind="stable")[:n]
    return [Window(int(i % cols) * tile, int(i // cols) * tile, tile, tile) for i in order]


def check_parity(
    graph: str | os.PathLike[str] | bytes, loaded: LoadedModel, x: np.ndarray, source: str
) -> Parity:
    """Run ``x`` through the ONNX graph (a file, or its bytes) in onnxruntime (CPU) and through
    PyTorch; compare.

    Raises:
        ExportError: argmax agreement below :data:`MIN_AGREEMENT`.
    """
    ort = require("onnxruntime")
    session = ort.InferenceSession(
        graph if isinstance(graph, bytes) else str(graph), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {INPUT: x})[0]
    with torch.inference_mode():
        ref = (
            Probabilities(loaded.model.eval(), calibration_temperature(loaded.config))(
                torch.from_numpy(x)
            )
            .float()
            .numpy()
        )
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    parity = Parity(agreement, float(np.abs(got - ref).max()), source)
    if agreement < MIN_AGREEMENT:
        where = "the exported graph" if isinstance(graph, bytes) else f"{graph}: the exported graph"
        raise ExportError(
            f"{where} agrees with PyTorch on {agreement:.3%} of the pixels of "
            f"{source}, expected >= {MIN_AGREEMENT:.1%}; export with another --opset or report the "
            "architecture"
        )
    return parity


def _graph_bytes(module: nn.Module, example: torch.Tensor, *, dynamic: bool, opset: int) -> bytes:
    """The exported graph, serialized in memory: writing is left to :func:`atomic_output`, so a
    full disk is reported as one, not as an export failure."""
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore"
        )  # the TorchScript-based exporter is deprecated but needs no onnxscript
        try:
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a file object
                opset_version=opset,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: axes, OUTPUT: axes},
                dynamo=False,
                do_constant_folding=True,
            )
        except Exception as exc:
            raise ExportError(
                f"cannot export the model to ONNX opset {opset} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}); try a newer --opset"
            ) from None
    return buffer.getvalue()


def _finish(
    graph: bytes,
    dst: Path,
    props: dict[str, str],
    loaded: LoadedModel,
    x: np.ndarray,
    source: str,
    *,
    tile: int | None = None,
) -> tuple[bytes, Parity]:
    """Add metadata (and, for a fixed ``tile``, the output's height and width), check the graph
    and its parity; the finished graph's bytes and parity."""
    onnx = require("onnx")
    proto = onnx.load_from_string(graph)
    if tile is not None:  # the exporter's shape inference leaves them as "batch" and a dim_3
        dims = proto.graph.output[0].type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        dims[2].dim_value = dims[3].dim_value = tile
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "geoseg"
    proto.doc_string = (
        f"geoseg {loaded.config.architecture}-{loaded.config.encoder}: normalized "
        "(N, bands, H, W) float32 -> class probabilities"
    )
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportError(
            f"{dst}: onnx.checker refused the exported graph ({str(exc).splitlines()[0][:300]})"
        ) from None
    data = proto.SerializeToString()
    try:
        parity = check_parity(data, loaded, x, source)
    except ExportError as exc:
        raise ExportError(f"{dst}: {exc}") from None
    return data, parity


def export_onnx(
    model: ModelSource,
    dst: str | os.PathLike[str],
    *,
    fixed: str | os.PathLike[str] | None = None,
    tile_size: int | None = None,
    opset: int = OPSET,
    check_raster: str | os.PathLike[str] | None = None,
    resolution_cm: float | None = None,
    int8: Int8Export | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export a model to ONNX (dynamic batch, height and width) and optionally a fixed-tile copy.

    Args:
        model: checkpoint path or :class:`LoadedModel`.
        dst: the ``.onnx`` file with dynamic batch/height/width.
        fixed: optional second ``.onnx`` file with a fixed ``tile_size`` square input (QGIS
            Deepness).
        tile_size: the fixed variant's tile edge (default: the model's tile size).
        opset: ONNX opset, >= 17.
        check_raster: a raster whose fullest tile drives the parity check (default: synthetic).
        resolution_cm: ground resolution for Deepness in cm/px (default: the model's GSD;
            required with ``fixed`` when the model records none).
        int8: write each file quantized to int8 (QDQ, :mod:`geoseg.export.onnx_int8`),
            calibrated on these images, keeping in float the layers the checkpoint's int8
            variant keeps; its agreement with fp32 is the file's parity.
        overwrite: replace existing files.

    Returns:
        An :class:`ExportResult` with the parity figures of each file.

    Raises:
        ExportError: the graph cannot be exported, the checker refuses it, or it does not agree
            with PyTorch (an int8 file: on fewer than 99 % of held-out pixels); ``fixed`` is asked
            for and the ground resolution is unknown;
            MissingDependencyError: onnx/onnxruntime are not installed.
        WriteError: a file could not be written (disk full...); neither file was published and
            no temporary file is left.
    """
    start = time.perf_counter()
    require("onnx")
    require("onnxruntime")
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; expected >= 17 (the default is {OPSET})")
    outputs = [Path(dst)] + ([Path(fixed)] if fixed is not None else [])
    for p in outputs:
        if p.suffix.lower() != ".onnx":
            raise ExportError(f"{p}: expected a file name ending in .onnx")
        check_destination(p, overwrite=overwrite)
    loaded = resolve_model(model)
    cfg = loaded.config
    tile = PredictOptions(tile_size=tile_size).tile_size_for(cfg)
    problem = stride_problem(tile, cfg.output_stride)
    if problem is not None:
        raise ExportError(problem)
    # the dynamic file runs as the checkpoint does; the Deepness file carries the plugin's keys and
    # a config with its tiling (refused before any work when the ground resolution is unknown)
    metadata = [export_metadata(cfg, tile_size=tile, deepness=False)]
    if fixed is not None:
        metadata.append(export_metadata(cfg, tile_size=tile, resolution_cm=resolution_cm))
    module = (
        Probabilities(loaded.model, calibration_temperature(cfg)).eval().cpu()
    )  # a calibration temperature goes into the graph
    x, source = parity_tile(loaded, tile, check_raster)
    example = torch.from_numpy(x)
    result = ExportResult(Path(dst), Path(fixed) if fixed is not None else None, tile, opset)
    result.metadata = metadata[-1]
    tiles = int8_tiles(loaded, int8, tile) if int8 is not None else None
    variant = Int8Variant.of(cfg)  # its float layers stay in float in an int8 file
    floats = variant.float_layers if variant is not None else ()
    graphs: dict[Path, bytes] = {}
    for path, dynamic, props in zip(outputs, (True, False), metadata, strict=False):
        graph = _graph_bytes(module, example, dynamic=dynamic, opset=opset)
        graphs[path], result.parity[str(path)] = _finish(
            graph, path, props, loaded, x, source, tile=None if dynamic else tile
        )
        if tiles is not None:
            graphs[path], record = _int8(graphs[path], path, module, floats, tiles)
            agreement = record["agreement"]
            result.parity[str(path)] = Parity(
                agreement["value"], record["max_abs_diff"], agreement["on"]
            )
            result.int8[str(path)] = record
        log.info(
            "%s: agreement %.4f, max |dp| %.2e",
            path,
            result.parity[str(path)].agreement,
            result.parity[str(path)].max_abs_diff,
        )
    # Each file gets a temporary name of its own run (concurrent exports to one path each publish
    # a whole file); both are written before either is renamed, so a full disk (or a signal)
    # leaves neither.
    with publish_together():
        for path, data in graphs.items():
            with atomic_output(path) as tmp:
                tmp.write_bytes(data)
    result.seconds = time.perf_counter() - start
    return result


def _int8(
    graph: bytes, path: Path, module: nn.Module, layers: Sequence[str], tiles: Int8Tiles
) -> tuple[bytes, dict[str, Any]]:
    """``graph`` quantized to int8, ``layers`` kept in float (see
    :func:`~geoseg.export.onnx_int8.quantize_graph`)."""

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).float().numpy()

    try:
        return quantize_graph(graph, tiles, INPUT, layers, reference)
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata properties of an ONNX file, as text."""
    onnx = require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
