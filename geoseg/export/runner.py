"""Run an exported ONNX model with onnxruntime behind the same interface as a PyTorch model.

:func:`load_onnx` reads the geoseg config stored in the file and returns a
:class:`~geoseg.models.checkpoint.LoadedModel` whose module calls an onnxruntime session, so the
inference engine (tile plan, blending, nodata, outputs) runs it unchanged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.errors import CheckpointError, TilingError
from geoseg.export._deps import require
from geoseg.models.checkpoint import LoadedModel
from geoseg.models.config import ModelConfig
from geoseg.models.resolve import register_model_loader

__all__ = ["OnnxModule", "load_onnx", "providers_for"]

log = logging.getLogger(__name__)


def providers_for(device: torch.device | str) -> list[str]:
    """onnxruntime execution providers for a device: CUDA first when asked for and present."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModule(nn.Module):
    """An onnxruntime session as a module: ``(N, bands, H, W)`` float32 in, ``(N, classes, H, W)``
    logits out (log-probabilities when the graph ends in a softmax, so a softmax gives them back).

    The engine does not trace, freeze or autocast it (``runs_outside_torch``).

    Args:
        path: the ``.onnx`` file.
        device: ``cpu`` or ``cuda`` (the CUDA provider when onnxruntime has it).
        int8: the ``geoseg_int8`` record of a graph quantized by ``geoseg export --int8`` (how it
            was made and how closely it agrees with fp32); its precision is then ``int8``.
    """

    runs_outside_torch = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        *,
        output: str = "probabilities",
        int8: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        ort = require("onnxruntime")
        self.path = Path(path)
        self.output = output
        self.int8 = int8
        self.graph_precision = "int8" if int8 is not None else "fp32"
        self.providers = providers_for(device)
        self._session: Any = ort.InferenceSession(str(path), providers=self.providers)
        inp = self._session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_size = (
            tuple(d for d in inp.shape[2:])
            if all(isinstance(d, int) for d in inp.shape[2:])
            else None
        )

    def _apply(
        self, fn: Any, recurse: bool = True
    ) -> OnnxModule:  # no parameters to move; the session keeps its device
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_size is not None and tuple(x.shape[2:]) != self.fixed_size:
            raise TilingError(
                f"{self.path}: the graph takes {self.fixed_size[0]} x {self.fixed_size[1]} px "
                f"tiles, got {x.shape[2]} x {x.shape[3]}; use --tile-size {self.fixed_size[0]} or "
                "the dynamic-shape export"
            )
        array = x.detach().float().contiguous().cpu().numpy()
        out = torch.from_numpy(self._session.run(None, {self.input_name: array})[0]).to(x.device)
        if self.output == "probabilities":
            return torch.log(out.clamp_min(1e-30))
        return out


def load_onnx(path: str | os.PathLike[str], *, device: torch.device | str = "cpu") -> LoadedModel:
    """Load an ONNX file written by ``geoseg export`` as a runnable model with its config.

    Raises:
        CheckpointError: the file is missing, is not ONNX, or carries no geoseg config.
        MissingDependencyError: onnx/onnxruntime are not installed.
    """
    onnx = require("onnx")
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such ONNX file; expected a model written by geoseg export")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise CheckpointError(
            f"{p}: not a readable ONNX file ({str(exc).splitlines()[0][:200]})"
        ) from None
    meta = {m.key: m.value for m in proto.metadata_props}
    if "geoseg_config" not in meta:
        raise CheckpointError(
            f"{p}: carries no geoseg_config metadata; expected an ONNX file written by geoseg "
            "export (re-export the checkpoint with geoseg export MODEL OUT.onnx)"
        )
    config = ModelConfig.from_json(meta["geoseg_config"], source=str(p))
    del proto
    try:
        int8 = json.loads(meta["geoseg_int8"]) if "geoseg_int8" in meta else None
    except ValueError:
        raise CheckpointError(
            f"{p}: its geoseg_int8 metadata is not JSON; export the checkpoint again"
        ) from None
    module = OnnxModule(p, device, output=meta.get("geoseg_output", "probabilities"), int8=int8)
    if module.fixed_size is not None:
        config = config.replace(tile_size=int(module.fixed_size[0]))
    metrics = dict(config.metrics)
    if isinstance(metrics.get("calibration"), dict) and "temperature" in metrics["calibration"]:
        # the exported graph already divides its logits by the temperature: do not apply it twice
        calibration = dict(metrics["calibration"])
        calibration["temperature_in_graph"] = calibration.pop("temperature")
        metrics["calibration"] = calibration
        config = config.replace(metrics=metrics)
    training = dict(config.training)
    training["runtime"] = {"onnx": str(p), "providers": module.providers}
    log.info("%s: onnxruntime with %s", p, ", ".join(module.providers))
    return LoadedModel(module, config.replace(training=json.loads(json.dumps(training))))


register_model_loader(".onnx", load_onnx)
