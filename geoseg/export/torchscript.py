"""Export a geoseg model as a frozen TorchScript archive (``.pt``) with its config inside."""

from __future__ import annotations

import io
import os
import warnings

import torch

from geoseg.errors import ExportError
from geoseg.export.onnx import MIN_AGREEMENT, Parity, Probabilities, parity_tile
from geoseg.inference.options import PredictOptions
from geoseg.inference.session import calibration_temperature
from geoseg.io.atomic import atomic_output
from geoseg.io.writer import check_destination
from geoseg.models.resolve import ModelRef as ModelSource
from geoseg.models.resolve import resolve_model

__all__ = ["CONFIG_FILE", "export_torchscript"]

# extra file in the archive: torch.jit.load(path, _extra_files={CONFIG_FILE: ""})
CONFIG_FILE = "geoseg_config.json"


def export_torchscript(
    model: ModelSource,
    dst: str | os.PathLike[str],
    *,
    tile_size: int | None = None,
    check_raster: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Parity:
    """Trace and freeze the model (softmax included: it returns probabilities) into ``dst``.

    The trace generalizes over batch and tile size for the convolutional U-Nets geoseg builds;
    the geoseg config travels in the archive as ``geoseg_config.json``.

    Returns:
        The archive's :class:`~geoseg.export.onnx.Parity` with the eager model on one tile.

    Raises:
        ExportError: tracing fails, the archive disagrees with the eager model, or the check
            raster holds no valid pixel where it is read.
        WriteError: the archive could not be written (disk full...); nothing is left under
            ``dst`` nor under a temporary name.
    """
    path = check_destination(dst, overwrite=overwrite)
    if path.suffix.lower() != ".pt":
        raise ExportError(
            f"{path}: expected a TorchScript file name ending in .pt (or .onnx for ONNX)"
        )
    loaded = resolve_model(model)
    tile = PredictOptions(tile_size=tile_size).tile_size_for(loaded.config)
    x, source = parity_tile(loaded, tile, check_raster)
    example = torch.from_numpy(x)
    module = Probabilities(loaded.model, calibration_temperature(loaded.config)).eval().cpu()
    # The archive is built in memory and written by Python: torch's own file writer aborts the
    # process (a C++ exception in a destructor) when the disk fills, and atomic_output gives each
    # run its own temporary name, so concurrent exports to one path each publish a whole archive.
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scripted = torch.jit.freeze(torch.jit.trace(module, example, check_trace=False))
        except Exception as exc:
            raise ExportError(
                f"cannot trace the model to TorchScript ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]})"
            ) from None
        torch.jit.save(scripted, buffer, _extra_files={CONFIG_FILE: loaded.config.to_json()})
        buffer.seek(0)
        reloaded = torch.jit.load(buffer, map_location="cpu")
        got, ref = reloaded(example), module(example)
    agreement = float((got.argmax(1) == ref.argmax(1)).float().mean())
    if agreement < MIN_AGREEMENT:
        raise ExportError(
            f"{path}: the TorchScript archive agrees with PyTorch on {agreement:.3%} of "
            f"pixels, expected >= {MIN_AGREEMENT:.1%}"
        )
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Parity(agreement, float((got - ref).abs().max()), source)
